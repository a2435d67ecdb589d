// Max pooling (with the argmax kept for backward, or without it for evaluation) and global average
// pooling over NCHW, and over channel-blocked tensors (ChannelBlocks.swift) with the same results:
// max pooling keeps the layout, global average pooling gives (N, C).

extension CPUBackend {
    public func maxPool2d(_ x: Tensor, kernel: Int, stride: Int, padding: Int) throws(TensorError) -> (Tensor, [Int32])
    {
        let (oh, ow) = try maxPoolOutputSize(x, kernel: kernel, stride: stride, padding: padding)
        if x.layout == .channelBlocked {
            return blockedMaxPool(x, kernel: kernel, stride: stride, padding: padding, output: (oh, ow))
        }
        let (h, w) = (x.shape[2], x.shape[3])
        let planes = x.shape[0] * x.shape[1]
        let y = Tensor(uninitializedShape: [x.shape[0], x.shape[1], oh, ow])
        var argmax = [Int32](repeating: 0, count: y.count)
        let (xp, yp) = (x.pointer, y.mutablePointer)
        argmax.withUnsafeMutableBufferPointer { idx in
            let ip = idx.baseAddress!
            parallelRanges(planes) { range in
                for p in range {
                    let input = xp + p * h * w
                    for oy in 0..<oh {
                        let y0 = max(oy * stride - padding, 0), y1 = min(oy * stride - padding + kernel, h)
                        let out = (p * oh + oy) * ow
                        for ox in 0..<ow {
                            let x0 = max(ox * stride - padding, 0), x1 = min(ox * stride - padding + kernel, w)
                            // The first maximum in row-major window order, as PyTorch; selects, not branches.
                            // Plane offsets fit Int32 (checked for the plane above), so wrapping is exact.
                            var best = -Float.infinity, bestIndex = Int32(truncatingIfNeeded: y0 &* w &+ x0)
                            for iy in y0..<y1 {
                                for ix in x0..<x1 {
                                    let offset = iy &* w &+ ix
                                    let v = input[offset]
                                    let better = v > best
                                    best = better ? v : best
                                    bestIndex = better ? Int32(truncatingIfNeeded: offset) : bestIndex
                                }
                            }
                            yp[out + ox] = best
                            ip[out + ox] = bestIndex
                        }
                    }
                }
            }
        }
        return (y, argmax)
    }

    /// Output rows and columns of a max pooling, after checking its input and geometry.
    private func maxPoolOutputSize(_ x: Tensor, kernel: Int, stride: Int, padding: Int) throws(TensorError) -> (
        Int, Int
    ) {
        guard x.rank == 4 else {
            throw .invalidShape(op: "max_pool2d", shape: x.shape, reason: "input must be (N, C, H, W)")
        }
        guard kernel >= 1, stride >= 1, padding >= 0, padding * 2 <= kernel else {
            throw .invalidArgument(op: "max_pool2d", reason: "kernel \(kernel), stride \(stride), padding \(padding)")
        }
        let (h, w) = (x.shape[2], x.shape[3])
        let oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1
        guard oh > 0, ow > 0 else {
            throw .invalidShape(op: "max_pool2d", shape: x.shape, reason: "smaller than the kernel")
        }
        guard h * w <= Int(Int32.max) else {
            throw .invalidShape(op: "max_pool2d", shape: x.shape, reason: "a plane larger than 2^31 values")
        }
        return (oh, ow)
    }

