// A trained model as an ONNX file: the deployment's folding (batch norm and mask in every conv-bn
// unit's weight, so the N:M zeros are in the file), the model's operator graph, a dynamic batch,
// input `input` (N, 3, H, W) and output `output` (N, K) as the original exporter names them. ONNX
// has no N:M tensor type, so the N:M facts go into `metadata_props`.
import Foundation
import MaxQDeploy
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

public enum ONNXExport {
    /// Opsets written; the operators used are the same in all of them (HardSwish, from opset 14,
    /// is written as x * HardSigmoid(x) before).
    public static let opsets = 13...21
    public static let defaultOpset = 17

    /// The ONNX model of `model` (built for `architecture` with `sparsity`, weights loaded), and
    /// the deployment's report (units whose N:M pattern is not exact).
    public static func model(
        _ model: any Model, architecture: Architecture, classes: Int, sparsity: SparsityConfig,
        opset: Int = defaultOpset
    ) throws(InterchangeError) -> (Onnx_ModelProto, DeploymentReport) {
        guard opsets.contains(opset) else { throw .unsupportedOpset(opset) }
        let inference = try InferenceGraph(model)
        let (graph, output, report) = (inference.graph, inference.output, inference.report)
        var proto = Onnx_ModelProto()
        proto.irVersion = irVersion(opset)
        proto.producerName = "maxq"
        proto.opsetImport = [
            .with {
                $0.domain = ""; $0.version = Int64(opset)
            }
        ]
        proto.graph = graphProto(graph, output: output, architecture: architecture, classes: classes, opset: opset)
        proto.metadataProps = metadata(
            architecture: architecture, sparsity: sparsity, nmUnits: inference.nmUnits, report: report
        )
        .map { key, value in .with { ($0.key, $0.value) = (key, value) } }
        return (proto, report)
    }

    /// The IR version each opset came with (onnx/helper.py's table).
    static func irVersion(_ opset: Int) -> Int64 {
        switch opset {
        case ...14: 7
        case 15...18: 8
        case 19...20: 9
        default: 10
        }
    }

    /// arch, conv_bn_type, N, M, and `nm_layers`: a JSON list of every unit that trains N:M,
    /// `{"name", "exact"}` (exact: every group of M input weights has at most N non-zeros).
    static func metadata(
        architecture: Architecture, sparsity: SparsityConfig, nmUnits: [String], report: DeploymentReport
    ) -> [(String, String)] {
        let notExact = Set(report.dense.filter { $0.cause == .notNM }.map(\.name))
        let nmLayers = nmUnits.map { ["name": $0, "exact": !notExact.contains($0)] as [String: Any] }
        let json = try! JSONSerialization.data(withJSONObject: nmLayers, options: [.sortedKeys])
        return [
            ("arch", architecture.rawValue), ("conv_bn_type", sparsity.type.rawValue), ("N", "\(sparsity.pattern.n)"),
            ("M", "\(sparsity.pattern.m)"), ("nm_layers", String(decoding: json, as: UTF8.self)),
        ]
    }

    static func graphProto(
        _ graph: OperatorGraph, output: String, architecture: Architecture, classes: Int, opset: Int
    ) -> Onnx_GraphProto {
        var proto = Onnx_GraphProto()
        proto.name = architecture.rawValue
        let rename = { (value: String) in value == output ? "output" : value }
        for node in graph.nodes {
            proto.node += nodeProtos(node, rename: rename, opset: opset)
        }
        proto.initializer = graph.initializers.map { tensorProto($0.tensor, name: $0.name) }
        let size = Int64(architecture.resolution)
        proto.input = [valueInfo(OperatorGraph.input, [nil, 3, size, size])]
        proto.output = [valueInfo("output", [nil, Int64(classes)])]
        return proto
    }

    /// One node, or for HardSwish before opset 14 its expansion x * HardSigmoid(x).
    static func nodeProtos(_ node: OperatorGraph.Node, rename: (String) -> String, opset: Int) -> [Onnx_NodeProto] {
        if node.op == "HardSwish" && opset < 14 {
            let gate = OperatorGraph.Node(
                name: "\(node.name)/gate", op: "HardSigmoid", inputs: node.inputs,
                attributes: ["alpha": .float(1 / 6), "beta": .float(0.5)])
            let product = OperatorGraph.Node(name: node.name, op: "Mul", inputs: [node.inputs[0], gate.name])
            return [gate, product].flatMap { nodeProtos($0, rename: rename, opset: opset) }
        }
        return [
            .with {
                $0.name = node.name
                $0.opType = node.op
                $0.input = node.inputs.map(rename)
                $0.output = [rename(node.name)]
                $0.attribute = node.attributes.sorted { $0.key < $1.key }.map(attributeProto)
            }
        ]
    }

    static func attributeProto(_ name: String, _ value: OperatorGraph.Attribute) -> Onnx_AttributeProto {
        var proto = Onnx_AttributeProto()
        proto.name = name
        switch value {
        case .int(let i): (proto.type, proto.i) = (.int, Int64(i))
        case .ints(let list): (proto.type, proto.ints) = (.ints, list.map(Int64.init))
        case .float(let f): (proto.type, proto.f) = (.float, f)
        }
        return proto
    }

    /// Float32, little-endian raw data.
    static func tensorProto(_ tensor: Tensor, name: String) -> Onnx_TensorProto {
        var proto = Onnx_TensorProto()
        proto.name = name
        proto.dims = tensor.shape.map(Int64.init)
        proto.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        proto.rawData = tensor.withUnsafeBufferPointer { Data(buffer: $0) }
        return proto
    }

    /// A float tensor value; a nil dimension is the dynamic batch.
    static func valueInfo(_ name: String, _ shape: [Int64?]) -> Onnx_ValueInfoProto {
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type.tensorType.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        info.type.tensorType.shape.dim = shape.map { size in
            .with { if let size { $0.dimValue = size } else { $0.dimParam = "batch" } }
        }
        return info
    }
}
