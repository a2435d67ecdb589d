// A model's inference computation as a graph of standard operators, with its weights: what an
// exporter writes (ONNX's operator names and attribute conventions, opset-neutral). Layers add
// themselves (`GraphDescribing`); a layer that cannot is named in the error.
import MaxQTensor

public struct OperatorGraph: Sendable {
    public enum Attribute: Sendable, Equatable {
        case int(Int)
        case ints([Int])
        case float(Float)
    }

    public struct Node: Sendable {
        /// Unique; also the name of the node's one output value.
        public let name: String
        public let op: String
        public let inputs: [String]
        public let attributes: [String: Attribute]

        public init(name: String, op: String, inputs: [String], attributes: [String: Attribute] = [:]) {
            (self.name, self.op, self.inputs, self.attributes) = (name, op, inputs, attributes)
        }

        /// An integer-list attribute; empty when absent.
        public func ints(_ name: String) -> [Int] {
            if case .ints(let v)? = attributes[name] { v } else { [] }
        }
    }

    /// The graph's input value, (N, 3, H, W) images.
    public static let input = "input"

    public private(set) var nodes: [Node] = []
    /// Weights by value name, in the order they were added.
    public private(set) var initializers: [(name: String, tensor: Tensor)] = []
    private var names: Set<String> = [Self.input]

    public init() {}

    /// Adds `op` on `inputs`; its output value is named `name` (made unique with `/op` and a
    /// counter where taken). Returns that name.
    @discardableResult
    public mutating func add(
        _ op: String, _ inputs: [String], name: String, attributes: [String: Attribute] = [:]
    ) -> String {
        let unique = uniqueName(name.isEmpty ? op : "\(name)/\(op)")
        nodes.append(Node(name: unique, op: op, inputs: inputs, attributes: attributes))
        return unique
    }

    /// Adds a weight under `name` (made unique where taken); returns its value name.
    public mutating func weight(_ name: String, _ tensor: Tensor) -> String {
        let unique = uniqueName(name)
        initializers.append((unique, tensor))
        return unique
    }

    /// A convolution (bias optional) followed by `activation`.
    public mutating func convolution(
        _ input: String, weight: Tensor, bias: Tensor?, geometry: Conv2dGeometry, activation: Activation? = nil,
        name: String
    ) -> String {
        let k = Array(weight.shape[2...])
        let p = geometry.padding
        var inputs = [input, self.weight("\(name).weight", weight)]
        if let bias { inputs.append(self.weight("\(name).bias", bias)) }
        let y = add(
            "Conv", inputs, name: name,
            attributes: [
                "kernel_shape": .ints(k), "strides": .ints([geometry.stride, geometry.stride]),
                "pads": .ints([p, p, p, p]), "group": .int(geometry.groups),
            ])
        return activation.map { self.activation($0, y, name: name) } ?? y
    }

    /// `kind` as PyTorch defines it: ReLU6 is Clip(0, 6); hardsigmoid is HardSigmoid(1/6, 1/2).
    public mutating func activation(_ kind: Activation, _ input: String, name: String) -> String {
        switch kind {
        case .relu: add("Relu", [input], name: name)
        case .relu6:
            add("Clip", [input, sharedScalar("clip.min", 0), sharedScalar("clip.max", 6)], name: name)
        case .hardswish: add("HardSwish", [input], name: name)
        case .hardsigmoid:
            add("HardSigmoid", [input], name: name, attributes: ["alpha": .float(1 / 6), "beta": .float(0.5)])
        case .sigmoid: add("Sigmoid", [input], name: name)
        }
    }

    /// A scalar weight added once and shared by every node that uses it.
    private mutating func sharedScalar(_ name: String, _ value: Float) -> String {
        if !initializers.contains(where: { $0.name == name }) {
            initializers.append((name, Tensor(shape: [], repeating: value)))
            names.insert(name)
        }
        return name
    }

    private mutating func uniqueName(_ base: String) -> String {
        var name = base, counter = 1
        while names.contains(name) {
            counter += 1
            name = "\(base)_\(counter)"
        }
        names.insert(name)
        return name
    }
}

