// Layers made of named sub-layers. A composite lists its children once; its parameters,
// buffers, mode and any search for layers of a kind (conv-bn units, dropouts) are walks over
// that list, written here once.

public protocol Composite: Layer {
    /// Sub-layers under their state-dict names, in definition order.
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
}

extension Layer {
    /// Every layer of type `T` below this one, with its state-dict path, in definition order.
    /// A layer of type `T` is not searched further.
    public func descendants<T>(of type: T.Type, prefix: String = "") -> [(String, T)] {
        guard let composite = self as? any Composite else { return [] }
        return composite.children.flatMap { (name, child) -> [(String, T)] in
            let path = stateKey(prefix, name)
            if let match = child as? T { return [(path, match)] }
            return child.descendants(of: type, prefix: path)
        }
    }
}
