// safetensors: reading PyTorch-written dtypes, round trips, and clear errors on bad files.
import Foundation
import MaxQFormats
import MaxQTensor
import MaxQTestSupport
import Testing

@Suite struct SafetensorsTests {
    @Test func readsEveryDtypeWrittenByPython() throws {
        let f = try Fixtures.op("dtypes")
        let expected: [Float] = [1.5, -2.25, 0, 3, 65504, -0.125]
        #expect(try f.tensor("f32").scalars == expected)
        #expect(try f.tensor("f16").scalars == expected)
        #expect(try f.tensor("bf16").scalars == [1.5, -2.25, 0, 3, 65536, -0.125])  // bf16 rounds 65504
        #expect(try f.tensor("i64").scalars == [1, -2, 3, 4, 5, -6])
        #expect(try f.tensor("i64").shape == [2, 3])
    }

    @Test func roundTripKeepsTensorsOrderAndMetadata() throws {
        let file = SafetensorsFile(
            tensors: [("b.weight", try Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])), ("a", Tensor(scalar: 7))],
            metadata: ["epoch": "3"])
        let decoded = try SafetensorsFile.decode(try file.encoded())
        #expect(decoded.tensors.map(\.name) == ["b.weight", "a"])
        #expect(decoded["b.weight"]?.scalars == [1, 2, 3, 4] && decoded["b.weight"]?.shape == [2, 2])
        #expect(decoded["a"]?.shape == [] && decoded["a"]?.scalars == [7])
        #expect(decoded.metadata == ["epoch": "3"])
    }

    /// U8 tensors (packed indices) follow the float tensors and come back byte for byte; a
    /// checkpoint reader refuses them, since no model tensor is U8.
    @Test func byteTensorsRoundTripAndAreNoCheckpoint() throws {
        let file = SafetensorsFile(
            tensors: [("w", try Tensor(shape: [2], scalars: [1, 2]))], byteTensors: [("w.indices", [3], [0, 255, 7])])
        let data = try file.encoded()
        let decoded = try SafetensorsFile.decode(data)
        #expect(decoded["w"]?.scalars == [1, 2])
        #expect(try decoded.bytes("w.indices").shape == [3] && decoded.bytes("w.indices").bytes == [0, 255, 7])
        #expect(Array(data.suffix(3)) == [0, 255, 7])
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("u8-\(UUID()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try file.write(path: path)
        #expect(
            throws: SafetensorsError.malformed(
                path: path, reason: "tensor 'w.indices' is U8, which no model parameter or buffer is")
        ) {
            try CheckpointFile.readStateDict(path: path)
        }
    }

    /// Writes stage in a visible `.partial` file: one a killed process left is replaced, and
    /// nothing else (no hidden temporary) stays beside the result.
    @Test func writesAreAtomicAndReplaceAStaleStagingFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("maxq-atomic-\(UUID())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = "\(folder)/w.safetensors"
        let stale = Data(repeating: 7, count: 1000)
        #expect(FileManager.default.createFile(atPath: AtomicWrite.partialPath(of: path), contents: stale))
        try SafetensorsFile(tensors: [("w", try Tensor(shape: [2], scalars: [1, 2]))]).write(path: path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["w.safetensors"])
        #expect(try SafetensorsFile.read(path: path)["w"]?.scalars == [1, 2])
        #expect(throws: AtomicWriteError.self) { try AtomicWrite.write(Data(), to: "\(path)/inside-a-file") }
    }

    @Test func truncatedAndMalformedFilesGiveClearErrors() throws {
        let good = try SafetensorsFile(tensors: [("w", Tensor(zeros: [4]))]).encoded()
        #expect(throws: SafetensorsError.self) { try SafetensorsFile.decode(good.prefix(good.count - 3)) }
        #expect(throws: SafetensorsError.self) { try SafetensorsFile.decode(good.prefix(5)) }
        #expect(throws: SafetensorsError.self) { try SafetensorsFile.decode(Data(repeating: 0xFF, count: 64)) }
        var badJSON = Data([4, 0, 0, 0, 0, 0, 0, 0])
        badJSON.append(contentsOf: Array("{{{{".utf8))
        #expect(throws: SafetensorsError.malformed(path: "<memory>", reason: "header is not a JSON object")) {
            try SafetensorsFile.decode(badJSON)
        }
        #expect(throws: SafetensorsError.self) { try SafetensorsFile.read(path: "/nonexistent/weights.safetensors") }
        let truncated = #expect(throws: SafetensorsError.self) {
            try SafetensorsFile.decode(good.prefix(good.count - 3))
        }
        #expect(truncated?.description.contains("truncated") == true, "\(String(describing: truncated))")
    }
}
