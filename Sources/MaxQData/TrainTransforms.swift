// The training transforms with torchvision's sampling: RandomResizedCrop (with its fallback to
// a centre crop), horizontal flip, PCA lighting noise, normalisation; and CIFAR's RandomCrop
// with 4 pixels of zero padding and flip.
import Foundation
import MaxQTensor

/// torchvision's RandomResizedCrop.get_params: (x, y, width, height) of the crop.
public func randomResizedCropBox(
    width: Int, height: Int, scale: (Double, Double) = (0.08, 1), ratio: (Double, Double) = (3.0 / 4, 4.0 / 3),
    generator: inout RandomGenerator
) -> (x: Int, y: Int, width: Int, height: Int) {
    let area = Double(width * height)
    let logRatio = (Foundation.log(ratio.0), Foundation.log(ratio.1))
    for _ in 0..<10 {
        let target = area * (scale.0 + (scale.1 - scale.0) * generator.uniformDouble())
        let aspect = Foundation.exp(logRatio.0 + (logRatio.1 - logRatio.0) * generator.uniformDouble())
        let w = Int((target * aspect).squareRoot().rounded(.toNearestOrEven))
        let h = Int((target / aspect).squareRoot().rounded(.toNearestOrEven))
        if w > 0, w <= width, h > 0, h <= height {
            let y = generator.integer(below: height - h + 1)
            let x = generator.integer(below: width - w + 1)
            return (x, y, w, h)
        }
    }
    // Fallback: a centre crop clamped to the ratio range.
    let inRatio = Double(width) / Double(height)
    var (w, h) = (width, height)
    if inRatio < ratio.0 {
        h = Int((Double(w) / ratio.0).rounded(.toNearestOrEven))
    } else if inRatio > ratio.1 {
        w = Int((Double(h) * ratio.1).rounded(.toNearestOrEven))
    }
    return ((width - w) / 2, (height - h) / 2, w, h)
}

/// AlexNet-style PCA lighting noise: eigenvalues and eigenvectors (rows) of ImageNet's RGB
/// covariance, as the reference code's `Lighting(0.1, ...)`.
public enum Lighting {
    static let eigenvalues: [Float] = [0.2175, 0.0188, 0.0045]
    static let eigenvectors: [[Float]] = [
        [0.4009, 0.7192, -0.5675], [-0.8140, -0.0045, -0.5808], [0.4203, -0.6948, -0.5836],
    ]

    /// The offset added to each channel: sum_i alpha_i * eigval_i * eigvec[i][c], alpha ~ N(0, std).
    public static func offsets(std: Float = 0.1, generator: inout RandomGenerator) -> [Float] {
        let alpha = (0..<3).map { _ in generator.normal(mean: 0, std: std) }
        return (0..<3).map { c in (0..<3).reduce(0) { $0 + alpha[$1] * eigenvalues[$1] * eigenvectors[$1][c] } }
    }
}

public enum TrainTransform {
    /// RandomResizedCrop(size), flip p = 0.5, to [0, 1], lighting, normalise, into (3, size, size).
    public static func apply(
        _ image: EncodedImage, size: Int = 224, lighting: Bool = true, normalization: Normalization = .imageNet,
        generator: inout RandomGenerator, into destination: UnsafeMutablePointer<Float>
    ) throws(ImageError) {
        let box = randomResizedCropBox(width: image.width, height: image.height, generator: &generator)
        let flip = generator.uniform() < 0.5
        let offsets = lighting ? Lighting.offsets(generator: &generator) : [0, 0, 0]
        let resampling = Resampling(crop: box, outputWidth: size, outputHeight: size)
        let source = try image.decode(columns: resampling.sourceColumns, rows: resampling.sourceRows)
        normalization.write(resampling, of: source, to: destination, flip: flip, offsets: offsets)
    }
}

public enum CIFARTransform {
    /// RandomCrop(32, padding 4) with zero padding, flip p = 0.5, normalise; `train: false`
    /// normalises only. `planes` holds the image as R, G, B planes of `size` x `size` bytes.
    public static func apply(
        planes: UnsafePointer<UInt8>, size: Int = 32, train: Bool, generator: inout RandomGenerator,
        into destination: UnsafeMutablePointer<Float>
    ) {
        let padding = 4
        let (dx, dy) =
            train
            ? (generator.integer(below: 2 * padding + 1) - padding, generator.integer(below: 2 * padding + 1) - padding)
            : (0, 0)
        let flip = train && generator.uniform() < 0.5
        let n = Normalization.cifar
        let means = [n.mean.0, n.mean.1, n.mean.2], stds = [n.std.0, n.std.1, n.std.2]
        for c in 0..<3 {
            for y in 0..<size {
                for x in 0..<size {
                    let sx = (flip ? size - 1 - x : x) + dx, sy = y + dy
                    let inside = sx >= 0 && sx < size && sy >= 0 && sy < size
                    let v = inside ? Float(planes[(c * size + sy) * size + sx]) / 255 : 0
                    destination[(c * size + y) * size + x] = (v - means[c]) / stds[c]
                }
            }
        }
    }
}
