// Image decoding to 8-bit RGB: JPEG with libjpeg-turbo (accurate integer DCT and fancy
// upsampling, as Pillow decodes; only the region a transform reads is turned into pixels) and
// PNG with libpng; grayscale, palette, CMYK and alpha images become RGB the way Pillow's
// `convert("RGB")` makes them.
import CJPEG
import CPNG
import Foundation
import MaxQTensor

/// 8-bit RGB pixels, row-major, interleaved.
public struct RGBImage: Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The pixels as R, G and B planes (CHW bytes).
    public var planes: [UInt8] {
        let plane = width * height
        var out = [UInt8](repeating: 0, count: 3 * plane)
        for i in 0..<plane {
            for c in 0..<3 { out[c * plane + i] = pixels[3 * i + c] }
        }
        return out
    }
}

/// Decoded pixels of part of an image: `image` holds columns x..<x + image.width and rows
/// y..<y + image.height of the whole.
public struct PixelRegion: Sendable {
    public let image: RGBImage
    public let x: Int
    public let y: Int
}

public enum ImageError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case corrupt(path: String, reason: String)
    /// More pixels than `EncodedImage.maximumPixels`: refused before any pixel is allocated.
    case tooLarge(path: String, width: Int, height: Int)

    public var description: String {
        switch self {
        case let .unreadable(path, _), let .corrupt(path, _), let .tooLarge(path, _, _): "\(path): \(reason)"
        }
    }

    /// What went wrong, without the path.
    public var reason: String {
        switch self {
        case let .unreadable(_, reason): "cannot read: \(reason)"
        case let .corrupt(_, reason): "not a decodable image: \(reason)"
        case let .tooLarge(_, width, height):
            "image size (\(width) x \(height) pixels) exceeds the limit of "
                + "\(EncodedImage.maximumPixels) pixels, could be a decompression bomb"
        }
    }
}

/// An image file read into memory with its size known; pixels are decoded on request.
public struct EncodedImage: Sendable {
    /// Pillow's decompression-bomb limit (twice its warning threshold of 89,478,485 pixels):
    /// a few kilobytes of JPEG or PNG can claim gigabytes of pixels.
    public static let maximumPixels = 2 * 89_478_485

    public let path: String
    public let width: Int
    public let height: Int
    private let content: Content

    private enum Content: Sendable {
        case jpeg(Data, channels: Int)
        case decoded(RGBImage)
    }

