// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length, a JSON header naming each tensor's dtype, shape and byte range, then the raw
// little-endian data. Reads F32, F16, BF16 and I64 (as float32) and U8 (as bytes); writes F32,
// U8 and `__metadata__`.
import Foundation
import MaxQTensor

public enum SafetensorsError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case malformed(path: String, reason: String)
    case missingTensor(path: String, name: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): "\(path): cannot read: \(reason)"
        case let .malformed(path, reason): "\(path): not a valid safetensors file: \(reason)"
        case let .missingTensor(path, name): "\(path): no tensor named '\(name)'"
        }
    }
}

public struct SafetensorsFile {
    /// Tensors in the order of their data in the file.
    public var tensors: [(name: String, tensor: Tensor)]
    /// U8 tensors (packed data such as N:M indices), after the float tensors in the file.
    public var byteTensors: [(name: String, shape: [Int], bytes: [UInt8])]
    public var metadata: [String: String]

    public init(
        tensors: [(name: String, tensor: Tensor)] = [],
        byteTensors: [(name: String, shape: [Int], bytes: [UInt8])] = [], metadata: [String: String] = [:]
    ) {
        self.tensors = tensors
        self.byteTensors = byteTensors
        self.metadata = metadata
    }

    public subscript(name: String) -> Tensor? {
        tensors.first { $0.name == name }?.tensor
    }

    public func tensor(_ name: String, path: String = "") throws(SafetensorsError) -> Tensor {
        guard let t = self[name] else { throw .missingTensor(path: path, name: name) }
        return t
    }

    public func bytes(_ name: String, path: String = "") throws(SafetensorsError) -> (shape: [Int], bytes: [UInt8]) {
        guard let entry = byteTensors.first(where: { $0.name == name }) else {
            throw .missingTensor(path: path, name: name)
        }
        return (entry.shape, entry.bytes)
    }

    private static let elementSizes = ["F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1]

    public static func read(path: String) throws(SafetensorsError) -> SafetensorsFile {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe) } catch {
            throw .unreadable(path: path, reason: FileProblem.describe(path, error))
        }
        return try decode(data, path: path)
    }

    public static func decode(_ data: Data, path: String = "<memory>") throws(SafetensorsError) -> SafetensorsFile {
        if data.starts(with: [0x50, 0x4B, 0x03, 0x04]) {
            throw .malformed(
                path: path, reason: "it is a PyTorch (zip) checkpoint; `maxq convert` turns it into safetensors")
        }
        guard data.count >= 8 else {
            throw .malformed(path: path, reason: "file is \(data.count) bytes, shorter than the header length")
        }
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) {
            $0 | UInt64($1.element) << (8 * UInt64($1.offset))
        }
        guard headerLength <= UInt64(data.count - 8), headerLength <= 100_000_000 else {
            throw .malformed(
                path: path, reason: "header length \(headerLength) exceeds the file (\(data.count) bytes): truncated?")
        }
        let dataStart = 8 + Int(headerLength)
        let json = data.subdata(in: data.startIndex + 8..<data.startIndex + dataStart)
        guard let header = (try? JSONSerialization.jsonObject(with: json)) as? [String: Any] else {
            throw .malformed(path: path, reason: "header is not a JSON object")
        }
        var file = SafetensorsFile()
        if let metadata = header["__metadata__"] {
            guard let strings = metadata as? [String: String] else {
                throw .malformed(path: path, reason: "__metadata__ must map strings to strings")
            }
            file.metadata = strings
        }
        var entries: [(name: String, begin: Int, end: Int, dtype: String, shape: [Int])] = []
        for (name, value) in header where name != "__metadata__" {
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2
            else { throw .malformed(path: path, reason: "entry '\(name)' lacks dtype, shape or data_offsets") }
            guard let size = elementSizes[dtype] else {
                throw .malformed(path: path, reason: "tensor '\(name)' has unsupported dtype \(dtype)")
            }
            // Checked arithmetic throughout: a shape whose element count wraps around must not
            // pass for a small one.
            guard let count = Tensor.elementCount(shape) else {
                throw .malformed(path: path, reason: "tensor '\(name)' has an invalid shape \(shape)")
            }
            let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
            guard !overflow, offsets[0] >= 0, offsets[1] >= offsets[0], offsets[1] - offsets[0] == bytes else {
                throw .malformed(
                    path: path, reason: "tensor '\(name)' of shape \(shape) does not fit its byte range \(offsets)")
            }
            guard offsets[1] <= data.count - dataStart else {
                throw .malformed(path: path, reason: "tensor '\(name)' runs past the end of the file: truncated?")
            }
            entries.append((name, offsets[0], offsets[1], dtype, shape))
        }
        entries.sort { $0.begin < $1.begin }
        for entry in entries {
            let start = data.startIndex + dataStart + entry.begin
            let bytes = data.subdata(in: start..<data.startIndex + dataStart + entry.end)
            if entry.dtype == "U8" {
                file.byteTensors.append((entry.name, entry.shape, [UInt8](bytes)))
                continue
            }
            file.tensors.append(
                (entry.name, try! Tensor(shape: entry.shape, scalars: convert(bytes, dtype: entry.dtype))))
        }
        return file
    }

    private static func convert(_ bytes: Data, dtype: String) -> [Float] {
        bytes.withUnsafeBytes { raw -> [Float] in
            switch dtype {
            case "F32":
                return (0..<raw.count / 4).map {
                    Float(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self).littleEndian)
                }
            case "F16":
                return (0..<raw.count / 2).map {
                    Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self).littleEndian))
                }
            case "BF16":
                return (0..<raw.count / 2).map {
                    Float(
                        bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self).littleEndian)
                            << 16)
                }
            default:
                return (0..<raw.count / 8).map {
                    Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)))
                }
            }
        }
    }

    /// The file's bytes: tensors as F32 in their order, then the U8 tensors; keys of the header sorted.
    public func encoded() throws -> Data {
        var header: [String: Any] = [:]
        var offset = 0
        for (name, tensor) in tensors {
            header[name] = [
                "dtype": "F32", "shape": tensor.shape, "data_offsets": [offset, offset + tensor.count * 4],
            ]
            offset += tensor.count * 4
        }
        for (name, shape, bytes) in byteTensors {
            header[name] = ["dtype": "U8", "shape": shape, "data_offsets": [offset, offset + bytes.count]]
            offset += bytes.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so that the data starts 8-byte aligned, as the reference writer does.
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for (_, tensor) in tensors {
            tensor.withUnsafeBufferPointer { out.append(UnsafeBufferPointer(start: $0.baseAddress, count: $0.count)) }
        }
        for (_, _, bytes) in byteTensors { out.append(contentsOf: bytes) }
        return out
    }

    /// Writes atomically (`AtomicWrite`).
    public func write(path: String) throws {
        try AtomicWrite.write(try encoded(), to: path)
    }
}
