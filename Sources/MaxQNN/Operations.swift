// Every differentiable operation with its derivative, in one table. Each forward keeps exactly
// what its backward needs; kernels come from the tensor's backend.
import MaxQTensor

extension Variable {
    /// In the precisions of the scope it is called in (`Precision.run`), backward included.
    public func conv2d(_ weight: Variable, _ geometry: Conv2dGeometry) throws(TensorError) -> Variable {
        let (x, w) = (value, weight.value)
        let backend = x.backend
        let (precision, inputPrecision) = (Precision.current, Precision.currentInputGradients)
        let y = try backend.conv2d(x, w, geometry, precision: precision)
        return .result(y, [self, weight]) { (dy) throws(TensorError) in
            let (dx, dw) = try backend.conv2dBackward(
                dy, input: x, weight: w, geometry, inputGradient: self.requiresGrad,
                weightGradient: weight.requiresGrad,
                precision: precision, inputGradientPrecision: inputPrecision)
            return [dx, dw]
        }
    }

    /// Batch normalisation with this batch's statistics; returns the output and the statistics the
    /// caller uses to update running estimates. With `relu`, ReLU of the output, forward and
    /// backward fused into batch norm's own passes (the same numbers as a separate ReLU).
    public func batchNormTraining(
        weight: Variable, bias: Variable, eps: Float, relu: Bool = false
    ) throws(TensorError) -> (Variable, BatchNormSaved) {
        let x = value
        let backend = x.backend
        let (y, saved) = try backend.batchNormTraining(x, weight: weight.value, bias: bias.value, eps: eps, relu: relu)
        let gamma = weight.value
        let result = Variable.result(y, [self, weight, bias]) { (dy) throws(TensorError) in
            let (dx, dGamma, dBeta) = try backend.batchNormBackward(
                dy, x, weight: gamma, saved: saved, reluOutput: relu ? y : nil)
            return [dx, dGamma, dBeta]
        }
        return (result, saved)
    }

    /// batch norm(self) + residual (with `relu`, its ReLU) with this batch's statistics, in one pass
    /// forward and one fewer backward (a residual block's end): the numbers of `batchNormTraining`
    /// then `+` (`addingReLU`). Backward adds the gradients the output received inside its first pass.
    public func batchNormTrainingAdding(
        weight: Variable, bias: Variable, eps: Float, residual: Variable, relu: Bool
    ) throws(TensorError) -> (Variable, BatchNormSaved) {
        let x = value
        let backend = x.backend
        let saved = try backend.batchNormSums(x, shift: nil).statistics(eps: eps)
        let y = try backend.batchNormNormalizeAdding(
            x, weight: weight.value, bias: bias.value, saved: saved, residual: residual.value, relu: relu)
        let gamma = weight.value
        let result = Variable.result(y, [self, weight, bias, residual]) { (gradients) throws(TensorError) in
            let (dx, dGamma, dBeta, dResidual) = try backend.batchNormAddingBackward(
                gradients, x, weight: gamma, saved: saved, reluOutput: relu ? y : nil)
            return [dx, dGamma, dBeta, dResidual]
        }
        return (result, saved)
    }

