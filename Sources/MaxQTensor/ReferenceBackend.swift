// The reference backend: every Backend kernel as plain loops over host memory (no SIMD, no
// threads, no oneDNN, no BLAS), the definitions the fast CPU kernels are checked against. Its
// outputs live on `Device.reference`, so a model moved there (`Layer.move(to:)`) trains on it
// end to end. Slow by design; for tests.
import Foundation

public final class ReferenceBackend: Backend, @unchecked Sendable {
    public static let shared = ReferenceBackend()
    public let name = "reference"

    private func output(_ shape: [Int]) -> Tensor { Tensor(zeros: shape).on(.reference) }

    private func map(_ x: Tensor, _ f: (Float) -> Float) -> Tensor {
        let y = output(x.shape)
        for i in 0..<x.count { y.mutablePointer[i] = f(x.pointer[i]) }
        return y
    }

    // MARK: convolution

    public func conv2d(_ x: Tensor, _ w: Tensor, _ g: Conv2dGeometry, precision: Precision) throws(TensorError)
        -> Tensor
    {
        try ReferenceKernels.conv2d(x.rounded(to: precision), w.rounded(to: precision), g).on(.reference)
    }

    public func conv2dInference(
        _ x: Tensor, _ w: Tensor, bias: Tensor, _ g: Conv2dGeometry, activation: Activation?, precision: Precision
    ) throws(TensorError) -> Tensor {
        let y = try conv2d(x, w, g, precision: precision)
        guard bias.count == y.shape[1] else { throw .shapeMismatch(op: "conv2d bias", y.shape, bias.shape) }
        let plane = y.shape[2] * y.shape[3]
        for i in 0..<y.count { y.mutablePointer[i] += bias.pointer[i / plane % y.shape[1]] }
        return activation.map { self.activation($0, y) } ?? y
    }

    public func conv2dBackwardInput(
        _ dy: Tensor, _ w: Tensor, inputShape: [Int], _ g: Conv2dGeometry, precision: Precision
    ) throws(TensorError) -> Tensor {
        try ReferenceKernels.conv2dBackwardInput(
            dy.rounded(to: precision), w.rounded(to: precision), inputShape: inputShape, g
        ).on(.reference)
    }

    public func conv2dBackwardWeight(
        _ dy: Tensor, _ x: Tensor, weightShape: [Int], _ g: Conv2dGeometry, precision: Precision
    ) throws(TensorError) -> Tensor {
        try ReferenceKernels.conv2dBackwardWeight(
            dy.rounded(to: precision), x.rounded(to: precision), weightShape: weightShape, g
        ).on(.reference)
    }

    // MARK: batch norm

    /// Per channel c, the flat indices of its elements in (N, C, H, W).
    private func channelIndices(_ shape: [Int], _ c: Int) -> [Int] {
        let (n, channels, plane) = (shape[0], shape[1], shape[2] * shape[3])
        var indices: [Int] = []
        for i in 0..<n {
            let start = (i * channels + c) * plane
            indices += start..<(start + plane)
        }
        return indices
    }

    public func batchNormSums(_ x: Tensor, shift: Tensor?) throws(TensorError) -> BatchNormSums {
        try CPUBackend.checkBatchNorm(x, shift.map { [$0] } ?? [])
        var sums = BatchNormSums(count: 0, shift: [], sum: [], squares: [])
        for c in 0..<x.shape[1] {
            let indices = channelIndices(x.shape, c)
            let s = shift.map { $0.pointer[c] } ?? indices.first.map { x.pointer[$0] } ?? 0
            let d = indices.map { Double(x.pointer[$0]) - Double(s) }
            sums.count = Double(indices.count)
            sums.shift.append(s)
            sums.sum.append(d.reduce(0, +))
            sums.squares.append(d.reduce(0) { $0 + $1 * $1 })
        }
        return sums
    }

    public func batchNormNormalize(_ x: Tensor, weight: Tensor, bias: Tensor, saved: BatchNormSaved, relu: Bool)
        throws(TensorError) -> Tensor
    {
        try CPUBackend.checkBatchNorm(x, [weight, bias, saved.mean, saved.invStd])
        let y = output(x.shape)
        for c in 0..<x.shape[1] {
            for i in channelIndices(x.shape, c) {
                y.mutablePointer[i] =
                    (x.pointer[i] - saved.mean.pointer[c]) * saved.invStd.pointer[c] * weight.pointer[c]
                    + bias.pointer[c]
            }
        }
        return relu ? activation(.relu, y) : y
    }

