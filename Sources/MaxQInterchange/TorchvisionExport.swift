// A trained model as a plain torchvision state dict (ResNet-18/34/50, MobileNet V2/V3): torchvision's
// own names, no masks; with `foldMask`, each N:M weight multiplied by its mask, as the original's
// `scripts/weight_transfer.py` hands MaxQ backbones to detection frameworks.
import MaxQModels
import MaxQNN
import MaxQTensor

public enum TorchvisionExport {
    /// The architectures torchvision has.
    public static let architectures: [Architecture] = [
        .resnet18, .resnet34, .resnet50, .mobilenetV2, .mobilenetV3Small, .mobilenetV3Large,
    ]

    /// `model`'s state dict (built for `architecture`, weights loaded) under torchvision's names.
    public static func stateDict(
        _ model: any Model, architecture: Architecture, foldMask: Bool
    ) throws(InterchangeError) -> [(name: String, tensor: Tensor)] {
        guard architectures.contains(architecture) else { throw .noTorchvisionModel(architecture.rawValue) }
        var masks: Set<String> = []
        var folded: [String: Tensor] = [:]
        for (name, unit) in model.units {
            guard let mask = unit.mask else { continue }
            masks.insert(unit.maskKey(prefix: name))
            guard foldMask else { continue }
            let weight = unit.conv.weight.value
            do { folded[unit.weightKey(prefix: name)] = try weight.backend.multiply(weight, mask.value) } catch {
                throw .deployment(.tensor(error))
            }
        }
        let isResNet = architecture.rawValue.hasPrefix("resnet")
        return model.stateDict().filter { !masks.contains($0.0) }.map { key, tensor in
            (name: isResNet ? ResNet.torchvisionName(key) : key, tensor: folded[key] ?? tensor)
        }
    }
}
