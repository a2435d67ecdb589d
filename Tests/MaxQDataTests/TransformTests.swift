// Decoding and resizing against Pillow and torchvision (Scripts/make_fixtures.py).
import Foundation
import MaxQData
import MaxQFormats
import MaxQTensor
import MaxQTestSupport
import Testing

@Suite struct TransformTests {
    static let images = ["photo.jpg", "wide.png", "alpha.png", "gray.png"]

    @Test(arguments: images)
    func decodesLikePillow(_ name: String) throws {
        let expected = try SafetensorsFile.read(path: Fixtures.path("images/expected.safetensors"))
        let image = try EncodedImage(path: Fixtures.path("images/\(name)")).decoded()
        let reference = try expected.tensor(name.replacingOccurrences(of: ".", with: "_") + ".decoded")
        #expect([image.height, image.width, 3] == reference.shape)
        #expect(image.pixels.map(Float.init) == reference.scalars)
    }

    @Test(arguments: images)
    func validationTransformMatchesTorchvision(_ name: String) throws {
        let expected = try SafetensorsFile.read(path: Fixtures.path("images/expected.safetensors"))
        let image = try EncodedImage(path: Fixtures.path("images/\(name)"))
        var out = Tensor(zeros: [3, 14, 14])
        try out.withUnsafeMutableBufferPointer {
            try ValidationTransform.apply(image, resize: 16, crop: 14, into: $0.baseAddress!)
        }
        // Within 1/255 per pixel before normalisation (std >= 0.224): exact in practice.
        let reference = try expected.tensor(name.replacingOccurrences(of: ".", with: "_") + ".val")
        #expect(toleranceFailure(out, reference, rtol: 0, atol: 1e-5) == nil)
    }

    @Test(arguments: images)
    func cropResizeMatchesPillow(_ name: String) throws {
        let expected = try SafetensorsFile.read(path: Fixtures.path("images/expected.safetensors"))
        let image = try EncodedImage(path: Fixtures.path("images/\(name)")).decoded()
        let crop = image.resizedCrop(x: 2, y: 3, width: 11, height: 19, outputWidth: 17, outputHeight: 13)
        let reference = try expected.tensor(name.replacingOccurrences(of: ".", with: "_") + ".crop")
        for c in 0..<3 {
            for y in 0..<13 {
                for x in 0..<17 {
                    let ours = Float(crop.pixels[(y * 17 + x) * 3 + c]) / 255
                    // Pillow 13 sometimes runs the vertical pass first, which can round an 8-bit
                    // intermediate differently: within 1/255, the bound of the specification.
                    #expect(
                        abs(ours - reference[flat: (c * 13 + y) * 17 + x]) <= 1 / 255 + 1e-6,
                        "\(name) (\(c), \(y), \(x))")
                }
            }
        }
    }

    @Test func oneRecipeDecidesBetweenImageNetAndCIFARTransforms() {
        for (resolution, small) in [(32, true), (64, true), (65, false), (224, false)] {
            let recipe = ImageRecipe(resolution: resolution)
            #expect(recipe.isSmall == small)
            #expect(recipe.normalization == (small ? .cifar : .imageNet))
        }
        #expect(ImageRecipe(resolution: 224).validationResize == 256)
        #expect(ImageRecipe(resolution: 32).validationResize == 32)
    }

    /// A small image whose shorter side is the resolution is only centre-cropped and normalised:
    /// CIFAR's 32x32 pictures reach the network exactly as torchvision's ToTensor + Normalize
    /// gives them.
    @Test(arguments: images)
    func smallValidationOfAnImageAtTheResolutionIsCropAndNormalisationOnly(_ name: String) throws {
        let encoded = try EncodedImage(path: Fixtures.path("images/\(name)"))
        let image = try encoded.decoded()
        let side = min(image.width, image.height)
        let (left, top) = ((image.width - side) / 2, (image.height - side) / 2)
        var out = Tensor(zeros: [3, side, side])
        try out.withUnsafeMutableBufferPointer {
            try ImageRecipe(resolution: side).validation(encoded, into: $0.baseAddress!)
        }
        let n = Normalization.cifar
        let (means, stds) = ([n.mean.0, n.mean.1, n.mean.2], [n.std.0, n.std.1, n.std.2])
        for c in 0..<3 {
            for y in 0..<side {
                for x in 0..<side {
                    let pixel = Float(image.pixels[((top + y) * image.width + left + x) * 3 + c]) / 255
                    #expect(
                        abs(out[flat: (c * side + y) * side + x] - (pixel - means[c]) / stds[c]) <= 1e-6,
                        "\(name) (\(c), \(y), \(x))")
                }
            }
        }
    }

    @Test func corruptAndMissingImagesAreNamed() {
        #expect(throws: ImageError.self) { try EncodedImage(path: "/nonexistent.jpg") }
        #expect { try EncodedImage(Data("not an image".utf8), path: "x.jpg") } throws: {
            "\($0)".contains("x.jpg")
        }
        var truncated = [UInt8]([0xFF, 0xD8, 0xFF, 0xE0, 0, 16])
        truncated += [UInt8](repeating: 0, count: 20)
        #expect(throws: ImageError.self) { try EncodedImage(Data(truncated), path: "t.jpg") }
    }
}
