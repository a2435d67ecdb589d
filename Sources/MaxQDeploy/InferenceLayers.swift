// The layers a deployed model runs instead of its conv-bn units: an N:M sparse convolution on
// the compressed weights, or a dense convolution with batch norm folded in.
import CKernels
import MaxQNN
import MaxQTensor

/// An N:M sparse convolution (square kernel, stride 1 or 2, one group) on compressed weights,
/// with its bias and a ReLU/ReLU6 clamp fused.
public final class NMConvolution: UnaryLayer {
    public let weights: NMWeights
    public let bias: Tensor
    public let geometry: Conv2dGeometry
    public let activation: Activation?
    /// Each kept value's input channel and kernel position, expanded once from the packed positions.
    private let inputChannels: [Int], kernelPositions: [Int]
    /// Offsets of the kept values in the laid-out input, for the last layout used.
    private var offsetCache: (layout: Layout, offsets: [Int32])?

    public init(weights: NMWeights, bias: Tensor, geometry: Conv2dGeometry, activation: Activation?) {
        precondition(Self.runs(weights.shape, geometry), "no sparse kernel for \(weights.shape) \(geometry)")
        (self.weights, self.bias, self.geometry, self.activation) = (weights, bias, geometry, activation)
        let (n, m, chunks, positions) = (weights.n, weights.m, weights.inputs / weights.m, weights.positions)
        inputChannels = weights.indices.enumerated().map { k, j in (k / n) % chunks * m + j }
        kernelPositions = (0..<weights.values.count).map { k in (k / n / chunks) % positions }
    }

    /// What the sparse kernel runs: square kernels, stride 1 or 2, padding up to half the kernel, one group.
    public static func runs(_ shape: [Int], _ geometry: Conv2dGeometry) -> Bool {
        shape.count == 4 && shape[2] == shape[3] && geometry.groups == 1 && (1...2).contains(geometry.stride)
            && geometry.padding >= 0 && 2 * geometry.padding <= shape[2]
    }

    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        let input = x.value
        guard input.rank == 4, input.shape[1] == weights.inputs else {
            throw .shapeMismatch(op: "nm_conv2d", input.shape, weights.shape)
        }
        let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
        let (k, stride, padding) = (weights.shape[2], geometry.stride, geometry.padding)
        let oh = (height + 2 * padding - k) / stride + 1, ow = (width + 2 * padding - k) / stride + 1
        guard oh > 0, ow > 0 else {
            throw .invalidShape(op: "nm_conv2d", shape: input.shape, reason: "smaller than the kernel")
        }
        let layout = try Layout(weights.inputs, height, width, kernel: k, stride: stride, padding: padding)
        let offsets = self.offsets(for: layout)
        let source = layout.plain ? input : layout.laidOut(input)
        let (outputs, kept, length) = (weights.outputs, weights.values.count / weights.outputs, layout.paddedLength)
        var lines =
            layout.plain
            ? Tensor(uninitializedShape: [batch, outputs, oh, ow])
            : Tensor(uninitializedShape: [batch, outputs, length])
        let (lower, upper): (Float, Float) =
            switch activation {
            case .relu: (0, .infinity)
            case .relu6: (0, 6)
            default: (-.infinity, .infinity)
            }
        let block = 16
        let blocks = (outputs + block - 1) / block
        source.withUnsafeBufferPointer { xs in
            lines.withUnsafeMutableBufferPointer { ys in
                bias.withUnsafeBufferPointer { bs in
                    weights.values.withUnsafeBufferPointer { vs in
                        offsets.withUnsafeBufferPointer { cs in
                            let (xp, yp, bp, vp, cp) = (
                                xs.baseAddress!, ys.baseAddress!, bs.baseAddress!, vs.baseAddress!, cs.baseAddress!
                            )
                            parallelForEach(batch * blocks) { task in
                                let (image, first) = (task / blocks, task % blocks * block)
                                maxq_nm_conv_lines(
                                    xp + image * layout.perImage, cp, vp, Int64(kept), bp, Int64(first),
                                    Int64(min(first + block, outputs)), Int64(length), lower, upper,
                                    yp + image * outputs * length)
                            }
                        }
                    }
                }
            }
        }
        let y = layout.plain ? lines : layout.compacted(lines, rows: oh, columns: ow)
        if let activation, activation != .relu, activation != .relu6 { return Variable(y).activation(activation) }
        return Variable(y)
    }

    /// Where each kept value's inputs start in one laid-out image (cached for the last layout).
    private func offsets(for layout: Layout) -> [Int32] {
        if let cached = offsetCache, cached.layout == layout { return cached.offsets }
        let k = weights.shape[3]
        let offsets = zip(inputChannels, kernelPositions).map { i, p in
            Int32(layout.offset(channel: i, ky: p / k, kx: p % k))
        }
        offsetCache = (layout, offsets)
        return offsets
    }

    public func namedParameters(prefix: String) -> [(String, Variable)] { [] }
}