    public func batchNormInference(
        _ x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Float
    ) throws(TensorError) -> Tensor {
        try CPUBackend.checkBatchNorm(x, [weight, bias, runningMean, runningVar])
        let y = output(x.shape)
        for c in 0..<x.shape[1] {
            for i in channelIndices(x.shape, c) {
                y.mutablePointer[i] =
                    (x.pointer[i] - runningMean.pointer[c]) / (runningVar.pointer[c] + eps).squareRoot()
                    * weight.pointer[c] + bias.pointer[c]
            }
        }
        return y
    }

    public func batchNormNormalizeAdding(
        _ x: Tensor, weight: Tensor, bias: Tensor, saved: BatchNormSaved, residual: Tensor, relu: Bool
    ) throws(TensorError) -> Tensor {
        try composedBatchNormNormalizeAdding(
            x, weight: weight, bias: bias, saved: saved, residual: residual, relu: relu)
    }

    public func batchNormAddingBackward(
        _ gradients: [Tensor], _ x: Tensor, weight: Tensor, saved: BatchNormSaved, reluOutput: Tensor?
    ) throws(TensorError) -> (Tensor, Tensor, Tensor, Tensor) {
        try composedBatchNormAddingBackward(gradients, x, weight: weight, saved: saved, reluOutput: reluOutput)
    }

    public func batchNormBackward(
        _ dy: Tensor, _ x: Tensor, weight: Tensor, saved: BatchNormSaved, reluOutput: Tensor?
    ) throws(TensorError) -> (Tensor, Tensor, Tensor) {
        try CPUBackend.checkBatchNorm(x, [weight, saved.mean, saved.invStd])
        let dy = reluOutput.map { activationBackward(.relu, dy, x: $0, y: $0) } ?? dy
        let channels = x.shape[1]
        let (dx, dWeight, dBias) = (output(x.shape), output([channels]), output([channels]))
        for c in 0..<channels {
            let indices = channelIndices(x.shape, c)
            let (m, istd) = (Double(saved.mean.pointer[c]), Double(saved.invStd.pointer[c]))
            let xhat = indices.map { (Double(x.pointer[$0]) - m) * istd }
            let sumDy = indices.reduce(0.0) { $0 + Double(dy.pointer[$1]) }
            let sumDyXhat = zip(indices, xhat).reduce(0.0) { $0 + Double(dy.pointer[$1.0]) * $1.1 }
            let count = Double(indices.count)
            dBias.mutablePointer[c] = Float(sumDy)
            dWeight.mutablePointer[c] = Float(sumDyXhat)
            for (i, h) in zip(indices, xhat) {
                let d = Double(dy.pointer[i]) - sumDy / count - h * sumDyXhat / count
                dx.mutablePointer[i] = Float(Double(weight.pointer[c]) * istd * d)
            }
        }
        return (dx, dWeight, dBias)
    }

    public func batchNormGradientSums(_ dy: Tensor, _ x: Tensor, mean: Tensor) throws(TensorError) -> (
        sumDy: [Double], sumDyCentered: [Double]
    ) {
        try CPUBackend.checkBatchNorm(x, [mean])
        guard dy.shape == x.shape else { throw .shapeMismatch(op: "batch_norm backward", dy.shape, x.shape) }
        var sums: (sumDy: [Double], sumDyCentered: [Double]) = ([], [])
        for c in 0..<x.shape[1] {
            let indices = channelIndices(x.shape, c)
            sums.sumDy.append(indices.reduce(0.0) { $0 + Double(dy.pointer[$1]) })
            sums.sumDyCentered.append(
                indices.reduce(0.0) { $0 + Double(dy.pointer[$1]) * (Double(x.pointer[$1]) - Double(mean.pointer[c])) })
        }
        return sums
    }

    public func batchNormInputGradient(
        _ dy: Tensor, _ x: Tensor, weight: Tensor, saved: BatchNormSaved, sumDy: [Double], sumDyCentered: [Double],
        count: Double
    ) throws(TensorError) -> Tensor {
        try CPUBackend.checkBatchNorm(x, [weight, saved.mean, saved.invStd])
        guard dy.shape == x.shape, sumDy.count == x.shape[1], sumDyCentered.count == x.shape[1], count >= 1 else {
            throw .invalidArgument(op: "batch_norm backward", reason: "sums or count do not fit input \(x.shape)")
        }
        let dx = output(x.shape)
        for c in 0..<x.shape[1] {
            let (m, istd) = (Double(saved.mean.pointer[c]), Double(saved.invStd.pointer[c]))
            for i in channelIndices(x.shape, c) {
                let xhat = (Double(x.pointer[i]) - m) * istd
                let d = Double(dy.pointer[i]) - sumDy[c] / count - xhat * sumDyCentered[c] * istd / count
                dx.mutablePointer[i] = Float(Double(weight.pointer[c]) * istd * d)
            }
        }
        return dx
    }

