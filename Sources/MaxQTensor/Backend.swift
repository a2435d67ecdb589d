// The kernel interface. Autograd and layers call kernels only through `Backend`, so a GPU
// backend can be added beside `CPUBackend` without touching model code.

/// Stride, padding and groups of a 2-D convolution (square kernels, symmetric padding).
public struct Conv2dGeometry: Hashable, Sendable {
    public var stride: Int
    public var padding: Int
    public var groups: Int

    public init(stride: Int = 1, padding: Int = 0, groups: Int = 1) {
        self.stride = stride
        self.padding = padding
        self.groups = groups
    }
}

/// Point-wise activations with PyTorch's definitions (and PyTorch's derivatives at the kinks).
public enum Activation: String, Sendable, CaseIterable {
    case relu, relu6, hardswish, hardsigmoid, sigmoid
}

/// What batch-norm training keeps for backward: per-channel batch mean and 1/sqrt(var + eps).
public struct BatchNormSaved: Sendable {
    public var mean: Tensor  // (C)
    public var invStd: Tensor  // (C)
    /// Biased batch variance (C), from which the running variance is updated.
    public var variance: Tensor

    public init(mean: Tensor, invStd: Tensor, variance: Tensor) {
        (self.mean, self.invStd, self.variance) = (mean, invStd, variance)
    }
}

/// Per-channel sums over (N, H, W) of x - shift and of its squares (float within a sample's row,
/// double across rows): one pass without cancellation when the shift is near the mean. Batch
/// norm's statistics come from them alone, so sums of several processes' batches taken with the
/// same shift add up to those of their union.
public struct BatchNormSums: Sendable, Equatable {
    /// Values per channel (N * H * W).
    public var count: Double
    public var shift: [Float]
    public var sum: [Double]
    public var squares: [Double]

    public init(count: Double, shift: [Float], sum: [Double], squares: [Double]) {
        (self.count, self.shift, self.sum, self.squares) = (count, shift, sum, squares)
    }

    /// [count, sums..., squares...]: what processes add up.
    public var packed: [Double] { [count] + sum + squares }

    /// The sums of `packed` (as `packed` lays them out) with this shift.
    public func replacing(with packed: [Double]) -> BatchNormSums {
        let c = shift.count
        return BatchNormSums(
            count: packed[0], shift: shift, sum: Array(packed[1...c]), squares: Array(packed[(c + 1)...]))
    }

    /// Mean, 1/sqrt(var + eps) and the biased variance per channel.
    public func statistics(eps: Float) throws(TensorError) -> BatchNormSaved {
        guard count > 1 else {
            throw .invalidArgument(op: "batch_norm", reason: "training needs more than one value per channel")
        }
        var mean = [Float](), invStd = [Float](), variance = [Float]()
        for ch in shift.indices {
            let m = sum[ch] / count
            let v = max(squares[ch] / count - m * m, 0)
            mean.append(Float(m) + shift[ch])
            variance.append(Float(v))
            invStd.append(Float(1 / (v + Double(eps)).squareRoot()))
        }
        let c = shift.count
        return BatchNormSaved(
            mean: try Tensor(shape: [c], scalars: mean), invStd: try Tensor(shape: [c], scalars: invStd),
            variance: try Tensor(shape: [c], scalars: variance))
    }
}

public protocol Backend: Sendable {
    var name: String { get }

    /// x (N, C, H, W), w (O, C/groups, k, k) -> (N, O, H', W'); no bias. In `bf16` the inputs
    /// are rounded to bfloat16 and the products accumulated in float32 (`Precision`); so are
    /// the inputs of both gradients below.
    func conv2d(_ x: Tensor, _ w: Tensor, _ geometry: Conv2dGeometry, precision: Precision) throws(TensorError)
        -> Tensor
    /// Inference only: convolution plus a per-output-channel bias and an optional activation,
    /// fused where the library can (a folded conv-bn unit in evaluation).
    func conv2dInference(
        _ x: Tensor, _ w: Tensor, bias: Tensor, _ geometry: Conv2dGeometry, activation: Activation?,
        precision: Precision
    ) throws(TensorError) -> Tensor
    func conv2dBackwardInput(
        _ dy: Tensor, _ w: Tensor, inputShape: [Int], _ geometry: Conv2dGeometry, precision: Precision
    ) throws(TensorError) -> Tensor
    func conv2dBackwardWeight(
        _ dy: Tensor, _ x: Tensor, weightShape: [Int], _ geometry: Conv2dGeometry, precision: Precision
    ) throws(TensorError) -> Tensor
    /// Both gradients (each only if asked for) in one call, so a backend can share work between them;
    /// the input's in `inputGradientPrecision` (float32 in `--amp bf16`), in the input's layout.
    func conv2dBackward(
        _ dy: Tensor, input x: Tensor, weight w: Tensor, _ geometry: Conv2dGeometry, inputGradient: Bool,
        weightGradient: Bool, precision: Precision, inputGradientPrecision: Precision
    ) throws(TensorError) -> (input: Tensor?, weight: Tensor?)