/// A layer that can add its inference computation to an operator graph.
public protocol GraphDescribing {
    /// Adds this layer, applied to value `input`, under `name` (its state-dict path); returns
    /// the value it produces.
    func describe(_ input: String, name: String, in graph: inout OperatorGraph) throws(TensorError) -> String
}

extension Layer {
    /// `self` described in `graph`, or an error naming the layer that cannot be.
    public func described(_ input: String, name: String, in graph: inout OperatorGraph) throws(TensorError) -> String {
        guard let layer = self as? any GraphDescribing else {
            throw .invalidArgument(op: "export", reason: "'\(name)' (\(type(of: self))) has no operator-graph form")
        }
        return try layer.describe(input, name: name, in: &graph)
    }
}

extension Sequential: GraphDescribing {
    public func describe(_ input: String, name: String, in graph: inout OperatorGraph) throws(TensorError) -> String {
        var value = input
        for (child, layer) in layers { value = try layer.described(value, name: stateKey(name, child), in: &graph) }
        return value
    }
}

extension ActivationLayer: GraphDescribing {
    public func describe(_ input: String, name: String, in graph: inout OperatorGraph) throws(TensorError) -> String {
        graph.activation(kind, input, name: name)
    }
}

extension Dropout: GraphDescribing {
    /// Inference: the identity.
    public func describe(_ input: String, name: String, in graph: inout OperatorGraph) throws(TensorError) -> String {
        input
    }
}

extension Linear: GraphDescribing {
    /// Gemm on (N, in) with the (out, in) weight transposed, as PyTorch's Linear.
    public func describe(_ input: String, name: String, in graph: inout OperatorGraph) throws(TensorError) -> String {
        var inputs = [input, graph.weight("\(name).weight", weight.value)]
        if let bias { inputs.append(graph.weight("\(name).bias", bias.value)) }
        return graph.add("Gemm", inputs, name: name, attributes: ["transB": .int(1)])
    }
}

extension Conv2d: GraphDescribing {
    public func describe(_ input: String, name: String, in graph: inout OperatorGraph) throws(TensorError) -> String {
        graph.convolution(input, weight: weight.value, bias: bias?.value, geometry: geometry, name: name)
    }
}

extension OperatorGraph {
    /// Every value's shape for an input of `inputShape`, from the nodes' attributes and weights
    /// alone (no computation): what a cost count needs without running the model.
    public func shapes(input inputShape: [Int]) throws(TensorError) -> [String: [Int]] {
        let weights = Dictionary(initializers.map { ($0.name, $0.tensor.shape) }) { first, _ in first }
        var shapes = [Self.input: inputShape]
        for node in nodes {
            guard let x = shapes[node.inputs[0]] ?? weights[node.inputs[0]] else {
                throw .invalidArgument(op: "shapes", reason: "node \(node.name): unknown input \(node.inputs[0])")
            }
            func spatial(kernel: Int, stride: Int, pad: Int) -> [Int] {
                x[2...].map { ($0 + 2 * pad - kernel) / stride + 1 }
            }
            switch node.op {
            case "Conv":
                let w = weights[node.inputs[1]] ?? []
                shapes[node.name] =
                    [x[0], w[0]]
                    + spatial(
                        kernel: w[2], stride: node.ints("strides").first ?? 1, pad: node.ints("pads").first ?? 0)
            case "MaxPool":
                shapes[node.name] =
                    Array(x[0..<2])
                    + spatial(
                        kernel: node.ints("kernel_shape").first ?? 1, stride: node.ints("strides").first ?? 1,
                        pad: node.ints("pads").first ?? 0)
            case "GlobalAveragePool": shapes[node.name] = [x[0], x[1], 1, 1]
            case "Flatten": shapes[node.name] = [x[0], x.dropFirst().reduce(1, *)]
            case "Gemm": shapes[node.name] = [x[0], weights[node.inputs[1]]?[0] ?? 0]
            default: shapes[node.name] = x  // point-wise, Add, Mul (broadcast onto the first input)
            }
        }
        return shapes
    }
}
