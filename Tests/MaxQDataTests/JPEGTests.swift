// JPEG decoding: our progressive entropy decoder and region decoding give exactly the pixels
// Pillow gives (Scripts/make_jpeg_fixtures.py), and transforms that decode only the region
// they read equal the same transforms on the whole image.
import Foundation
import MaxQData
import MaxQFormats
import MaxQTensor
import MaxQTestSupport
import Testing

@Suite struct JPEGTests {
    static let names = [
        "progressive_420.jpg", "progressive_444_restarts.jpg", "progressive_422_optimized.jpg", "progressive_gray.jpg",
        "progressive_cmyk.jpg", "baseline_420_restarts.jpg",
    ]

    static func image(_ name: String) throws -> EncodedImage {
        try EncodedImage(path: Fixtures.path("images/jpeg/\(name)"))
    }

    /// Bytes that differ, all of them when one side has no image.
    static func differing(_ a: PixelRegion?, _ b: PixelRegion?) -> Int {
        guard let a, let b, a.image.pixels.count == b.image.pixels.count else {
            return max(a?.image.pixels.count ?? 1, 1)
        }
        return zip(a.image.pixels, b.image.pixels).filter { $0 != $1 }.count
    }

    @Test(arguments: names)
    func decodesLikePillow(_ name: String) throws {
        let expected = try SafetensorsFile.read(path: Fixtures.path("images/jpeg/expected.safetensors"))
        let reference = try expected.tensor(name.replacingOccurrences(of: ".", with: "_"))
        let image = try Self.image(name).decoded()
        #expect([image.height, image.width, 3] == reference.shape)
        #expect(image.pixels.map(Float.init) == reference.scalars)
    }

    @Test(arguments: names)
    func ourEntropyDecodersEqualLibjpegs(_ name: String) throws {
        let image = try Self.image(name)
        let libjpeg = try image.decode(columns: 0..<image.width, rows: 0..<image.height, entropy: .libjpeg)
        for entropy in [EncodedImage.EntropyDecoder.fast, .portable] {
            let ours = try image.decode(columns: 0..<image.width, rows: 0..<image.height, entropy: entropy)
            #expect(Self.differing(ours, libjpeg) == 0, "\(entropy)")
        }
    }

