// How a picture becomes a network input at a given resolution. The one place that decides
// between ImageNet's transforms and CIFAR's (small images): training, evaluation, `predict`
// and the data benchmark all ask it.
import MaxQTensor

public struct ImageRecipe: Sendable, Equatable {
    /// Resolutions up to this are small images: CIFAR's transforms and normalisation.
    public static let smallImageLimit = 64

    public let resolution: Int

    public init(resolution: Int) {
        self.resolution = resolution
    }

    public var isSmall: Bool { resolution <= Self.smallImageLimit }
    public var normalization: Normalization { isSmall ? .cifar : .imageNet }
    /// The shorter side before validation's centre crop: torchvision's 256 for 224 (the same
    /// ratio at other sizes); small images are only brought to the resolution.
    public var validationResize: Int { isSmall ? resolution : resolution * 256 / 224 }

    /// Large: RandomResizedCrop, flip, lighting. Small: brought to resolution x resolution if it is
    /// not already, then RandomCrop with 4 pixels of zero padding and flip.
    public func train(
        _ image: EncodedImage, generator: inout RandomGenerator, into destination: UnsafeMutablePointer<Float>
    ) throws(ImageError) {
        guard isSmall else {
            try TrainTransform.apply(
                image, size: resolution, normalization: normalization, generator: &generator, into: destination)
            return
        }
        let decoded = try image.decoded()
        let fitted =
            decoded.width == resolution && decoded.height == resolution
            ? decoded
            : decoded.resizedCrop(
                x: 0, y: 0, width: decoded.width, height: decoded.height, outputWidth: resolution,
                outputHeight: resolution)
        fitted.planes.withUnsafeBufferPointer { planes in
            CIFARTransform.apply(
                planes: planes.baseAddress!, size: resolution, train: true, generator: &generator, into: destination)
        }
    }

    /// Shorter side resized (Pillow's antialiased bilinear), centre crop, normalisation.
    public func validation(_ image: EncodedImage, into destination: UnsafeMutablePointer<Float>) throws(ImageError) {
        try ValidationTransform.apply(
            image, resize: validationResize, crop: resolution, normalization: normalization, into: destination)
    }
}
