// Loading a checkpoint's state dict into a model: each key mapped to the architecture's own name
// (`Model.ownName`), missing masks computed from the loaded weights, and the missing/unexpected
// report of PyTorch's `strict=False`.
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
        var named = Dictionary(entries.map { (Self.ownName($0.name), $0.tensor) }, uniquingKeysWith: { _, b in b })
        // Masks absent from the checkpoint are computed from the loaded weights, not reported.
        let maskNames = Set(units.filter { $0.1.mask != nil }.map { "\($0.0).mask" })
        let absentMasks = maskNames.filter { named[$0] == nil }
        for name in absentMasks { named[name] = nil }
        var report = try loadStateDict(named)
        report.missing.removeAll { absentMasks.contains($0) }
        let needMasks = units.filter { absentMasks.contains("\($0.0).mask") }
        try ConvBNUnit.recomputeMasks(of: needMasks, forNextForward: false)
        return report
    }
}