    @Test(arguments: names)
    func truncatedFilesAreRefusedAsPillowRefusesThem(_ name: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/jpeg/\(name)")))
        // The last cut leaves only the end marker missing.
        for cut in [data.count * 35 / 100, data.count * 85 / 100, data.count - 2] {
            #expect(throws: ImageError.self, "\(name) cut to \(cut) bytes") {
                try EncodedImage(Data(data.prefix(cut)), path: name)
            }
        }
        // Data after the end marker (an appended preview, say) is fine, as in Pillow.
        _ = try EncodedImage(data + Data("trailing bytes".utf8), path: name)
    }

    @Test(arguments: names)
    func corruptFilesDecodeAsLibjpegDecodesThem(_ name: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/jpeg/\(name)")))
        var generator = RandomGenerator(seed: 3)
        var decoded = 0
        for trial in 0..<8 {
            var bytes = [UInt8](data)
            for _ in 0..<3 {
                bytes[data.count / 3 + generator.integer(below: data.count * 2 / 3 - 2)] = UInt8(
                    generator.integer(below: 256))
            }
            // Garbage where the data is wrong, exactly as libjpeg makes it (our decoder hands
            // damaged scans to libjpeg's); damaged markers are an error for both.
            guard let image = try? EncodedImage(Data(bytes), path: name) else { continue }
            let libjpeg = try? image.decode(columns: 0..<image.width, rows: 0..<image.height, entropy: .libjpeg)
            for entropy in [EncodedImage.EntropyDecoder.fast, .portable] {
                let ours = try? image.decode(columns: 0..<image.width, rows: 0..<image.height, entropy: entropy)
                #expect((ours == nil) == (libjpeg == nil), "\(name) corrupted \(trial) \(entropy)")
                if ours != nil { #expect(Self.differing(ours, libjpeg) == 0, "\(name) corrupted \(trial) \(entropy)") }
            }
            decoded += libjpeg == nil ? 0 : 1
        }
        #expect(decoded > 0)
    }

    @Test(arguments: names)
    func regionsEqualTheWholeImage(_ name: String) throws {
        let image = try Self.image(name)
        let whole = try image.decoded()
        var generator = RandomGenerator(seed: 7)
        for trial in 0..<40 {
            // Edges included: the first trials take the corners and full rows/columns.
            let x0 = trial < 4 ? (trial % 2) * (image.width - 1) : generator.integer(below: image.width)
            let y0 = trial < 4 ? (trial / 2) * (image.height - 1) : generator.integer(below: image.height)
            let columns = x0..<x0 + 1 + generator.integer(below: image.width - x0)
            let rows = y0..<y0 + 1 + generator.integer(below: image.height - y0)
            let region = try image.decode(columns: columns, rows: rows)
            #expect(region.x <= columns.lowerBound && region.x + region.image.width >= columns.upperBound)
            #expect(region.y == rows.lowerBound && region.image.height == rows.count)
            var differing = 0
            for y in rows {
                for x in columns {
                    for c in 0..<3 {
                        let inRegion = region.image.pixels[((y - region.y) * region.image.width + x - region.x) * 3 + c]
                        if inRegion != whole.pixels[(y * whole.width + x) * 3 + c] { differing += 1 }
                    }
                }
            }
            #expect(differing == 0, "\(name): columns \(columns), rows \(rows)")
        }
    }

    /// ToTensor + Normalize(ImageNet) of an RGB image, flipped or not, with lighting offsets.
    static func normalized(_ image: RGBImage, flip: Bool = false, offsets: [Float] = [0, 0, 0]) -> [Float] {
        let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
        var out = [Float](repeating: 0, count: 3 * image.width * image.height)
        for c in 0..<3 {
            for y in 0..<image.height {
                for x in 0..<image.width {
                    let v = Float(image.pixels[(y * image.width + (flip ? image.width - 1 - x : x)) * 3 + c])
                    out[(c * image.height + y) * image.width + x] = (v / 255 + (offsets[c] - mean[c])) * (1 / std[c])
                }
            }
        }
        return out
    }

    @Test(arguments: names)
    func trainTransformFromARegionEqualsTheWholeImagePath(_ name: String) throws {
        let image = try Self.image(name)
        let whole = try image.decoded()
        for seed in 0..<12 as Range<UInt64> {
            let size = [24, 40, 77][Int(seed) % 3]  // down- and upscaling
            var out = [Float](repeating: 0, count: 3 * size * size)
            var generator = RandomGenerator(seed: seed)
            try out.withUnsafeMutableBufferPointer {
                try TrainTransform.apply(image, size: size, generator: &generator, into: $0.baseAddress!)
            }
            // The same draws, in the same order, on the whole decoded image.
            var draws = RandomGenerator(seed: seed)
            let box = randomResizedCropBox(width: image.width, height: image.height, generator: &draws)
            let flip = draws.uniform() < 0.5
            let offsets = Lighting.offsets(generator: &draws)
            let crop = whole.resizedCrop(
                x: box.x, y: box.y, width: box.width, height: box.height, outputWidth: size, outputHeight: size)
            #expect(out == Self.normalized(crop, flip: flip, offsets: offsets), "\(name) seed \(seed) box \(box)")
        }
    }

    @Test(arguments: names)
    func validationTransformFromARegionEqualsTheWholeImagePath(_ name: String) throws {
        let image = try Self.image(name)
        let (resize, crop) = (36, 30)
        var out = [Float](repeating: 0, count: 3 * crop * crop)
        try out.withUnsafeMutableBufferPointer {
            try ValidationTransform.apply(image, resize: resize, crop: crop, into: $0.baseAddress!)
        }
        let (width, height) =
            image.width <= image.height
            ? (resize, Int(Double(resize) * Double(image.height) / Double(image.width)))
            : (Int(Double(resize) * Double(image.width) / Double(image.height)), resize)
        let resized = try image.decoded().resizedCrop(
            x: 0, y: 0, width: image.width, height: image.height, outputWidth: width, outputHeight: height)
        let (top, left) = (
            Int((Double(height - crop) / 2).rounded(.toNearestOrEven)),
            Int((Double(width - crop) / 2).rounded(.toNearestOrEven))
        )
        var centre = [UInt8]()
        for y in top..<top + crop { centre += resized.pixels[(y * width + left) * 3..<(y * width + left + crop) * 3] }
        #expect(out == Self.normalized(RGBImage(width: crop, height: crop, pixels: centre)))
    }
}
