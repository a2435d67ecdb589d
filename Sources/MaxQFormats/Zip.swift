// The subset of the ZIP format that PyTorch's `torch.save` uses: uncompressed ("stored")
// entries, read through the central directory, and written with 64-byte aligned data as
// PyTorch writes them (so that `torch.load` can map storages).
import Foundation

public enum ZipError: Error, Equatable, CustomStringConvertible {
    case malformed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .malformed(path, reason): "\(path): not a readable PyTorch zip archive: \(reason)"
        }
    }
}

struct ZipArchive {
    /// Entry name to the byte range of its data in `data`.
    let entries: [String: Range<Int>]
    let data: Data

    init(data: Data, path: String) throws(ZipError) {
        self.data = data
        func u16(_ at: Int) -> Int { Int(data[data.startIndex + at]) | Int(data[data.startIndex + at + 1]) << 8 }
        func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
        // End of central directory: signature 0x06054b50 within the last 64 KiB + 22 bytes.
        guard data.count >= 22 else { throw .malformed(path: path, reason: "\(data.count) bytes is too short") }
        var end = data.count - 22
        while end >= max(0, data.count - 65_557), u32(end) != 0x0605_4b50 { end -= 1 }
        guard end >= 0, u32(end) == 0x0605_4b50 else {
            throw .malformed(path: path, reason: "no end-of-central-directory record (truncated, or not a zip file)")
        }
        let count = u16(end + 10)
        var offset = u32(end + 16)
        guard offset != 0xFFFF_FFFF else { throw .malformed(path: path, reason: "ZIP64 archives are not supported") }
        var entries: [String: Range<Int>] = [:]
        for _ in 0..<count {
            guard offset + 46 <= data.count, u32(offset) == 0x0201_4b50 else {
                throw .malformed(path: path, reason: "central directory entry at \(offset) is damaged")
            }
            let method = u16(offset + 10)
            let size = u32(offset + 20)
            let nameLength = u16(offset + 28), extraLength = u16(offset + 30), commentLength = u16(offset + 32)
            let local = u32(offset + 42)
            guard offset + 46 + nameLength <= data.count else {
                throw .malformed(
                    path: path, reason: "central directory entry at \(offset) names past the end of the file")
            }
            let name = String(
                decoding: data[(data.startIndex + offset + 46)..<(data.startIndex + offset + 46 + nameLength)],
                as: UTF8.self)
            guard method == 0 else {
                throw .malformed(path: path, reason: "entry '\(name)' is compressed (method \(method))")
            }
            guard local + 30 <= data.count, u32(local) == 0x0403_4b50 else {
                throw .malformed(path: path, reason: "local header of '\(name)' is damaged")
            }
            let start = local + 30 + u16(local + 26) + u16(local + 28)
            guard start + size <= data.count else {
                throw .malformed(path: path, reason: "entry '\(name)' runs past the end: truncated?")
            }
            entries[name] = start..<start + size
            offset += 46 + nameLength + extraLength + commentLength
        }
        self.entries = entries
    }

    func contents(_ name: String) -> Data? {
        entries[name].map { data.subdata(in: data.startIndex + $0.lowerBound..<data.startIndex + $0.upperBound) }
    }
}

/// Writes a stored (uncompressed) archive; each entry's data starts on a 64-byte boundary.
struct ZipWriter {
    private(set) var data = Data()
    private var central = Data()
    private var count = 0

    mutating func add(_ name: String, _ contents: Data) {
        let nameBytes = Data(name.utf8)
        let headerEnd = data.count + 30 + nameBytes.count
        let padding = (64 - (headerEnd + 4) % 64) % 64  // extra field: 4-byte header + padding
        let crc = CRC32.checksum(contents)
        let offset = data.count
        var local = Data()
        local.append32(0x0403_4b50); local.append16(20); local.append16(0); local.append16(0)
        local.append16(0); local.append16(0x21)  // time, date (1980-01-01)
        local.append32(crc); local.append32(UInt32(contents.count)); local.append32(UInt32(contents.count))
        local.append16(UInt16(nameBytes.count)); local.append16(UInt16(4 + padding))
        local.append(nameBytes)
        local.append16(0x4346); local.append16(UInt16(padding))  // a private "FB" padding field, as PyTorch's writer
        local.append(Data(repeating: 0, count: padding))
        data.append(local)
        data.append(contents)
        central.append32(0x0201_4b50); central.append16(20); central.append16(20); central.append16(0);
        central.append16(0)
        central.append16(0); central.append16(0x21)
        central.append32(crc); central.append32(UInt32(contents.count)); central.append32(UInt32(contents.count))
        central.append16(UInt16(nameBytes.count)); central.append16(0); central.append16(0)
        central.append16(0); central.append16(0); central.append32(0); central.append32(UInt32(offset))
        central.append(nameBytes)
        count += 1
    }

    func finished() -> Data {
        var out = data
        let start = out.count
        out.append(central)
        out.append32(0x0605_4b50); out.append16(0); out.append16(0)
        out.append16(UInt16(count)); out.append16(UInt16(count))
        out.append32(UInt32(central.count)); out.append32(UInt32(start)); out.append16(0)
        return out
    }
}

enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ data: Data) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for byte in data { c = table[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }
}

extension Data {
    mutating func append16(_ v: UInt16) { Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) } }
    mutating func append32(_ v: UInt32) { Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) } }
}