    /// Batch normalisation with statistics over the batches of all processes of `group`, as one
    /// batch of their union (PyTorch's SyncBatchNorm). Returns the saved statistics and the number
    /// of values per channel they cover. The weight's and bias's gradients are this process's
    /// (data-parallel training averages them with every other gradient); the input's gradient
    /// uses the sums over all processes.
    public func batchNormTrainingSynchronized(
        weight: Variable, bias: Variable, eps: Float, across group: any ProcessGroup
    ) throws(TensorError) -> (Variable, BatchNormSaved, count: Double) {
        let x = value
        let backend = x.backend
        // Every process shifts by rank 0's first values, which one process with the union batch
        // (rank 0's samples first) shifts by: then the sums add up to that process's, and with
        // one process this is plain batch norm, bit for bit.
        guard x.rank == 4, x.count > 0 else {
            throw .invalidShape(op: "batch_norm", shape: x.shape, reason: "input must be (N, C, H, W), N > 0")
        }
        let c = x.shape[1]
        var shift = x.firstValuePerChannel()
        try shift.withUnsafeMutableBufferPointer { (buffer) throws(TensorError) in try group.broadcast(buffer) }
        let local = try backend.batchNormSums(x, shift: try Tensor(shape: [shift.count], scalars: shift))
        var packed = local.packed
        try group.sum(&packed)
        let all = local.replacing(with: packed)
        let saved = try all.statistics(eps: eps)
        let count = all.count
        let y = try backend.batchNormNormalize(x, weight: weight.value, bias: bias.value, saved: saved)
        let gamma = weight.value
        let result = Variable.result(y, [self, weight, bias]) { (dy) throws(TensorError) in
            let (sumDy, sumDyCentered) = try backend.batchNormGradientSums(dy, x, mean: saved.mean)
            var total = sumDy + sumDyCentered
            try group.sum(&total)
            let dx = try backend.batchNormInputGradient(
                dy, x, weight: gamma, saved: saved, sumDy: Array(total[..<c]), sumDyCentered: Array(total[c...]),
                count: count)
            let invStd = saved.invStd.scalars
            let dGamma = try Tensor(shape: [c], scalars: (0..<c).map { Float(sumDyCentered[$0]) * invStd[$0] })
            return [dx, dGamma, try Tensor(shape: [c], scalars: sumDy.map { Float($0) })]
        }
        return (result, saved, count)
    }

    /// Batch normalisation with running statistics (evaluation mode).
    public func batchNormInference(
        weight: Variable, bias: Variable, runningMean: Tensor, runningVar: Tensor, eps: Float
    ) throws(TensorError) -> Variable {
        let x = value
        let backend = x.backend
        let y = try backend.batchNormInference(
            x, weight: weight.value, bias: bias.value, runningMean: runningMean, runningVar: runningVar, eps: eps)
        let gamma = weight.value
        return .result(y, [self, weight, bias]) { (dy) throws(TensorError) in
            let (dx, dGamma, dBeta) = try backend.batchNormFrozenBackward(
                dy, x, weight: gamma, runningMean: runningMean, runningVar: runningVar, eps: eps)
            return [dx, dGamma, dBeta]
        }
    }

    public func activation(_ kind: Activation) -> Variable {
        let x = value
        let backend = x.backend
        let y = backend.activation(kind, x)
        return .result(y, [self]) { dy in [backend.activationBackward(kind, dy, x: x, y: y)] }
    }

    public func relu() -> Variable { activation(.relu) }

    public func maxPool2d(kernel: Int = 3, stride: Int = 2, padding: Int = 1) throws(TensorError) -> Variable {
        let shape = value.shape
        let backend = value.backend
        guard GradientMode.isRecording, requiresGrad else {
            return Variable(try backend.maxPool2dValues(value, kernel: kernel, stride: stride, padding: padding))
        }
        let (y, argmax) = try backend.maxPool2d(value, kernel: kernel, stride: stride, padding: padding)
        return .result(y, [self]) { dy in [backend.maxPool2dBackward(dy, argmax: argmax, inputShape: shape)] }
    }

    /// (N, C, H, W) -> (N, C)
    public func globalAveragePool() throws(TensorError) -> Variable {
        let (shape, layout) = (value.shape, value.layout)
        let backend = value.backend
        let y = try backend.globalAveragePool(value)
        return .result(y, [self]) { dy in [backend.globalAveragePoolBackward(dy, inputShape: shape).inLayout(layout)] }
    }

