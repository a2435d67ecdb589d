// Pillow's antialiased bilinear resize (libImaging/Resample.c), reproduced exactly on 8-bit
// data: per-output-pixel triangle-filter coefficients widened by the downscaling factor,
// 22-bit fixed point, a horizontal pass rounded to 8 bits, then a vertical pass.

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

    @inline(__always)
    static func clip8(_ value: Int32) -> UInt8 {
        let shifted = value >> Int32(precisionBits)
        return UInt8(min(max(shifted, 0), 255))
    }
}

extension RGBImage {
    /// The crop (x, y, width, height) of this image resized to (outputWidth, outputHeight) as
    /// Pillow's `img.crop(box).resize(size, BILINEAR)` does; only output columns `columns`
    /// and rows `rows` are produced (a centre crop of the result costs only what it keeps).
    func resampled(
        crop: (x: Int, y: Int, width: Int, height: Int), outputWidth: Int, outputHeight: Int,
        columns: Range<Int>, rows: Range<Int>
    ) -> RGBImage {
        let horizontal = crop.width != outputWidth ? ResampleAxis(inputSize: crop.width, outputSize: outputWidth) : nil
        let vertical = crop.height != outputHeight ? ResampleAxis(inputSize: crop.height, outputSize: outputHeight) : nil
        // Source rows the vertical pass reads.
        let sourceRows: Range<Int> = vertical.map { v in
            v.first[rows.lowerBound]..<(rows.map { v.first[$0] + v.count[$0] }.max() ?? v.first[rows.lowerBound])
        } ?? rows
        let tempWidth = columns.count
        var temp = [UInt8](repeating: 0, count: tempWidth * sourceRows.count * 3)
        let bias = Int32(1) << Int32(ResampleAxis.precisionBits - 1)
        // Raw pointers throughout: array subscripts would check uniqueness on every store.
        pixels.withUnsafeBufferPointer { src in
            temp.withUnsafeMutableBufferPointer { tmp in
                guard let h = horizontal else {
                    for (ty, sy) in sourceRows.enumerated() {
                        let row = (crop.y + sy) * width * 3
                        for (tx, ox) in columns.enumerated() {
                            for c in 0..<3 { tmp[(ty * tempWidth + tx) * 3 + c] = src[row + (crop.x + ox) * 3 + c] }
                        }
                    }
                    return
                }
                h.weights.withUnsafeBufferPointer { weights in
                    for (ty, sy) in sourceRows.enumerated() {
                        let row = src.baseAddress! + (crop.y + sy) * width * 3 + crop.x * 3
                        for (tx, ox) in columns.enumerated() {
                            var s0 = bias, s1 = bias, s2 = bias
                            let k = weights.baseAddress! + ox * h.width
                            let p = row + h.first[ox] * 3
                            for i in 0..<h.count[ox] {
                                let w = k[i]
                                s0 &+= Int32(p[3 * i]) &* w
                                s1 &+= Int32(p[3 * i + 1]) &* w
                                s2 &+= Int32(p[3 * i + 2]) &* w
                            }
                            let out = (ty * tempWidth + tx) * 3
                            tmp[out] = ResampleAxis.clip8(s0)
                            tmp[out + 1] = ResampleAxis.clip8(s1)
                            tmp[out + 2] = ResampleAxis.clip8(s2)
                        }
                    }
                }
            }
        }
        guard let v = vertical else {
            return RGBImage(width: tempWidth, height: rows.count, pixels: temp)
        }
        var result = [UInt8](repeating: 0, count: tempWidth * rows.count * 3)
        let rowLength = tempWidth * 3
        temp.withUnsafeBufferPointer { tmp in
            result.withUnsafeMutableBufferPointer { out in
                v.weights.withUnsafeBufferPointer { weights in
                    var sums = [Int32](repeating: 0, count: rowLength)
                    sums.withUnsafeMutableBufferPointer { acc in
                        for (ry, oy) in rows.enumerated() {
                            // Accumulate whole rows (contiguous, vectorisable), then clip.
                            for j in 0..<rowLength { acc[j] = bias }
                            let k = weights.baseAddress! + oy * v.width
                            for i in 0..<v.count[oy] {
                                let w = k[i]
                                let source = tmp.baseAddress! + (v.first[oy] + i - sourceRows.lowerBound) * rowLength
                                for j in 0..<rowLength { acc[j] &+= Int32(source[j]) &* w }
                            }
                            let target = out.baseAddress! + ry * rowLength
                            for j in 0..<rowLength { target[j] = ResampleAxis.clip8(acc[j]) }
                        }
                    }
                }
            }
        }
        return RGBImage(width: tempWidth, height: rows.count, pixels: result)
    }
}

extension RGBImage {
    /// `img.crop((x, y, x + width, y + height)).resize((outputWidth, outputHeight), BILINEAR)`.
    public func resizedCrop(x: Int, y: Int, width cropWidth: Int, height cropHeight: Int, outputWidth: Int, outputHeight: Int) -> RGBImage {
        resampled(
            crop: (x, y, cropWidth, cropHeight), outputWidth: outputWidth, outputHeight: outputHeight,
            columns: 0..<outputWidth, rows: 0..<outputHeight)
    }
}
