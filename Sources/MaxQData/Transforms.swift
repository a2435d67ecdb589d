// torchvision's transforms with their exact arithmetic, writing normalised CHW floats straight
// into a batch tensor: validation (Resize(256) + CenterCrop(224)).
import Foundation

/// Per-channel mean and standard deviation of `Normalize`.
public struct Normalization: Sendable {
    public let mean: (Float, Float, Float)
    public let std: (Float, Float, Float)

    /// ImageNet statistics (torchvision's reference scripts).
    public static let imageNet = Normalization(mean: (0.485, 0.456, 0.406), std: (0.229, 0.224, 0.225))
    /// CIFAR statistics of TRAINING.md.
    public static let cifar = Normalization(mean: (0.491, 0.482, 0.447), std: (0.247, 0.243, 0.262))

    /// ToTensor, an optional flip and per-channel offset (lighting), then Normalize, of an
    /// RGB image into `destination` (3, H, W): one pass.
    func write(_ image: RGBImage, to destination: UnsafeMutablePointer<Float>, flip: Bool = false, offsets: [Float] = [0, 0, 0]) {
        let plane = image.width * image.height
        let means = [mean.0, mean.1, mean.2], stds = [std.0, std.1, std.2]
        image.pixels.withUnsafeBufferPointer { pixels in
            for c in 0..<3 {
                let out = destination + c * plane
                let (shift, inverse) = (offsets[c] - means[c], 1 / stds[c])
                for y in 0..<image.height {
                    for x in 0..<image.width {
                        let sx = flip ? image.width - 1 - x : x
                        let v = Float(pixels[(y * image.width + sx) * 3 + c]) / 255
                        out[y * image.width + x] = (v + shift) * inverse
                    }
                }
            }
        }
    }
}

public enum ValidationTransform {
    /// Resize the shorter side to `resize` (antialiased bilinear as Pillow), centre-crop `crop`.
    public static func apply(
        _ image: RGBImage, resize: Int = 256, crop: Int = 224, normalization: Normalization = .imageNet,
        into destination: UnsafeMutablePointer<Float>
    ) {
        // torchvision: the longer side is int(resize * long / short).
        let (width, height) = image.width <= image.height
            ? (resize, Int(Double(resize) * Double(image.height) / Double(image.width)))
            : (Int(Double(resize) * Double(image.width) / Double(image.height)), resize)
        // CenterCrop: offsets int(round((size - crop) / 2)) with Python's round-half-even.
        let top = Int((Double(height - crop) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(width - crop) / 2).rounded(.toNearestOrEven))
        let cropped = image.resampled(
            crop: (0, 0, image.width, image.height), outputWidth: width, outputHeight: height,
            columns: left..<left + crop, rows: top..<top + crop)
        normalization.write(cropped, to: destination)
    }
}
