// The conv-bn unit (docs/algorithm.md 5-7): convolution with weight * mask, then BatchNorm2d.
// Training recomputes the mask every forward pass; evaluation uses the stored mask.
import MaxQNN
import MaxQTensor

/// What every masked unit of a model shares: the type, the pattern and the schedule.
public struct SparsityConfig: Sendable {
    public var type: ConvBNType
    public var pattern: NMPattern
    public var schedule: IncrementalSchedule
    public var tau: Float

    public init(type: ConvBNType, pattern: NMPattern, schedule: IncrementalSchedule, tau: Float = 0.01) {
        self.type = type
        self.pattern = pattern
        self.schedule = schedule
        self.tau = tau
    }

    public static let dense = SparsityConfig(
        type: .dense, pattern: try! NMPattern(n: 1, m: 1),
        schedule: try! IncrementalSchedule(.linear, increaseStart: 0, increaseEnd: 0))
}

/// Where a unit's tensors live in the state dict: the reference's `<unit>.conv.weight`,
/// `<unit>.scale.*`, `<unit>.mask`, or torchvision's `<unit>.0.weight`, `<unit>.1.*` with the
/// mask beside the weight (`<unit>.0.mask`).
public struct UnitNames: Sendable {
    public var conv: String
    public var scale: String
    public var maskBesideWeight: Bool

    public init(conv: String, scale: String, maskBesideWeight: Bool) {
        self.conv = conv
        self.scale = scale
        self.maskBesideWeight = maskBesideWeight
    }

    public static let reference = UnitNames(conv: "conv", scale: "scale", maskBesideWeight: false)
    public static let torchvision = UnitNames(conv: "0", scale: "1", maskBesideWeight: true)
}

public final class ConvBNUnit: ResidualFusing {
    public let conv: Conv2d
    public let scale: BatchNorm2d
    /// Applied after the batch norm (fused into the convolution in evaluation); nil for none.
    public let activation: Activation?
    public let names: UnitNames
    /// nil for dense units, and for units whose input channels are not a multiple of M.
    public let mask: Buffer?
    public let config: SparsityConfig
    /// The epoch the incremental schedule is evaluated at (0-based), set by the trainer.
    public var epoch = 0
    public var training = true
    /// Drives the Random variant's choice of dense groups.
    public var generator: RandomGenerator
    /// Set when `recomputeMasks(of:)` already computed the mask for the next training forward pass.
    var maskIsFresh = false

    /// A k x k convolution (padding k/2) without bias, then batch normalisation.
    public init(
        _ inputChannels: Int, _ outputChannels: Int, kernelSize: Int, stride: Int = 1, groups: Int = 1,
        config: SparsityConfig, activation: Activation? = nil, names: UnitNames = .reference, eps: Float = 1e-5,
        momentum: Float = 0.1, seed: UInt64 = 0, generator: inout RandomGenerator
    ) throws(TensorError) {
        self.activation = activation
        conv = try Conv2d(
            inputChannels, outputChannels, kernelSize: kernelSize, stride: stride, padding: kernelSize / 2,
            groups: groups,
            generator: &generator)
        scale = BatchNorm2d(outputChannels, eps: eps, momentum: momentum)
        self.names = names
        self.config = config
        self.generator = RandomGenerator(seed: seed)
        let canBeNM = config.type.hasMask && config.pattern.fits(weightShape: conv.weight.shape, groups: groups)
        mask = canBeNM ? Buffer(Tensor(shape: conv.weight.shape, repeating: 1)) : nil
    }

    /// True when the unit was asked to be N:M but its input channels do not allow it.
    public var staysDense: Bool { config.type.hasMask && mask == nil }

    public var maskSettings: MaskSettings {
        MaskSettings(
            type: config.type, pattern: config.pattern, preserveRate: config.schedule.preserveRate(epoch: epoch),
            tau: config.tau)
    }

    /// Recomputes the stored mask from the current weight at the current epoch; a weight holding
    /// NaN or an infinity is refused (named relative to the unit).
    public func recomputeMask() throws(TensorError) {
        guard let mask else { return }
        do {
            mask.value = try Masks.compute(
                conv.weight.value, maskSettings, name: "\(names.conv).weight", generator: &generator)
        } catch .nonFinite(let name) {
            throw .nonFinite(name: name)
        } catch {
            // The unit was built only when the pattern fits, so no other error can occur.
            preconditionFailure("\(error)")
        }
    }

