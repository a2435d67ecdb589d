// A layer's state dict: its parameters and buffers under their names, read and loaded by name.
import MaxQTensor

/// What loading a state dict did not match, like PyTorch's `strict=False` report.
public struct LoadReport: Equatable, Sendable {
    public var missing: [String]
    public var unexpected: [String]

    public init(missing: [String], unexpected: [String]) {
        self.missing = missing
        self.unexpected = unexpected
    }
}

extension Layer {
    /// Parameters, then buffers, under their state-dict names.
    public func stateDict(prefix: String = "") -> [(String, Tensor)] {
        namedParameters(prefix: prefix).map { ($0.0, $0.1.value) }
            + namedBuffers(prefix: prefix).map { ($0.0, $0.1.value) }
    }

    /// Copies every entry whose name the layer has; a shape mismatch is refused before anything
    /// changes, naming the key and both shapes.
    @discardableResult
    public func loadStateDict(_ entries: [String: Tensor]) throws(TensorError) -> LoadReport {
        let parameters = namedParameters(prefix: "")
        let buffers = namedBuffers(prefix: "")
        let own = parameters.map { ($0.0, $0.1.value.shape) } + buffers.map { ($0.0, $0.1.value.shape) }
        for (name, shape) in own {
            if let t = entries[name], t.shape != shape, !(t.count == 1 && shape.reduce(1, *) == 1) {
                throw .shapeMismatch(op: "load '\(name)'", shape, t.shape)
            }
        }
        for (name, parameter) in parameters {
            if let t = entries[name] { parameter.value = try t.reshaped(parameter.value.shape) }
        }
        for (name, buffer) in buffers {
            if let t = entries[name] { buffer.value = try t.reshaped(buffer.value.shape) }
        }
        let names = Set(own.map(\.0))
        return LoadReport(
            missing: own.map(\.0).filter { entries[$0] == nil },
            unexpected: entries.keys.filter { !names.contains($0) }.sorted())
    }
}

extension Layer {
    /// Moves every parameter and buffer to `device`: the layer's kernels then run on that
    /// device's backend (inputs must be moved too).
    public func move(to device: Device) {
        for (_, parameter) in namedParameters(prefix: "") { parameter.value = parameter.value.on(device) }
        for (_, buffer) in namedBuffers(prefix: "") { buffer.value = buffer.value.on(device) }
    }
}
