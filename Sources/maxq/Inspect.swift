// `maxq inspect`: is this checkpoint really sparse? A row per layer: shape, unit type, zeros,
// sparsity, the N:M pattern the zeros satisfy, the soft mask's value range; then a total, and the
// FLOPs the checkpoint costs with its zeros skipped (architecture given or recognised).
import ArgumentParser
import Foundation
import MaxQFormats
import MaxQInterchange
import MaxQModels
import MaxQSparsity
import MaxQTensor

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Per-layer sparsity report of a checkpoint (.pth, .pth.tar or .safetensors).")

    @Argument(help: "Checkpoint.") var checkpoint: String
    @Option(
        name: [.customShort("a"), .long],
        help: "Also check the checkpoint against this architecture's state dict (default: the one it fits, if any).")
    var arch: Architecture?
    @Flag(help: "One JSON object for machines instead of the table.") var json = false
    @Option(help: "Also draw the layers as bars (zeros, kept weights, N:M valid or not) into this SVG file.")
    var svg: String?

    func run() throws {
        let state: [(name: String, tensor: Tensor)]
        do { state = try CheckpointFile.readStateDict(path: checkpoint) } catch { throw Failure(error) }
        let weights = MaskedWeight.all(in: state)
        let fitting =
            try arch.map { try check(state, against: $0) } ?? Architecture.matching(state).map { ($0.0, $0.model) }
        let cost = try fitting.map { try CheckpointCost(state, weights, architecture: $0.0, model: $0.1) }
        let rows = InspectRow.rows(weights)
        if let svg {
            let title = "\(URL(fileURLWithPath: checkpoint).lastPathComponent): sparsity per convolution layer"
            do { try AtomicWrite.write(Data(InspectPicture.svg(rows, title: title).utf8), to: svg) } catch {
                throw Failure(error)
            }
        }
        if json {
            printJSON(rows, cost)
        } else {
            printTable(rows)
            print(cost?.line ?? "FLOPs: not counted (the checkpoint fits no architecture as it is; -a names one)")
        }
    }

    /// Loads the state into the architecture (classes from its classifier) and reports what
    /// does not fit; a shape mismatch is an error naming the key. Returns the loaded model.
    private func check(_ state: [(name: String, tensor: Tensor)], against arch: Architecture) throws -> (
        Architecture, any Model
    ) {
        guard let classes = state.first(where: { $0.name == arch.classifierWeight })?.tensor.shape.first else {
            throw Failure("\(checkpoint): no \(arch.classifierWeight) to take \(arch.rawValue)'s class count from")
        }
        do {
            let model = try arch.build(classes: classes, sparsity: .dense)
            let report = try model.load(state.filter { !$0.name.hasSuffix(".mask") })
            let note = { (what: String, keys: [String]) in
                keys.isEmpty
                    ? "no \(what) keys"
                    : "\(keys.count) \(what) keys (\(keys.prefix(5).joined(separator: ", "))"
                        + "\(keys.count > 5 ? ", ..." : ""))"
            }
            FileHandle.standardError.write(
                Data(
                    ("\(arch.rawValue) with \(classes) classes: \(note("missing", report.missing)), "
                        + "\(note("unexpected", report.unexpected))\n").utf8))
            return (arch, model)
        } catch {
            throw Failure(error)
        }
    }

    private func printTable(_ rows: [InspectRow]) {
        print(
            "layer".padding(toLength: 34, withPad: " ", startingAt: 0)
                + "shape".padding(toLength: 20, withPad: " ", startingAt: 0)
                + "type        zeros       sparsity  N:M      mask range")
        for r in rows {
            let pattern = r.sparsity.pattern.map { "\($0.n):\($0.m)" } ?? (r.sparsity.zeros == 0 ? "dense" : "-")
            let range = r.maskRange.map { String(format: "[%.3f, %.3f]", $0.0, $0.1) } ?? ""
            print(
                r.name.padding(toLength: 34, withPad: " ", startingAt: 0)
                    + "\(r.shape)".padding(toLength: 20, withPad: " ", startingAt: 0)
                    + r.kind.padding(toLength: 12, withPad: " ", startingAt: 0)
                    + "\(r.sparsity.zeros)".padding(toLength: 12, withPad: " ", startingAt: 0)
                    + String(format: "%6.2f%%   ", 100 * r.sparsity.fraction)
                    + pattern.padding(toLength: 9, withPad: " ", startingAt: 0) + range)
        }
        let zeros = rows.map(\.sparsity.zeros).reduce(0, +), total = rows.map(\.sparsity.total).reduce(0, +)
        let nm = rows.filter { $0.sparsity.pattern != nil }
        print(
            String(
                format: "total: %d weights in %d convolution layers, %d zeros (%.2f%%); "
                    + "a valid N:M pattern in %d of the %d layers",
                total, rows.count, zeros, 100 * Double(zeros) / Double(max(total, 1)), nm.count, rows.count))
    }

    private func printJSON(_ rows: [InspectRow], _ cost: CheckpointCost?) {
        let layers: [[String: Any]] = rows.map { r in
            var o: [String: Any] = [
                "name": r.name, "shape": r.shape, "type": r.kind, "zeros": r.sparsity.zeros,
                "total": r.sparsity.total, "sparsity": r.sparsity.fraction,
            ]
            if let p = r.sparsity.pattern { o["n"] = p.n; o["m"] = p.m }
            if let m = r.maskRange { o["mask_min"] = Double(m.0); o["mask_max"] = Double(m.1) }
            return o
        }
        let zeros = rows.map(\.sparsity.zeros).reduce(0, +), total = rows.map(\.sparsity.total).reduce(0, +)
        var object: [String: Any] = [
            "layers": layers, "total": total, "zeros": zeros, "sparsity": Double(zeros) / Double(max(total, 1)),
        ]
        if let cost {
            object["arch"] = cost.architecture.rawValue
            object["resolution"] = cost.resolution
            object["flops"] = cost.flops
            object["flops_dense"] = cost.denseFLOPs
        }
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}

