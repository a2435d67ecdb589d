// Layers that map one variable to one, and `Sequential`, a named chain of them. Members of a
// chain can be replaced (`Layer.replace(at:with:)`): how a deployment swaps a model's training
// units for inference ones without rebuilding the model.
import MaxQTensor

public protocol UnaryLayer: Layer {
    func callAsFunction(_ x: Variable) throws(TensorError) -> Variable
}

/// A layer that adds a residual to its output, and applies a ReLU after it, in the pass that
/// computes the output (inference layers: one pass over memory instead of three).
public protocol ResidualFusing: UnaryLayer {
    /// `relu?(self(x) + residual)`.
    func fusedOutput(_ x: Variable, adding residual: Variable, relu: Bool) throws(TensorError) -> Variable
}

extension UnaryLayer {
    /// `relu?(self(x) + residual)`, the layer's output first (what a fusing layer does when it cannot
    /// fuse the addition into its own kernel).
    public func unfusedOutput(_ x: Variable, adding residual: Variable, relu: Bool) throws(TensorError) -> Variable {
        relu ? try self(x).addingReLU(residual) : try self(x) + residual
    }
}

extension Composite {
    /// `layer` as the one-input layer a chain or block member must be, for replacing child `name`.
    public static func oneInput(_ layer: any Layer, replacing name: String) throws(TensorError) -> any UnaryLayer {
        guard let unary = layer as? any UnaryLayer else {
            throw .invalidArgument(op: "replace", reason: "'\(name)' must be replaced by a one-input layer")
        }
        return unary
    }
}

/// A parameter-free activation as a member of a chain (MobileNet V3's classifier).
public final class ActivationLayer: UnaryLayer {
    public let kind: Activation

    public init(_ kind: Activation) {
        self.kind = kind
    }

    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable { x.activation(kind) }
    public func namedParameters(prefix: String) -> [(String, Variable)] { [] }
}

public final class Sequential: Composite, UnaryLayer {
    public private(set) var layers: [(name: String, layer: any UnaryLayer)]

    public init(_ layers: [(name: String, layer: any UnaryLayer)]) {
        self.layers = layers
    }

    public var children: [(String, any Layer)] { layers.map { ($0.name, $0.layer) } }

    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        var h = x
        for (_, layer) in layers { h = try layer(h) }
        return h
    }

    /// `self(x) + residual`, added by the last layer as it writes its output where it can.
    public func output(_ x: Variable, adding residual: Variable) throws(TensorError) -> Variable {
        guard let last = layers.last?.layer as? any ResidualFusing else { return try self(x) + residual }
        var h = x
        for (_, layer) in layers.dropLast() { h = try layer(h) }
        return try last.fusedOutput(h, adding: residual, relu: false)
    }

    public func replaceChild(named name: String, with layer: any Layer) throws(TensorError) {
        guard let index = layers.firstIndex(where: { $0.name == name }) else { throw Self.noChild(name) }
        layers[index].layer = try Self.oneInput(layer, replacing: name)
    }
}

extension Conv2d: UnaryLayer {}
extension BatchNorm2d: UnaryLayer {}
extension Linear: UnaryLayer {}
extension Dropout: UnaryLayer {}
