// Loading a checkpoint's state dict into a model: each key mapped to the architecture's own name
// (`Model.ownName`), missing masks computed from the loaded weights, and the missing/unexpected
// report of PyTorch's `strict=False`.
import MaxQFormats
import MaxQNN
import MaxQSparsity
import MaxQTensor

extension Model {
    /// Loads `entries` (prefixes already stripped); throws on the first shape mismatch, naming
    /// the key and both shapes, before anything changes.
    @discardableResult
    public func load(_ entries: [(name: String, tensor: Tensor)]) throws(TensorError) -> LoadReport {
        // Weights that are not numbers would poison every computation after (and have no mask).
        for (name, tensor) in entries where !tensor.isAllFinite { throw .nonFinite(name: name) }
        let named = Dictionary(entries.map { (Self.ownName($0.name), $0.tensor) }, uniquingKeysWith: { _, b in b })
        // Masks absent from the checkpoint are computed from the loaded weights, not reported.
        let masked = units.filter { $0.1.mask != nil }
        let absentMasks = Set(masked.map { $0.1.maskKey(prefix: $0.0) }.filter { named[$0] == nil })
        var report = try loadStateDict(named)
        report.missing.removeAll { absentMasks.contains($0) }
        let needMasks = masked.filter { absentMasks.contains($0.1.maskKey(prefix: $0.0)) }
        try ConvBNUnit.recomputeMasks(of: needMasks, forNextForward: false)
        return report
    }
}

/// A checkpoint none of whose tensors belongs to the model: another architecture, or names from
/// another code base. Refused rather than running with untrained weights.
public struct CheckpointMismatch: Error, CustomStringConvertible {
    public let path: String, architecture: String
    public let count: Int, sample: [String]

    public var description: String {
        "\(path): none of its \(count) tensors belongs to \(architecture) "
            + "(its first: \(sample.joined(separator: ", "))); is it a checkpoint of another architecture, "
            + "or for other --conv-bn-type/--num-classes settings?"
    }
}

extension Model {
    /// Loads a checkpoint file in any supported format (`--pretrained`): PyTorch's zip or
    /// safetensors, `module.`/`_orig_mod.` prefixes removed, names mapped as in `load(_:)`.
    @discardableResult
    public func load(checkpoint path: String, architecture: String) throws -> LoadReport {
        let entries = try CheckpointFile.readStateDict(path: path)
        let report = try load(entries)
        // Batch counters and masks are not required (masks are computed when absent).
        func required(_ name: String) -> Bool { !name.hasSuffix("num_batches_tracked") && !name.hasSuffix("mask") }
        guard report.missing.filter(required).count < stateDict().map(\.0).filter(required).count else {
            throw CheckpointMismatch(
                path: path, architecture: architecture, count: entries.count, sample: entries.prefix(3).map(\.name))
        }
        return report
    }
}

extension Architecture {
    /// The architecture a state dict belongs to, with its class count and a dense model of it
    /// holding the entries: the first whose every parameter and buffer the entries hold with its
    /// shape, and nothing else (masks and batch counters aside). Nil when none fits.
    public static func matching(_ entries: [(name: String, tensor: Tensor)]) -> (
        Architecture, classes: Int, model: any Model
    )? {
        let weights = entries.filter { !$0.name.hasSuffix(".mask") }
        let counter = { (name: String) in name.hasSuffix("num_batches_tracked") }
        for architecture in allCases {
            guard
                let classes = weights.first(where: { $0.name == architecture.classifierWeight })?.tensor.shape.first,
                let model = try? architecture.build(classes: classes, sparsity: .dense),
                let report = try? model.load(weights),
                report.missing.allSatisfy(counter), report.unexpected.allSatisfy(counter)
            else { continue }
            return (architecture, classes, model)
        }
        return nil
    }
}