/// One convolution weight of a state dict with its mask (if any) applied.
struct InspectRow {
    var name: String
    var shape: [Int]
    var kind: String
    var sparsity: LayerSparsity
    var maskRange: (Float, Float)?

    static func rows(_ weights: [MaskedWeight]) -> [InspectRow] {
        weights.map { w in
            guard let mask = w.mask else {
                return InspectRow(
                    name: w.name, shape: w.weight.shape, kind: "dense",
                    sparsity: LayerSparsity(effectiveWeight: w.weight))
            }
            let kept = mask.scalars.filter { $0 != 0 }
            let soft = kept.contains { $0 != 1 }
            return InspectRow(
                name: w.unit, shape: w.weight.shape, kind: soft ? "MaxQ soft" : "N:M 0/1",
                sparsity: LayerSparsity(effectiveWeight: w.effective),
                maskRange: soft ? (kept.min() ?? 0, kept.max() ?? 0) : nil)
        }
    }
}

/// What a checkpoint costs to run once at its architecture's resolution: its FLOPs with its zero
/// weights skipped (masks applied) and those of the same network dense (docs/flops.md).
struct CheckpointCost {
    var architecture: Architecture, resolution: Int
    var flops: Double, denseFLOPs: Double

    /// `model`: a dense model of `architecture`, into which the masked weights are loaded.
    init(
        _ state: [(name: String, tensor: Tensor)], _ weights: [MaskedWeight], architecture: Architecture,
        model: any Model
    ) throws {
        do {
            try model.load(MaskedWeight.folded(state, weights))
            resolution = architecture.resolution
            // A dense pattern makes the reference count the dense network's.
            let report = try CostReport(model, pattern: try NMPattern(n: 1, m: 1), resolution: resolution)
            (self.architecture, flops, denseFLOPs) = (architecture, report.flops, report.referenceFLOPs)
        } catch {
            throw Failure(error)
        }
    }

    var line: String {
        String(
            format: "FLOPs as %@ at %dx%d: %.4f G with its zeros skipped, %.4f G dense (%.2fx fewer)",
            architecture.rawValue, resolution, resolution, flops / 1e9, denseFLOPs / 1e9,
            denseFLOPs / max(flops, 1))
    }
}

/// A convolution weight of a state dict with its mask, if it has one.
struct MaskedWeight {
    /// The weight's key, and the unit its mask belongs to (the weight's key again when it has none).
    var name: String, unit: String
    var weight: Tensor, mask: Tensor?

    /// The weight as the network computes with it: times its mask.
    var effective: Tensor

    static func all(in state: [(name: String, tensor: Tensor)]) -> [MaskedWeight] {
        let byName = Dictionary(state.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        return state.filter { $0.tensor.rank == 4 && $0.name.hasSuffix("weight") }.map { name, weight in
            // The mask sits beside the unit's conv (`<unit>.mask`) or, in torchvision's layout,
            // beside the weight (`<conv>.mask`).
            let reference = name.hasSuffix(".conv.weight") ? String(name.dropLast(".conv.weight".count)) : nil
            let beside = String(name.dropLast(".weight".count))
            let (unit, maskKey) =
                reference.flatMap { byName["\($0).mask"] != nil ? ($0, "\($0).mask") : nil }
                ?? (beside, "\(beside).mask")
            let mask = byName[maskKey].flatMap { $0.shape == weight.shape ? $0 : nil }
            return MaskedWeight(
                name: name, unit: mask == nil ? name : unit, weight: weight, mask: mask,
                effective: mask.map { try! CPUBackend.shared.multiply(weight, $0) } ?? weight)
        }
    }

    /// `state` with every masked weight replaced by its effective weight and the masks left out:
    /// what a dense model of the architecture computes the same with.
    static func folded(_ state: [(name: String, tensor: Tensor)], _ weights: [MaskedWeight]) -> [(
        name: String, tensor: Tensor
    )] {
        let effective = Dictionary(weights.filter { $0.mask != nil }.map { ($0.name, $0.effective) }) { a, _ in a }
        return state.filter { !$0.name.hasSuffix(".mask") }.map { ($0.name, effective[$0.name] ?? $0.tensor) }
    }
}
