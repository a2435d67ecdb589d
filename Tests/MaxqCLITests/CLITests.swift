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
        (["mask", "NONFINITE", "--out", "OUT"], "'w' holds NaN or infinite values"),
        (["mask", "WEIGHTS", "--out", "OUT", "--tau", "nan"], "--tau must be a finite number > 0"),
    ])
    func badInputGivesOneClearErrorAndNonZeroExit(_ arguments: [String], _ expected: String) throws {
        let weights = Fixtures.path("ops/conv_grouped.safetensors")  // input channels 4: not 8-divisible
        let output = temporary.appendingPathComponent("never-written.safetensors").path
        let nonFinite = Fixtures.path("hostile/nonfinite_weights.safetensors")
        let run = try maxq(arguments.map { ["WEIGHTS": weights, "OUT": output, "NONFINITE": nonFinite][$0] ?? $0 })
        #expect(run.status != 0)
        #expect(run.err.contains(expected), "\(run.err)")
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    @Test func trainAndEvaluateWithTheReferenceFlags() throws {
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: temporary) }
        let run = try maxq([
            "train", "--set", "Synthetic", "-a", "c_resnet18", "--epochs", "1", "-b", "16", "--synthetic-images", "32",
            "--synthetic-classes", "4", "--save_dir", temporary.path, "-p", "1", "--nesterov", "True", "--no-bn-decay", "True",
            "--wd", "5e-4", "--conv-bn-type", "SoftSRSTEConv2dBN", "--N", "1", "--M", "4", "--save-format", "pth", "-j", "2",
        ])
        #expect(run.status == 0, "\(run.err)")
        let lines = run.out.split(separator: "\n")
        #expect(lines.allSatisfy { $0.range(of: #"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] "#, options: .regularExpression) != nil })
        #expect(lines.contains { $0.contains("Epoch: [0][0/2]\tTime ") } && lines.contains { $0.contains(" * Prec@1 ") })
        #expect(lines.contains { $0.hasSuffix("weight num: 36864, zero num: 27648") })
        let files = try FileManager.default.contentsOfDirectory(atPath: temporary.path)
        for expected in ["results.csv", "metrics.csv", "curves.svg"] { #expect(files.contains(expected)) }
        #expect(files.contains { $0.hasPrefix("c_resnet18.") && $0.hasSuffix(".log") })
        let checkpoint = try #require(files.first { $0.hasPrefix("checkpoint.") && $0.hasSuffix(".safetensors") })
        #expect(files.contains(checkpoint.replacingOccurrences(of: ".safetensors", with: ".pth.tar")))
        let evaluation = try maxq([
            "train", "--set", "Synthetic", "-a", "c_resnet18", "-e", "--pretrained", temporary.path + "/" + checkpoint, "-b", "16",
            "--synthetic-images", "32", "--synthetic-classes", "4", "--save_dir", temporary.path, "--conv-bn-type", "SoftSRSTEConv2dBN",
            "--N", "1", "--M", "4",
        ])
        #expect(evaluation.status == 0, "\(evaluation.err)")
        #expect(evaluation.out.contains(" * Prec@1 ") && evaluation.out.contains("Error@1"))
        #expect(evaluation.out.contains("missing keys: none; unexpected keys: none"))
    }

    @Test(arguments: [
        (["train", "--epochs", "3"], "dataset folder"),
        (["train", "/nonexistent", "--set", "ImageFolder", "--epochs", "1"], "/nonexistent"),
        (["train", "--set", "Synthetic", "--increase-start", "5", "--increase-end", "2"], "increase-end 2"),
        (["train", "--set", "Synthetic", "-e"], "--pretrained"),
        (["train", "--set", "Synthetic", "--nesterov", "maybe"], "maybe"),
        (["train", "--set", "Synthetic", "--wd", "nan"], "--wd must be a finite number >= 0, got nan"),
        (["train", "--set", "Synthetic", "--momentum", "nan"], "--momentum must be a finite number >= 0"),
        (["train", "--set", "Synthetic", "--lr", "inf"], "--lr must be a finite number > 0"),
        (["train", "--set", "Synthetic", "--decay=-1"], "--decay must be a finite number >= 0"),
        (["train", "--set", "Synthetic", "--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
        (["train", "--set", "Synthetic", "--tau", "0"], "--tau must be a finite number > 0"),
    ])
    func trainRefusesBadInputBeforeWorking(_ arguments: [String], _ expected: String) throws {
        let run = try maxq(arguments + ["--save_dir", temporary.path])
        defer { try? FileManager.default.removeItem(at: temporary) }
        #expect(run.status != 0)
        #expect(run.err.contains(expected), "\(run.err)")
    }

    @Test func inspectReportsTheNMPatternAndChecksAnArchitecture() throws {
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: temporary) }
        let run = try maxq([
            "train", "--set", "Synthetic", "-a", "c_resnet18", "--epochs", "1", "-b", "16", "--synthetic-images", "16",
            "--synthetic-classes", "4", "--save_dir", temporary.path, "--increase-start", "0", "--increase-end", "0",
        ])
        #expect(run.status == 0, "\(run.err)")
        let files = try FileManager.default.contentsOfDirectory(atPath: temporary.path)
        let checkpoint = temporary.path + "/" + (try #require(files.first { $0.hasPrefix("checkpoint.") }))
        let table = try maxq(["inspect", checkpoint, "-a", "c_resnet18"])
        #expect(table.status == 0, "\(table.err)")
        #expect(table.out.contains("layer4.1.convbn2") && table.out.contains("2:4"))
        #expect(table.out.contains("a valid N:M pattern in 19 of the 21 layers"))
        #expect(table.err.contains("c_resnet18 with 4 classes: no missing keys, no unexpected keys"))
        let json = try maxq(["inspect", checkpoint, "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [String: Any]
        let layers = try #require(object?["layers"] as? [[String: Any]])
        #expect(layers.filter { $0["n"] as? Int == 2 && $0["m"] as? Int == 4 }.count == 19)
        let wrong = try maxq(["inspect", checkpoint, "-a", "resnet50"])
        #expect(wrong.status != 0 && wrong.err.contains("load 'conv1.weight': shapes [64, 3, 7, 7] and [64, 3, 3, 3]"))
    }

    /// Misleading messages and crashes found by trying the commands as a hostile-but-fair user.
    @Test(arguments: [
        (["mask", "F/checkpoints/torch_saved.pth.tar", "--out", "OUT"], "it is a PyTorch (zip) checkpoint"),
        (["mask", "F/masks", "--out", "OUT"], "F/masks: cannot read: is a directory"),
        (["mask", "F/masks/case03.weights.safetensors", "--out", "F/masks/./case03.weights.safetensors"],
         "is the input file"),
        (["predict", "--pretrained", "F/masks/case03.weights.safetensors", "-a", "resnet18", "F/images/photo.jpg"],
         "none of its 3 tensors belongs to resnet18"),
        (["train", "--set", "Synthetic", "--resume", "F/checkpoints/torch_saved.pth.tar", "--save_dir", "DIR"],
         "PyTorch copy"),
        (["train", "--set", "Synthetic", "--lr", "-1", "--save_dir", "DIR"],
         "--lr must be a finite number > 0, got -1.0"),
        (["train", "--set", "Synthetic", "--save_dir", "F/images/photo.jpg/run"], "cannot create --save_dir"),
        (["bench", "eval", "-b", "0"], "--batch-size, --iterations and --classes must be at least 1"),
        (["bench", "train-step", "--iterations", "0"], "--batch-size, --iterations and --classes must be at least 1"),
        (["bench", "data", "F/images", "-b=-1"], "must be at least 1"),
    ])
    func hostileUseGivesOneClearError(_ arguments: [String], _ expected: String) throws {
        let output = temporary.appendingPathComponent("out.safetensors").path
        func expand(_ s: String) -> String {
            s == "OUT" ? output : s == "DIR" ? temporary.appendingPathComponent("run").path
                : s.hasPrefix("F/") ? Fixtures.path(String(s.dropFirst(2))) : s
        }
        let run = try maxq(arguments.map(expand))
        defer { try? FileManager.default.removeItem(at: temporary) }
        #expect(run.status != 0 && run.status < 128, "exit \(run.status)")
        #expect(run.err.contains(expand(expected)), "\(run.err)")
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    /// A resumed run keeps its prefix (its checkpoints are replaced, its log continues) and
    /// removes what a killed write left behind; a run's log is created before any work.
    @Test func resumeContinuesTheRunAndCleansUpAfterAKill() throws {
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: temporary) }
        let common = [
            "train", "--set", "Synthetic", "-a", "c_resnet18", "-b", "16", "--synthetic-images", "16",
            "--synthetic-classes", "4", "--save_dir", temporary.path,
        ]
        let first = try maxq(common + ["--epochs", "1"])
        #expect(first.status == 0, "\(first.err)")
        let files = try FileManager.default.contentsOfDirectory(atPath: temporary.path)
        let checkpoint = try #require(files.first { $0.hasPrefix("checkpoint.") })
        let stale = temporary.appendingPathComponent(checkpoint + ".partial").path
        FileManager.default.createFile(atPath: stale, contents: Data("torn".utf8))
        let second = try maxq(common + ["--epochs", "2", "--resume", temporary.appendingPathComponent(checkpoint).path])
        #expect(second.status == 0, "\(second.err)")
        #expect(!FileManager.default.fileExists(atPath: stale))
        let after = try FileManager.default.contentsOfDirectory(atPath: temporary.path)
        #expect(after.filter { $0.hasPrefix("checkpoint.") } == [checkpoint], "\(after)")
        let logName = try #require(after.first { $0.hasSuffix(".log") })
        #expect(after.filter { $0.hasSuffix(".log") }.count == 1)
        let log = try String(contentsOfFile: temporary.appendingPathComponent(logName).path, encoding: .utf8)
        #expect(log.contains("  0/  1 -----") && log.contains("=> resumed from") && log.contains("  1/  2 -----"))
    }

    @Test func doctorRunsEndToEnd() throws {
        let run = try maxq(["doctor"])
        #expect(run.status == 0, "\(run.err)")
        #expect(run.out.contains("oneDNN") && run.out.contains("ok"))
    }
}