    /// x (N, in) -> x w^T + b (N, out). In bf16 (`Precision.run`) the products' inputs are
    /// rounded to bfloat16 and summed in float32: the arithmetic of a bf16 matrix product, run
    /// by the float32 one (a classifier is a thousandth of a ResNet's work, not worth a kernel).
    /// The input gradient follows the scope's input-gradient precision.
    public func linear(_ weight: Variable, _ bias: Variable?) throws(TensorError) -> Variable {
        let (precision, inputPrecision) = (Precision.current, Precision.currentInputGradients)
        let (x, w, exactWeight) = (value.rounded(to: precision), weight.value.rounded(to: precision), weight.value)
        let backend = x.backend
        let y = try backend.linear(x, w, bias?.value)
        return .result(y, [self, weight] + (bias.map { [$0] } ?? [])) { dy in
            let (dx, dw, db) = backend.linearBackward(dy.rounded(to: precision), x, w)
            guard inputPrecision != precision else { return [dx, dw, db] }
            // A float32 input gradient (the only finer one): from the unrounded dy and weight. Its
            // second weight-gradient product is a classifier's, negligible.
            return [backend.linearBackward(dy, x, exactWeight).0, dw, db]
        }
    }

    /// Element-wise sum; `other` may broadcast over this variable's shape (see `BroadcastPattern`).
    public static func + (a: Variable, b: Variable) throws(TensorError) -> Variable {
        let backend = a.value.backend
        let y = try backend.add(a.value, b.value)
        let bShape = b.shape
        return .result(y, [a, b]) { (dy) throws(TensorError) in [dy, try backend.sum(dy, toShape: bShape)] }
    }

    /// relu(a + b) for variables of one shape, in one pass forward and one backward (a residual
    /// block's output): the numbers of `(a + b).relu()`.
    public func addingReLU(_ other: Variable) throws(TensorError) -> Variable {
        let backend = value.backend
        let y = try backend.addReLU(value, other.value)
        return .result(y, [self, other]) { dy in
            let gradient = backend.activationBackward(.relu, dy, x: y, y: y)
            return [gradient, gradient]
        }
    }

    /// Element-wise product; `other` may broadcast over this variable's shape.
    public static func * (a: Variable, b: Variable) throws(TensorError) -> Variable {
        let (av, bv) = (a.value, b.value)
        let backend = av.backend
        let y = try backend.multiply(av, bv)
        return .result(y, [a, b]) { (dy) throws(TensorError) in
            [
                a.requiresGrad ? try backend.multiply(dy, bv) : nil,
                b.requiresGrad ? try backend.sum(backend.multiply(dy, av), toShape: bv.shape) : nil,
            ]
        }
    }

    /// `self * mask` for a constant mask, with the gradient either passed straight through
    /// (not multiplied by the mask: SR-STE's and MaxQ's soft units) or masked (hard units).
    public func masked(by mask: Tensor, straightThrough: Bool) throws(TensorError) -> Variable {
        let backend = value.backend
        let y = try backend.multiply(value, mask)
        return .result(y, [self]) { (dy) throws(TensorError) in [straightThrough ? dy : try backend.multiply(dy, mask)]
        }
    }

    public func reshaped(_ shape: [Int]) throws(TensorError) -> Variable {
        let original = value.shape
        let y = try value.reshaped(shape)
        return .result(y, [self]) { (dy) throws(TensorError) in [try dy.reshaped(original)] }
    }

    /// Inverted dropout: zeroes each element with probability p and scales the rest by 1/(1-p).
    public func dropout(probability p: Float, generator: inout RandomGenerator) throws(TensorError) -> Variable {
        guard p >= 0, p < 1 else { throw .invalidArgument(op: "dropout", reason: "probability \(p) outside [0, 1)") }
        var keep = Tensor(zeros: value.shape)
        let scale = 1 / (1 - p)
        keep.withUnsafeMutableBufferPointer { k in
            for i in k.indices { k[i] = generator.uniform() >= p ? scale : 0 }
        }
        return try self * Variable(keep)
    }

    /// Mean label-smoothed cross-entropy of these logits (N, K): a scalar variable.
    public func crossEntropy(labels: [Int], labelSmoothing: Float = 0) throws(TensorError) -> Variable {
        let backend = value.backend
        let (loss, gradient) = try backend.crossEntropy(value, labels: labels, labelSmoothing: labelSmoothing)
        return .result(Tensor(scalar: loss), [self]) { dy in [backend.scale(gradient, by: dy.scalarValue)] }
    }
}
