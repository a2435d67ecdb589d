// Reading an exported model back: the metadata and every unit checked (a damaged or tampered file
// is an error naming the field or layer), then the architecture rebuilt with the file's units in
// place and the other layers loaded.
import Foundation
import MaxQFormats
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

extension ExportedModel {
    /// The exported model in `path`, or nil when `path` is a safetensors file of another kind
    /// (a checkpoint) or not safetensors at all.
    public static func readIfExported(path: String) throws -> ExportedModel? {
        guard path.hasSuffix(".safetensors") else { return nil }
        let file = try SafetensorsFile.read(path: path)
        guard file.metadata["format"] == CheckpointFile.exportedModelFormat else { return nil }
        return try ExportedModel(file, path: path)
    }

    /// Decodes and checks `file` (written by `file`).
    public init(_ file: SafetensorsFile, path: String) throws(DeploymentError) {
        func fail(_ reason: String) -> DeploymentError { .invalidModelFile(path: path, reason: reason) }
        let metadata = file.metadata
        guard metadata["format"] == CheckpointFile.exportedModelFormat else {
            throw fail("not a model written by maxq export (no format \"\(CheckpointFile.exportedModelFormat)\")")
        }
        guard metadata["version"] == Self.version else {
            throw fail("format version \(metadata["version"] ?? "none"); this maxq reads version \(Self.version)")
        }
        func field<T>(_ key: String, _ parse: (String) -> T?) throws(DeploymentError) -> T {
            guard let text = metadata[key], let value = parse(text) else {
                throw fail("metadata '\(key)' is \(metadata[key].map { "'\($0)'" } ?? "missing"), not valid")
            }
            return value
        }
        let architecture = try field("arch", Architecture.init(rawValue:))
        let type = try field("conv_bn_type", ConvBNType.init(rawValue:))
        let (n, m, classes) = (
            try field("N", { Int($0) }), try field("M", { Int($0) }), try field("num_classes", { Int($0) })
        )
        guard let pattern = try? NMPattern(n: n, m: m) else { throw fail("metadata N:M \(n):\(m) is not a pattern") }
        guard classes >= 1 else { throw fail("metadata 'num_classes' is \(classes)") }
        let layers = try field("layers") { text in
            (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [[String: Any]]
        }
        var units: [FoldedUnit] = []
        var names = Set<String>()
        for layer in layers {
            let unit = try Self.unit(layer, file, pattern: pattern, path: path)
            guard names.insert(unit.name).inserted else { throw fail("layer '\(unit.name)' appears twice") }
            units.append(unit)
        }
        let unitTensors = Set(units.flatMap { ["\($0.name).values", "\($0.name).weight", "\($0.name).bias"] })
        self.init(
            architecture: architecture, type: type, pattern: pattern, classes: classes, units: units,
            rest: file.tensors.filter { !unitTensors.contains($0.name) })
    }

    private static func unit(_ layer: [String: Any], _ file: SafetensorsFile, pattern: NMPattern, path: String)
        throws(DeploymentError) -> FoldedUnit
    {
        let name = layer["name"] as? String ?? "?"
        func fail(_ reason: String) -> DeploymentError {
            .invalidModelFile(path: path, reason: "layer \(name): \(reason)")
        }
        guard layer["name"] is String, let kind = layer["kind"] as? String, let shape = layer["shape"] as? [Int],
            shape.count == 4, shape.allSatisfy({ $0 >= 1 }), Tensor.elementCount(shape) != nil,
            let stride = layer["stride"] as? Int, let padding = layer["padding"] as? Int,
            let groups = layer["groups"] as? Int, stride >= 1, padding >= 0, groups >= 1
        else { throw fail("lacks a valid kind, shape, stride, padding or groups") }
        var activation: Activation?
        if let text = layer["activation"] {
            guard let parsed = (text as? String).flatMap(Activation.init(rawValue:)) else {
                throw fail("unknown activation \(text)")
            }
            activation = parsed
        }
        func tensor(_ suffix: String, count: Int) throws(DeploymentError) -> Tensor {
            guard let t = file["\(name).\(suffix)"] else { throw fail("no tensor \(name).\(suffix)") }
            guard t.count == count else { throw fail("\(name).\(suffix) has \(t.count) values, not \(count)") }
            guard t.isAllFinite else { throw fail("\(name).\(suffix) holds NaN or infinity") }
            return t
        }
        let bias = try tensor("bias", count: shape[0])
        let weights: FoldedUnit.Weights
        switch kind {
        case "dense":
            let weight = try tensor("weight", count: shape.reduce(1, *))
            weights = .dense(try! weight.reshaped(shape))  // the count was checked
        case "nm":
            guard layer["n"] as? Int == pattern.n, layer["m"] as? Int == pattern.m else {
                throw fail("its N:M differs from the model's \(pattern.n):\(pattern.m)")
            }
            guard let values = file["\(name).values"], values.rank == 1 else {
                throw fail("no 1-D tensor \(name).values")
            }
            let indices: [UInt8]
            do { indices = try file.bytes("\(name).indices").bytes } catch {
                throw fail("no U8 tensor \(name).indices")
            }
            do {
                weights = .nm(
                    try NMWeights(
                        shape: shape, n: pattern.n, m: pattern.m, values: values.scalars, packedIndices: indices,
                        layer: name))
            } catch {
                throw .invalidModelFile(path: path, reason: "\(error)")
            }
        default:
            throw fail("unknown kind '\(kind)'")
        }
        return FoldedUnit(
            name: name, weights: weights, bias: bias,
            geometry: Conv2dGeometry(stride: stride, padding: padding, groups: groups), activation: activation)
    }

    /// The architecture's model with every unit replaced by its inference layer from this file
    /// (`sparse`: the sparse kernel where it exists, tuned on `sample` when given; otherwise all
    /// dense) and the other layers loaded. Each unit must be the architecture's: same name, shape,
    /// geometry and activation.
    public func model(sparse: Bool, tunedOn sample: Tensor? = nil, path: String) throws(DeploymentError)
        -> (any Model, DeploymentReport)
    {
        func fail(_ reason: String) -> DeploymentError { .invalidModelFile(path: path, reason: reason) }
        let config = SparsityConfig(
            type: type, pattern: pattern, schedule: try! IncrementalSchedule(.linear, increaseStart: 0, increaseEnd: 0))
        let model: any Model
        do { model = try architecture.build(classes: classes, sparsity: config) } catch { throw .tensor(error) }
        let expected = model.units
        guard expected.map(\.0) == units.map(\.name) else {
            let missing = expected.map(\.0).filter { name in !units.contains { $0.name == name } }
            throw fail(
                "its layers are not those of \(architecture.rawValue)"
                    + (missing.isEmpty ? "" : " (missing: \(missing.prefix(3).joined(separator: ", ")))"))
        }
        for ((name, unit), folded) in zip(expected, units) {
            let shape = unit.conv.weight.value.shape
            guard folded.denseShape == shape, folded.geometry == unit.conv.geometry,
                folded.activation == unit.activation
            else {
                throw fail(
                    "layer \(name): shape \(folded.denseShape), \(folded.geometry), activation "
                        + "\(folded.activation?.rawValue ?? "none") where \(architecture.rawValue) has \(shape), "
                        + "\(unit.conv.geometry), \(unit.activation?.rawValue ?? "none")")
            }
        }
        var report = DeploymentReport()
        try Deployment.install(sparse ? units : units.map(\.densified), into: model, tunedOn: sample, &report)
        let loaded: LoadReport
        do { loaded = try model.load(rest) } catch { throw fail("\(error)") }
        guard loaded.missing.isEmpty, loaded.unexpected.isEmpty else {
            throw fail(
                "tensors missing: \(loaded.missing.prefix(3)), unexpected: \(loaded.unexpected.prefix(3))")
        }
        return (model, report)
    }
}
