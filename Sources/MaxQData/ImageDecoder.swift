// Image decoding to 8-bit RGB: JPEG with libjpeg-turbo (accurate integer DCT and fancy
// upsampling, as Pillow decodes) and PNG with libpng; grayscale, palette, CMYK and alpha
// images become RGB the way Pillow's `convert("RGB")` makes them.
import CPNG
import CTurboJPEG
import Foundation

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

public enum ImageError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case corrupt(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): "\(path): cannot read: \(reason)"
        case let .corrupt(path, reason): "\(path): not a decodable image: \(reason)"
        }
    }
}

public enum ImageDecoder {
    public static func decode(path: String) throws(ImageError) -> RGBImage {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw .unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        return try decode(data, path: path)
    }

    public static func decode(_ data: Data, path: String) throws(ImageError) -> RGBImage {
        if data.starts(with: [0xFF, 0xD8]) { return try decodeJPEG(data, path: path) }
        if data.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return try decodePNG(data, path: path) }
        throw .corrupt(path: path, reason: "neither JPEG nor PNG")
    }

    static func decodeJPEG(_ data: Data, path: String) throws(ImageError) -> RGBImage {
        guard let handle = tjInitDecompress() else { throw .corrupt(path: path, reason: "libjpeg-turbo failed to start") }
        defer { tjDestroy(handle) }
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let header = data.withUnsafeBytes { raw in
            tjDecompressHeader3(handle, raw.bindMemory(to: UInt8.self).baseAddress, UInt(data.count), &width, &height, &subsampling, &colorspace)
        }
        guard header == 0, width > 0, height > 0 else { throw .corrupt(path: path, reason: String(cString: tjGetErrorStr2(handle))) }
        let cmyk = colorspace == TJCS_CMYK.rawValue || colorspace == TJCS_YCCK.rawValue
        let channels = cmyk ? 4 : 3
        var out = [UInt8](repeating: 0, count: Int(width) * Int(height) * channels)
        let status = data.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { o in
                tjDecompress2(
                    handle, raw.bindMemory(to: UInt8.self).baseAddress, UInt(data.count), o.baseAddress, width, 0, height,
                    cmyk ? TJPF_CMYK.rawValue : TJPF_RGB.rawValue, TJFLAG_ACCURATEDCT)
            }
        }
        // A warning (status -1 with a recoverable error) still yields an image, as in Pillow.
        if status != 0 && tjGetErrorCode(handle) == TJERR_FATAL.rawValue {
            throw .corrupt(path: path, reason: String(cString: tjGetErrorStr2(handle)))
        }
        guard cmyk else { return RGBImage(width: Int(width), height: Int(height), pixels: out) }
        // Adobe CMYK JPEGs store inverted values; Pillow's CMYK->RGB is then r = c * k / 255.
        var rgb = [UInt8](repeating: 0, count: Int(width) * Int(height) * 3)
        for i in 0..<Int(width) * Int(height) {
            let k = Int(out[4 * i + 3])
            for c in 0..<3 { rgb[3 * i + c] = UInt8((Int(out[4 * i + c]) * k + 127) / 255) }
        }
        return RGBImage(width: Int(width), height: Int(height), pixels: rgb)
    }

    static func decodePNG(_ data: Data, path: String) throws(ImageError) -> RGBImage {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        let begun = data.withUnsafeBytes { png_image_begin_read_from_memory(&image, $0.baseAddress, data.count) }
        guard begun != 0 else { throw .corrupt(path: path, reason: pngMessage(&image)) }
        defer { png_image_free(&image) }
        // Read RGBA and drop alpha: Pillow's convert("RGB") discards alpha without compositing.
        image.format = UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA)  // PNG_FORMAT_RGBA
        let (width, height) = (Int(image.width), Int(image.height))
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
