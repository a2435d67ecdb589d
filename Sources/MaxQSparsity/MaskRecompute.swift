// Recomputing the masks of many units at once, spread over the cores layer by layer (the
// largest layers first, so that the last one to finish is small).
import Foundation
import MaxQTensor

extension ConvBNUnit {
    /// Recomputes every named unit's stored mask from its current weight, in parallel across
    /// units. With `forNextForward`, a unit in training mode uses this mask for its next forward
    /// pass instead of computing it again (the weights and epoch must not change in between).
    /// A weight holding NaN or an infinity stops it, named in full (`layer1.0.convbn1.conv.weight`).
    public static func recomputeMasks(
        of units: [(name: String, unit: ConvBNUnit)], forNextForward: Bool = true
    ) throws(TensorError) {
        let masked = units.filter { $0.unit.mask != nil }.sorted {
            $0.unit.conv.weight.value.count > $1.unit.conv.weight.value.count
        }
        let failures = FailureList()
        parallelForEach(masked.count) { i in
            do throws(TensorError) {
                try masked[i].unit.recomputeMask()
                masked[i].unit.maskIsFresh = forNextForward
            } catch {
                failures.record(index: i, error)
            }
        }
        if let (i, error) = failures.first {
            guard case .nonFinite(let name) = error else { throw error }
            throw .nonFinite(name: masked[i].name.isEmpty ? name : "\(masked[i].name).\(name)")
        }
    }
}

/// Errors of parallel work, by index; the lowest index is reported.
private final class FailureList: @unchecked Sendable {
    private var failures: [(Int, TensorError)] = []
    private let lock = NSLock()

    func record(index: Int, _ error: TensorError) {
        lock.lock()
        failures.append((index, error))
        lock.unlock()
    }

    var first: (Int, TensorError)? { failures.min { $0.0 < $1.0 } }
}