    // MARK: pooling

    public func maxPool2d(_ x: Tensor, kernel: Int, stride: Int, padding: Int) throws(TensorError) -> (Tensor, [Int32])
    {
        guard x.rank == 4, kernel >= 1, stride >= 1, padding >= 0, padding * 2 <= kernel else {
            throw .invalidArgument(op: "max_pool2d", reason: "kernel \(kernel), stride \(stride), padding \(padding)")
        }
        let (h, w) = (x.shape[2], x.shape[3])
        let oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1
        guard oh > 0, ow > 0 else {
            throw .invalidShape(op: "max_pool2d", shape: x.shape, reason: "smaller than the kernel")
        }
        let y = output([x.shape[0], x.shape[1], oh, ow])
        var argmax = [Int32](repeating: 0, count: y.count)
        for p in 0..<(x.shape[0] * x.shape[1]) {
            for oy in 0..<oh {
                for ox in 0..<ow {
                    // The first maximum in row-major window order, as PyTorch.
                    var best = -Float.infinity, bestIndex = -1
                    for ky in 0..<kernel {
                        for kx in 0..<kernel {
                            let (iy, ix) = (oy * stride - padding + ky, ox * stride - padding + kx)
                            guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                            if bestIndex < 0 || x.pointer[p * h * w + iy * w + ix] > best {
                                (best, bestIndex) = (x.pointer[p * h * w + iy * w + ix], iy * w + ix)
                            }
                        }
                    }
                    y.mutablePointer[(p * oh + oy) * ow + ox] = best
                    argmax[(p * oh + oy) * ow + ox] = Int32(bestIndex)
                }
            }
        }
        return (y, argmax)
    }

    public func maxPool2dBackward(_ dy: Tensor, argmax: [Int32], inputShape: [Int]) -> Tensor {
        let dx = output(inputShape)
        let planes = inputShape[0] * inputShape[1], inPlane = inputShape[2] * inputShape[3]
        let outPlane = dy.count / max(planes, 1)
        for o in 0..<dy.count { dx.mutablePointer[o / outPlane * inPlane + Int(argmax[o])] += dy.pointer[o] }
        return dx
    }

    public func globalAveragePool(_ x: Tensor) throws(TensorError) -> Tensor {
        guard x.rank == 4 else {
            throw .invalidShape(op: "global_avg_pool", shape: x.shape, reason: "input must be (N, C, H, W)")
        }
        let plane = x.shape[2] * x.shape[3]
        let y = output([x.shape[0], x.shape[1]])
        for i in 0..<x.count { y.mutablePointer[i / plane] += x.pointer[i] / Float(plane) }
        return y
    }

    public func globalAveragePoolBackward(_ dy: Tensor, inputShape: [Int]) -> Tensor {
        let plane = inputShape[2] * inputShape[3]
        let dx = output(inputShape)
        for i in 0..<dx.count { dx.mutablePointer[i] = dy.pointer[i / plane] / Float(plane) }
        return dx
    }

    // MARK: point-wise

    public func activation(_ kind: Activation, _ x: Tensor) -> Tensor {
        switch kind {
        case .relu: map(x) { max($0, 0) }
        case .relu6: map(x) { min(max($0, 0), 6) }
        case .hardswish: map(x) { $0 * min(max($0 + 3, 0), 6) / 6 }
        case .hardsigmoid: map(x) { min(max($0 + 3, 0), 6) / 6 }
        case .sigmoid: map(x) { 1 / (1 + Foundation.exp(-$0)) }
        }
    }

    /// PyTorch's derivatives, with its choices at the kinks.
    public func activationBackward(_ kind: Activation, _ dy: Tensor, x: Tensor, y: Tensor) -> Tensor {
        let d = output(dy.shape)
        for i in 0..<dy.count {
            let (g, v, s) = (dy.pointer[i], x.pointer[i], y.pointer[i])
            d.mutablePointer[i] =
                switch kind {
                case .relu: v > 0 ? g : 0
                case .relu6: v > 0 && v < 6 ? g : 0
                case .hardswish: v <= -3 ? 0 : (v < 3 ? g * (v / 3 + 0.5) : g)
                case .hardsigmoid: v > -3 && v < 3 ? g / 6 : 0
                case .sigmoid: g * s * (1 - s)
                }
        }
        return d
    }

