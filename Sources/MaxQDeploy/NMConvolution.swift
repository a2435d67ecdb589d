// The N:M sparse convolution layer: lays the input out for the kernel, splits the work into
// (image, pixel block, output channels or quads of them) tasks, picks the kernel (`KernelPlan`),
// and fuses bias, clamp and a residual addition.
import CKernels
import MaxQNN
import MaxQTensor

/// An N:M sparse convolution (square kernel, stride 1 or 2, one group) on compressed weights,
/// with its bias and a ReLU/ReLU6 clamp fused.
public final class NMConvolution: ResidualFusing {
    public let weights: NMWeights
    public let bias: Tensor
    public let geometry: Conv2dGeometry
    public let activation: Activation?
    /// The kept values in the kernel's order (per output channel by input channel, then kernel
    /// position: a range of input channels is a range of values), with each one's input channel
    /// and kernel position, expanded once from the packed positions.
    private let kernelValues: [Float], inputChannels: [Int], kernelPositions: [Int]
    /// What the kernel reads, for the last layout used.
    private var planCache: (layout: Layout, plan: KernelPlan)?

    public init(weights: NMWeights, bias: Tensor, geometry: Conv2dGeometry, activation: Activation?) {
        precondition(Self.runs(weights.shape, geometry), "no sparse kernel for \(weights.shape) \(geometry)")
        (self.weights, self.bias, self.geometry, self.activation) = (weights, bias, geometry, activation)
        let (n, m, chunks, positions) = (weights.n, weights.m, weights.inputs / weights.m, weights.positions)
        let channels = weights.indices.enumerated().map { k, j in (k / n) % chunks * m + j }
        let kept = weights.values.count / weights.outputs
        // Stored order within an output channel: position, group, member; the kernel's: channel,
        // position (a counting sort by channel, stable, so positions stay ascending).
        var order = [Int](repeating: 0, count: weights.values.count)
        var starts = [Int](repeating: 0, count: weights.inputs + 1)
        for o in 0..<weights.outputs {
            let range = o * kept..<(o + 1) * kept
            for i in starts.indices { starts[i] = 0 }
            for k in range { starts[channels[k] + 1] += 1 }
            for i in 1..<starts.count { starts[i] += starts[i - 1] }
            for k in range {
                order[o * kept + starts[channels[k]]] = k
                starts[channels[k]] += 1
            }
        }
        kernelValues = order.map { weights.values[$0] }
        inputChannels = order.map { channels[$0] }
        kernelPositions = order.map { k in (k / n / chunks) % positions }
    }

