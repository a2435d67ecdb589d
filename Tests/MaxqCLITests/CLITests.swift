// End-to-end command lines: the built `maxq` binary run as a user runs it.
import Foundation
import MaxQFormats
import MaxQTestSupport
import Testing

/// Runs `maxq` (built beside the test bundle) and returns (exit status, stdout, stderr).
func maxq(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("maxq")
    let process = Process()
    process.executableURL = FileManager.default.fileExists(atPath: binary.path)
        ? binary : URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../.build/debug/maxq").standardizedFileURL
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

@Suite struct CLITests {
    let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("maxq-cli-\(UUID().uuidString)")

    @Test func maskCommandReproducesTheReferenceSRSTEMasks() throws {
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: temporary) }
        let output = temporary.appendingPathComponent("masks.safetensors").path
        let run = try maxq([
            "mask", Fixtures.path("masks/case03.weights.safetensors"), "--out", output, "--conv-bn-type", "SoftSRSTEConv2dBN",
            "--N", "2", "--M", "4", "--increase-start", "0", "--increase-end", "0",
        ])
        #expect(run.status == 0, "\(run.err)")
        let ours = try SafetensorsFile.read(path: output)
        let golden = try SafetensorsFile.read(path: Fixtures.path("masks/case03.masks.safetensors"))
        #expect(ours.tensors.map(\.name) == golden.tensors.map(\.name))
        for (name, expected) in golden.tensors { #expect(ours[name]?.scalars == expected.scalars, "\(name)") }
        #expect(ours.metadata["conv_bn_type"] == "SoftSRSTEConv2dBN")
    }

    @Test(arguments: [
        (["mask", "/nonexistent/w.safetensors", "--out", "OUT"], "/nonexistent/w.safetensors"),
        (["mask", "WEIGHTS", "--out", "OUT", "--N", "5", "--M", "4"], "5:4"),
        (["mask", "WEIGHTS", "--out", "OUT", "--M", "8"], "multiple of M"),
        (["mask", "WEIGHTS", "--out", "OUT", "--increase-start", "9", "--increase-end", "3"], "increase-end 3"),
        (["mask", "WEIGHTS", "--out", "OUT", "--conv-bn-type", "DenseConv2dBN"], "has no mask"),
    ])
    func badInputGivesOneClearErrorAndNonZeroExit(_ arguments: [String], _ expected: String) throws {
        let weights = Fixtures.path("ops/conv_grouped.safetensors")  // input channels 4: not 8-divisible
        let output = temporary.appendingPathComponent("never-written.safetensors").path
        let run = try maxq(arguments.map { $0 == "WEIGHTS" ? weights : $0 == "OUT" ? output : $0 })
        #expect(run.status != 0)
        #expect(run.err.contains(expected), "\(run.err)")
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    @Test func doctorRunsEndToEnd() throws {
        let run = try maxq(["doctor"])
        #expect(run.status == 0, "\(run.err)")
        #expect(run.out.contains("oneDNN") && run.out.contains("ok"))
    }
}