    private func broadcast(_ a: Tensor, _ b: Tensor, op: String, _ f: (Float, Float) -> Float) throws(TensorError)
        -> Tensor
    {
        let pattern = try BroadcastPattern(a.shape, b.shape, op: op)
        let y = output(a.shape)
        for i in 0..<a.count { y.mutablePointer[i] = f(a.pointer[i], b.pointer[i / pattern.inner % pattern.middle]) }
        return y
    }

    public func add(_ a: Tensor, _ b: Tensor) throws(TensorError) -> Tensor { try broadcast(a, b, op: "add", +) }
    public func addReLU(_ a: Tensor, _ b: Tensor) throws(TensorError) -> Tensor {
        guard a.shape == b.shape else { throw .shapeMismatch(op: "add_relu", a.shape, b.shape) }
        return activation(.relu, try add(a, b))
    }
    public func multiply(_ a: Tensor, _ b: Tensor) throws(TensorError) -> Tensor {
        try broadcast(a, b, op: "multiply", *)
    }

    public func sum(_ t: Tensor, toShape shape: [Int]) throws(TensorError) -> Tensor {
        let pattern = try BroadcastPattern(t.shape, shape, op: "sum")
        let y = output(shape)
        for i in 0..<t.count { y.mutablePointer[i / pattern.inner % pattern.middle] += t.pointer[i] }
        return y
    }

    public func scale(_ t: Tensor, by factor: Float) -> Tensor { map(t) { $0 * factor } }

    // MARK: linear and loss

    public func linear(_ x: Tensor, _ w: Tensor, _ bias: Tensor?) throws(TensorError) -> Tensor {
        guard x.rank == 2, w.rank == 2, x.shape[1] == w.shape[1] else {
            throw .shapeMismatch(op: "linear", x.shape, w.shape)
        }
        let (n, inputs, outputs) = (x.shape[0], x.shape[1], w.shape[0])
        let y = output([n, outputs])
        for i in 0..<n {
            for o in 0..<outputs {
                var s = bias?.pointer[o] ?? 0
                for k in 0..<inputs { s += x.pointer[i * inputs + k] * w.pointer[o * inputs + k] }
                y.mutablePointer[i * outputs + o] = s
            }
        }
        return y
    }

    public func linearBackward(_ dy: Tensor, _ x: Tensor, _ w: Tensor) -> (Tensor, Tensor, Tensor) {
        let (n, inputs, outputs) = (x.shape[0], x.shape[1], w.shape[0])
        let (dx, dw, dBias) = (output(x.shape), output(w.shape), output([outputs]))
        for i in 0..<n {
            for o in 0..<outputs {
                let g = dy.pointer[i * outputs + o]
                dBias.mutablePointer[o] += g
                for k in 0..<inputs {
                    dx.mutablePointer[i * inputs + k] += g * w.pointer[o * inputs + k]
                    dw.mutablePointer[o * inputs + k] += g * x.pointer[i * inputs + k]
                }
            }
        }
        return (dx, dw, dBias)
    }

    public func crossEntropy(_ logits: Tensor, labels: [Int], labelSmoothing eps: Float) throws(TensorError) -> (
        loss: Float, gradient: Tensor
    ) {
        guard logits.rank == 2, logits.shape[0] == labels.count,
            labels.allSatisfy({ (0..<logits.shape[1]).contains($0) }), eps >= 0, eps <= 1
        else { throw .shapeMismatch(op: "cross_entropy (logits vs labels)", logits.shape, [labels.count]) }
        let (n, k) = (logits.shape[0], logits.shape[1])
        let gradient = output(logits.shape)
        var total = 0.0
        for i in 0..<n {
            let row = (0..<k).map { Double(logits.pointer[i * k + $0]) }
            let logSumExp = Foundation.log(row.map { Foundation.exp($0) }.reduce(0, +))
            for j in 0..<k {
                let target = (j == labels[i] ? 1 - Double(eps) : 0) + Double(eps) / Double(k)
                total -= target * (row[j] - logSumExp)
                gradient.mutablePointer[i * k + j] = Float((Foundation.exp(row[j] - logSumExp) - target) / Double(n))
            }
        }
        return (Float(total / Double(n)), gradient)
    }

    // MARK: training state

