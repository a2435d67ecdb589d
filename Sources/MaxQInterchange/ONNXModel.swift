// An ONNX file read back and run on this toolkit's own kernels: the network rebuilt from the
// file's nodes and initializers alone, for the operators the exporter writes. It checks an export
// without Python and runs ONNX models of these architectures; anything else is refused by name.
import Foundation
import MaxQNN
import MaxQTensor
import SwiftProtobuf

public struct ONNXModel {
    public let proto: Onnx_ModelProto
    public let path: String
    /// Initializers as float tensors, by name.
    public let weights: [String: Tensor]

    public init(contentsOf path: String) throws(InterchangeError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .unreadable(path: path, reason: "cannot read the file")
        }
        try self.init(data, path: path)
    }

    public init(_ data: Data, path: String) throws(InterchangeError) {
        do {
            proto = try Onnx_ModelProto(serializedBytes: data)
        } catch {
            throw .unreadable(path: path, reason: "not an ONNX model (\(error))")
        }
        self.path = path
        var weights: [String: Tensor] = [:]
        for initializer in proto.graph.initializer {
            weights[initializer.name] = try Self.tensor(initializer, path: path)
        }
        self.weights = weights
    }

    /// `metadata_props` as a dictionary.
    public var metadata: [String: String] {
        Dictionary(proto.metadataProps.map { ($0.key, $0.value) }) { _, last in last }
    }

    static func tensor(_ proto: Onnx_TensorProto, path: String) throws(InterchangeError) -> Tensor {
        let fail = { (reason: String) in InterchangeError.unreadable(path: path, reason: "\(proto.name): \(reason)") }
        guard proto.dataType == Int32(Onnx_TensorProto.DataType.float.rawValue) else {
            throw fail("data type \(proto.dataType), not float")
        }
        let shape = proto.dims.map { Int(clamping: $0) }
        guard let count = Tensor.elementCount(shape) else { throw fail("invalid shape \(proto.dims)") }
        let scalars: [Float]
        if proto.hasRawData {
            guard proto.rawData.count == count * 4 else {
                throw fail("\(proto.rawData.count) bytes for \(count) floats")
            }
            scalars = proto.rawData.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        } else {
            scalars = proto.floatData
        }
        do { return try Tensor(shape: shape, scalars: scalars) } catch { throw fail("\(error)") }
    }

    /// The graph's output for a batch of images (N, 3, H, W).
    public func run(_ x: Tensor) throws(InterchangeError) -> Tensor {
        var values: [String: Variable] = [:]
        for input in proto.graph.input { values[input.name] = Variable(x) }
        for node in proto.graph.node {
            guard node.output.count == 1 else { throw unreadable(node, "\(node.output.count) outputs") }
            do {
                values[node.output[0]] = try run(node, values)
            } catch let error as InterchangeError {
                throw error
            } catch {
                throw unreadable(node, "\(error)")
            }
        }
        guard let name = proto.graph.output.first?.name, let y = values[name] else {
            throw .unreadable(path: path, reason: "the graph's output is never computed")
        }
        return y.value
    }

    private func unreadable(_ node: Onnx_NodeProto, _ reason: String) -> InterchangeError {
        .unreadable(path: path, reason: "node \(node.name) (\(node.opType)): \(reason)")
    }

    private func run(_ node: Onnx_NodeProto, _ values: [String: Variable]) throws -> Variable {
        let inputs = try node.input.map { name in
            if let value = values[name] { return value }
            if let weight = weights[name] { return Variable(weight) }
            throw unreadable(node, "unknown input \(name)")
        }
        let attributes = Dictionary(node.attribute.map { ($0.name, $0) }) { first, _ in first }
        let x = inputs[0]
        switch node.opType {
        case "Conv":
            let strides = attributes["strides"]?.ints ?? [1, 1], pads = attributes["pads"]?.ints ?? [0, 0, 0, 0]
            guard Set(strides).count == 1, Set(pads).count == 1,
                attributes["dilations"].map({ Set($0.ints) == [1] }) ?? true
            else { throw unreadable(node, "only equal strides and pads on both axes, no dilation") }
            let geometry = Conv2dGeometry(
                stride: Int(strides[0]), padding: Int(pads[0]), groups: Int(attributes["group"]?.i ?? 1))
            let w = inputs[1].value
            let bias = inputs.count > 2 ? inputs[2].value : Tensor(zeros: [w.shape[0]])
            return Variable(try x.value.backend.conv2dInference(x.value, w, bias: bias, geometry, activation: nil))
        case "Relu": return x.activation(.relu)
        case "Clip":
            guard inputs.count == 3, inputs[1].value.scalars == [0], inputs[2].value.scalars == [6] else {
                throw unreadable(node, "only Clip(0, 6) (ReLU6)")
            }
            return x.activation(.relu6)
        case "HardSwish": return x.activation(.hardswish)
        case "HardSigmoid":
            guard abs((attributes["alpha"]?.f ?? 0.2) - 1 / 6) < 1e-7, (attributes["beta"]?.f ?? 0.5) == 0.5 else {
                throw unreadable(node, "only alpha 1/6, beta 1/2 (PyTorch's hardsigmoid)")
            }
            return x.activation(.hardsigmoid)
        case "Sigmoid": return x.activation(.sigmoid)
        case "Add": return try x + inputs[1]
        case "Mul": return try x * inputs[1]
        case "MaxPool":
            let kernel = attributes["kernel_shape"]?.ints ?? [], strides = attributes["strides"]?.ints ?? [1, 1]
            let pads = attributes["pads"]?.ints ?? [0, 0, 0, 0]
            guard Set(kernel).count == 1, Set(strides).count == 1, Set(pads).count == 1 else {
                throw unreadable(node, "only square kernels, equal strides and pads")
            }
            return try x.maxPool2d(kernel: Int(kernel[0]), stride: Int(strides[0]), padding: Int(pads[0]))
        case "GlobalAveragePool":
            return try x.globalAveragePool().reshaped([x.shape[0], x.shape[1], 1, 1])
        case "Flatten":
            return try x.reshaped([x.shape[0], x.value.count / max(x.shape[0], 1)])
        case "Gemm":
            guard attributes["transB"]?.i == 1, (attributes["transA"]?.i ?? 0) == 0 else {
                throw unreadable(node, "only transB = 1")
            }
            return try x.linear(inputs[1], inputs.count > 2 ? inputs[2] : nil)
        default:
            throw unreadable(node, "operator not supported")
        }
    }
}