    /// Batch norm in training is `batchNormSums`, `BatchNormSums.statistics` and `batchNormNormalize`
    /// (`batchNormTraining` below); synchronised batch norm adds the processes' sums in between.
    /// `shift` nil: each channel's first value.
    func batchNormSums(_ x: Tensor, shift: Tensor?) throws(TensorError) -> BatchNormSums
    /// y = (x - mean) * invStd * weight + bias with the saved statistics; with `relu`, max(y, 0)
    /// in the same pass.
    func batchNormNormalize(_ x: Tensor, weight: Tensor, bias: Tensor, saved: BatchNormSaved, relu: Bool)
        throws(TensorError) -> Tensor
    func batchNormInference(
        _ x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Float
    ) throws(TensorError) -> Tensor
    /// Returns (dx, dweight, dbias). With `reluOutput` (the output of a normalisation with `relu`)
    /// the gradient reaching batch norm is dy where that output is positive and 0 elsewhere: the
    /// backward of ReLU after batch norm, in the same passes.
    func batchNormBackward(_ dy: Tensor, _ x: Tensor, weight: Tensor, saved: BatchNormSaved, reluOutput: Tensor?)
        throws(TensorError) -> (Tensor, Tensor, Tensor)

    /// normalize(x) + residual (with `relu`, max(that, 0)), the normalisation as `batchNormNormalize`'s:
    /// a residual block's last batch norm and the shortcut's addition (and ReLU) in one pass. The
    /// values of `batchNormNormalize` then `add` (`addReLU`).
    func batchNormNormalizeAdding(
        _ x: Tensor, weight: Tensor, bias: Tensor, saved: BatchNormSaved, residual: Tensor, relu: Bool
    ) throws(TensorError) -> Tensor
    /// Backward of `batchNormNormalizeAdding` from the gradients its output received, summed in their
    /// order as backward sums a value's gradients; with `reluOutput` (the output of a normalisation
    /// with `relu`), 0 where that output is not positive. That sum g is the residual's gradient, and
    /// batch norm's backward of g gives the rest. Returns (dx, dweight, dbias, dresidual): the values
    /// of summing, ReLU's backward and `batchNormBackward`.
    func batchNormAddingBackward(
        _ gradients: [Tensor], _ x: Tensor, weight: Tensor, saved: BatchNormSaved, reluOutput: Tensor?
    ) throws(TensorError) -> (Tensor, Tensor, Tensor, Tensor)

    /// Backward of synchronised batch norm in two parts: the per-channel sums this process
    /// contributes (to be summed across processes), and the input gradient from the summed sums
    /// and the count of all processes' values (`batchNormBackward` computes both for one process).
    func batchNormGradientSums(_ dy: Tensor, _ x: Tensor, mean: Tensor) throws(TensorError) -> (
        sumDy: [Double], sumDyCentered: [Double]
    )
    func batchNormInputGradient(
        _ dy: Tensor, _ x: Tensor, weight: Tensor, saved: BatchNormSaved, sumDy: [Double], sumDyCentered: [Double],
        count: Double
    ) throws(TensorError) -> Tensor

    /// Returns the output and, for backward, the flat input index of each output's maximum.
    func maxPool2d(_ x: Tensor, kernel: Int, stride: Int, padding: Int) throws(TensorError) -> (Tensor, [Int32])
    func maxPool2dBackward(_ dy: Tensor, argmax: [Int32], inputShape: [Int]) -> Tensor
    /// The values of `maxPool2d` alone (evaluation: no backward).
    func maxPool2dValues(_ x: Tensor, kernel: Int, stride: Int, padding: Int) throws(TensorError) -> Tensor
    /// (N, C, H, W) -> (N, C)
    func globalAveragePool(_ x: Tensor) throws(TensorError) -> Tensor
    func globalAveragePoolBackward(_ dy: Tensor, inputShape: [Int]) -> Tensor