    /// What the sparse kernel runs: square kernels, stride 1 or 2, padding up to half the kernel, one group.
    public static func runs(_ shape: [Int], _ geometry: Conv2dGeometry) -> Bool {
        shape.count == 4 && shape[2] == shape[3] && geometry.groups == 1 && (1...2).contains(geometry.stride)
            && geometry.padding >= 0 && 2 * geometry.padding <= shape[2]
    }

    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        let (lower, upper, after) = activation.fusedClamp
        let y = Variable(try convolve(x.value, residual: nil, lower: lower, upper: upper))
        return after.map { y.activation($0) } ?? y
    }

    public func fusedOutput(_ x: Variable, adding residual: Variable, relu: Bool) throws(TensorError) -> Variable {
        guard activation == nil else { return try unfusedOutput(x, adding: residual, relu: relu) }
        return Variable(try convolve(x.value, residual: residual.value, lower: relu ? 0 : -.infinity, upper: .infinity))
    }

    /// clamp(conv(input) + bias (+ residual), lower, upper), input, residual and output all NCHW or
    /// all channel-major (`Tensor.channelMajor`).
    private func convolve(_ input: Tensor, residual: Tensor?, lower: Float, upper: Float) throws(TensorError)
        -> Tensor
    {
        let channelMajor = input.isChannelMajor
        let dims = channelMajor ? Array(input.shape.dropFirst()) : input.shape
        guard dims.count == 4, dims[channelMajor ? 0 : 1] == weights.inputs else {
            throw .shapeMismatch(op: "nm_conv2d", input.shape, weights.shape)
        }
        let (batch, height, width) = (dims[channelMajor ? 1 : 0], dims[2], dims[3])
        let (k, stride, padding) = (weights.shape[2], geometry.stride, geometry.padding)
        let oh = (height + 2 * padding - k) / stride + 1, ow = (width + 2 * padding - k) / stride + 1
        guard oh > 0, ow > 0 else {
            throw .invalidShape(op: "nm_conv2d", shape: input.shape, reason: "smaller than the kernel")
        }
        let outputShape = channelMajor ? [1, weights.outputs, batch, oh, ow] : [batch, weights.outputs, oh, ow]
        if let residual, residual.shape != outputShape {
            throw .shapeMismatch(op: "nm_conv2d residual", residual.shape, outputShape)
        }
        // Small pointwise planes (under 256 pixels) of all images go side by side in one line, and
        // channel-major ones always (that is their layout).
        let pointwise = k == 1 && padding == 0
        let images = pointwise && (oh * ow < 256 || channelMajor) ? batch : 1
        let layout = try Layout(
            weights.inputs, height, width, kernel: k, stride: stride, padding: padding, images: images,
            channelMajor: channelMajor)
        let source = layout.readsInputAsItIs ? input : layout.laidOut(input)
        // Lines of single pointwise images, and channel-major pointwise lines, are the output planes:
        // the kernel adds the residual and clamps. Other lines carry dropped columns or several
        // images: compaction does both.
        if pointwise && (images == 1 || channelMajor) {
            var y = Tensor(uninitializedShape: outputShape)
            run(
                source, layout, into: &y, laidOutImages: batch / images, length: layout.length, residual: residual,
                lower: lower, upper: upper, streaming: true)
            return y
        }
        // Lines a multiple of 16 pixels long, computed whole: the kernel makes no overlapping last
        // pass (a 7x7 plane's 63-pixel line is one 64-pixel block), and the layout leaves room to
        // read that far (`Layout.planeStride`).
        let lineStride = (layout.length + 15) / 16 * 16
        var lines = Tensor(uninitializedShape: [batch / images, weights.outputs, lineStride])
        let clampsHere = residual == nil  // else the clamp comes after the residual, in the compaction
        run(
            source, layout, into: &lines, laidOutImages: batch / images, length: lineStride, residual: nil,
            lower: clampsHere ? lower : -.infinity, upper: clampsHere ? upper : .infinity, streaming: false)
        return layout.compacted(lines, rows: oh, columns: ow, adding: residual, lower: lower, upper: upper)
    }

    /// The kernel over every image in tasks of (image, pixel block, output channels): all output
    /// channels of a task read the block's inputs while they are in cache. Output channels (or
    /// quads of them) are split only as far as needed to give every core several tasks. `streaming`:
    /// the lines are the layer's output, which the per-channel kernel may write past the caches
    /// (not lines that the compaction reads next).
    private func run(
        _ source: Tensor, _ layout: Layout, into lines: inout Tensor, laidOutImages batch: Int, length: Int,
        residual: Tensor?, lower: Float, upper: Float, streaming: Bool
    ) {
        let outputs = weights.outputs
        let plan = self.plan(for: layout)
        // Ranges of up to 7 of the kernel's blocks (64 or 80 pixels), as long as every core still
        // gets 8 of them, the last range taking the rest: within a range the kernels prefetch each
        // input run's next block (`KernelPlan.runStarts`), which the CPU's prefetchers do not do for
        // runs of 256 bytes far apart. Measured against 64-pixel blocks without prefetching, in the same
        // process, layer by layer (resnet50, batch 16): 1:16 1.1-1.6x on stages 1-3, 2:4 and 1:4
        // 1.1-1.7x on stages 1-2, stage 4 (7x7, few blocks) unchanged.
        let blocks = max(1, length / plan.blockPixels)
        let blockPixels = plan.blockPixels * min(7, max(1, batch * blocks / (8 * Threading.count)))
        let pixelBlocks = max(1, length / blockPixels)
        let groups = min(max(1, (8 * Threading.count + batch * pixelBlocks - 1) / (batch * pixelBlocks)), plan.units)
        let groupSize = (plan.units + groups - 1) / groups
        let perImage = pixelBlocks * groups
        source.withUnsafeBufferPointer { xs in
            lines.withUnsafeMutableBufferPointer { ys in
                residual.withBaseAddress { rp in
                    bias.withUnsafeBufferPointer { bs in
                        plan.withKernel { kernel in
                            let (xp, yp, bp) = (xs.baseAddress!, ys.baseAddress!, bs.baseAddress!)
                            parallelForEach(batch * perImage) { task in
                                let (image, block, group) = (task / perImage, task % perImage / groups, task % groups)
                                let first = group * groupSize
                                guard first < plan.units else { return }
                                let end = block == pixelBlocks - 1 ? length : block * blockPixels + blockPixels
                                kernel(
                                    KernelCall(
                                        image: xp + image * layout.perImage, bias: bp,
                                        units: first..<min(first + groupSize, plan.units),
                                        outputs: outputs, pixels: block * blockPixels..<end, length: length,
                                        residual: rp.map { $0 + image * outputs * length }, lower: lower, upper: upper,
                                        output: yp + image * outputs * length, streamsOutput: streaming))
                            }
                        }
                    }
                }
            }
        }
    }

    /// Whether the quad kernel serves these weights at the kernels' current level: on AVX-512 (it
    /// needs 32 vector registers), at N/M >= 1/2, and at >= 1/4 for kernels with several positions
    /// (3x3), whose chunks list 9 runs per input channel, so that the subset loops are long enough.
    /// Measured single-thread against the per-channel kernel: 2:4 1.35-1.6x; 1:4 3x3 1.18-1.28x,
    /// but 1:4 1x1 0.75-1.0x, 1:16 3x3 0.96x, and on AVX2 0.5-0.6x. And with 64 kept weights per
    /// output channel or more: 1x1 layers of 32 or 64 input channels at 2:4 (one chunk of four
    /// entries per subset loop) ran 1.05-1.45x faster on the per-channel kernel (same-process A/B,
    /// resnet50 and mobilenet_v1, batch 16), those of 128 inputs and more 1.02-1.2x slower.
    static func usesQuads(_ weights: NMWeights) -> Bool {
        KernelLevel.active == .avx512 && weights.values.count / weights.outputs >= 64
            && (2 * weights.n >= weights.m || (weights.positions > 1 && 4 * weights.n >= weights.m))
    }

    /// Which kernel the layer runs at the current level: "quads" or "per channel".
    public var kernel: String { Self.usesQuads(weights) ? "quads" : "per channel" }

    /// What the kernel reads for `layout` and the current level (cached for the last): quads
    /// where a quad's channels share input runs often enough (`usesQuads`), else per channel. Input channels per
    /// chunk: a multiple of M whose inputs for one of the kernel's blocks fill about half of L1 (16 KiB),
    /// with at least 32 kept values per output channel (fewer would spend more on storing and
    /// reloading partial sums than on multiply-adds).
    private func plan(for layout: Layout) -> KernelPlan {
        let quads = Self.usesQuads(weights)
        if let cached = planCache, cached.layout == layout, cached.plan.isQuads == quads { return cached.plan }
        let floatsPerChannel =
            min(layout.stride * layout.stride, weights.positions)
            * (KernelPlan.blockPixels(quads: quads) + layout.shift)
        let keptPerGroup = weights.n * weights.positions
        let groups = max(4096 / floatsPerChannel / weights.m, (32 + keptPerGroup - 1) / keptPerGroup, 1)
        let chunkChannels = min(weights.inputs, groups * weights.m)
        let k = weights.shape[3]
        let offset = { (channel: Int, position: Int) in
            layout.offset(channel: channel, ky: position / k, kx: position % k)
        }
        let kept = weights.values.count / weights.outputs
        let offsets = zip(inputChannels, kernelPositions).map { Int32(offset($0, $1)) }
        let chunk = chunkChannels / weights.m * keptPerGroup
        let kernel: KernelPlan.Kernel =
            quads
            ? .quads(
                QuadLists(
                    values: kernelValues, channels: inputChannels, positions: kernelPositions,
                    outputs: weights.outputs, kept: kept, inputs: weights.inputs,
                    kernelPositions: weights.positions, chunkChannels: chunkChannels, offset: offset))
            : .channels(
                values: KernelPlan.chunkMajor(kernelValues, outputs: weights.outputs, kept: kept, chunk: chunk),
                offsets: KernelPlan.chunkMajor(offsets, outputs: weights.outputs, kept: kept, chunk: chunk), kept: kept,
                chunk: chunk)
        let plan = KernelPlan(kernel: kernel, runStarts: Array(Set(offsets.map { $0 & ~15 })).sorted())
        planCache = (layout, plan)
        return plan
    }

    public func namedParameters(prefix: String) -> [(String, Variable)] { [] }
}

extension Optional where Wrapped == Activation {
    /// The clamp the kernels fuse for this activation (ReLU and ReLU6; none for the others), and
    /// the activation still to apply to their output.
    var fusedClamp: (lower: Float, upper: Float, after: Activation?) {
        switch self {
        case .relu: (0, .infinity, nil)
        case .relu6: (0, 6, nil)
        default: (-.infinity, .infinity, self)
        }
    }
}
