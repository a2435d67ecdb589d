// BatchNorm2d kernels over NCHW: statistics per channel across (N, H, W), channels in parallel.
// Inner loops index row pointers (no per-element overflow checks, so they vectorise).
import Foundation

extension CPUBackend {
    static func checkBatchNorm(_ x: Tensor, _ perChannel: [Tensor]) throws(TensorError) {
        guard x.rank == 4 else {
            throw .invalidShape(op: "batch_norm", shape: x.shape, reason: "input must be (N, C, H, W)")
        }
        for t in perChannel where t.shape != [x.shape[1]] {
            throw .shapeMismatch(op: "batch_norm", x.shape, t.shape)
        }
    }

    public func batchNormTraining(
        _ x: Tensor, weight: Tensor, bias: Tensor, eps: Float
    ) throws(TensorError) -> (Tensor, BatchNormSaved) {
        try Self.checkBatchNorm(x, [weight, bias])
        let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        guard n * plane > 1 else {
            throw .invalidShape(
                op: "batch_norm", shape: x.shape, reason: "training needs more than one value per channel")
        }
        let y = Tensor(uninitializedShape: x.shape)
        let mean = Tensor(uninitializedShape: [c]), invStd = Tensor(uninitializedShape: [c])
        let variance = Tensor(uninitializedShape: [c])
        let (xp, yp, gp, bp) = (x.pointer, y.mutablePointer, weight.pointer, bias.pointer)
        let count = Double(n * plane)
        parallelRanges(c) { channels in
            for ch in channels {
                // Shifted sums in double precision: one pass, no cancellation for large means.
                let shift = xp[ch * plane]
                var sum = 0.0, sumSquares = 0.0
                for i in 0..<n {
                    let row = xp + (i * c + ch) * plane
                    var s: Float = 0, q: Float = 0
                    for j in 0..<plane {
                        let d = row[j] - shift
                        s += d
                        q += d * d
                    }
                    sum += Double(s)
                    sumSquares += Double(q)
                }
                let m = sum / count
                let v = max(sumSquares / count - m * m, 0)
                let istd = Float(1 / (v + Double(eps)).squareRoot())
                mean.mutablePointer[ch] = Float(m) + shift
                variance.mutablePointer[ch] = Float(v)
                invStd.mutablePointer[ch] = istd
                let a = gp[ch] * istd
                let b = bp[ch] - (Float(m) + shift) * a
                for i in 0..<n {
                    let offset = (i * c + ch) * plane
                    let (source, target) = (xp + offset, yp + offset)
                    for j in 0..<plane { target[j] = source[j] * a + b }
                }
            }
        }
        return (y, BatchNormSaved(mean: mean, invStd: invStd, variance: variance))
    }

    public func batchNormInference(
        _ x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Float
    ) throws(TensorError) -> Tensor {
        try Self.checkBatchNorm(x, [weight, bias, runningMean, runningVar])
        let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        let y = Tensor(uninitializedShape: x.shape)
        let (xp, yp) = (x.pointer, y.mutablePointer)
        parallelRanges(n * c) { rows in
            for r in rows {
                let ch = r % c
                let a = weight.pointer[ch] / (runningVar.pointer[ch] + eps).squareRoot()
                let b = bias.pointer[ch] - runningMean.pointer[ch] * a
                let (source, target) = (xp + r * plane, yp + r * plane)
                for j in 0..<plane { target[j] = source[j] * a + b }
            }
        }
        return y
    }

    public func batchNormBackward(
        _ dy: Tensor, _ x: Tensor, weight: Tensor, saved: BatchNormSaved
    ) throws(TensorError) -> (Tensor, Tensor, Tensor) {
        try Self.checkBatchNorm(x, [weight, saved.mean, saved.invStd])
        guard dy.shape == x.shape else { throw .shapeMismatch(op: "batch_norm backward", dy.shape, x.shape) }
        let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        let dx = Tensor(uninitializedShape: x.shape)
        let dWeight = Tensor(uninitializedShape: [c]), dBias = Tensor(uninitializedShape: [c])
        let (xp, dyp, dxp) = (x.pointer, dy.pointer, dx.mutablePointer)
        let count = Float(n * plane)
        parallelRanges(c) { channels in
            for ch in channels {
                let m = saved.mean.pointer[ch], istd = saved.invStd.pointer[ch]
                var sumDy = 0.0, sumDyXc = 0.0
                for i in 0..<n {
                    let offset = (i * c + ch) * plane
                    let (gradient, input) = (dyp + offset, xp + offset)
                    var s: Float = 0, q: Float = 0
                    for j in 0..<plane {
                        let g = gradient[j]
                        s += g
                        q += g * (input[j] - m)
                    }
                    sumDy += Double(s)
                    sumDyXc += Double(q)
                }
                dBias.mutablePointer[ch] = Float(sumDy)
                dWeight.mutablePointer[ch] = Float(sumDyXc) * istd
                // dx = gamma * istd * (dy - mean(dy) - xhat * mean(dy * xhat))
                let a = weight.pointer[ch] * istd
                let meanDy = Float(sumDy) / count
                let k = Float(sumDyXc) / count * istd * istd
                for i in 0..<n {
                    let offset = (i * c + ch) * plane
                    let (gradient, input, target) = (dyp + offset, xp + offset, dxp + offset)
                    for j in 0..<plane { target[j] = a * (gradient[j] - meanDy - (input[j] - m) * k) }
                }
            }
        }
        return (dx, dWeight, dBias)
    }
}
