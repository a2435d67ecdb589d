// An operator graph run as one `BlockedNetwork`: convolutions with the activation and residual
// addition after them fused, pooling, then the classifier. The graphs of the ResNets and of
// MobileNet V1 and V2 translate; a graph with another operator (MobileNet V3's hard-swish and
// squeeze-excitation) is refused with the operator's name, and runs layer by layer instead.
import MaxQTensor

public struct BlockedInference: Sendable {
    public let network: BlockedNetwork
    /// The classifier after the flattened last value, if any: (out, in) weight and bias.
    let classifier: (weight: Tensor, bias: Tensor?)?

    /// `model`'s inference form (its current weights, batch norm folded) at `precision`; throws, naming the
    /// layer or operator, when the model has a part without a blocked form.
    public init(_ model: any Layer, precision: Precision) throws(TensorError) {
        var graph = OperatorGraph()
        _ = try model.described(OperatorGraph.input, name: "", in: &graph)
        try self.init(graph, precision: precision)
    }

    public init(_ graph: OperatorGraph, precision: Precision) throws(TensorError) {
        var translation = Translation(graph)
        try translation.run()
        network = try BlockedNetwork(translation.operations, precision: precision)
        // As the layer computes it: inputs rounded to the precision (the weight once here), products summed in
        // float32.
        classifier = translation.classifier.map { ($0.weight.rounded(to: precision), $0.bias) }
    }

    /// The logits (N, classes) of `images` (N, C, H, W).
    public func callAsFunction(_ images: Tensor) throws(TensorError) -> Tensor {
        let features = try network(images)
        let flat = try features.reshaped([features.shape[0], features.count / max(features.shape[0], 1)])
        guard let (weight, bias) = classifier else { return flat }
        return try flat.backend.linear(flat.rounded(to: network.precision), weight, bias)
    }
}

private struct Translation {
    let graph: OperatorGraph
    let weights: [String: Tensor]
    /// The nodes that read each value.
    let readers: [String: [OperatorGraph.Node]]
    var operations: [BlockedNetwork.Operation] = []
    var classifier: (weight: Tensor, bias: Tensor?)?
    /// Value names of the network: "input" is value 0, operation i's output value i + 1.
    private var values = [OperatorGraph.input: 0]

    init(_ graph: OperatorGraph) {
        self.graph = graph
        weights = Dictionary(graph.initializers.map { ($0.name, $0.tensor) }) { first, _ in first }
        var readers: [String: [OperatorGraph.Node]] = [:]
        for node in graph.nodes { for input in node.inputs { readers[input, default: []].append(node) } }
        self.readers = readers
    }

    mutating func run() throws(TensorError) {
        var fused = Set<String>()
        let nodes = graph.nodes
        for (index, node) in nodes.enumerated() where !fused.contains(node.name) {
            switch node.op {
            case "Conv":
                var (output, adding, activation) = (node.name, Int?.none, Activation?.none)
                if let next = onlyReader(of: output), next.op == "Add" {
                    let other = next.inputs[0] == output ? next.inputs[1] : next.inputs[0]
                    if let value = values[other] {
                        (adding, output) = (value, next.name)
                        fused.insert(next.name)
                    }
                }
                if let next = onlyReader(of: output), let kind = fusedActivation(next) {
                    (activation, output) = (kind, next.name)
                    fused.insert(next.name)
                }
                try append(conv(node, adding: adding, activation: activation), output: output)
            case "MaxPool":
                let (kernel, stride, pads) = (node.ints("kernel_shape"), node.ints("strides"), node.ints("pads"))
                guard kernel.count == 2, kernel[0] == kernel[1], stride.count == 2, stride[0] == stride[1],
                    pads.allSatisfy({ $0 == pads.first })
                else { throw unsupported(node, "a non-square window") }
                try append(
                    .maxPool(
                        input: value(node.inputs[0]), kernel: kernel[0], stride: stride[0], padding: pads.first ?? 0),
                    output: node.name)
            case "GlobalAveragePool":
                try append(.globalAveragePool(input: value(node.inputs[0])), output: node.name)
            case "Flatten":
                try head(after: node, rest: nodes[(index + 1)...])
                return
            default:
                throw unsupported(node, "no blocked form")
            }
        }
    }

    /// Flatten, then at most one Gemm on it, and nothing else.
    private mutating func head(after flatten: OperatorGraph.Node, rest: ArraySlice<OperatorGraph.Node>)
        throws(TensorError)
    {
        guard values[flatten.inputs[0]] == operations.count else { throw unsupported(flatten, "not of the last value") }
        guard let gemm = rest.first else { return }
        guard rest.count == 1, gemm.op == "Gemm", gemm.inputs[0] == flatten.name,
            case .int(1)? = gemm.attributes["transB"], let weight = weights[gemm.inputs[1]]
        else { throw unsupported(gemm, "not a classifier on the flattened features") }
        classifier = (weight, gemm.inputs.count > 2 ? weights[gemm.inputs[2]] : nil)
    }

    private func conv(_ node: OperatorGraph.Node, adding: Int?, activation: Activation?) throws(TensorError)
        -> BlockedNetwork.Operation
    {
        guard let weight = weights[node.inputs[1]] else { throw unsupported(node, "weight is not a constant") }
        let (stride, pads) = (node.ints("strides"), node.ints("pads"))
        guard weight.rank == 4, stride.count == 2, stride[0] == stride[1], pads.allSatisfy({ $0 == pads.first }) else {
            throw unsupported(node, "unequal strides or padding")
        }
        let groups = if case .int(let g)? = node.attributes["group"] { g } else { 1 }
        let bias = node.inputs.count > 2 ? weights[node.inputs[2]] : Tensor(zeros: [weight.shape[0]])
        guard let bias else { throw unsupported(node, "bias is not a constant") }
        return .convolution(
            input: try value(node.inputs[0]), weight: weight, bias: bias,
            geometry: Conv2dGeometry(stride: stride[0], padding: pads.first ?? 0, groups: groups), adding: adding,
            activation: activation)
    }

    /// ReLU, or Clip to [0, 6] (ReLU6): what a convolution fuses.
    private func fusedActivation(_ node: OperatorGraph.Node) -> Activation? {
        if node.op == "Relu" { return .relu }
        guard node.op == "Clip", node.inputs.count == 3, let low = weights[node.inputs[1]],
            let high = weights[node.inputs[2]], low.scalars == [0], high.scalars == [6]
        else { return nil }
        return .relu6
    }

    private func onlyReader(of value: String) -> OperatorGraph.Node? {
        guard let nodes = readers[value], nodes.count == 1 else { return nil }
        return nodes[0]
    }

    private mutating func append(_ operation: BlockedNetwork.Operation, output: String) throws(TensorError) {
        operations.append(operation)
        values[output] = operations.count
    }

    private func value(_ name: String) throws(TensorError) -> Int {
        guard let index = values[name] else {
            throw .invalidArgument(op: "blocked inference", reason: "value \(name) is not computed by the network")
        }
        return index
    }

    private func unsupported(_ node: OperatorGraph.Node, _ why: String) -> TensorError {
        .invalidArgument(op: "blocked inference", reason: "\(node.op) node \(node.name): \(why)")
    }
}
