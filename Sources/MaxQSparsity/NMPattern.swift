// N:M patterns, the conv-bn unit types, and the incremental-sparsity schedule of
// docs/algorithm.md sections 1, 4 and 8, with the errors for settings that cannot work.
import Foundation

public enum SparsityError: Error, Equatable, CustomStringConvertible {
    case invalidPattern(n: Int, m: Int)
    case notNMCompatible(name: String, shape: [Int], m: Int)
    case invalidSchedule(String)
    case nonFinite(name: String)

    public var description: String {
        switch self {
        case let .invalidPattern(n, m): "invalid N:M pattern \(n):\(m): need 1 <= N <= M"
        case let .notNMCompatible(name, shape, m):
            "'\(name)' of shape \(shape) cannot be N:M with M = \(m): "
                + "input channels must be a multiple of M (and the convolution not depthwise)"
        case let .invalidSchedule(reason): "invalid incremental schedule: \(reason)"
        case let .nonFinite(name): "'\(name)' holds NaN or infinite values: no mask can be computed from it"
        }
    }
}

/// N of every M consecutive input-channel weights kept.
public struct NMPattern: Equatable, Sendable, CustomStringConvertible {
    public let n: Int
    public let m: Int

    public init(n: Int, m: Int) throws(SparsityError) {
        guard n >= 1, n <= m else { throw .invalidPattern(n: n, m: m) }
        self.n = n
        self.m = m
    }

    public var isDense: Bool { n == m }
    public var description: String { "\(n):\(m)" }

    /// k = floor((M-N)/M * L), computed in double precision as the reference does in Python.
    func prunedCount(of length: Int) -> Int {
        Int(Double(m - n) / Double(m) * Double(length))
    }

    /// Whether a convolution weight (O, I/groups, kh, kw) with `groups` can carry this pattern.
    public func fits(weightShape shape: [Int], groups: Int = 1) -> Bool {
        shape.count == 4 && groups == 1 && shape[1] % m == 0
    }
}

/// The conv-bn unit types of the reference code (`--conv-bn-type`).
public enum ConvBNType: String, CaseIterable, Codable, Sendable {
    case dense = "DenseConv2dBN"
    case softSRSTE = "SoftSRSTEConv2dBN"
    case hardSRSTE = "HardSRSTEConv2dBN"
    case softMaxQ = "SoftMaxQConv2DBN"
    case hardMaxQ = "HardMaxQConv2DBN"
    case softMaxQInverse = "SoftMaxQConv2DBNInverse"
    case softMaxQRandom = "SoftMaxQConv2DBNRandom"
}

public enum PruneSchedule: String, CaseIterable, Codable, Sendable {
    case linear, cubic, cos, exp
}

/// The incremental schedule: the preserve rate p(e) of dense groups for epoch e (from 0).
public struct IncrementalSchedule: Equatable, Sendable {
    public let schedule: PruneSchedule
    public let increaseStart: Int
    public let increaseEnd: Int

    public init(_ schedule: PruneSchedule, increaseStart: Int, increaseEnd: Int) throws(SparsityError) {
        guard increaseStart >= 0 else { throw .invalidSchedule("increase-start \(increaseStart) is negative") }
        guard increaseEnd >= increaseStart else {
            throw .invalidSchedule("increase-end \(increaseEnd) is before increase-start \(increaseStart)")
        }
        guard schedule != .exp || increaseEnd - increaseStart >= 2 || (increaseStart == 0 && increaseEnd == 0) else {
            throw .invalidSchedule(
                "the exp schedule needs increase-end - increase-start >= 2 epochs (got \(increaseEnd - increaseStart))")
        }
        self.schedule = schedule
        self.increaseStart = increaseStart
        self.increaseEnd = increaseEnd
    }

    public func preserveRate(epoch e: Int) -> Double {
        let (s, t) = (increaseStart, increaseEnd)
        if s == 0 && t == 0 { return 0 }
        if e < s { return 1 }
        if e >= t { return 0 }
        let progress = Double(e - s) / Double(t - s)
        switch schedule {
        case .linear: return min(max(1 - progress, 0), 1)
        case .cubic: return min(max(Foundation.pow(1 - progress, 3), 0), 1)
        case .cos: return Foundation.cos(progress * Double.pi / 2)
        case .exp:
            let q = { (j: Int) in 1 - Foundation.exp(-0.05 * Double(j)) }
            return 1 - q(e - s) / q(t - s - 1)
        }
    }
}