    func activation(_ kind: Activation, _ x: Tensor) -> Tensor
    /// Gradient from the activation's input `x` (and output `y`, used by sigmoid).
    func activationBackward(_ kind: Activation, _ dy: Tensor, x: Tensor, y: Tensor) -> Tensor

    /// a + b or a * b where b broadcasts over a (see `BroadcastPattern`).
    func add(_ a: Tensor, _ b: Tensor) throws(TensorError) -> Tensor
    /// max(a + b, 0) of tensors of one shape (a residual block's output) in one pass: the values of
    /// `add` then ReLU.
    func addReLU(_ a: Tensor, _ b: Tensor) throws(TensorError) -> Tensor
    func multiply(_ a: Tensor, _ b: Tensor) throws(TensorError) -> Tensor
    /// Sums `t` down to `shape` (the reverse of broadcasting).
    func sum(_ t: Tensor, toShape shape: [Int]) throws(TensorError) -> Tensor
    func scale(_ t: Tensor, by factor: Float) -> Tensor

    /// x (N, in), w (out, in), bias (out) -> (N, out)
    func linear(_ x: Tensor, _ w: Tensor, _ bias: Tensor?) throws(TensorError) -> Tensor
    /// Returns (dx, dw, dbias).
    func linearBackward(_ dy: Tensor, _ x: Tensor, _ w: Tensor) -> (Tensor, Tensor, Tensor)

    /// Mean label-smoothed cross-entropy of logits (N, K) and the gradient to the logits.
    func crossEntropy(_ logits: Tensor, labels: [Int], labelSmoothing: Float) throws(TensorError) -> (
        loss: Float, gradient: Tensor
    )

    /// One SGD step in place with PyTorch's semantics: g += wd * w; buf = momentum * buf + g (the
    /// first buffer, nil on entry, is g); w -= lr * (nesterov ? g + momentum * buf : buf).
    func sgdStep(
        _ weight: inout Tensor, gradient: Tensor, momentumBuffer: inout Tensor?, learningRate: Float, momentum: Float,
        weightDecay: Float, nesterov: Bool) throws(TensorError)
    /// running = (1 - momentum) * running + momentum * batch * scale, in place.
    func updateRunningAverage(_ running: inout Tensor, toward batch: Tensor, momentum: Float, scale: Float)
        throws(TensorError)
    /// SR-STE decay in place: gradient += lambda * (1 - clamp(mask, 0, 1)) * weight.
    func srsteDecay(_ gradient: inout Tensor, weight: Tensor, mask: Tensor, lambda: Float) throws(TensorError)
    /// Batch norm with running statistics as a per-channel scale and bias:
    /// factor = gamma / sqrt(var + eps), bias = beta - mean * factor.
    func batchNormFolding(weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Float)
        throws(TensorError) -> (factor: Tensor, bias: Tensor)
    /// Backward of batch norm with running (frozen) statistics: (dx, dweight, dbias).
    func batchNormFrozenBackward(
        _ dy: Tensor, _ x: Tensor, weight: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Float
    ) throws(TensorError) -> (Tensor, Tensor, Tensor)
    func countZeros(_ t: Tensor) -> Int
    /// Percentage of rows of logits (N, K) whose label is among the k largest, for each k; ties
    /// count towards the lower index.
    func topKAccuracy(_ logits: Tensor, labels: [Int], ks: [Int]) throws(TensorError) -> [Float]
}

extension Backend {
    /// By default, `maxPool2d`'s output (the CPU backend skips the argmax).
    public func maxPool2dValues(_ x: Tensor, kernel: Int, stride: Int, padding: Int) throws(TensorError) -> Tensor {
        try maxPool2d(x, kernel: kernel, stride: stride, padding: padding).0
    }

    /// The convolutions in float32.
    public func conv2d(_ x: Tensor, _ w: Tensor, _ geometry: Conv2dGeometry) throws(TensorError) -> Tensor {
        try conv2d(x, w, geometry, precision: .fp32)
    }

