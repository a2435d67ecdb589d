// Layers made of named sub-layers. A composite lists its children once; its parameters,
// buffers, mode and any search for layers of a kind (conv-bn units, dropouts) are walks over
// that list, written here once.
import MaxQTensor

public protocol Composite: Layer {
    /// Sub-layers under their state-dict names, in definition order.
    var children: [(String, any Layer)] { get }
    /// Puts `layer` in the place of the child `name`; composites whose children are fixed refuse.
    func replaceChild(named name: String, with layer: any Layer) throws(TensorError)
}

extension Composite {
    public func namedParameters(prefix: String) -> [(String, Variable)] {
        children.flatMap { $0.1.namedParameters(prefix: stateKey(prefix, $0.0)) }
    }

    public func namedBuffers(prefix: String) -> [(String, Buffer)] {
        children.flatMap { $0.1.namedBuffers(prefix: stateKey(prefix, $0.0)) }
    }

    public func setTraining(_ training: Bool) { children.forEach { $0.1.setTraining(training) } }

    public func replaceChild(named name: String, with layer: any Layer) throws(TensorError) {
        throw .invalidArgument(op: "replace", reason: "'\(name)' cannot be replaced in \(type(of: self))")
    }

    public static func noChild(_ name: String) -> TensorError {
        .invalidArgument(op: "replace", reason: "no child '\(name)'")
    }
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

extension Layer {
    /// Replaces the layer at state-dict path `path` (as `descendants(of:)` names it) by `layer`.
    /// Where a child shares its parent's path (an empty name, as MobileNet V1's depthwise unit in
    /// its block), the deepest layer at that path is the one replaced.
    public func replace(at path: String, with layer: any Layer) throws(TensorError) {
        guard try replace(at: path, with: layer, prefix: "") else {
            throw .invalidArgument(op: "replace", reason: "no layer at '\(path)'")
        }
    }

    private func replace(at path: String, with layer: any Layer, prefix: String) throws(TensorError) -> Bool {
        guard let composite = self as? any Composite else { return false }
        for (name, child) in composite.children {
            let full = stateKey(prefix, name)
            guard full == path || path.hasPrefix(full + ".") else { continue }
            if try child.replace(at: path, with: layer, prefix: full) { return true }
            if full == path {
                try composite.replaceChild(named: name, with: layer)
                return true
            }
        }
        return false
    }
}
