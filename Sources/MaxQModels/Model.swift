// What every model of the zoo offers: a forward pass, its state under the reference names,
// and its conv-bn units (the layers that can be N:M).
import MaxQNN
import MaxQSparsity
import MaxQTensor

public protocol Model: Layer {
    /// (N, 3, H, W) images to (N, classes) logits.
    func callAsFunction(_ x: Variable) throws(TensorError) -> Variable
    /// Every conv-bn unit with its state-dict prefix, in definition order.
    var units: [(String, ConvBNUnit)] { get }
}

extension Model {
    /// Units that were asked to be N:M but whose input channels are not a multiple of M.
    public var denseUnits: [String] { units.filter { $0.1.staysDense }.map(\.0) }

    public func setEpoch(_ epoch: Int) { units.forEach { $0.1.epoch = epoch } }

    /// Recomputes all masks from the current weights, in parallel across layers.
    public func recomputeMasks() throws(TensorError) { try ConvBNUnit.recomputeMasks(of: units) }
}

/// Children under their names: the state dict of a composite layer is the walk over them.
public protocol Composite: Layer {
    var children: [(String, any Layer)] { get }
}

extension Composite {
    public func namedParameters(prefix: String) -> [(String, Variable)] {
        children.flatMap { $0.1.namedParameters(prefix: stateKey(prefix, $0.0)) }
    }

    public func namedBuffers(prefix: String) -> [(String, Buffer)] {
        children.flatMap { $0.1.namedBuffers(prefix: stateKey(prefix, $0.0)) }
    }

    public func setTraining(_ training: Bool) { children.forEach { $0.1.setTraining(training) } }

    /// Conv-bn units anywhere below, with their full prefixes.
    func collectUnits(prefix: String = "") -> [(String, ConvBNUnit)] {
        children.flatMap { (name, child) -> [(String, ConvBNUnit)] in
            let path = stateKey(prefix, name)
            if let unit = child as? ConvBNUnit { return [(path, unit)] }
            if let composite = child as? any Composite { return composite.collectUnits(prefix: path) }
            return []
        }
    }
}