    public func sgdStep(
        _ weight: inout Tensor, gradient: Tensor, momentumBuffer: inout Tensor?, learningRate: Float,
        momentum: Float, weightDecay: Float, nesterov: Bool
    ) throws(TensorError) {
        guard gradient.shape == weight.shape else { throw .shapeMismatch(op: "sgd", weight.shape, gradient.shape) }
        let d = map(gradient) { $0 }
        for i in 0..<d.count { d.mutablePointer[i] += weightDecay * weight.pointer[i] }
        let buffer = momentumBuffer.map { b in map(b) { momentum * $0 } } ?? output(weight.shape)
        for i in 0..<d.count { buffer.mutablePointer[i] += d.pointer[i] }
        let updated = map(weight) { $0 }
        for i in 0..<d.count {
            updated.mutablePointer[i] -=
                learningRate * (nesterov ? d.pointer[i] + momentum * buffer.pointer[i] : buffer.pointer[i])
        }
        (weight, momentumBuffer) = (updated, buffer)
    }

    public func updateRunningAverage(_ running: inout Tensor, toward batch: Tensor, momentum: Float, scale: Float)
        throws(TensorError)
    {
        guard batch.shape == running.shape else {
            throw .shapeMismatch(op: "running average", running.shape, batch.shape)
        }
        let updated = output(running.shape)
        for c in 0..<running.count {
            updated.mutablePointer[c] = (1 - momentum) * running.pointer[c] + momentum * batch.pointer[c] * scale
        }
        running = updated
    }

    public func srsteDecay(_ gradient: inout Tensor, weight: Tensor, mask: Tensor, lambda: Float) throws(TensorError) {
        guard weight.shape == gradient.shape, mask.shape == weight.shape else {
            throw .shapeMismatch(op: "SR-STE decay", weight.shape, mask.shape)
        }
        let updated = map(gradient) { $0 }
        for i in 0..<updated.count {
            updated.mutablePointer[i] += lambda * (1 - min(max(mask.pointer[i], 0), 1)) * weight.pointer[i]
        }
        gradient = updated
    }

    public func batchNormFolding(weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Float)
        throws(TensorError) -> (factor: Tensor, bias: Tensor)
    {
        try CPUBackend.checkPerChannel(weight.count, [bias, runningMean, runningVar])
        let (factor, folded) = (output([weight.count]), output([weight.count]))
        for c in 0..<weight.count {
            factor.mutablePointer[c] = weight.pointer[c] / (runningVar.pointer[c] + eps).squareRoot()
            folded.mutablePointer[c] = bias.pointer[c] - runningMean.pointer[c] * factor.pointer[c]
        }
        return (factor, folded)
    }

    public func batchNormFrozenBackward(
        _ dy: Tensor, _ x: Tensor, weight: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Float
    ) throws(TensorError) -> (Tensor, Tensor, Tensor) {
        try CPUBackend.checkBatchNorm(x, [weight, runningMean, runningVar])
        let channels = x.shape[1]
        let (dx, dWeight, dBias) = (output(x.shape), output([channels]), output([channels]))
        for c in 0..<channels {
            let istd = 1 / (runningVar.pointer[c] + eps).squareRoot()
            for i in channelIndices(x.shape, c) {
                dx.mutablePointer[i] = dy.pointer[i] * weight.pointer[c] * istd
                dBias.mutablePointer[c] += dy.pointer[i]
                dWeight.mutablePointer[c] += dy.pointer[i] * (x.pointer[i] - runningMean.pointer[c]) * istd
            }
        }
        return (dx, dWeight, dBias)
    }

    public func countZeros(_ t: Tensor) -> Int { (0..<t.count).filter { t.pointer[$0] == 0 }.count }

    public func topKAccuracy(_ logits: Tensor, labels: [Int], ks: [Int]) throws(TensorError) -> [Float] {
        guard logits.rank == 2, logits.shape[0] == labels.count else {
            throw .shapeMismatch(op: "top-k accuracy", logits.shape, [labels.count])
        }
        let (n, classes) = (logits.shape[0], logits.shape[1])
        return ks.map { k in
            let hits = (0..<n).filter { i in
                // Classes ranked by logit, ties towards the lower index; is the label in the first k?
                let order = (0..<classes).sorted {
                    (logits.pointer[i * classes + $0], -$0) > (logits.pointer[i * classes + $1], -$1)
                }
                return order.prefix(k).contains(labels[i])
            }
            return Float(hits.count) * 100 / Float(max(n, 1))
        }
    }
}