    public func conv2dInference(
        _ x: Tensor, _ w: Tensor, bias: Tensor, _ geometry: Conv2dGeometry, activation: Activation?
    ) throws(TensorError) -> Tensor {
        try conv2dInference(x, w, bias: bias, geometry, activation: activation, precision: .fp32)
    }

    public func conv2dBackwardInput(_ dy: Tensor, _ w: Tensor, inputShape: [Int], _ geometry: Conv2dGeometry)
        throws(TensorError) -> Tensor
    {
        try conv2dBackwardInput(dy, w, inputShape: inputShape, geometry, precision: .fp32)
    }

    public func conv2dBackwardWeight(_ dy: Tensor, _ x: Tensor, weightShape: [Int], _ geometry: Conv2dGeometry)
        throws(TensorError) -> Tensor
    {
        try conv2dBackwardWeight(dy, x, weightShape: weightShape, geometry, precision: .fp32)
    }

    public func conv2dBackward(
        _ dy: Tensor, input x: Tensor, weight w: Tensor, _ geometry: Conv2dGeometry, inputGradient: Bool,
        weightGradient: Bool, precision: Precision, inputGradientPrecision: Precision
    ) throws(TensorError) -> (input: Tensor?, weight: Tensor?) {
        (
            inputGradient
                ? try conv2dBackwardInput(dy, w, inputShape: x.shape, geometry, precision: inputGradientPrecision)
                : nil,
            weightGradient
                ? try conv2dBackwardWeight(dy, x, weightShape: w.shape, geometry, precision: precision) : nil
        )
    }

    public func batchNormNormalize(_ x: Tensor, weight: Tensor, bias: Tensor, saved: BatchNormSaved)
        throws(TensorError) -> Tensor
    {
        try batchNormNormalize(x, weight: weight, bias: bias, saved: saved, relu: false)
    }

    public func batchNormBackward(_ dy: Tensor, _ x: Tensor, weight: Tensor, saved: BatchNormSaved)
        throws(TensorError) -> (Tensor, Tensor, Tensor)
    {
        try batchNormBackward(dy, x, weight: weight, saved: saved, reluOutput: nil)
    }

    /// `batchNormNormalizeAdding` as the operations it stands for (the reference, and the CPU
    /// backend's NCHW path).
    func composedBatchNormNormalizeAdding(
        _ x: Tensor, weight: Tensor, bias: Tensor, saved: BatchNormSaved, residual: Tensor, relu: Bool
    ) throws(TensorError) -> Tensor {
        let normalized = try batchNormNormalize(x, weight: weight, bias: bias, saved: saved, relu: false)
        return relu ? try addReLU(normalized, residual) : try add(normalized, residual)
    }

    /// `batchNormAddingBackward` as the operations it stands for.
    func composedBatchNormAddingBackward(
        _ gradients: [Tensor], _ x: Tensor, weight: Tensor, saved: BatchNormSaved, reluOutput: Tensor?
    ) throws(TensorError) -> (Tensor, Tensor, Tensor, Tensor) {
        let sum = try sum(of: gradients)
        let g = reluOutput.map { activationBackward(.relu, sum, x: $0, y: $0) } ?? sum
        let (dx, dWeight, dBias) = try batchNormBackward(g, x, weight: weight, saved: saved, reluOutput: nil)
        return (dx, dWeight, dBias, g)
    }

    /// ((g0 + g1) + g2) + ...: the order in which backward adds a value's gradients as they arrive.
    public func sum(of gradients: [Tensor]) throws(TensorError) -> Tensor {
        guard var total = gradients.first else {
            throw .invalidArgument(op: "sum", reason: "no gradients to add")
        }
        for g in gradients.dropFirst() { total = try add(total, g) }
        return total
    }

    /// Batch statistics over (N, H, W) per channel and the normalised output.
    public func batchNormTraining(
        _ x: Tensor, weight: Tensor, bias: Tensor, eps: Float, shift: Tensor? = nil, relu: Bool = false
    ) throws(TensorError) -> (Tensor, BatchNormSaved) {
        let saved = try batchNormSums(x, shift: shift).statistics(eps: eps)
        return (try batchNormNormalize(x, weight: weight, bias: bias, saved: saved, relu: relu), saved)
    }
}

extension Tensor {
    /// The backend that runs kernels for this tensor's device.
    public var backend: any Backend {
        switch device {
        case .cpu: CPUBackend.shared
        case .reference: ReferenceBackend.shared
        }
    }
}