    /// The values of `maxPool2d` without the argmax, for evaluation: each output row takes the
    /// maximum of its window's input rows column by column (contiguous, vectorised), then of each
    /// window's columns. The maximum of the values that are not NaN (-infinity if none), as
    /// `maxPool2d` computes it, in any order. On resnet50's stem output (batch 16, 2 cores): 6.5 ms
    /// against `maxPool2d`'s 16-17.6 ms, which also writes the argmax and tests every window's bounds.
    public func maxPool2dValues(_ x: Tensor, kernel: Int, stride: Int, padding: Int) throws(TensorError) -> Tensor {
        let (oh, ow) = try maxPoolOutputSize(x, kernel: kernel, stride: stride, padding: padding)
        if x.layout == .channelBlocked {
            return blockedMaxPool(x, kernel: kernel, stride: stride, padding: padding, output: (oh, ow)).0
        }
        let (h, w) = (x.shape[2], x.shape[3])
        let y = Tensor(uninitializedShape: [x.shape[0], x.shape[1], oh, ow])
        let (xp, yp) = (x.pointer, y.mutablePointer)
        parallelRanges(x.shape[0] * x.shape[1]) { range in
            let columns = UnsafeMutablePointer<Float>.allocate(capacity: w)
            defer { columns.deallocate() }
            for p in range {
                let input = xp + p * h * w
                for oy in 0..<oh {
                    let y0 = max(oy * stride - padding, 0), y1 = min(oy * stride - padding + kernel, h)
                    columns.initialize(repeating: -.infinity, count: w)
                    for iy in y0..<y1 {
                        let row = input + iy * w
                        for ix in 0..<w {
                            let (v, c) = (row[ix], columns[ix])
                            columns[ix] = v > c ? v : c
                        }
                    }
                    let out = yp + (p * oh + oy) * ow
                    for ox in 0..<ow {
                        let x0 = max(ox * stride - padding, 0), x1 = min(ox * stride - padding + kernel, w)
                        var best = -Float.infinity
                        for ix in x0..<x1 { best = columns[ix] > best ? columns[ix] : best }
                        out[ox] = best
                    }
                }
            }
        }
        return y
    }

    /// `dy` in the layout of the forward's output, which `argmax` indexes.
    public func maxPool2dBackward(_ dy: Tensor, argmax: [Int32], inputShape: [Int]) -> Tensor {
        if dy.layout == .channelBlocked { return blockedMaxPoolBackward(dy, argmax: argmax, inputShape: inputShape) }
        let dx = Tensor(shape: inputShape, repeating: 0)
        let planes = inputShape[0] * inputShape[1], inPlane = inputShape[2] * inputShape[3]
        let outPlane = dy.count / max(planes, 1)
        let (dyp, dxp) = (dy.pointer, dx.mutablePointer)
        argmax.withUnsafeBufferPointer { idx in
            parallelRanges(planes) { range in
                for p in range {
                    let (input, output, indices) = (
                        dxp + p * inPlane, dyp + p * outPlane, idx.baseAddress! + p * outPlane
                    )
                    for o in 0..<outPlane { input[Int(indices[o])] += output[o] }
                }
            }
        }
        return dx
    }

    public func globalAveragePool(_ x: Tensor) throws(TensorError) -> Tensor {
        guard x.rank == 4 else {
            throw .invalidShape(op: "global_avg_pool", shape: x.shape, reason: "input must be (N, C, H, W)")
        }
        if x.layout == .channelBlocked { return blockedGlobalAveragePool(x) }
        let planes = x.shape[0] * x.shape[1], plane = x.shape[2] * x.shape[3]
        let y = Tensor(uninitializedShape: [x.shape[0], x.shape[1]])
        let (xp, yp) = (x.pointer, y.mutablePointer)
        parallelRanges(planes, grain: 64) { range in
            for p in range {
                var s: Float = 0
                for j in 0..<plane { s += xp[p * plane + j] }
                yp[p] = s / Float(plane)
            }
        }
        return y
    }

    public func globalAveragePoolBackward(_ dy: Tensor, inputShape: [Int]) -> Tensor {
        let dx = Tensor(uninitializedShape: inputShape)
        let plane = inputShape[2] * inputShape[3]
        let (dyp, dxp) = (dy.pointer, dx.mutablePointer)
        parallelRanges(dy.count, grain: 64) { range in
            for p in range {
                let g = dyp[p] / Float(plane)
                for j in 0..<plane { dxp[p * plane + j] = g }
            }
        }
        return dx
    }
}

