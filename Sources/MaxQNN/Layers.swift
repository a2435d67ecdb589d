// The network layers: values you call (`conv(x)`, `bn(x)`), with parameters stored under their
// PyTorch state-dict names and listed explicitly (no reflection).
import Foundation
import MaxQTensor

/// A layer or a model: its parameters and buffers under state-dict names, and its mode.
public protocol Layer: AnyObject {
    /// Trainable parameters, in definition order, under their state-dict names.
    func namedParameters(prefix: String) -> [(String, Variable)]
    /// Non-trainable state (running statistics, masks), under their state-dict names.
    func namedBuffers(prefix: String) -> [(String, Buffer)]
    /// Training mode (batch statistics, dropout) or evaluation mode; applies to sub-layers.
    func setTraining(_ training: Bool)
}

extension Layer {
    public func namedBuffers(prefix: String) -> [(String, Buffer)] { [] }
    public func setTraining(_ training: Bool) {}
    public var parameters: [Variable] { namedParameters(prefix: "").map(\.1) }
    public func zeroGrad() { parameters.forEach { $0.zeroGrad() } }
}

/// Non-trainable state that a checkpoint stores (running statistics, masks).
public final class Buffer {
    public var value: Tensor
    public init(_ value: Tensor) { self.value = value }
}

/// A state-dict name under a prefix: `stateKey("layer1.0", "weight")` is "layer1.0.weight".
public func stateKey(_ prefix: String, _ name: String) -> String {
    prefix.isEmpty ? name : name.isEmpty ? prefix : "\(prefix).\(name)"
}

/// 2-D convolution over (N, C, H, W) input; weight (O, C/groups, k, k). PyTorch's default
/// initialisation: uniform(+-1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)).
public final class Conv2d: Layer {
    public let weight: Variable
    public let bias: Variable?
    public let geometry: Conv2dGeometry

    public init(
        _ inputChannels: Int, _ outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
        groups: Int = 1, bias: Bool = false, generator: inout RandomGenerator
    ) throws(TensorError) {
        guard inputChannels % groups == 0, outputChannels % groups == 0 else {
            throw .invalidArgument(
                op: "Conv2d", reason: "channels \(inputChannels) -> \(outputChannels) not divisible by groups \(groups)"
            )
        }
        let fanIn = inputChannels / groups * kernelSize * kernelSize
        let bound = 1 / Float(fanIn).squareRoot()
        weight = Variable(
            Tensor(
                uniform: [outputChannels, inputChannels / groups, kernelSize, kernelSize], low: -bound, high: bound,
                generator: &generator), requiresGrad: true)
        self.bias =
            bias
            ? Variable(
                Tensor(uniform: [outputChannels], low: -bound, high: bound, generator: &generator), requiresGrad: true)
            : nil
        geometry = Conv2dGeometry(stride: stride, padding: padding, groups: groups)
    }

    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        let y = try x.conv2d(weight, geometry)
        guard let bias else { return y }
        return try y + bias.reshaped([1, bias.shape[0], 1, 1])
    }

    public func namedParameters(prefix: String) -> [(String, Variable)] {
        [(stateKey(prefix, "weight"), weight)] + (bias.map { [(stateKey(prefix, "bias"), $0)] } ?? [])
    }
}

/// BatchNorm2d over (N, C, H, W): eps 1e-5, momentum 0.1, running variance updated with the
/// unbiased batch variance (PyTorch's definition).
public final class BatchNorm2d: Layer {
    public let weight: Variable
    public let bias: Variable
    public let runningMean: Buffer  // running_mean
    public let runningVar: Buffer  // running_var
    public let numBatchesTracked: Buffer  // num_batches_tracked
    public let eps: Float
    public let momentum: Float
    public var training = true
    /// Training statistics over the batches of all these processes (`--sync-bn`); nil: this
    /// process's batch alone.
    public var synchronization: (any ProcessGroup)?

    public init(_ channels: Int, eps: Float = 1e-5, momentum: Float = 0.1) {
        weight = Variable(Tensor(shape: [channels], repeating: 1), requiresGrad: true)
        bias = Variable(Tensor(zeros: [channels]), requiresGrad: true)
        runningMean = Buffer(Tensor(zeros: [channels]))
        runningVar = Buffer(Tensor(shape: [channels], repeating: 1))
        numBatchesTracked = Buffer(Tensor(zeros: []))
        self.eps = eps
        self.momentum = momentum
    }

