// The input layout of the sparse convolution kernel: where every kept weight meets contiguous
// input values, and the output lines it produces.
import MaxQTensor

/// How the sparse kernel sees one image.
///
/// - Pointwise (1x1, no padding): each output plane is one line of oh * ow pixels, written in
///   place; the kept weight of input channel i meets plane i of the input as it is (stride 1) or
///   subsampled to the output's pixels (stride 2, only the pixels the convolution reads).
/// - Pointwise with `images` > 1: the planes of all images side by side, one line per channel,
///   for small images whose lines alone would be too short to fill the kernel's blocks.
/// - Channel-major input and output (`Tensor.channelMajor`): pointwise layers always take
///   the planes of all images side by side (the input as it is at stride 1), and their lines are
///   the output; the others read and compact plane (channel, image) where NCHW has (image, channel).
/// - Otherwise: the input split into stride x stride phase planes (padded rows and columns of one
///   parity each), so that every kept weight (input channel, ky, kx) meets the output pixels'
///   inputs as one contiguous run starting at `offset`, output row r column c being pixel
///   r * columns + c of a line of `rows * columns` (columns beyond the output's width are
///   computed and dropped by `compacted`).
///
/// Planes the layout copies start `planeStride` floats apart: an odd number of cache lines, so
/// that the runs of a chunk's input channels spread over all of L1's sets, and at least the line
/// length rounded up to 16, so that a run computed for a whole last vector of a line stays inside
/// the laid-out image (it reads the next plane's values or zeros, for pixels that are dropped).
/// Planes a power-of-two size apart (14x14 padded to 16x16, 1 KiB) put every fourth channel in
/// the same sets and slowed the kernel by a quarter to a third (measured).
struct Layout: Equatable {
    let channels: Int, height: Int, width: Int, stride: Int, padding: Int, kernel: Int, images: Int
    let pointwise: Bool, channelMajor: Bool
    /// Whether the kernel reads the input tensor itself.
    let readsInputAsItIs: Bool
    /// Rows and columns of a plane, and floats per laid-out image (with slack for the last
    /// line's dropped columns).
    let planeRows: Int, columns: Int, planeStride: Int, perImage: Int
    /// Pixels of an output line; how far past the start of its plane a kept weight's run can begin.
    let length: Int, shift: Int

    init(
        _ channels: Int, _ height: Int, _ width: Int, kernel: Int, stride: Int, padding: Int, images: Int = 1,
        channelMajor: Bool = false
    ) throws(TensorError) {
        (self.channels, self.height, self.width) = (channels, height, width)
        (self.kernel, self.stride, self.padding) = (kernel, stride, padding)
        pointwise = kernel == 1 && padding == 0
        precondition(images == 1 || pointwise, "only pointwise layouts hold several images")
        (self.images, self.channelMajor) = (images, channelMajor)
        let outputRows = (height + 2 * padding - kernel) / stride + 1
        let outputColumns = (width + 2 * padding - kernel) / stride + 1
        planeRows = pointwise ? outputRows : (height + 2 * padding + stride - 1) / stride
        columns = pointwise ? outputColumns : (width + 2 * padding + stride - 1) / stride
        length = outputRows * columns * images
        shift = pointwise ? 0 : (kernel - 1) / stride * (columns + 1)
        let phases = pointwise ? 1 : stride * stride
        let planeSize = images * planeRows * columns
        readsInputAsItIs = pointwise && stride == 1 && (images == 1 || channelMajor)
        planeStride = readsInputAsItIs ? planeSize : ((planeSize + 15) / 16 | 1) * 16
        let (planes, overflow) = (phases * channels).multipliedReportingOverflow(by: planeStride)
        guard !overflow, planes + shift <= Int(Int32.max) else {
            throw .invalidShape(
                op: "nm_conv2d", shape: [channels, height, width], reason: "an image of 2^31 values or more")
        }
        perImage = planes + shift
    }

    /// Floats of a plane before the gap up to the next one.
    private var planeSize: Int { images * planeRows * columns }

    /// Whether a deployed model had better pass activations of this NCHW shape on channel-major
    /// (`Model.deployChannelMajor`): planes under 256 pixels, which the pointwise layers would
    /// otherwise copy side by side and back, and a channel stride (N * H * W floats) that is not a
    /// multiple of 1 KiB, so that the runs of a chunk's channels still spread over L1's sets, as the
    /// odd `planeStride` of a copy does. (resnet50 2:4 at batch 16 with 56x56 planes channel-major,
    /// a 4 KiB multiple: every run of a chunk fell into the same sets and the pointwise layers of
    /// the first stage ran 3x slower.)
    static func prefersChannelMajor(_ shape: [Int]) -> Bool {
        shape.count == 4 && shape[2] * shape[3] < 256 && shape[0] * shape[2] * shape[3] * 4 % 1024 != 0
    }

    /// Start of the run that kept weight (input channel, ky, kx) meets.
    func offset(channel: Int, ky: Int, kx: Int) -> Int {
        let plane = ((ky % stride) * stride + kx % stride) * channels + channel
        return pointwise
            ? channel * planeStride
            : plane * planeStride + (ky / stride) * columns + kx / stride
    }

