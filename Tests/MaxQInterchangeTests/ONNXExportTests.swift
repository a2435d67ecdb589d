// ONNX export without Python: the file is read back with swift-protobuf, its graph checked
// (operators, names, shapes, N:M zeros per group, metadata) and run on our own kernels from its
// nodes and initializers alone, against the model's own evaluation.
import Foundation
import MaxQDeploy
import MaxQInterchange
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor
import MaxQTestSupport
import Testing

struct ONNXExportTests {
    /// Every architecture, at opsets 13 (HardSwish expanded), 17 and 21.
    @Test(arguments: [
        (Architecture.resnet50, 2, 4, 13), (.mobilenetV2, 1, 4, 17), (.mobilenetV1, 2, 8, 21), (.resnet18, 2, 4, 17),
        (.resnet34, 1, 16, 13), (.mobilenetV3Small, 2, 8, 13), (.mobilenetV3Large, 1, 16, 17), (.cResnet18, 1, 4, 17),
        (.cResnet34, 2, 8, 13), (.cResnet50, 2, 4, 21),
    ])
    func exportedFileRebuildsTheModel(_ arch: Architecture, _ n: Int, _ m: Int, _ opset: Int) throws {
        let model = try maskedModel(arch, n: n, m: m, seed: 5)
        var generator = RandomGenerator(seed: 11)
        randomizeBatchNorm(model, generator: &generator)
        model.setTraining(false)
        let nmUnits = model.units.filter { $0.1.mask != nil }.map(\.0)
        let x = Tensor(normal: [2, 3, 40, 40], generator: &generator)
        let expected = try GradientMode.withoutGradients { try model(Variable(x)).value }

        let (exported, _) = try ONNXExport.model(
            model, architecture: arch, classes: 10, sparsity: try softMaxQ(n: n, m: m), opset: opset)
        let file = try ONNXModel(try exported.serializedBytes(), path: "\(arch)")
        let graph = file.proto.graph

        #expect(file.proto.opsetImport.map(\.version) == [Int64(opset)])
        #expect(graph.input.map(\.name) == ["input"] && graph.output.map(\.name) == ["output"])
        let inputDims = graph.input[0].type.tensorType.shape.dim
        let r = Int64(arch.resolution)
        #expect(inputDims[0].dimParam == "batch" && inputDims.dropFirst().map(\.dimValue) == [3, r, r])
        #expect(graph.output[0].type.tensorType.shape.dim.map(\.dimValue) == [0, 10])
        let ops = Set(graph.node.map(\.opType))
        let allowed: Set = [
            "Conv", "Relu", "Clip", "HardSwish", "HardSigmoid", "Add", "Mul", "MaxPool", "GlobalAveragePool",
            "Flatten", "Gemm",
        ]
        #expect(ops.isSubset(of: allowed), "\(ops.subtracting(allowed))")
        #expect(ops.contains("HardSwish") == (opset >= 14 && arch.rawValue.hasPrefix("mobilenet_v3")))
        #expect(ops.contains("BatchNormalization") == false && ops.contains("Conv"))

        let metadata = file.metadata
        #expect(metadata["arch"] == arch.rawValue && metadata["conv_bn_type"] == "SoftMaxQConv2DBN")
        #expect(metadata["N"] == "\(n)" && metadata["M"] == "\(m)")
        let layers = try JSONSerialization.jsonObject(with: Data(metadata["nm_layers"]!.utf8)) as! [[String: Any]]
        #expect(layers.map { $0["name"] as! String } == nmUnits)
        #expect(layers.allSatisfy { $0["exact"] as! Bool })
        // Every N:M unit's weight in the file has at most N non-zeros in each group of M.
        for name in nmUnits {
            let weight = try #require(file.weights["\(name).weight"], "\(name)")
            #expect(throws: Never.self) { try NMWeights(packing: weight, n: n, m: m, layer: name) }
        }

        let logits = try file.run(x)
        #expect(logits.shape == [2, 10])
        #expect(toleranceFailure(logits, expected, rtol: 1e-4, atol: 1e-4) == nil, "\(arch) opset \(opset)")
    }

    @Test func aUnitThatIsNotNMIsMarkedNotExact() throws {
        let model = try maskedModel(.cResnet18, n: 2, m: 4, increaseEnd: 5, seed: 1)
        let (exported, report) = try ONNXExport.model(
            model, architecture: .cResnet18, classes: 10, sparsity: try softMaxQ(n: 2, m: 4, increaseEnd: 5))
        let notNM = Set(report.dense.filter { $0.cause == .notNM }.map(\.name))
        #expect(!notNM.isEmpty)
        let metadata = Dictionary(exported.metadataProps.map { ($0.key, $0.value) }) { a, _ in a }
        let layers = try JSONSerialization.jsonObject(with: Data(metadata["nm_layers"]!.utf8)) as! [[String: Any]]
        for layer in layers {
            #expect((layer["exact"] as! Bool) == !notNM.contains(layer["name"] as! String))
        }
    }

    @Test func badRequestsAndFilesAreOneClearError() throws {
        let model = try maskedModel(.cResnet18, n: 2, m: 4, seed: 1)
        #expect {
            try ONNXExport.model(model, architecture: .cResnet18, classes: 10, sparsity: .dense, opset: 12)
        } throws: { "\($0)" == "opset 12 is not supported (13 to 21)" }
        #expect { try ONNXModel(Data("not a model".utf8), path: "x.onnx") } throws: {
            "\($0)".hasPrefix("x.onnx: not an ONNX model")
        }
        // A graph with an operator this reader does not run names the node.
        var proto = Onnx_ModelProto()
        proto.graph.input = [.with { $0.name = "input" }]
        proto.graph.node = [.with { ($0.name, $0.opType, $0.input, $0.output) = ("n1", "Softmax", ["input"], ["y"]) }]
        proto.graph.output = [.with { $0.name = "y" }]
        let file = try ONNXModel(try proto.serializedBytes(), path: "s.onnx")
        #expect { try file.run(Tensor(zeros: [1, 3, 8, 8])) } throws: {
            "\($0)" == "s.onnx: node n1 (Softmax): operator not supported"
        }
    }
}
