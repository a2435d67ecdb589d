// torchvision's transforms with their exact arithmetic, writing normalised CHW floats straight
// into a batch tensor: validation (Resize(256) + CenterCrop(224)).
import Foundation

/// Per-channel mean and standard deviation of `Normalize`.
public struct Normalization: Sendable, Equatable {
    public let mean: (Float, Float, Float)
    public let std: (Float, Float, Float)

    public static func == (a: Normalization, b: Normalization) -> Bool {
        a.mean == b.mean && a.std == b.std
    }

    /// ImageNet statistics (torchvision's reference scripts).
    public static let imageNet = Normalization(mean: (0.485, 0.456, 0.406), std: (0.229, 0.224, 0.225))
    /// CIFAR statistics (docs/training.md).
    public static let cifar = Normalization(mean: (0.491, 0.482, 0.447), std: (0.247, 0.243, 0.262))

    /// ToTensor, an optional horizontal flip and per-channel offset (lighting), then Normalize,
    /// of resampled rows into `destination` (3, height, width): each row is written as it is
    /// produced, through a table of the 256 values per channel.
    func write(
        _ resampling: Resampling, of source: PixelRegion, to destination: UnsafeMutablePointer<Float>,
        flip: Bool = false, offsets: [Float] = [0, 0, 0]
    ) {
        let (width, plane) = (resampling.columns.count, resampling.columns.count * resampling.rows.count)
        let means = [mean.0, mean.1, mean.2], stds = [std.0, std.1, std.2]
        var table = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            let (shift, inverse) = (offsets[c] - means[c], 1 / stds[c])
            for v in 0..<256 { table[c * 256 + v] = (Float(v) / 255 + shift) * inverse }
        }
        table.withUnsafeBufferPointer { table in
            let table = table.baseAddress!
            resampling.run(source) { y, pixels in
                for c in 0..<3 {
                    let (out, values) = (destination + c * plane + y * width, table + c * 256)
                    let channel = pixels + c  // interleaved RGB: this channel every third byte
                    if flip {
                        let last = out + (width &- 1)
                        for x in 0..<width { (last - x).pointee = values[Int(channel[x &* 3])] }
                    } else {
                        for x in 0..<width { out[x] = values[Int(channel[x &* 3])] }
                    }
                }
            }
        }
    }
}

public enum ValidationTransform {
    /// Resize the shorter side to `resize` (antialiased bilinear as Pillow), centre-crop `crop`.
    public static func apply(
        _ image: EncodedImage, resize: Int = 256, crop: Int = 224, normalization: Normalization = .imageNet,
        into destination: UnsafeMutablePointer<Float>
    ) throws(ImageError) {
        // torchvision: the longer side is int(resize * long / short).
        let (width, height) =
            image.width <= image.height
            ? (resize, Int(Double(resize) * Double(image.height) / Double(image.width)))
            : (Int(Double(resize) * Double(image.width) / Double(image.height)), resize)
        // CenterCrop: offsets int(round((size - crop) / 2)) with Python's round-half-even.
        let top = Int((Double(height - crop) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(width - crop) / 2).rounded(.toNearestOrEven))
        let resampling = Resampling(
            crop: (0, 0, image.width, image.height), outputWidth: width, outputHeight: height,
            columns: left..<left + crop, rows: top..<top + crop)
        let source = try image.decode(columns: resampling.sourceColumns, rows: resampling.sourceRows)
        normalization.write(resampling, of: source, to: destination)
    }
}
