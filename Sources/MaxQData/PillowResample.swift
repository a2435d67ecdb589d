// Pillow's antialiased bilinear resize (libImaging/Resample.c), reproduced exactly on 8-bit
// data: per-output-pixel triangle-filter coefficients widened by the downscaling factor,
// 22-bit fixed point, a horizontal pass rounded to 8 bits, then a vertical pass. A resampling
// says which source pixels it reads, so only those need decoding. The two passes' loops are in
// CKernels (resample.c).
import CKernels

/// Fixed-point coefficients of one axis: for output pixel x, inputs first[x] ..< first[x] + count[x].
struct ResampleAxis {
    static let precisionBits = 32 - 8 - 2
    let first: [Int]
    let count: [Int]
    let weights: [Int32]  // output x's weights at x * width
    let width: Int

    /// The axis of an `inputSize`-long source (a crop of the image) resized to `outputSize`.
    init(inputSize: Int, outputSize: Int) {
        let scale = Double(inputSize) / Double(outputSize)
        let filterScale = max(scale, 1)
        let support = 1.0 * filterScale  // bilinear: support 1
        width = Int(support.rounded(.up)) * 2 + 1
        var first = [Int](repeating: 0, count: outputSize), count = first
        var weights = [Int32](repeating: 0, count: outputSize * width)
        var k = [Double](repeating: 0, count: width)
        for x in 0..<outputSize {
            let center = (Double(x) + 0.5) * scale
            let low = max(Int(center - support + 0.5), 0)  // C truncation, as Pillow
            let high = min(Int(center + support + 0.5), inputSize) - low
            var total = 0.0
            for i in 0..<high {
                let t = abs((Double(i + low) - center + 0.5) / filterScale)
                k[i] = t < 1 ? 1 - t : 0
                total += k[i]
            }
            for i in 0..<high {
                let w = total != 0 ? k[i] / total : k[i]
                let fixed = w * Double(1 << Self.precisionBits)
                weights[x * width + i] = Int32(w < 0 ? (-0.5 + fixed) : (0.5 + fixed))
            }
            first[x] = low
            count[x] = high
        }
        self.first = first
        self.count = count
        self.weights = weights
    }

    /// The input positions that outputs `outputs` read.
    func inputs(of outputs: Range<Int>) -> Range<Int> {
        guard !outputs.isEmpty else { return 0..<0 }
        return first[outputs.lowerBound]..<outputs.lazy.map { first[$0] + count[$0] }.max()!
    }
}

/// Pillow's `img.crop(box).resize((outputWidth, outputHeight), BILINEAR)`, of which only output
/// columns `columns` and rows `rows` are produced (a centre crop of the result costs only what
/// it keeps).
struct Resampling {
    let crop: (x: Int, y: Int, width: Int, height: Int)
    let columns: Range<Int>
    let rows: Range<Int>
    private let horizontal: ResampleAxis?  // nil: the width is unchanged
    private let vertical: ResampleAxis?
    /// Rows of the crop that the vertical pass reads (relative to crop.y).
    private let cropRows: Range<Int>

    init(
        crop: (x: Int, y: Int, width: Int, height: Int), outputWidth: Int, outputHeight: Int,
        columns: Range<Int>? = nil, rows: Range<Int>? = nil
    ) {
        self.crop = crop
        self.columns = columns ?? 0..<outputWidth
        self.rows = rows ?? 0..<outputHeight
        horizontal = crop.width != outputWidth ? ResampleAxis(inputSize: crop.width, outputSize: outputWidth) : nil
        vertical = crop.height != outputHeight ? ResampleAxis(inputSize: crop.height, outputSize: outputHeight) : nil
        cropRows = vertical?.inputs(of: self.rows) ?? self.rows
    }

    /// Image columns and rows the resampling reads.
    var sourceColumns: Range<Int> {
        let inCrop = horizontal?.inputs(of: columns) ?? columns
        return crop.x + inCrop.lowerBound..<crop.x + inCrop.upperBound
    }