extension CPUBackend {
    /// `maxPool2d` of a channel-blocked tensor: the argmax is each output's pixel in its input plane
    /// (for each of its channels), as in NCHW.
    func blockedMaxPool(_ x: Tensor, kernel: Int, stride: Int, padding: Int, output: (Int, Int)) -> (Tensor, [Int32]) {
        let (oh, ow) = output
        let (h, w) = (x.shape[2], x.shape[3])
        let (n, blocks, plane) = Self.blocks(of: x)
        let width = TensorLayout.blockWidth
        let y = Tensor(uninitializedShape: [x.shape[0], x.shape[1], oh, ow], layout: .channelBlocked)
        var argmax = [Int32](repeating: 0, count: y.count)
        let (xp, yp) = (x.pointer, y.mutablePointer)
        let rounded = BFloat16CopyWriter(for: y)  // a ResNet's max pool feeds convolutions
        argmax.withUnsafeMutableBufferPointer { idx in
            let ip = idx.baseAddress!
            parallelRanges(n * blocks) { units in
                for unit in units {
                    let input = xp + unit * plane * width
                    for oy in 0..<oh {
                        let y0 = max(oy * stride - padding, 0), y1 = min(oy * stride - padding + kernel, h)
                        for ox in 0..<ow {
                            let x0 = max(ox * stride - padding, 0), x1 = min(ox * stride - padding + kernel, w)
                            // The first maximum in row-major window order, per channel, as in NCHW.
                            var best = ChannelLanes(repeating: -.infinity)
                            var bestIndex = SIMD16<Int32>(repeating: Int32(truncatingIfNeeded: y0 &* w &+ x0))
                            for iy in y0..<y1 {
                                for ix in x0..<x1 {
                                    let offset = iy &* w &+ ix
                                    let v = Self.load(input, offset)
                                    let better = v .> best
                                    best.replace(with: v, where: better)
                                    bestIndex.replace(
                                        with: SIMD16(repeating: Int32(truncatingIfNeeded: offset)),
                                        where: better)
                                }
                            }
                            let out = ((unit * oh + oy) * ow + ox) * width
                            UnsafeMutableRawPointer(yp + out).storeBytes(of: best, as: ChannelLanes.self)
                            UnsafeMutableRawPointer(ip + out).storeBytes(of: bestIndex, as: SIMD16<Int32>.self)
                        }
                    }
                    rounded?.round(unit * oh * ow * width..<(unit + 1) * oh * ow * width)
                }
            }
        }
        return (y, argmax)
    }

    func blockedMaxPoolBackward(_ dy: Tensor, argmax: [Int32], inputShape: [Int]) -> Tensor {
        let dx = Tensor(uninitializedShape: inputShape, layout: .channelBlocked)
        let width = TensorLayout.blockWidth
        let (n, blocks, inPlane) = Self.blocks(of: dx)
        let outPlane = dy.count / max(n * blocks * width, 1)
        let (dyp, dxp) = (dy.pointer, dx.mutablePointer)
        argmax.withUnsafeBufferPointer { idx in
            parallelRanges(n * blocks) { units in
                for unit in units {
                    let input = dxp + unit * inPlane * width
                    input.initialize(repeating: 0, count: inPlane * width)
                    let (output, indices) = (dyp + unit * outPlane * width, idx.baseAddress! + unit * outPlane * width)
                    for o in 0..<outPlane * width {
                        input[Int(indices[o]) * width + o % width] += output[o]
                    }
                }
            }
        }
        return dx
    }

    /// (N, C) means of a channel-blocked tensor's planes, summed in the same order as in NCHW.
    func blockedGlobalAveragePool(_ x: Tensor) -> Tensor {
        let (n, blocks, plane) = Self.blocks(of: x)
        let width = TensorLayout.blockWidth
        let y = Tensor(uninitializedShape: [x.shape[0], x.shape[1]])
        let (xp, yp) = (x.pointer, y.mutablePointer)
        parallelRanges(n * blocks, grain: 16) { units in
            for unit in units {
                var s = ChannelLanes()
                for j in 0..<plane { s += Self.load(xp + unit * plane * width, j) }
                UnsafeMutableRawPointer(yp + unit * width).storeBytes(of: s / Float(plane), as: ChannelLanes.self)
            }
        }
        return y
    }
}
