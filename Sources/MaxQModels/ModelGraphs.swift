// The zoo's models and blocks as operator graphs (`GraphDescribing`), for export and evaluation: the same
// computation as their forward passes in evaluation mode. Conv-bn units are described by the
// inference layers a deployment installs in their place; ResNet's stem folds its batch norm here.
import MaxQNN
import MaxQTensor

extension Model {
    /// The forward pass evaluation runs at the current precision: the model as one blocked network where it
    /// has one (its weights must not change while the pass is used), else its layers one by one; `blocked`
    /// says which.
    public func evaluation() -> (forward: (Tensor) throws -> Tensor, blocked: Bool) {
        if let network = try? BlockedInference(self, precision: .current) { return ({ try network($0) }, true) }
        return ({ x in try GradientMode.withoutGradients { try self(Variable(x)) }.value }, false)
    }
}

extension ResNet: GraphDescribing {
    public func describe(_ input: String, name: String, in graph: inout OperatorGraph) throws(TensorError) -> String {
        var h = try describeStem(input, in: &graph)
        for (child, layer) in children where child.hasPrefix("layer") {
            h = try layer.described(h, name: child, in: &graph)
        }
        let pooled = graph.add("GlobalAveragePool", [h], name: "avgpool")
        if let fc {
            return try fc.describe(graph.add("Flatten", [pooled], name: "flatten"), name: "fc", in: &graph)
        }
        let logits = try fcConv!.describe(pooled, name: "fc", in: &graph)
        return graph.add("Flatten", [logits], name: "flatten")
    }
}

extension ResNet {
    /// conv1 with bn1 folded into it, its ReLU, and the max pool of the ImageNet models.
    func describeStem(_ input: String, in graph: inout OperatorGraph) throws(TensorError) -> String {
        let (weight, bias) = try bn1.folded(into: conv1.weight.value)
        let h = graph.convolution(
            input, weight: weight, bias: bias, geometry: conv1.geometry, activation: .relu, name: "conv1")
        if spec.cifar { return h }
        return graph.add(
            "MaxPool", [h], name: "maxpool",
            attributes: ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])])
    }

    /// The stem alone as one blocked network at `precision` (its output in NCHW).
    func blockedStem(precision: Precision) throws(TensorError) -> BlockedNetwork {
        var graph = OperatorGraph()
        _ = try describeStem(OperatorGraph.input, in: &graph)
        return try BlockedInference(graph, precision: precision).network
    }
}

extension ResidualBlock: GraphDescribing {
    func describe(_ input: String, name: String, in graph: inout OperatorGraph) throws(TensorError) -> String {
        var h = input
        for (child, layer) in children where child.hasPrefix("convbn") {
            h = try layer.described(h, name: stateKey(name, child), in: &graph)
        }
        let identity = try shortcut?.described(input, name: stateKey(name, shortcutName), in: &graph) ?? input
        return graph.add("Relu", [graph.add("Add", [h, identity], name: name)], name: name)
    }
}

extension MobileNet: GraphDescribing {
    public func describe(_ input: String, name: String, in graph: inout OperatorGraph) throws(TensorError) -> String {
        let h = try features.describe(input, name: name, in: &graph)
        let pooled = graph.add("GlobalAveragePool", [h], name: "avgpool")
        return try head.describe(graph.add("Flatten", [pooled], name: "flatten"), name: name, in: &graph)
    }
}

extension InvertedResidual: GraphDescribing {
    func describe(_ input: String, name: String, in graph: inout OperatorGraph) throws(TensorError) -> String {
        let h = try body.describe(input, name: name, in: &graph)
        return residual ? graph.add("Add", [h, input], name: name) : h
    }
}

extension SqueezeExcitation: GraphDescribing {
    func describe(_ input: String, name: String, in graph: inout OperatorGraph) throws(TensorError) -> String {
        let pooled = graph.add("GlobalAveragePool", [input], name: name)
        let squeezed = graph.activation(
            .relu, try fc1.describe(pooled, name: stateKey(name, "fc1"), in: &graph), name: name)
        let scale = graph.activation(
            .hardsigmoid, try fc2.describe(squeezed, name: stateKey(name, "fc2"), in: &graph), name: name)
        return graph.add("Mul", [input, scale], name: name)
    }
}