    /// (B, C, H, W) (channel-major: (1, C, B, H, W)) laid out as (B / images, perImage).
    func laidOut(_ x: Tensor) -> Tensor {
        let batch = x.shape[channelMajor ? 2 : 0]
        var out = Tensor(uninitializedShape: [batch / images * perImage])
        x.withUnsafeBufferPointer { xs in
            out.withUnsafeMutableBufferPointer { os in
                let (source, target) = (xs.baseAddress!, os.baseAddress!)
                parallelRanges(batch * channels, grain: 8) { tasks in
                    for task in tasks {
                        // Planes of under 64 values side by side: a channel's planes of all images in
                        // turn, so that each line is written whole while in cache; image by image, its
                        // pieces of 196 bytes (7x7) were written far apart in time. Measured with the
                        // input out of cache (batch 16, same process): 7x7 planes 1.5-1.75x faster so,
                        // 14x14 planes 1.0-1.4x slower (the reads then jump between images).
                        let (image, channel) =
                            images > 1 && height * width < 64
                            ? (task % batch, task / batch) : (task / channels, task % channels)
                        let (unit, slot) = (image / images, image % images)
                        let plane = channelMajor ? channel * batch + image : image * channels + channel
                        let from = source + plane * height * width
                        for phase in 0..<(pointwise ? 1 : stride * stride) {
                            let plane = target + unit * perImage + (phase * channels + channel) * planeStride
                            copyPlane(
                                from, plane + slot * planeRows * columns, rowPhase: phase / stride,
                                columnPhase: phase % stride)
                            if slot == images - 1 {
                                (plane + planeSize).initialize(repeating: 0, count: planeStride - planeSize)
                            }
                        }
                    }
                }
                for unit in 0..<(batch / images) where shift > 0 {
                    (target + (unit + 1) * perImage - shift).initialize(repeating: 0, count: shift)
                }
            }
        }
        return out
    }

    /// Plane row r, column c = input (r * stride + py - padding, c * stride + px - padding), zero outside.
    private func copyPlane(
        _ from: UnsafePointer<Float>, _ to: UnsafeMutablePointer<Float>, rowPhase py: Int, columnPhase px: Int
    ) {
        // Unpadded at stride 1 (pointwise planes side by side, unpadded kernels): the rows follow
        // each other on both sides, one copy (row by row, the 14x14 and 7x7 planes cost 5-14 % of
        // their layers' time).
        if stride == 1 && padding == 0 {
            to.initialize(from: from, count: planeRows * columns)
            return
        }
        // Columns c with c * stride + px - padding inside 0..<width: first..<end.
        let first = min(columns, max(0, (padding - px + stride - 1) / stride))
        let last = width - 1 + padding - px
        let end = last < 0 ? first : max(first, min(columns, last / stride + 1))
        for r in 0..<planeRows {
            let row = r &* stride &+ py &- padding
            let line = to + r * columns
            guard row >= 0 && row < height else {
                line.initialize(repeating: 0, count: columns)
                continue
            }
            line.initialize(repeating: 0, count: first)
            let input = from + row * width + (first * stride + px - padding)
            if stride == 1 {
                (line + first).initialize(from: input, count: end - first)
            } else {
                for c in 0..<(end - first) { line[first &+ c] = input[c &* stride] }
            }
            (line + end).initialize(repeating: 0, count: columns - end)
        }
    }

    /// The output lines (B / images, O, at least `length` pixels) as (B, O, rows, outputColumns)
    /// (channel-major: (1, O, B, rows, outputColumns)), dropping the extra columns and pixels; with
    /// `residual` of that shape, clamp(line + residual, lower, upper).
    func compacted(
        _ lines: Tensor, rows: Int, columns outputColumns: Int, adding residual: Tensor?, lower: Float, upper: Float
    ) -> Tensor {
        let (batch, outputs, lineStride) = (lines.shape[0] * images, lines.shape[1], lines.shape[2])
        var y = Tensor(
            uninitializedShape: channelMajor
                ? [1, outputs, batch, rows, outputColumns] : [batch, outputs, rows, outputColumns])
        lines.withUnsafeBufferPointer { ls in
            residual.withBaseAddress { added in
                y.withUnsafeMutableBufferPointer { ys in
                    let (source, target) = (ls.baseAddress!, ys.baseAddress!)
                    // Lines without dropped columns (pointwise) are compacted a plane at a time.
                    let (copyRows, copyColumns) =
                        columns == outputColumns ? (1, rows * outputColumns) : (rows, outputColumns)
                    parallelRanges(batch * outputs, grain: 16) { planes in
                        for plane in planes {
                            let (image, output) = (plane / outputs, plane % outputs)
                            let written = channelMajor ? output * batch + image : plane
                            let line = source + ((image / images) * outputs + output) * lineStride
                            for r in 0..<copyRows {
                                let from = line + (image % images) * planeRows * columns + r * columns
                                let at = written * rows * outputColumns + r * copyColumns
                                guard let added else {
                                    (target + at).update(from: from, count: copyColumns)
                                    continue
                                }
                                for c in 0..<copyColumns {
                                    target[at &+ c] = min(max(from[c] + added[at &+ c], lower), upper)
                                }
                            }
                        }
                    }
                }
            }
        }
        return y
    }
}

extension Optional<Tensor> {
    /// `body` with the address of the tensor's first value, or nil when there is no tensor.
    func withBaseAddress<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let tensor = self else { return body(nil) }
        return tensor.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}