/// How the sparse kernel sees one image: its input split into stride x stride phase planes
/// (padded rows and columns of one parity each), so that every kept weight (input channel, ky, kx)
/// meets the output pixels' inputs as one contiguous run starting at `offset`, output row r
/// column c being pixel r * columns + c of a line of `rows * columns` (columns beyond the
/// output's width are computed and dropped). A 1x1 stride-1 convolution whose planes are a
/// multiple of 16 pixels reads the input as it is ("plain").
struct Layout: Equatable {
    let channels: Int, height: Int, width: Int, stride: Int, padding: Int, kernel: Int
    let plain: Bool
    /// Rows and columns of a phase plane, and floats per laid-out image (with slack for the
    /// last line's dropped columns).
    let planeRows: Int, columns: Int, perImage: Int
    /// The output line: `length` pixels (output rows times `columns`), rounded up to 16.
    let length: Int, paddedLength: Int

    init(_ channels: Int, _ height: Int, _ width: Int, kernel: Int, stride: Int, padding: Int) throws(TensorError) {
        (self.channels, self.height, self.width) = (channels, height, width)
        (self.kernel, self.stride, self.padding) = (kernel, stride, padding)
        plain = kernel == 1 && stride == 1 && padding == 0 && (height * width) % 16 == 0
        let outputRows = (height + 2 * padding - kernel) / stride + 1
        planeRows = plain ? height : (height + 2 * padding + stride - 1) / stride
        columns = plain ? width : (width + 2 * padding + stride - 1) / stride
        length = outputRows * columns
        paddedLength = (length + 15) / 16 * 16
        let shift = (kernel - 1) / stride * (columns + 1)
        let (planes, overflow) = (stride * stride * channels).multipliedReportingOverflow(by: planeRows * columns)
        guard !overflow, planes + shift + 16 <= Int(Int32.max) else {
            throw .invalidShape(
                op: "nm_conv2d", shape: [channels, height, width], reason: "an image of 2^31 values or more")
        }
        perImage = plain ? planes : planes + shift + 16
    }

    /// Start of the run that kept weight (input channel, ky, kx) meets.
    func offset(channel: Int, ky: Int, kx: Int) -> Int {
        let plane = ((ky % stride) * stride + kx % stride) * channels + channel
        return plane * planeRows * columns + (ky / stride) * columns + kx / stride
    }

    /// (B, C, H, W) laid out as (B, perImage): phase planes (py, px, channel), zero padding.
    func laidOut(_ x: Tensor) -> Tensor {
        let batch = x.shape[0]
        var out = Tensor(shape: [batch * perImage], repeating: 0)
        x.withUnsafeBufferPointer { xs in
            out.withUnsafeMutableBufferPointer { os in
                let (source, target) = (xs.baseAddress!, os.baseAddress!)
                parallelForEach(batch * channels) { task in
                    let (image, channel) = (task / channels, task % channels)
                    let from = source + task * height * width
                    for phase in 0..<(stride * stride) {
                        let (py, px) = (phase / stride, phase % stride)
                        let to = target + image * perImage + (phase * channels + channel) * planeRows * columns
                        for r in 0..<planeRows {
                            let row = r &* stride &+ py &- padding
                            guard row >= 0 && row < height else { continue }
                            for c in 0..<columns {
                                let column = c &* stride &+ px &- padding
                                if column >= 0 && column < width {
                                    to[r &* columns &+ c] = from[row &* width &+ column]
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// The output lines (B, O, paddedLength) cut to (B, O, rows, columns), dropping the extra columns.
    func compacted(_ lines: Tensor, rows: Int, columns outputColumns: Int) -> Tensor {
        let (batch, outputs) = (lines.shape[0], lines.shape[1])
        var y = Tensor(uninitializedShape: [batch, outputs, rows, outputColumns])
        lines.withUnsafeBufferPointer { ls in
            y.withUnsafeMutableBufferPointer { ys in
                let (source, target) = (ls.baseAddress!, ys.baseAddress!)
                parallelForEach(batch * outputs) { plane in
                    for r in 0..<rows {
                        let from = source + plane * paddedLength + r * columns
                        let to = target + (plane * rows + r) * outputColumns
                        to.update(from: from, count: outputColumns)
                    }
                }
            }
        }
        return y
    }
}

/// A dense convolution with batch norm (and any mask) folded into weight and bias, the activation fused.
public final class FoldedConvolution: UnaryLayer {
    public let weight: Tensor, bias: Tensor
    public let geometry: Conv2dGeometry
    public let activation: Activation?

    public init(weight: Tensor, bias: Tensor, geometry: Conv2dGeometry, activation: Activation?) {
        (self.weight, self.bias, self.geometry, self.activation) = (weight, bias, geometry, activation)
    }

    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        Variable(try x.value.backend.conv2dInference(x.value, weight, bias: bias, geometry, activation: activation))
    }

    public func namedParameters(prefix: String) -> [(String, Variable)] { [] }
}