    /// `activation(scale(conv(x)))`. In evaluation without gradients the batch norm is folded
    /// into the convolution and the activation fused: one pass over the output, not three.
    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        if !training && !GradientMode.isRecording { return try folded(x, activation: activation) }
        return try scale(try convolved(x), activation: activation)
    }

    /// `relu?(self(x) + residual)`; in training a unit without its own activation adds the residual
    /// (and applies the ReLU) in its batch norm's passes (`BatchNorm2d.callAsFunction(_:adding:relu:)`).
    public func fusedOutput(_ x: Variable, adding residual: Variable, relu: Bool) throws(TensorError) -> Variable {
        guard activation == nil, training, GradientMode.isRecording else {
            return try unfusedOutput(x, adding: residual, relu: relu)
        }
        return try scale(try convolved(x), adding: residual, relu: relu)
    }

    /// The convolution's output, with the mask (recomputed in training) applied to the weight.
    private func convolved(_ x: Variable) throws(TensorError) -> Variable {
        guard let mask else { return try conv(x) }
        if training && !maskIsFresh { try recomputeMask() }
        maskIsFresh = false
        let weight = try conv.weight.masked(
            by: mask.value, straightThrough: config.type.method?.straightThrough ?? true)
        return try x.conv2d(weight, conv.geometry)
    }

    private func folded(_ x: Variable, activation: Activation?) throws(TensorError) -> Variable {
        let (weight, bias) = try foldedWeights()
        return Variable(
            try x.value.backend.conv2dInference(
                x.value, weight, bias: bias, conv.geometry, activation: activation, precision: .current))
    }

    /// The unit's inference form, batch norm and mask folded into the convolution:
    /// W' = W * mask * gamma / sqrt(var + eps) per output channel, b' = beta - mean * that factor.
    /// The activation (`activation`) stays separate.
    public func foldedWeights() throws(TensorError) -> (weight: Tensor, bias: Tensor) {
        let weight =
            try mask.map { (m) throws(TensorError) in try conv.weight.value.backend.multiply(conv.weight.value, m.value)
            }
            ?? conv.weight.value
        return try scale.folded(into: weight)
    }

    /// SR-STE decay (`--decay-type v1`): grad += lambda * (1 - clamp(mask, 0, 1)) * W, after
    /// backward and before the optimizer step. Only pruned weights (mask 0) are touched.
    public func applySRSTEDecay(_ lambda: Float) throws(TensorError) {
        guard let mask, var grad = conv.weight.grad else { return }
        conv.weight.grad = nil  // the gradient's storage stays unique: updated in place, not copied
        try grad.backend.srsteDecay(&grad, weight: conv.weight.value, mask: mask.value, lambda: lambda)
        conv.weight.grad = grad
    }

    /// (zeros, total) of the effective weight W * mask.
    public var zeroCount: (zeros: Int, total: Int) {
        let effective =
            mask.map { try! conv.weight.value.backend.multiply(conv.weight.value, $0.value) } ?? conv.weight.value
        return (effective.backend.countZeros(effective), effective.count)
    }

    public func namedParameters(prefix: String) -> [(String, Variable)] {
        conv.namedParameters(prefix: stateKey(prefix, names.conv))
            + scale.namedParameters(prefix: stateKey(prefix, names.scale))
    }

    public func namedBuffers(prefix: String) -> [(String, Buffer)] {
        scale.namedBuffers(prefix: stateKey(prefix, names.scale)) + (mask.map { [(maskKey(prefix: prefix), $0)] } ?? [])
    }

    /// The convolution weight's state-dict name under `prefix`.
    public func weightKey(prefix: String) -> String {
        stateKey(stateKey(prefix, names.conv), "weight")
    }

    /// The mask's state-dict name under `prefix`: `<prefix>.mask`, or beside the weight
    /// (`<prefix>.<conv>.mask`) in torchvision's layout.
    public func maskKey(prefix: String) -> String {
        stateKey(prefix, names.maskBesideWeight ? "\(names.conv).mask" : "mask")
    }

    public func setTraining(_ training: Bool) {
        self.training = training
        scale.setTraining(training)
    }
}

extension ConvBNUnit: GraphDescribing {
    /// Its inference form: one convolution with batch norm and mask folded in (`foldedWeights`,
    /// the deployment's folding), then the activation.
    public func describe(_ input: String, name: String, in graph: inout OperatorGraph) throws(TensorError) -> String {
        let (weight, bias) = try foldedWeights()
        return graph.convolution(
            input, weight: weight, bias: bias, geometry: conv.geometry, activation: activation, name: name)
    }
}