    /// This batch norm (running statistics) folded into the convolution weight before it: per
    /// output channel W' = W * gamma / sqrt(var + eps) and the bias b' = beta - mean * that factor.
    public func folded(into weight: Tensor) throws(TensorError) -> (weight: Tensor, bias: Tensor) {
        let backend = weight.backend
        let (factor, bias) = try backend.batchNormFolding(
            weight: self.weight.value, bias: self.bias.value, runningMean: runningMean.value,
            runningVar: runningVar.value, eps: eps)
        return (try backend.multiply(weight, factor.reshaped([factor.count, 1, 1, 1])), bias)
    }

    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        try callAsFunction(x, activation: nil)
    }

    /// Batch norm followed by `activation`: ReLU in training is fused into batch norm's passes
    /// (unless synchronised); anything else runs as its own operation.
    public func callAsFunction(_ x: Variable, activation: Activation?) throws(TensorError) -> Variable {
        guard training else {
            let y = try x.batchNormInference(
                weight: weight, bias: bias, runningMean: runningMean.value, runningVar: runningVar.value, eps: eps)
            return activation.map { y.activation($0) } ?? y
        }
        let (y, saved, count): (Variable, BatchNormSaved, Float)
        var pending = activation
        if let group = synchronization {
            let (output, statistics, values) = try x.batchNormTrainingSynchronized(
                weight: weight, bias: bias, eps: eps, across: group)
            (y, saved, count) = (output, statistics, Float(values))
        } else {
            let fused = activation == .relu
            (y, saved) = try x.batchNormTraining(weight: weight, bias: bias, eps: eps, relu: fused)
            count = Float(x.shape[0] * x.shape[2] * x.shape[3])
            if fused { pending = nil }
        }
        try updateRunningStatistics(saved, count: count, backend: x.value.backend)
        return pending.map { y.activation($0) } ?? y
    }

    /// self(x) + residual, with `relu` its ReLU: in training (unsynchronised) the addition and ReLU are
    /// fused into batch norm's passes, forward and backward, with the same numbers.
    public func callAsFunction(_ x: Variable, adding residual: Variable, relu: Bool) throws(TensorError) -> Variable {
        guard training, synchronization == nil else {
            return relu ? try self(x).addingReLU(residual) : try self(x) + residual
        }
        let (y, saved) = try x.batchNormTrainingAdding(
            weight: weight, bias: bias, eps: eps, residual: residual, relu: relu)
        try updateRunningStatistics(saved, count: Float(x.shape[0] * x.shape[2] * x.shape[3]), backend: x.value.backend)
        return y
    }

    /// The running estimates move toward this batch's statistics over `count` values per channel.
    private func updateRunningStatistics(
        _ saved: BatchNormSaved, count: Float, backend: any Backend
    ) throws(TensorError) {
        try backend.updateRunningAverage(&runningMean.value, toward: saved.mean, momentum: momentum, scale: 1)
        try backend.updateRunningAverage(
            &runningVar.value, toward: saved.variance, momentum: momentum, scale: count / (count - 1))
        numBatchesTracked.value = try backend.add(numBatchesTracked.value, Tensor(scalar: 1))
    }

    public func namedParameters(prefix: String) -> [(String, Variable)] {
        [(stateKey(prefix, "weight"), weight), (stateKey(prefix, "bias"), bias)]
    }

    public func namedBuffers(prefix: String) -> [(String, Buffer)] {
        [
            (stateKey(prefix, "running_mean"), runningMean), (stateKey(prefix, "running_var"), runningVar),
            (stateKey(prefix, "num_batches_tracked"), numBatchesTracked),
        ]
    }

    public func setTraining(_ training: Bool) { self.training = training }
}

/// Fully connected layer on (N, in); PyTorch's default initialisation (uniform +-1/sqrt(in)).
public final class Linear: Layer {
    public let weight: Variable
    public let bias: Variable?

    public init(_ inputFeatures: Int, _ outputFeatures: Int, bias: Bool = true, generator: inout RandomGenerator) {
        let bound = 1 / Float(inputFeatures).squareRoot()
        weight = Variable(
            Tensor(uniform: [outputFeatures, inputFeatures], low: -bound, high: bound, generator: &generator),
            requiresGrad: true)
        self.bias =
            bias
            ? Variable(
                Tensor(uniform: [outputFeatures], low: -bound, high: bound, generator: &generator), requiresGrad: true)
            : nil
    }

    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        try x.linear(weight, bias)
    }

    public func namedParameters(prefix: String) -> [(String, Variable)] {
        [(stateKey(prefix, "weight"), weight)] + (bias.map { [(stateKey(prefix, "bias"), $0)] } ?? [])
    }
}

/// Dropout with its own seeded stream, active only in training mode.
public final class Dropout: Layer {
    public let probability: Float
    public var training = true
    public var generator: RandomGenerator

    public init(probability: Float, seed: UInt64) {
        self.probability = probability
        generator = RandomGenerator(seed: seed)
    }

    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        guard training, probability > 0 else { return x }
        return try x.dropout(probability: probability, generator: &generator)
    }

    public func namedParameters(prefix: String) -> [(String, Variable)] { [] }
    public func setTraining(_ training: Bool) { self.training = training }
}