    public init(path: String) throws(ImageError) {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw .unreadable(path: path, reason: FileProblem.describe(path, error))
        }
        try self.init(data, path: path)
    }

    /// Reads the header of a JPEG (pixels come later, by region); decodes a PNG whole.
    public init(_ data: Data, path: String) throws(ImageError) {
        self.path = path
        if data.starts(with: [0xFF, 0xD8]) {
            var header = mq_jpeg_header()
            var message = [CChar](repeating: 0, count: 256)
            let status = data.withUnsafeBytes { raw in
                mq_jpeg_read_header(
                    raw.bindMemory(to: UInt8.self).baseAddress, data.count, &header, &message, message.count)
            }
            guard status == 0, header.width > 0, header.height > 0 else {
                throw .corrupt(path: path, reason: Self.text(message))
            }
            (width, height) = (Int(header.width), Int(header.height))
            try Self.checkPixelCount(width, height, path: path)
            content = .jpeg(data, channels: Int(header.channels))
        } else if data.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
            let image = try Self.decodePNG(data, path: path)
            (width, height) = (image.width, image.height)
            content = .decoded(image)
        } else {
            throw .corrupt(path: path, reason: "neither JPEG nor PNG")
        }
    }

    /// The whole image.
    public func decoded() throws(ImageError) -> RGBImage {
        try decode(columns: 0..<width, rows: 0..<height).image
    }

    /// Which decoder reads a progressive JPEG's scans; all give the same pixels.
    public enum EntropyDecoder: Sendable {
        /// Ours (Sources/CJPEG/progressive_entropy.c), with pdep where the CPU does it fast.
        case fast
        /// Ours without pdep (what AMD CPUs before Zen 3 run).
        case portable
        /// libjpeg-turbo's own.
        case libjpeg
    }

    /// Pixels covering `columns` x `rows` of the image, equal to the whole image's there. A
    /// JPEG converts only those rows and the iMCU columns around them.
    public func decode(columns: Range<Int>, rows: Range<Int>, entropy: EntropyDecoder = .fast) throws(ImageError)
        -> PixelRegion
    {
        switch content {
        case let .decoded(image):
            return PixelRegion(image: image, x: 0, y: 0)
        case let .jpeg(data, channels):
            let capacity = width * rows.count * channels
            var region = mq_jpeg_region()
            var message = [CChar](repeating: 0, count: 256)
            var status: Int32 = 0
            var pixels = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
                status = data.withUnsafeBytes { raw in
                    mq_jpeg_decode_region(
                        raw.bindMemory(to: UInt8.self).baseAddress, data.count, Int32(columns.lowerBound),
                        Int32(rows.lowerBound),
                        Int32(columns.upperBound), Int32(rows.upperBound), entropy.cValue, buffer.baseAddress, capacity,
                        &region, &message, message.count)
                }
                count = status == 0 ? Int(region.width) * Int(region.height) * channels : 0
            }
            guard status == 0 else { throw .corrupt(path: path, reason: Self.text(message)) }
            if channels == 4 { pixels = Self.rgb(fromInvertedCMYK: pixels) }
            return PixelRegion(
                image: RGBImage(width: Int(region.width), height: Int(region.height), pixels: pixels), x: Int(region.x),
                y: rows.lowerBound)
        }
    }

    /// Adobe CMYK JPEGs store inverted values; Pillow's CMYK->RGB is then r = c * k / 255.
    private static func rgb(fromInvertedCMYK cmyk: [UInt8]) -> [UInt8] {
        let count = cmyk.count / 4
        var rgb = [UInt8](repeating: 0, count: count * 3)
        for i in 0..<count {
            let k = Int(cmyk[4 * i + 3])
            for c in 0..<3 { rgb[3 * i + c] = UInt8((Int(cmyk[4 * i + c]) * k + 127) / 255) }
        }
        return rgb
    }

    /// A C library's NUL-terminated message buffer as text.
    private static func text(_ message: [CChar]) -> String {
        String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func checkPixelCount(_ width: Int, _ height: Int, path: String) throws(ImageError) {
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, pixels <= maximumPixels else { throw .tooLarge(path: path, width: width, height: height) }
    }

    private static func decodePNG(_ data: Data, path: String) throws(ImageError) -> RGBImage {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        let begun = data.withUnsafeBytes { png_image_begin_read_from_memory(&image, $0.baseAddress, data.count) }
        guard begun != 0 else { throw .corrupt(path: path, reason: pngMessage(&image)) }
        defer { png_image_free(&image) }
        // Read RGBA and drop alpha: Pillow's convert("RGB") discards alpha without compositing.
        image.format = UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA)  // PNG_FORMAT_RGBA
        let (width, height) = (Int(image.width), Int(image.height))
        try checkPixelCount(width, height, path: path)
        var rgba = [UInt8](repeating: 0, count: width * height * 4)
        let finished = rgba.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
        guard finished != 0 else { throw .corrupt(path: path, reason: pngMessage(&image)) }
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<width * height {
            rgb[3 * i] = rgba[4 * i]
            rgb[3 * i + 1] = rgba[4 * i + 1]
            rgb[3 * i + 2] = rgba[4 * i + 2]
        }
        return RGBImage(width: width, height: height, pixels: rgb)
    }

    private static func pngMessage(_ image: inout png_image) -> String {
        withUnsafeBytes(of: &image.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}

extension EncodedImage.EntropyDecoder {
    var cValue: mq_jpeg_entropy {
        switch self {
        case .fast: mq_jpeg_fast_entropy
        case .portable: mq_jpeg_portable_entropy
        case .libjpeg: mq_jpeg_libjpeg_entropy
        }
    }
}
