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
                let (shift, sum, sumSquares) = Self.shiftedSums(xp, n: n, c: c, plane: plane, channel: ch)
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
                let (sumDy, sumDyXc) = Self.gradientSums(dyp, xp, n: n, c: c, plane: plane, channel: ch, mean: m)
                dBias.mutablePointer[ch] = Float(sumDy)
                dWeight.mutablePointer[ch] = Float(sumDyXc) * istd
                Self.writeInputGradient(
                    dxp, dyp, xp, n: n, c: c, plane: plane, channel: ch, mean: m, invStd: istd,
                    weight: weight.pointer[ch], meanDy: Float(sumDy) / count, meanDyXc: Float(sumDyXc) / count)
            }
        }
        return (dx, dWeight, dBias)
    }

    // MARK: statistics across processes (synchronised batch norm)

    public func batchNormMoments(_ x: Tensor) throws(TensorError) -> BatchNormMoments {
        try Self.checkBatchNorm(x, [])
        let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        let count = Double(n * plane)
        var mean = [Double](repeating: 0, count: c), squares = [Double](repeating: 0, count: c)
        let xp = x.pointer
        mean.withUnsafeMutableBufferPointer { meanBuffer in
            squares.withUnsafeMutableBufferPointer { squaresBuffer in
                let (means, deviations) = (UncheckedDoubles(meanBuffer), UncheckedDoubles(squaresBuffer))
                parallelRanges(c) { channels in
                    for ch in channels {
                        let (shift, sum, sumSquares) = Self.shiftedSums(xp, n: n, c: c, plane: plane, channel: ch)
                        let m = sum / count
                        means.pointer[ch] = m + Double(shift)
                        deviations.pointer[ch] = max(sumSquares - sum * m, 0)
                    }
                }
            }
        }
        return BatchNormMoments(count: count, mean: mean, squaredDeviations: squares)
    }

    public func batchNormGradientSums(_ dy: Tensor, _ x: Tensor, mean: Tensor) throws(TensorError) -> (
        sumDy: [Double], sumDyCentered: [Double]
    ) {
        try Self.checkBatchNorm(x, [mean])
        guard dy.shape == x.shape else { throw .shapeMismatch(op: "batch_norm backward", dy.shape, x.shape) }
        let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        var sumDy = [Double](repeating: 0, count: c), sumDyXc = [Double](repeating: 0, count: c)
        let (xp, dyp) = (x.pointer, dy.pointer)
        sumDy.withUnsafeMutableBufferPointer { dyBuffer in
            sumDyXc.withUnsafeMutableBufferPointer { centeredBuffer in
                let (plain, centered) = (UncheckedDoubles(dyBuffer), UncheckedDoubles(centeredBuffer))
                parallelRanges(c) { channels in
                    for ch in channels {
                        (plain.pointer[ch], centered.pointer[ch]) = Self.gradientSums(
                            dyp, xp, n: n, c: c, plane: plane, channel: ch, mean: mean.pointer[ch])
                    }
                }
            }
        }
        return (sumDy, sumDyXc)
    }

    public func batchNormInputGradient(
        _ dy: Tensor, _ x: Tensor, weight: Tensor, saved: BatchNormSaved, sumDy: [Double], sumDyCentered: [Double],
        count: Double
    ) throws(TensorError) -> Tensor {
        try Self.checkBatchNorm(x, [weight, saved.mean, saved.invStd])
        let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        guard dy.shape == x.shape, sumDy.count == c, sumDyCentered.count == c, count >= 1 else {
            throw .invalidArgument(op: "batch_norm backward", reason: "sums or count do not fit input \(x.shape)")
        }
        let dx = Tensor(uninitializedShape: x.shape)
        let (xp, dyp, dxp) = (x.pointer, dy.pointer, dx.mutablePointer)
        parallelRanges(c) { channels in
            for ch in channels {
                Self.writeInputGradient(
                    dxp, dyp, xp, n: n, c: c, plane: plane, channel: ch, mean: saved.mean.pointer[ch],
                    invStd: saved.invStd.pointer[ch], weight: weight.pointer[ch],
                    meanDy: Float(sumDy[ch] / count), meanDyXc: Float(sumDyCentered[ch] / count))
            }
        }
        return dx
    }

    // MARK: one channel's loops

    /// Sums of one channel in double precision, shifted by its first value (one pass, no
    /// cancellation for large means): (shift, sum of x - shift, sum of its squares).
    @inline(__always)
    static func shiftedSums(
        _ xp: UnsafePointer<Float>, n: Int, c: Int, plane: Int, channel ch: Int
    ) -> (shift: Float, sum: Double, squares: Double) {
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
        return (shift, sum, sumSquares)
    }

    /// (sum of dy, sum of dy * (x - mean)) of one channel.
    @inline(__always)
    static func gradientSums(
        _ dyp: UnsafePointer<Float>, _ xp: UnsafePointer<Float>, n: Int, c: Int, plane: Int, channel ch: Int,
        mean m: Float
    ) -> (Double, Double) {
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
        return (sumDy, sumDyXc)
    }

    /// dx = gamma * istd * (dy - mean(dy) - xhat * mean(dy * xhat)) for one channel.
    @inline(__always)
    static func writeInputGradient(
        _ dxp: UnsafeMutablePointer<Float>, _ dyp: UnsafePointer<Float>, _ xp: UnsafePointer<Float>, n: Int, c: Int,
        plane: Int, channel ch: Int, mean m: Float, invStd istd: Float, weight: Float, meanDy: Float, meanDyXc: Float
    ) {
        let a = weight * istd
        let k = meanDyXc * istd * istd
        for i in 0..<n {
            let offset = (i * c + ch) * plane
            let (gradient, input, target) = (dyp + offset, xp + offset, dxp + offset)
            for j in 0..<plane { target[j] = a * (gradient[j] - meanDy - (input[j] - m) * k) }
        }
    }
}

/// A buffer of doubles that parallel workers write at disjoint indices.
struct UncheckedDoubles: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Double>
    init(_ buffer: UnsafeMutableBufferPointer<Double>) { pointer = buffer.baseAddress! }
}
