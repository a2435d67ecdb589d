// Batch norm over channel-blocked activations (ChannelBlocks.swift): the arithmetic of
// CPUBackend+BatchNorm.swift with sixteen channels per vector, one lane each, so that a block of
// channels is one pass over contiguous memory. Sums are in float over one sample's pixels (four
// partial sums per channel) and in double across samples, as in NCHW.

extension CPUBackend {
    typealias ChannelLanes = SIMD16<Float>

    /// (samples, channel blocks, pixels per channel plane) of a blocked (N, C, H, W) tensor.
    static func blocks(of x: Tensor) -> (n: Int, blocks: Int, plane: Int) {
        (x.shape[0], x.shape[1] / TensorLayout.blockWidth, x.shape[2] * x.shape[3])
    }

    /// The per-channel values of block `block` as one vector.
    @inline(__always)
    static func lanes(_ values: UnsafePointer<Float>, block: Int) -> ChannelLanes {
        UnsafeRawPointer(values + block * TensorLayout.blockWidth).loadUnaligned(as: ChannelLanes.self)
    }

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>, _ pixel: Int) -> ChannelLanes {
        UnsafeRawPointer(p + pixel * TensorLayout.blockWidth).loadUnaligned(as: ChannelLanes.self)
    }

    /// Where a gradient pass reads its gradient g: `a`, plus `addend` where given, then 0 where `gate`
    /// (where given) is not positive; `written`, where given, receives g.
    struct GradientSource {
        var a: UnsafePointer<Float>
        var addend: UnsafePointer<Float>? = nil
        var gate: UnsafePointer<Float>? = nil
        var written: UnsafeMutablePointer<Float>? = nil

        /// The same places `start` values further on.
        @inline(__always) func advanced(by start: Int) -> GradientSource {
            GradientSource(
                a: a + start, addend: addend.map { $0 + start }, gate: gate.map { $0 + start },
                written: written.map { $0 + start })
        }

        @inline(__always) func gradient(_ pixel: Int) -> ChannelLanes {
            var g = load(a, pixel)
            if let addend { g += load(addend, pixel) }
            if let gate { g = g.replacing(with: 0, where: .!(load(gate, pixel) .> 0)) }
            if let written {
                UnsafeMutableRawPointer(written + pixel * TensorLayout.blockWidth).storeBytes(
                    of: g, as: ChannelLanes.self)
            }
            return g
        }
    }

    /// Over one sample's block of `pixels` pixels, per channel: without `other`, (sum of d, sum of
    /// d * d) for d = a - offset; with it, (sum of g, sum of g * (other - offset)) for the gradient g
    /// of `source` (`GradientSource`). Four partial sums per channel, so that additions do not wait
    /// on each other's latency.
    @inline(__always)
    static func blockSums(
        _ source: GradientSource, _ other: UnsafePointer<Float>?, pixels: Int, offset: ChannelLanes
    ) -> (ChannelLanes, ChannelLanes) {
        var first = (ChannelLanes(), ChannelLanes(), ChannelLanes(), ChannelLanes())
        var second = first
        @inline(__always) func term(_ j: Int) -> (ChannelLanes, ChannelLanes) {
            guard let other else {
                let d = load(source.a, j) - offset
                return (d, d * d)
            }
            let g = source.gradient(j)
            return (g, g * (load(other, j) - offset))
        }
        var j = 0
        while j + 4 <= pixels {
            let (s0, q0) = term(j), (s1, q1) = term(j + 1), (s2, q2) = term(j + 2), (s3, q3) = term(j + 3)
            first.0 += s0
            first.1 += s1
            first.2 += s2
            first.3 += s3
            second.0 += q0
            second.1 += q1
            second.2 += q2
            second.3 += q3
            j += 4
        }
        while j < pixels {
            let (s, q) = term(j)
            first.0 += s
            second.0 += q
            j += 1
        }
        return ((first.0 + first.1) + (first.2 + first.3), (second.0 + second.1) + (second.2 + second.3))
    }

    /// `blockSums` of block `block` over every sample, added in double per channel into
    /// `sums[block * 16 ..< block * 16 + 16]` and likewise `squares`.
    @inline(__always)
    static func blockSumsOverSamples(
        _ source: GradientSource, _ other: UnsafePointer<Float>?,
        geometry: (n: Int, blocks: Int, plane: Int), block: Int, offset: ChannelLanes,
        into sums: UnsafeMutablePointer<Double>, _ squares: UnsafeMutablePointer<Double>
    ) {
        let (n, blocks, plane) = geometry
        let width = TensorLayout.blockWidth
        for lane in 0..<width { (sums[block * width + lane], squares[block * width + lane]) = (0, 0) }
        for i in 0..<n {
            let start = (i * blocks + block) * plane * width
            let (s, q) = blockSums(
                source.advanced(by: start), other.map { $0 + start }, pixels: plane, offset: offset)
            for lane in 0..<width {
                sums[block * width + lane] += Double(s[lane])
                squares[block * width + lane] += Double(q[lane])
            }
        }
    }

    func blockedBatchNormSums(_ x: Tensor, shifts: [Float]) -> BatchNormSums {
        let geometry = Self.blocks(of: x)
        let c = x.shape[1]
        var sums = [Double](repeating: 0, count: c), squares = [Double](repeating: 0, count: c)
        let xp = x.pointer
        shifts.withUnsafeBufferPointer { shiftBuffer in
            sums.withUnsafeMutableBufferPointer { sumBuffer in
                squares.withUnsafeMutableBufferPointer { squareBuffer in
                    let (shiftAt, sumAt) = (UncheckedFloats(shiftBuffer), UncheckedDoubles(sumBuffer))
                    let squareAt = UncheckedDoubles(squareBuffer)
                    parallelRanges(geometry.blocks) { blocks in
                        for block in blocks {
                            Self.blockSumsOverSamples(
                                GradientSource(a: xp), nil, geometry: geometry, block: block,
                                offset: Self.lanes(shiftAt.pointer, block: block), into: sumAt.pointer, squareAt.pointer
                            )
                        }
                    }
                }
            }
        }
        return BatchNormSums(
            count: Double(geometry.n * geometry.plane), shift: shifts, sum: sums, squares: squares)
    }

    /// With `residual` (blocked): normalized + residual, with `relu` max(that, 0) as `addReLU` computes it.
    func blockedBatchNormNormalize(
        _ x: Tensor, weight: Tensor, bias: Tensor, saved: BatchNormSaved, relu: Bool, residual: Tensor? = nil
    ) -> Tensor {
        let (n, blocks, plane) = Self.blocks(of: x)
        let y = Tensor(uninitializedShape: x.shape, layout: .channelBlocked)
        let (xp, yp, rp) = (x.pointer, y.mutablePointer, residual?.pointer)
        let (gamma, beta, mean, invStd) = (weight.pointer, bias.pointer, saved.mean.pointer, saved.invStd.pointer)
        let width = TensorLayout.blockWidth
        // With its ReLU or a residual (a block's output), the output is a convolution's input.
        let rounded = relu || residual != nil ? BFloat16CopyWriter(for: y) : nil
        parallelRanges(n * blocks, grain: max(1, 256 / max(plane, 1))) { units in
            for unit in units {
                let block = unit % blocks
                let a = Self.lanes(gamma, block: block) * Self.lanes(invStd, block: block)
                let b = Self.lanes(beta, block: block) - Self.lanes(mean, block: block) * a
                let (source, target) = (xp + unit * plane * width, yp + unit * plane * width)
                let added = rp.map { $0 + unit * plane * width }
                for j in 0..<plane {
                    var v = Self.load(source, j) * a + b
                    if let added {
                        v += Self.load(added, j)
                        // Swift's max(v, 0), as addReLU: +0 for -0, NaN kept.
                        if relu { v = v.replacing(with: 0, where: v .<= 0) }
                    } else if relu {
                        v = v.replacing(with: 0, where: v .< 0)
                    }
                    UnsafeMutableRawPointer(target + j * width).storeBytes(of: v, as: ChannelLanes.self)
                }
                rounded?.round(unit * plane * width..<(unit + 1) * plane * width)
            }
        }
        return y
    }

    /// dx = gamma * istd * (g - mean(g) - (x - mean) * istd^2 * mean(g * (x - mean))) for block
    /// `block` of every sample, g = dy, or dy where `gate` is positive and 0 elsewhere.
    @inline(__always)
    static func writeBlockedInputGradient(
        _ dxp: UnsafeMutablePointer<Float>, _ dyp: UnsafePointer<Float>, _ xp: UnsafePointer<Float>,
        gate: UnsafePointer<Float>?, geometry: (n: Int, blocks: Int, plane: Int), block: Int,
        a: ChannelLanes, mean: ChannelLanes, meanDy: ChannelLanes, k: ChannelLanes, rounded: BFloat16CopyWriter?
    ) {
        let (n, blocks, plane) = geometry
        let width = TensorLayout.blockWidth
        // A chunk of pixels at a time, rounded into the copy while in cache. Where the float32 values
        // are deferred, the chunk goes to a small buffer instead of the output.
        let deferred = rounded?.defersFloat32Values == true
        let chunk = 128
        withUnsafeTemporaryAllocation(of: Float.self, capacity: deferred ? chunk * width : 1) { scratch in
            for i in 0..<n {
                let start = (i * blocks + block) * plane * width
                for first in stride(from: 0, to: plane, by: chunk) {
                    let end = min(plane, first + chunk)
                    let out = deferred ? scratch.baseAddress! : dxp + start + first * width
                    for j in first..<end {
                        var g = load(dyp + start, j)
                        if let gate { g = g.replacing(with: 0, where: .!(load(gate + start, j) .> 0)) }
                        let centered = load(xp + start, j) - mean
                        UnsafeMutableRawPointer(out + (j - first) * width).storeBytes(
                            of: a * (g - meanDy - centered * k), as: ChannelLanes.self)
                    }
                    rounded?.round(UnsafePointer(out), count: (end - first) * width, at: start + first * width)
                }
            }
        }
    }

    /// `sums`: the gradient sums of dy (gated by `reluOutput`) when the caller already has them.
    func blockedBatchNormBackward(
        _ dy: Tensor, _ x: Tensor, weight: Tensor, saved: BatchNormSaved, reluOutput: Tensor? = nil,
        sums: (sumDy: [Double], sumDyCentered: [Double])? = nil
    ) -> (Tensor, Tensor, Tensor) {
        let (sumDy, sumDyXc) = sums ?? blockedBatchNormGradientSums(dy, x, mean: saved.mean, gate: reluOutput)
        let invStd = saved.invStd.scalars
        let dWeight = try! Tensor(shape: [sumDy.count], scalars: sumDy.indices.map { Float(sumDyXc[$0]) * invStd[$0] })
        let dBias = try! Tensor(shape: [sumDy.count], scalars: sumDy.map { Float($0) })
        let count = Double(x.shape[0] * x.shape[2] * x.shape[3])
        let dx = blockedBatchNormInputGradient(
            dy, x, weight: weight, saved: saved, sumDy: sumDy, sumDyCentered: sumDyXc, count: count, gate: reluOutput)
        return (dx, dWeight, dBias)
    }

    /// Backward of `blockedBatchNormNormalize` with a residual, from the output's gradient `dy` (plus
    /// `addend`, the gradient it received last), gated by `reluOutput` where given: the first pass
    /// writes that gradient, the residual's, while it sums it; the second reads it back.
    func blockedBatchNormAddingBackward(
        _ dy: Tensor, _ addend: Tensor?, _ x: Tensor, weight: Tensor, saved: BatchNormSaved, reluOutput: Tensor?
    ) -> (Tensor, Tensor, Tensor, Tensor) {
        let g = Tensor(uninitializedShape: x.shape, layout: .channelBlocked)
        let source = GradientSource(
            a: dy.pointer, addend: addend?.pointer, gate: reluOutput?.pointer, written: g.mutablePointer)
        let sums = blockedBatchNormGradientSums(source, x, mean: saved.mean)
        let (dx, dWeight, dBias) = blockedBatchNormBackward(g, x, weight: weight, saved: saved, sums: sums)
        return (dx, dWeight, dBias, g)
    }

    /// Per channel, (sum of g, sum of g * (x - mean)) with g = dy, or dy where `gate` is positive.
    func blockedBatchNormGradientSums(_ dy: Tensor, _ x: Tensor, mean: Tensor, gate: Tensor? = nil) -> (
        sumDy: [Double], sumDyCentered: [Double]
    ) {
        blockedBatchNormGradientSums(GradientSource(a: dy.pointer, gate: gate?.pointer), x, mean: mean)
    }

    /// Per channel, (sum of g, sum of g * (x - mean)) for the gradient g of `source`.
    func blockedBatchNormGradientSums(_ source: GradientSource, _ x: Tensor, mean: Tensor) -> (
        sumDy: [Double], sumDyCentered: [Double]
    ) {
        let geometry = Self.blocks(of: x)
        var sumDy = [Double](repeating: 0, count: x.shape[1]), sumDyXc = sumDy
        let xp = x.pointer
        sumDy.withUnsafeMutableBufferPointer { dyBuffer in
            sumDyXc.withUnsafeMutableBufferPointer { centeredBuffer in
                let (plain, centered) = (UncheckedDoubles(dyBuffer), UncheckedDoubles(centeredBuffer))
                parallelRanges(geometry.blocks) { blocks in
                    for block in blocks {
                        Self.blockSumsOverSamples(
                            source, xp, geometry: geometry, block: block,
                            offset: Self.lanes(mean.pointer, block: block), into: plain.pointer, centered.pointer)
                    }
                }
            }
        }
        return (sumDy, sumDyXc)
    }

    /// With `gate`, dy counts only where the gate is positive (ReLU after batch norm).
    func blockedBatchNormInputGradient(
        _ dy: Tensor, _ x: Tensor, weight: Tensor, saved: BatchNormSaved, sumDy: [Double], sumDyCentered: [Double],
        count: Double, gate: Tensor? = nil
    ) -> Tensor {
        let geometry = Self.blocks(of: x)
        let dx = Tensor(uninitializedShape: x.shape, layout: .channelBlocked)
        let (xp, dyp, dxp, gp) = (x.pointer, dy.pointer, dx.mutablePointer, gate?.pointer)
        let rounded = BFloat16CopyWriter(forOutputGradient: dx)  // of the convolution before
        let meanDy = sumDy.map { Float($0) / Float(count) }, meanDyXc = sumDyCentered.map { Float($0) / Float(count) }
        meanDy.withUnsafeBufferPointer { meanDyBuffer in
            meanDyXc.withUnsafeBufferPointer { meanDyXcBuffer in
                let (meanDyAt, meanDyXcAt) = (UncheckedFloats(meanDyBuffer), UncheckedFloats(meanDyXcBuffer))
                parallelRanges(geometry.blocks) { blocks in
                    for block in blocks {
                        let invStd = Self.lanes(saved.invStd.pointer, block: block)
                        Self.writeBlockedInputGradient(
                            dxp, dyp, xp, gate: gp, geometry: geometry, block: block,
                            a: Self.lanes(weight.pointer, block: block) * invStd,
                            mean: Self.lanes(saved.mean.pointer, block: block),
                            meanDy: Self.lanes(meanDyAt.pointer, block: block),
                            k: Self.lanes(meanDyXcAt.pointer, block: block) * invStd * invStd, rounded: rounded)
                    }
                }
            }
        }
        return dx
    }
}
