// Stochastic gradient descent with momentum, Nesterov and weight decay, with PyTorch's
// semantics: g += wd * w; buf = momentum * buf + g (the first buf is g); step = nesterov ?
// g + momentum * buf : buf; w -= lr * step.
import MaxQTensor

public final class SGD {
    public struct Group {
        public var parameters: [Variable]
        public var weightDecay: Float
        public init(parameters: [Variable], weightDecay: Float) {
            self.parameters = parameters
            self.weightDecay = weightDecay
        }
    }

    public var learningRate: Float
    public let momentum: Float
    public let nesterov: Bool
    public let groups: [Group]
    /// Momentum buffers by parameter identity (absent until a parameter's first step).
    public var momentumBuffers: [ObjectIdentifier: Tensor] = [:]

    public init(groups: [Group], learningRate: Float, momentum: Float = 0.9, nesterov: Bool = false) {
        self.groups = groups
        self.learningRate = learningRate
        self.momentum = momentum
        self.nesterov = nesterov
    }

    public func step() throws(TensorError) {
        for group in groups {
            for parameter in group.parameters {
                guard let grad = parameter.grad else { continue }
                let id = ObjectIdentifier(parameter)
                var buffer = momentumBuffers.removeValue(forKey: id)  // unique while updated in place
                try parameter.value.backend.sgdStep(
                    &parameter.value, gradient: grad, momentumBuffer: &buffer, learningRate: learningRate,
                    momentum: momentum, weightDecay: group.weightDecay, nesterov: nesterov)
                momentumBuffers[id] = buffer
            }
        }
    }
}
