// Reverse-mode automatic differentiation over coarse operations: a `Variable` holds a value
// and, when recorded, the node that computes its inputs' gradients from its own.
import MaxQTensor

public final class Variable {
    public var value: Tensor
    /// Accumulated gradient (leaves that require it: parameters).
    public var grad: Tensor?
    public let requiresGrad: Bool
    let node: BackwardNode?

    public init(_ value: Tensor, requiresGrad: Bool = false) {
        self.value = value
        self.requiresGrad = requiresGrad
        self.node = nil
    }

    init(_ value: Tensor, node: BackwardNode) {
        self.value = value
        self.requiresGrad = true
        self.node = node
    }

    public var shape: [Int] { value.shape }

    public func zeroGrad() { grad = nil }

    /// Back-propagates from this (scalar or seeded) variable; gradients accumulate (`+=`)
    /// into every leaf that requires them. `observer` hears of each leaf once its gradient of this
    /// pass is complete, and after every operation (data-parallel training starts and drives the
    /// gradients' exchange from there, while backward goes on).
    public func backward(seed: Tensor? = nil, observer: (any BackwardObserver)? = nil) throws(TensorError) {
        let start = seed ?? Tensor(shape: value.shape, repeating: 1)
        guard start.shape == value.shape else { throw .shapeMismatch(op: "backward seed", value.shape, start.shape) }
        guard requiresGrad else { return }
        let order = topologicalOrder()
        // A value's gradients in the order they arrive, added when its operation's backward runs
        // (or inside it, for an operation that takes them unsummed).
        var pending: [ObjectIdentifier: [Tensor]] = [ObjectIdentifier(self): [start]]
        for variable in order.reversed() {
            guard let gradients = pending.removeValue(forKey: ObjectIdentifier(variable)) else { continue }
            guard let node = variable.node else {
                try variable.accumulate(try gradients[0].backend.sum(of: gradients))
                try observer?.gradientCompleted(variable)
                continue
            }
            // Each operation's backward receives its output's gradients in its output's layout.
            let layout = variable.value.layout
            let inputGradients: [Tensor?]
            if let backwardOfGradients = node.backwardOfGradients {
                inputGradients = try backwardOfGradients(gradients.map { $0.inLayout(layout) })
            } else {
                inputGradients = try node.backward(try gradients[0].backend.sum(of: gradients).inLayout(layout))
            }
            try observer?.operationFinished()
            for (input, g) in zip(node.inputs, inputGradients) where input.requiresGrad {
                guard let g else { continue }
                pending[ObjectIdentifier(input), default: []].append(g)
            }
        }
    }

    func accumulate(_ gradient: Tensor) throws(TensorError) {
        let gradient = gradient.inLayout(value.layout)
        grad =
            try grad.map { (existing) throws(TensorError) in try existing.backend.add(existing, gradient) } ?? gradient
    }

    /// Variables reachable from this one, each after all of its inputs.
    private func topologicalOrder() -> [Variable] {
        var order: [Variable] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Variable, Bool)] = [(self, false)]
        while let (variable, expanded) = stack.popLast() {
            if expanded {
                order.append(variable)
                continue
            }
            guard visited.insert(ObjectIdentifier(variable)).inserted else { continue }
            stack.append((variable, true))
            for input in variable.node?.inputs ?? []
            where input.requiresGrad && !visited.contains(ObjectIdentifier(input)) {
                stack.append((input, false))
            }
        }
        return order
    }
}

/// Follows a backward pass (`Variable.backward(seed:observer:)`).
public protocol BackwardObserver: AnyObject {
    /// `leaf`'s gradient holds this pass's complete contribution: nothing later adds to it. Each
    /// leaf is reported once per pass, in the order the pass reaches them.
    func gradientCompleted(_ leaf: Variable) throws(TensorError)
    /// One recorded operation has computed its inputs' gradients.
    func operationFinished() throws(TensorError)
}

/// The recorded step of an operation: its inputs and the map from the output's gradient to
/// theirs (nil where an input needs none). An operation that can add the gradients its output
/// received within its own first pass takes them unsummed (`backwardOfGradients`) instead.
final class BackwardNode {
    let inputs: [Variable]
    let backward: (Tensor) throws(TensorError) -> [Tensor?]
    let backwardOfGradients: (([Tensor]) throws(TensorError) -> [Tensor?])?

    init(_ inputs: [Variable], _ backward: @escaping (Tensor) throws(TensorError) -> [Tensor?]) {
        self.inputs = inputs
        self.backward = backward
        backwardOfGradients = nil
    }

    init(_ inputs: [Variable], gradients backward: @escaping ([Tensor]) throws(TensorError) -> [Tensor?]) {
        self.inputs = inputs
        self.backward = { (g) throws(TensorError) in try backward([g]) }
        backwardOfGradients = backward
    }
}

/// Whether operations record backward nodes. Evaluation runs under `withoutGradients`.
public enum GradientMode {
    @TaskLocal public static var isRecording = true

    /// Runs `body` without recording anything for backward.
    public static func withoutGradients<R>(_ body: () throws -> R) rethrows -> R {
        try $isRecording.withValue(false) { try body() }
    }
}

extension Variable {
    /// The result of an operation: recorded when gradients are on and an input needs one.
    static func result(
        _ value: Tensor, _ inputs: [Variable], _ backward: @escaping (Tensor) throws(TensorError) -> [Tensor?]
    ) -> Variable {
        guard GradientMode.isRecording, inputs.contains(where: \.requiresGrad) else { return Variable(value) }
        return Variable(value, node: BackwardNode(inputs, backward))
    }

    /// As `result`, for an operation whose backward takes its output's gradients unsummed.
    static func result(
        _ value: Tensor, _ inputs: [Variable], gradients backward: @escaping ([Tensor]) throws(TensorError) -> [Tensor?]
    ) -> Variable {
        guard GradientMode.isRecording, inputs.contains(where: \.requiresGrad) else { return Variable(value) }
        return Variable(value, node: BackwardNode(inputs, gradients: backward))
    }
}
