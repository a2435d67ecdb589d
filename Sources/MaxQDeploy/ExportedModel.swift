// The compressed model file `maxq export` writes (`.nm.safetensors`, docs/deployment.md): a
// safetensors file holding every conv-bn unit folded (N:M units as kept values and packed
// positions, others as a dense weight) with its bias, each unit's geometry in the metadata, and
// the other layers' tensors as the checkpoint has them. Read back, every part is checked before
// use: it comes from outside.
import Foundation
import MaxQFormats
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

public struct ExportedModel {
    public static let version = "1"
    public let architecture: Architecture
    public let type: ConvBNType
    public let pattern: NMPattern
    public let classes: Int
    public let units: [FoldedUnit]
    /// The tensors of the layers that are not conv-bn units (classifier, squeeze-excitation), by state-dict name.
    public let rest: [(name: String, tensor: Tensor)]

    /// Folds `model`, built for `architecture` with `sparsity` and its weights loaded; the report
    /// says which units stay dense and why. The model is not changed.
    public static func export(
        _ model: any Model, architecture: Architecture, classes: Int, sparsity: SparsityConfig
    ) throws(DeploymentError) -> (ExportedModel, DeploymentReport) {
        let (units, report) = try Deployment.fold(model)
        let unitKeys = Set(model.units.flatMap { name, unit in unit.stateDict(prefix: name).map(\.0) })
        let rest = model.stateDict().filter { !unitKeys.contains($0.0) }.map { (name: $0.0, tensor: $0.1) }
        let exported = ExportedModel(
            architecture: architecture, type: sparsity.type, pattern: sparsity.pattern, classes: classes,
            units: units, rest: rest)
        return (exported, report)
    }

    init(
        architecture: Architecture, type: ConvBNType, pattern: NMPattern, classes: Int, units: [FoldedUnit],
        rest: [(name: String, tensor: Tensor)]
    ) {
        (self.architecture, self.type, self.pattern, self.classes) = (architecture, type, pattern, classes)
        (self.units, self.rest) = (units, rest)
    }

    /// Bytes of all weights and biases as dense fp32, units folded: what the file would hold uncompressed.
    public var denseBytes: Int {
        let unitScalars = units.reduce(0) { $0 + $1.denseShape.reduce(1, *) + $1.bias.count }
        return 4 * (unitScalars + rest.reduce(0) { $0 + $1.tensor.count })
    }

    /// The safetensors file: metadata, then per unit `<name>.values` (F32), `<name>.indices` (U8)
    /// and `<name>.bias`, or `<name>.weight` and `<name>.bias`; then the other tensors.
    public var file: SafetensorsFile {
        var file = SafetensorsFile()
        var layers: [[String: Any]] = []
        for unit in units {
            let g = unit.geometry
            var layer: [String: Any] = [
                "name": unit.name, "shape": unit.denseShape, "stride": g.stride, "padding": g.padding,
                "groups": g.groups,
            ]
            if let activation = unit.activation { layer["activation"] = activation.rawValue }
            switch unit.weights {
            case .nm(let packed):
                layer.merge(["kind": "nm", "n": packed.n, "m": packed.m]) { $1 }
                file.tensors.append(
                    ("\(unit.name).values", try! Tensor(shape: [packed.values.count], scalars: packed.values)))
                file.byteTensors.append(("\(unit.name).indices", [packed.packedIndices.count], packed.packedIndices))
            case .dense(let weight):
                layer["kind"] = "dense"
                file.tensors.append(("\(unit.name).weight", weight))
            }
            file.tensors.append(("\(unit.name).bias", unit.bias))
            layers.append(layer)
        }
        file.tensors += rest
        let json = try! JSONSerialization.data(withJSONObject: layers, options: [.sortedKeys])
        file.metadata = [
            "format": CheckpointFile.exportedModelFormat, "version": Self.version, "arch": architecture.rawValue,
            "conv_bn_type": type.rawValue, "N": "\(pattern.n)", "M": "\(pattern.m)", "num_classes": "\(classes)",
            "layers": String(decoding: json, as: UTF8.self),
        ]
        return file
    }
}

extension FoldedUnit {
    /// (O, I / groups, kh, kw) of the dense weight.
    var denseShape: [Int] {
        switch weights {
        case .nm(let packed): packed.shape
        case .dense(let weight): weight.shape
        }
    }
}
