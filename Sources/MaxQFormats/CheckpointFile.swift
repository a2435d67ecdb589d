// Any checkpoint by its format: safetensors, or PyTorch's zip (.pth, .pth.tar, .pt), with the
// `module.` and `_orig_mod.` prefixes of DataParallel and torch.compile stripped.
import Foundation
import MaxQTensor

public enum CheckpointFile {
    /// The `format` metadata of a model written by `maxq export` (MaxQDeploy's `ExportedModel`).
    public static let exportedModelFormat = "maxq-nm"

    /// The model state of a checkpoint (a run checkpoint's `optimizer.*` entries left out).
    public static func readStateDict(path: String) throws -> [(name: String, tensor: Tensor)] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw SafetensorsError.unreadable(path: path, reason: "no such file")
        }
        let raw: [(name: String, tensor: Tensor)]
        if path.hasSuffix(".safetensors") {
            let file = try SafetensorsFile.read(path: path)
            if file.metadata["format"] == exportedModelFormat {
                throw SafetensorsError.malformed(
                    path: path,
                    reason: "an exported inference model (maxq export), not a checkpoint: give it to predict")
            }
            if let bytes = file.byteTensors.first {
                throw SafetensorsError.malformed(
                    path: path, reason: "tensor '\(bytes.name)' is U8, which no model parameter or buffer is")
            }
            raw = file.tensors
        } else {
            raw = try TorchCheckpoint.read(path: path).stateDict
        }
        return raw.filter { !$0.name.hasPrefix("optimizer.") }.map { (stripPrefixes($0.name), $0.tensor) }
    }

    static func stripPrefixes(_ name: String) -> String {
        var n = Substring(name)
        for prefix in ["module.", "_orig_mod."] where n.hasPrefix(prefix) { n = n.dropFirst(prefix.count) }
        return String(n)
    }
}