    var sourceRows: Range<Int> { crop.y + cropRows.lowerBound..<crop.y + cropRows.upperBound }

    /// Resamples `source` (covering `sourceColumns` x `sourceRows`) and hands each output row,
    /// `columns.count` interleaved RGB pixels, to `consume(row index from 0, pixels)`.
    func run(_ source: PixelRegion, consume: (Int, UnsafePointer<UInt8>) -> Void) {
        let tempWidth = columns.count, rowLength = tempWidth * 3
        // Every byte is written by the horizontal pass below: no need to zero it first.
        var temp = [UInt8](unsafeUninitializedCapacity: rowLength * cropRows.count) { $1 = $0.count }
        // Offset of crop pixel (0, cropRows.lowerBound) in the region's pixels.
        let regionWidth = source.image.width
        let origin = ((crop.y + cropRows.lowerBound - source.y) * regionWidth + crop.x - source.x) * 3
        // Raw pointers throughout: array subscripts would check uniqueness on every store.
        source.image.pixels.withUnsafeBufferPointer { src in
            temp.withUnsafeMutableBufferPointer { tmp in
                let (src, tmp) = (src.baseAddress!, tmp.baseAddress!)
                for ty in 0..<cropRows.count {
                    let row = origin + ty * regionWidth * 3
                    let out = tmp + ty * rowLength
                    guard let h = horizontal else {
                        (out).update(from: src + row + columns.lowerBound * 3, count: rowLength)
                        continue
                    }
                    h.weights.withUnsafeBufferPointer { weights in
                        h.first.withUnsafeBufferPointer { first in
                            h.count.withUnsafeBufferPointer { count in
                                maxq_resample_row_horizontal(
                                    src + row, Int64(columns.lowerBound), Int64(tempWidth),
                                    UnsafeRawPointer(first.baseAddress!).assumingMemoryBound(to: Int64.self),
                                    UnsafeRawPointer(count.baseAddress!).assumingMemoryBound(to: Int64.self),
                                    weights.baseAddress!, Int64(h.width), out)
                            }
                        }
                    }
                }
                guard let v = vertical else {
                    for ry in 0..<rows.count { consume(ry, tmp + ry * rowLength) }
                    return
                }
                v.weights.withUnsafeBufferPointer { weights in
                    let sums = UnsafeMutablePointer<Int32>.allocate(capacity: rowLength)
                    let line = UnsafeMutablePointer<UInt8>.allocate(capacity: rowLength)
                    defer { sums.deallocate(); line.deallocate() }
                    for (ry, oy) in rows.enumerated() {
                        // Whole rows accumulated (contiguous, vectorised in CKernels), then clipped.
                        maxq_resample_row_vertical(
                            tmp + (v.first[oy] - cropRows.lowerBound) * rowLength, Int64(rowLength),
                            Int64(v.count[oy]), weights.baseAddress! + oy * v.width, sums, line)
                        consume(ry, line)
                    }
                }
            }
        }
    }

    /// The output as an image.
    func image(of source: PixelRegion) -> RGBImage {
        let rowLength = columns.count * 3
        var pixels = [UInt8](repeating: 0, count: rowLength * rows.count)
        pixels.withUnsafeMutableBufferPointer { out in
            run(source) { ry, line in (out.baseAddress! + ry * rowLength).update(from: line, count: rowLength) }
        }
        return RGBImage(width: columns.count, height: rows.count, pixels: pixels)
    }
}

extension RGBImage {
    /// `img.crop((x, y, x + width, y + height)).resize((outputWidth, outputHeight), BILINEAR)`.
    public func resizedCrop(
        x: Int, y: Int, width cropWidth: Int, height cropHeight: Int, outputWidth: Int, outputHeight: Int
    ) -> RGBImage {
        Resampling(crop: (x, y, cropWidth, cropHeight), outputWidth: outputWidth, outputHeight: outputHeight)
            .image(of: PixelRegion(image: self, x: 0, y: 0))
    }
}
