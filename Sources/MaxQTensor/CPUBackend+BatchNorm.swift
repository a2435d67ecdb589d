// BatchNorm2d kernels over NCHW: statistics per channel across (N, H, W), channels in parallel.
// Inner loops index row pointers (no per-element overflow checks, so they vectorise). Channel-blocked
// inputs go to CPUBackend+BlockedBatchNorm.swift; every result keeps the input's layout.
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

    public func batchNormSums(_ x: Tensor, shift: Tensor?) throws(TensorError) -> BatchNormSums {
        try Self.checkBatchNorm(x, shift.map { [$0] } ?? [])
        if x.layout == .channelBlocked {
            return blockedBatchNormSums(x, shifts: shift?.scalars ?? x.firstValuePerChannel())
        }
        let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        var shifts = [Float](repeating: 0, count: c)
        var sums = [Double](repeating: 0, count: c), squares = [Double](repeating: 0, count: c)
        let xp = x.pointer
        for ch in 0..<c { shifts[ch] = shift.map { $0.pointer[ch] } ?? (n * plane > 0 ? xp[ch * plane] : 0) }
        shifts.withUnsafeBufferPointer { shiftBuffer in
            sums.withUnsafeMutableBufferPointer { sumBuffer in
                squares.withUnsafeMutableBufferPointer { squareBuffer in
                    let (shiftAt, sumAt) = (UncheckedFloats(shiftBuffer), UncheckedDoubles(sumBuffer))
                    let squareAt = UncheckedDoubles(squareBuffer)
                    parallelRanges(c) { channels in
                        for ch in channels {
                            (sumAt.pointer[ch], squareAt.pointer[ch]) = Self.shiftedSums(
                                xp, n: n, c: c, plane: plane, channel: ch, shift: shiftAt.pointer[ch])
                        }
                    }
                }
            }
        }
        return BatchNormSums(count: Double(n * plane), shift: shifts, sum: sums, squares: squares)
    }

    public func batchNormNormalize(_ x: Tensor, weight: Tensor, bias: Tensor, saved: BatchNormSaved, relu: Bool)
        throws(TensorError) -> Tensor
    {
        try Self.checkBatchNorm(x, [weight, bias, saved.mean, saved.invStd])
        if x.layout == .channelBlocked {
            return blockedBatchNormNormalize(x, weight: weight, bias: bias, saved: saved, relu: relu)
        }
        let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        let y = Tensor(uninitializedShape: x.shape)
        let (xp, yp, gp, bp) = (x.pointer, y.mutablePointer, weight.pointer, bias.pointer)
        let (mean, invStd) = (saved.mean.pointer, saved.invStd.pointer)
        parallelRanges(n * c, grain: max(1, 4096 / max(plane, 1))) { rows in
            for r in rows {
                let ch = r % c
                let a = gp[ch] * invStd[ch]
                let b = bp[ch] - mean[ch] * a
                let (source, target) = (xp + r * plane, yp + r * plane)
                if relu {
                    for j in 0..<plane { target[j] = max(source[j] * a + b, 0) }
                } else {
                    for j in 0..<plane { target[j] = source[j] * a + b }
                }
            }
        }
        return y
    }

    public func batchNormNormalizeAdding(
        _ x: Tensor, weight: Tensor, bias: Tensor, saved: BatchNormSaved, residual: Tensor, relu: Bool
    ) throws(TensorError) -> Tensor {
        try Self.checkBatchNorm(x, [weight, bias, saved.mean, saved.invStd])
        guard residual.shape == x.shape else {
            throw .shapeMismatch(op: "batch_norm + add", x.shape, residual.shape)
        }
        guard x.layout == .channelBlocked else {
            return try composedBatchNormNormalizeAdding(
                x, weight: weight, bias: bias, saved: saved, residual: residual, relu: relu)
        }
        return blockedBatchNormNormalize(
            x, weight: weight, bias: bias, saved: saved, relu: relu, residual: residual.inLayout(.channelBlocked))
    }

    public func batchNormAddingBackward(
        _ gradients: [Tensor], _ x: Tensor, weight: Tensor, saved: BatchNormSaved, reluOutput: Tensor?
    ) throws(TensorError) -> (Tensor, Tensor, Tensor, Tensor) {
        try Self.checkBatchNorm(x, [weight, saved.mean, saved.invStd])
        for t in gradients + (reluOutput.map { [$0] } ?? []) where t.shape != x.shape {
            throw .shapeMismatch(op: "batch_norm + add backward", t.shape, x.shape)
        }
        guard x.layout == .channelBlocked, let last = gradients.last else {
            return try composedBatchNormAddingBackward(
                gradients, x, weight: weight, saved: saved, reluOutput: reluOutput)
        }
        // All but the last gradient are added first; the kernel adds the last in its first pass.
        let (dy, addend) = gradients.count > 1 ? (try sum(of: Array(gradients.dropLast())), last) : (last, nil)
        return blockedBatchNormAddingBackward(
            dy.inLayout(.channelBlocked), addend?.inLayout(.channelBlocked), x, weight: weight, saved: saved,
            reluOutput: reluOutput?.inLayout(.channelBlocked))
    }

    public func batchNormInference(
        _ x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Float
    ) throws(TensorError) -> Tensor {
        try Self.checkBatchNorm(x, [weight, bias, runningMean, runningVar])
        let x = x.inNCHW()
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
        withExtendedLifetime(x) {}  // a converted `x` lives until the loop has read it
        return y
    }

    public func batchNormBackward(
        _ dy: Tensor, _ x: Tensor, weight: Tensor, saved: BatchNormSaved, reluOutput: Tensor?
    ) throws(TensorError) -> (Tensor, Tensor, Tensor) {
        try Self.checkBatchNorm(x, [weight, saved.mean, saved.invStd])
        guard dy.shape == x.shape else { throw .shapeMismatch(op: "batch_norm backward", dy.shape, x.shape) }
        if let reluOutput, reluOutput.shape != x.shape {
            throw .shapeMismatch(op: "batch_norm backward", reluOutput.shape, x.shape)
        }
        let (dy, reluOutput) = (dy.inLayout(x.layout), reluOutput?.inLayout(x.layout))
        if x.layout == .channelBlocked {
            return blockedBatchNormBackward(dy, x, weight: weight, saved: saved, reluOutput: reluOutput)
        }
        let gate = reluOutput?.pointer
        let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        let dx = Tensor(uninitializedShape: x.shape)
        let dWeight = Tensor(uninitializedShape: [c]), dBias = Tensor(uninitializedShape: [c])
        let (xp, dyp, dxp) = (x.pointer, dy.pointer, dx.mutablePointer)
        let count = Float(n * plane)
        parallelRanges(c) { channels in
            for ch in channels {
                let m = saved.mean.pointer[ch], istd = saved.invStd.pointer[ch]
                let (sumDy, sumDyXc) = Self.gradientSums(
                    dyp, xp, n: n, c: c, plane: plane, channel: ch, mean: m, gate: gate)
                dBias.mutablePointer[ch] = Float(sumDy)
                dWeight.mutablePointer[ch] = Float(sumDyXc) * istd
                Self.writeInputGradient(
                    dxp, dyp, xp, n: n, c: c, plane: plane, channel: ch, mean: m, invStd: istd,
                    weight: weight.pointer[ch], meanDy: Float(sumDy) / count, meanDyXc: Float(sumDyXc) / count,
                    gate: gate)
            }
        }
        withExtendedLifetime((dy, reluOutput)) {}  // converted ones live until the loop has read them
        return (dx, dWeight, dBias)
    }

    // MARK: backward across processes (synchronised batch norm)

    public func batchNormGradientSums(_ dy: Tensor, _ x: Tensor, mean: Tensor) throws(TensorError) -> (
        sumDy: [Double], sumDyCentered: [Double]
    ) {
        try Self.checkBatchNorm(x, [mean])
        guard dy.shape == x.shape else { throw .shapeMismatch(op: "batch_norm backward", dy.shape, x.shape) }
        let dy = dy.inLayout(x.layout)
        if x.layout == .channelBlocked { return blockedBatchNormGradientSums(dy, x, mean: mean) }
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
        withExtendedLifetime(dy) {}  // a converted `dy` lives until the loop has read it
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
        let dy = dy.inLayout(x.layout)
        if x.layout == .channelBlocked {
            return blockedBatchNormInputGradient(
                dy, x, weight: weight, saved: saved, sumDy: sumDy, sumDyCentered: sumDyCentered, count: count)
        }
        let dx = Tensor(uninitializedShape: x.shape)
        let (xp, dyp, dxp) = (x.pointer, dy.pointer, dx.mutablePointer)
        parallelRanges(c) { channels in
            for ch in channels {
                Self.writeInputGradient(
                    dxp, dyp, xp, n: n, c: c, plane: plane, channel: ch, mean: saved.mean.pointer[ch],
                    invStd: saved.invStd.pointer[ch], weight: weight.pointer[ch],
                    meanDy: Float(sumDy[ch]) / Float(count), meanDyXc: Float(sumDyCentered[ch]) / Float(count))
            }
        }
        withExtendedLifetime(dy) {}  // a converted `dy` lives until the loop has read it
        return dx
    }

    // MARK: one channel's loops

    /// Sums of one channel's x - shift and of its squares: in float along each row (one sample),
    /// in double across rows. The shift (the channel's first value) avoids cancellation.
    @inline(__always)
    static func shiftedSums(
        _ xp: UnsafePointer<Float>, n: Int, c: Int, plane: Int, channel ch: Int, shift: Float
    ) -> (sum: Double, squares: Double) {
        var sum = 0.0, sumSquares = 0.0
        for i in 0..<n {
            let (s, q) = rowSums(xp + (i * c + ch) * plane, nil, count: plane, offset: shift)
            sum += Double(s)
            sumSquares += Double(q)
        }
        return (sum, sumSquares)
    }

    /// (sum of g, sum of g * (x - mean)) of one channel, g = dy, or with `gate` (a ReLU's output)
    /// dy where the gate is positive and 0 elsewhere.
    @inline(__always)
    static func gradientSums(
        _ dyp: UnsafePointer<Float>, _ xp: UnsafePointer<Float>, n: Int, c: Int, plane: Int, channel ch: Int,
        mean m: Float, gate: UnsafePointer<Float>? = nil
    ) -> (Double, Double) {
        var sumDy = 0.0, sumDyXc = 0.0
        for i in 0..<n {
            let offset = (i * c + ch) * plane
            let (s, q) = rowSums(dyp + offset, xp + offset, gate: gate.map { $0 + offset }, count: plane, offset: m)
            sumDy += Double(s)
            sumDyXc += Double(q)
        }
        return (sumDy, sumDyXc)
    }

    /// Over one row: without `other`, (sum of d, sum of d * d) for d = a - offset; with it,
    /// (sum of g, sum of g * (other - offset)) for g = a, or with `gate`, a where the gate is
    /// positive and 0 elsewhere (ReLU's gradient). Sixteen partial sums: a single float
    /// accumulator would wait on each addition's latency (Swift does not reassociate).
    @inline(__always)
    static func rowSums(
        _ a: UnsafePointer<Float>, _ other: UnsafePointer<Float>?, gate: UnsafePointer<Float>? = nil, count: Int,
        offset: Float
    ) -> (Float, Float) {
        typealias Lanes = SIMD16<Float>
        let width = Lanes.scalarCount
        @inline(__always) func load(_ p: UnsafePointer<Float>, _ j: Int) -> Lanes {
            UnsafeRawPointer(p + j).loadUnaligned(as: Lanes.self)
        }
        var first = Lanes(), second = Lanes()
        var j = 0
        switch (other, gate) {
        case (let other?, let gate?):
            while j + width <= count {
                let g = load(a, j).replacing(with: 0, where: .!(load(gate, j) .> 0))
                first += g
                second += g * (load(other, j) - offset)
                j += width
            }
        case (let other?, nil):
            while j + width <= count {
                let g = load(a, j)
                first += g
                second += g * (load(other, j) - offset)
                j += width
            }
        default:
            while j + width <= count {
                let d = load(a, j) - offset
                first += d
                second += d * d
                j += width
            }
        }
        var (s, q) = (first.sum(), second.sum())
        while j < count {
            if let other {
                let g = gate.map { $0[j] > 0 ? a[j] : 0 } ?? a[j]
                s += g
                q += g * (other[j] - offset)
            } else {
                let d = a[j] - offset
                s += d
                q += d * d
            }
            j += 1
        }
        return (s, q)
    }

    /// dx = gamma * istd * (dy - mean(dy) - xhat * mean(dy * xhat)) for one channel.
    /// With `gate`, dy is taken as 0 where the gate is not positive (as in `gradientSums`).
    @inline(__always)
    static func writeInputGradient(
        _ dxp: UnsafeMutablePointer<Float>, _ dyp: UnsafePointer<Float>, _ xp: UnsafePointer<Float>, n: Int, c: Int,
        plane: Int, channel ch: Int, mean m: Float, invStd istd: Float, weight: Float, meanDy: Float, meanDyXc: Float,
        gate: UnsafePointer<Float>? = nil
    ) {
        let a = weight * istd
        let k = meanDyXc * istd * istd
        for i in 0..<n {
            let offset = (i * c + ch) * plane
            let (gradient, input, target) = (dyp + offset, xp + offset, dxp + offset)
            if let gate = gate.map({ $0 + offset }) {
                // In vectors: a per-element branch on the gate's sign mispredicts half the time.
                typealias Lanes = SIMD16<Float>
                var j = 0
                while j + Lanes.scalarCount <= plane {
                    let g = UnsafeRawPointer(gradient + j).loadUnaligned(as: Lanes.self)
                        .replacing(with: 0, where: .!(UnsafeRawPointer(gate + j).loadUnaligned(as: Lanes.self) .> 0))
                    let centered = UnsafeRawPointer(input + j).loadUnaligned(as: Lanes.self) - m
                    UnsafeMutableRawPointer(target + j).storeBytes(
                        of: a * (g - meanDy - centered * k), as: Lanes.self)
                    j += Lanes.scalarCount
                }
                for t in j..<plane {
                    let g = gate[t] > 0 ? gradient[t] : 0
                    target[t] = a * (g - meanDy - (input[t] - m) * k)
                }
            } else {
                for j in 0..<plane { target[j] = a * (gradient[j] - meanDy - (input[j] - m) * k) }
            }
        }
    }
}

/// A buffer of doubles that parallel workers write at disjoint indices.
struct UncheckedDoubles: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Double>
    init(_ buffer: UnsafeMutableBufferPointer<Double>) { pointer = buffer.baseAddress! }
}

/// Floats that parallel workers read.
struct UncheckedFloats: @unchecked Sendable {
    let pointer: UnsafePointer<Float>
    init(_ buffer: UnsafeBufferPointer<Float>) { pointer = buffer.baseAddress! }
}
