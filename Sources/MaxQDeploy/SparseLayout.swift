// The input layout of the sparse convolution kernel: padded phase planes in which every kept
// weight meets contiguous values, and the output lines it produces.
import MaxQTensor

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
