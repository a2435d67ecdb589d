// End-to-end command lines: the built `maxq` binary run as a user runs it.
import Foundation
import MaxQData
import MaxQFormats
import MaxQInterchange
import MaxQTensor
import MaxQTestSupport
import Testing

/// Runs `maxq` (built beside the test bundle) and returns (exit status, stdout, stderr).
func maxq(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
    try runBuiltTool("maxq", arguments)
}

/// The path of one of the package's executables, built beside the test bundle.
func builtTool(_ name: String) -> URL {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(
        name)
    return FileManager.default.fileExists(atPath: binary.path)
        ? binary
        : URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../.build/debug/\(name)").standardizedFileURL
}

/// Runs one of the package's executables, built beside the test bundle.
func runBuiltTool(_ name: String, _ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
    try run(builtTool(name), arguments)
}

/// Runs `executable` with `arguments` (and `environment` added to this process's) to its end.
func run(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws -> (
    status: Int32, out: String, err: String
) {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (
        process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self)
    )
}

/// The logits `predict --json` printed for its one image.
func jsonLogits(_ run: (status: Int32, out: String, err: String)) throws -> [Double] {
    let object = try #require(try JSONSerialization.jsonObject(with: Data(run.out.utf8)) as? [String: Any])
    return try #require(object["logits"] as? [Double])
}

@Suite struct CLITests {
    let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("maxq-cli-\(UUID().uuidString)")

    /// A c_resnet18 checkpoint holding only a zero classifier bias (10 classes; the rest is the
    /// seeded initialisation), in the temporary folder, which this creates.
    func biasOnlyCheckpoint() throws -> String {
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        let checkpoint = temporary.appendingPathComponent("bias.safetensors").path
        try SafetensorsFile(tensors: [("fc.bias", Tensor(zeros: [10]))]).write(path: checkpoint)
        return checkpoint
    }

    @Test func maskCommandReproducesTheReferenceSRSTEMasks() throws {
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: temporary) }
        let output = temporary.appendingPathComponent("masks.safetensors").path
        let run = try maxq([
            "mask", Fixtures.path("masks/case03.weights.safetensors"), "--out", output, "--conv-bn-type",
            "SoftSRSTEConv2dBN",
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
            "--synthetic-classes", "4", "--save_dir", temporary.path, "-p", "1", "--nesterov", "True", "--no-bn-decay",
            "True",
            "--wd", "5e-4", "--conv-bn-type", "SoftSRSTEConv2dBN", "--N", "1", "--M", "4", "--save-format", "pth", "-j",
            "2",
        ])
        #expect(run.status == 0, "\(run.err)")
        let lines = run.out.split(separator: "\n")
        #expect(
            lines.allSatisfy {
                $0.range(of: #"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] "#, options: .regularExpression) != nil
            })
        #expect(
            lines.contains { $0.contains("Epoch: [0][0/2]\tTime ") } && lines.contains { $0.contains(" * Prec@1 ") })
        #expect(lines.contains { $0.hasSuffix("weight num: 36864, zero num: 27648") })
        let files = try FileManager.default.contentsOfDirectory(atPath: temporary.path)
        for expected in ["results.csv", "metrics.csv", "curves.svg"] { #expect(files.contains(expected)) }
        try expectReportsAgreeWithTheLog(lines)
        #expect(files.contains { $0.hasPrefix("c_resnet18.") && $0.hasSuffix(".log") })
        let checkpoint = try #require(files.first { $0.hasPrefix("checkpoint.") && $0.hasSuffix(".safetensors") })
        #expect(files.contains(checkpoint.replacingOccurrences(of: ".safetensors", with: ".pth.tar")))
        let evaluation = try maxq(evaluationArguments(checkpoint: temporary.path + "/" + checkpoint))
        #expect(evaluation.status == 0, "\(evaluation.err)")
        #expect(evaluation.out.contains(" * Prec@1 ") && evaluation.out.contains("Error@1"))
        #expect(evaluation.out.contains("missing keys: none; unexpected keys: none"))
        // The same validation on the sparse engine: every N:M layer on the sparse kernel, the same figures.
        let sparse = try maxq(
            evaluationArguments(checkpoint: temporary.path + "/" + checkpoint) + ["--engine", "sparse"])
        #expect(sparse.status == 0, "\(sparse.err)")
        let engine = try #require(sparse.out.split(separator: "\n").first { $0.contains("=> sparse engine: ") })
        let counts = engine.split(separator: " ").compactMap { Int($0) }
        #expect(counts.count == 2 && counts[0] + counts[1] == 19, "\(engine)")
        let summary = { (out: String) in out.split(separator: "\n").first { $0.contains(" * Prec@1 ") }?.dropFirst(22) }
        #expect(summary(sparse.out) != nil && summary(sparse.out) == summary(evaluation.out))
    }

    func evaluationArguments(checkpoint: String) -> [String] {
        [
            "train", "--set", "Synthetic", "-a", "c_resnet18", "-e", "--pretrained", checkpoint, "-b", "16",
            "--synthetic-images", "32", "--synthetic-classes", "4", "--save_dir", temporary.path, "--conv-bn-type",
            "SoftSRSTEConv2dBN", "--N", "1", "--M", "4",
        ]
    }

    /// metrics.csv and results.csv hold the epoch's figures as the log printed them; curves.svg
    /// draws the five series.
    func expectReportsAgreeWithTheLog(_ lines: [Substring]) throws {
        let prec = try #require(lines.first { $0.contains(" * Prec@1 ") }).split(separator: " ")
        let top1 = try #require(prec.firstIndex(of: "Prec@1").map { String(prec[$0 + 1]) })
        let metrics = try String(contentsOf: temporary.appendingPathComponent("metrics.csv"), encoding: .utf8)
            .split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        #expect(metrics.count == 2 && metrics[0].count == 9 && metrics[1].count == 9)
        #expect(metrics[0][0] == "epoch" && metrics[0][5] == "val_top1")
        #expect(
            metrics[1][0] == "0" && metrics[1][1] == "0.100000" && metrics[1][5] == top1 && metrics[1][7] == "1.0000")
        let results = try String(contentsOf: temporary.appendingPathComponent("results.csv"), encoding: .utf8)
            .split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
        #expect(results.count == 2)
        let row = Dictionary(uniqueKeysWithValues: zip(results[0], results[1]))
        #expect(row["arch"] == "c_resnet18" && row["N"] == "1" && row["M"] == "4" && row["last_top1"] == top1)
        #expect(
            row["conv_bn_type"] == "SoftSRSTEConv2dBN" && row["nesterov"] == "True" && row["weight_decay"] == "0.0005")
        let svg = try String(contentsOf: temporary.appendingPathComponent("curves.svg"), encoding: .utf8)
        #expect(svg.hasPrefix("<svg ") && svg.hasSuffix("</svg>\n"))
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 5)
    }

    /// A classifier of zeros with a known bias gives logits equal to the bias whatever the image
    /// (c_resnet's classifier is a 1x1 convolution, as in the original):
    /// the top-5 and their softmax probabilities are then known exactly.
    @Test func predictGivesTheTopFiveOfTheCheckpointsLogits() throws {
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: temporary) }
        let bias: [Float] = [0.5, -1, 3, 0.25, 2, -0.5, 1, 0, 2.5, -2]
        let checkpoint = temporary.appendingPathComponent("classifier.safetensors").path
        try SafetensorsFile(tensors: [
            ("fc.weight", Tensor(zeros: [10, 512, 1, 1])), ("fc.bias", Tensor(shape: [10], scalars: bias)),
        ]).write(path: checkpoint)
        let image = Fixtures.path("images/photo.jpg")
        let run = try maxq([
            "predict", "-a", "c_resnet18", "--num-classes", "10", "--pretrained", checkpoint, "--json", image, image,
        ])
        #expect(run.status == 0, "\(run.err)")
        #expect(run.err.contains("missing keys (left as initialised)"))
        let objects = try run.out.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(objects.count == 2)
        let total = bias.map { exp(Double($0)) }.reduce(0, +)
        for object in objects {
            #expect(object["image"] as? String == image)
            #expect((object["logits"] as? [Double])?.map(Float.init) == bias)
            let top5 = try #require(object["top5"] as? [[Double]])
            #expect(top5.map { Int($0[0]) } == [2, 8, 4, 6, 0])
            for entry in top5 { #expect(abs(entry[1] - exp(Double(bias[Int(entry[0])])) / total) < 1e-9) }
        }
        let text = try maxq(["predict", "-a", "c_resnet18", "--num-classes", "10", "--pretrained", checkpoint, image])
        #expect(text.out.split(separator: "\n").dropFirst().first?.contains("class    2") == true, "\(text.out)")
    }

    /// The sparse engine gives the dense engine's logits; a model whose masks are not yet N:M (mid-schedule) runs
    /// dense, and says so per layer.
    @Test func predictsTheSameLogitsOnTheSparseEngine() throws {
        let checkpoint = try biasOnlyCheckpoint()
        defer { try? FileManager.default.removeItem(at: temporary) }
        let image = Fixtures.path("images/photo.jpg")
        let common = [
            "predict", "-a", "c_resnet18", "--num-classes", "10", "--pretrained", checkpoint, "--json",
            "--conv-bn-type", "SoftMaxQConv2DBN", "--N", "2", "--M", "4", image,
        ]
        let dense = try maxq(common + ["--increase-end", "0", "--engine", "dense"])
        let sparse = try maxq(common + ["--increase-end", "0", "--engine", "sparse"])
        #expect(dense.status == 0 && sparse.status == 0, "\(sparse.err)")
        #expect(!sparse.err.contains("runs dense"), "\(sparse.err)")
        for (a, b) in zip(try jsonLogits(dense), try jsonLogits(sparse)) {
            #expect(abs(a - b) <= 1e-4 * max(abs(a), 1))
        }
        let early = try maxq(common + ["--increase-end", "4", "--engine", "sparse"])
        #expect(early.status == 0)
        #expect(early.err.contains("layer1.0.convbn1 runs dense: layer1.0.convbn1:"), "\(early.err)")
        #expect(
            try jsonLogits(early) == (try jsonLogits(try maxq(common + ["--increase-end", "4", "--engine", "dense"]))))
    }

    /// `export` writes the compressed model and its sizes; predict on it gives the checkpoint's logits on both
    /// engines; other model options, a truncated copy and a checkpoint reader are refused with one line.
    @Test func exportedModelPredictsLikeItsCheckpoint() throws {
        let checkpoint = try biasOnlyCheckpoint()
        defer { try? FileManager.default.removeItem(at: temporary) }
        let model = temporary.appendingPathComponent("model.nm.safetensors").path
        let options = ["-a", "c_resnet18", "--num-classes", "10", "--N", "1", "--M", "8", "--increase-end", "0"]
        // Without masks and before the schedule's end, nothing is N:M yet: every layer is named, with the way out.
        let early = try maxq(["export", checkpoint, "--out", model, "-a", "c_resnet18", "--num-classes", "10"])
        #expect(early.status == 0 && early.out.contains("0 N:M layers compressed, 19 dense"), "\(early.out)")
        #expect(early.err.contains("layer1.0.convbn1 stays dense") && early.err.contains("--increase-end 0 makes"))
        let export = try maxq(["export", checkpoint, "--out", model] + options)
        #expect(export.status == 0, "\(export.err)")
        #expect(export.out.contains("wrote \(model): 19 N:M layers compressed, 0 dense"), "\(export.out)")
        let ratio = try #require(
            export.out.split(separator: " ").last.flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        )
        #expect(ratio > 0.1 && ratio < 0.2, "\(export.out)")
        let image = Fixtures.path("images/photo.jpg")
        func logits(_ arguments: [String]) throws -> [Double] {
            let run = try maxq(["predict", "--json"] + arguments + [image])
            #expect(run.status == 0, "\(run.err)")
            return try jsonLogits(run)
        }
        let reference = try logits(["--pretrained", checkpoint, "--engine", "dense"] + options)
        for engine in ["sparse", "dense"] {
            let exported = try logits(["--pretrained", model, "--engine", engine] + options)
            for (a, b) in zip(reference, exported) { #expect(abs(a - b) <= 1e-4 * max(abs(a), 1), "\(engine)") }
        }
        let other = try maxq(["predict", "--pretrained", model, image] + options + ["--M", "16"])
        #expect(other.status != 0 && other.err.contains("was exported as --N/--M 1:8, not 1:16"), "\(other.err)")
        let truncated = temporary.appendingPathComponent("cut.nm.safetensors").path
        let bytes = try Data(contentsOf: URL(fileURLWithPath: model))
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: truncated))
        let cut = try maxq(["predict", "--pretrained", truncated, image] + options)
        #expect(cut.status != 0 && cut.err.contains("truncated"), "\(cut.err)")
        let convert = try maxq(["convert", model, "--out", temporary.appendingPathComponent("x.pth").path])
        #expect(convert.status != 0 && convert.err.contains("an exported inference model"), "\(convert.err)")
    }

    /// `export --format onnx` writes a file whose graph, run on our kernels from its nodes and
    /// initializers, gives `predict`'s logits; bad requests are one line each.
    @Test func onnxExportRunsLikePredict() throws {
        let checkpoint = try biasOnlyCheckpoint()
        defer { try? FileManager.default.removeItem(at: temporary) }
        let onnx = temporary.appendingPathComponent("model.onnx").path
        let options = ["-a", "c_resnet18", "--num-classes", "10", "--N", "2", "--M", "4", "--increase-end", "0"]
        let export = try maxq(["export", checkpoint, "--format", "onnx", "--opset", "13", "--out", onnx] + options)
        #expect(export.status == 0 && export.out.contains("wrote \(onnx): opset 13"), "\(export.err)")
        let image = Fixtures.path("images/photo.jpg")
        let expected = try jsonLogits(try maxq(["predict", "--json", "--pretrained", checkpoint, image] + options))
        let recipe = ImageRecipe(resolution: 32)
        var input = Tensor(uninitializedShape: [1, 3, 32, 32])
        let encoded = try EncodedImage(path: image)
        try input.withUnsafeMutableBufferPointer { try recipe.validation(encoded, into: $0.baseAddress!) }
        let logits = try ONNXModel(contentsOf: onnx).run(input).scalars
        for (a, b) in zip(logits, expected) { #expect(abs(Double(a) - b) <= 1e-4 * max(abs(b), 1)) }

        let bad: [([String], String)] = [
            (["--opset", "12", "--out", onnx], "--opset 12 is not supported (13 to 21)"),
            (["--out", "/no/such/folder/model.onnx"], "the folder /no/such/folder does not exist"),
            (["--out", temporary.appendingPathComponent("m.nm.safetensors").path], "--out must end in .onnx"),
        ]
        for (arguments, message) in bad {
            let run = try maxq(["export", checkpoint, "--format", "onnx"] + arguments + options)
            #expect(run.status != 0 && run.err.contains(message), "\(run.err)")
        }
        let torchvision = try maxq(
            ["export", checkpoint, "--format", "torchvision", "--out", temporary.appendingPathComponent("m.pth").path]
                + options)
        #expect(torchvision.status != 0 && torchvision.err.contains("torchvision has no c_resnet18"))
        let other = temporary.appendingPathComponent("other.safetensors").path
        try SafetensorsFile(tensors: [("fc.bias", Tensor(zeros: [7]))]).write(path: other)
        let mismatch = try maxq(["export", other, "--format", "onnx", "--out", onnx] + options)
        #expect(mismatch.status != 0 && mismatch.err.contains("fc.bias"), "\(mismatch.err)")
    }

    /// `results` over a folder: a finished run's results.csv row, and a run that stopped early
    /// read from its log (settings from its command line, as `maxq train` parses them).
    @Test func resultsReadRowsAndUnfinishedLogs() throws {
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: temporary) }
        try """
        date,N,M,arch,set,last_top1,best_top1,epochs,conv_bn_type,increase_start,increase_end,prune_schedule
        d,2,4,c_resnet18,CIFAR10,90.10,90.50,300,SoftMaxQConv2DBN,0,250,linear

        """.write(to: temporary.appendingPathComponent("results.csv"), atomically: true, encoding: .utf8)
        try """
        [2026-01-01 10:00:00] maxq train /data --set CIFAR10 -a c_resnet18 --epochs 300 --N 1 --M 16 --increase-end 250
        [2026-01-01 10:10:00] => Epoch: 41, LR: 0.0950, Acc: 80.25%, Best Acc: 81.00%

        """.write(to: temporary.appendingPathComponent("c_resnet18.x.log"), atomically: true, encoding: .utf8)
        let run = try maxq(["results", temporary.path, "--csv"])
        #expect(run.status == 0, "\(run.err)")
        #expect(
            run.out.contains("c_resnet18,CIFAR10,SoftMaxQConv2DBN,2:4,linear 0-250,300,yes,1,90.10,0.00,90.50,0.00"))
        #expect(
            run.out.contains("c_resnet18,CIFAR10,SoftMaxQConv2DBN,1:16,linear 0-250,300,no,1,80.25,0.00,81.00,0.00"))
    }

    /// PyTorch's file to safetensors gives the tensors PyTorch saved; back to PyTorch's format and
    /// again to safetensors changes no bit.
    @Test func convertMovesCheckpointsBothWays() throws {
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: temporary) }
        let first = temporary.appendingPathComponent("first.safetensors").path
        let torch = temporary.appendingPathComponent("back.pth.tar").path
        let second = temporary.appendingPathComponent("second.safetensors").path
        let expected = try SafetensorsFile.read(path: Fixtures.path("checkpoints/torch_saved_expected.safetensors"))
        for (input, output) in [
            (Fixtures.path("checkpoints/torch_saved.pth.tar"), first), (first, torch), (torch, second),
        ] {
            let run = try maxq(["convert", input, "--out", output, "--arch", "tiny"])
            #expect(run.status == 0, "\(run.err)")
            #expect(run.out.contains("wrote \(expected.tensors.count) tensors to \(output)"))
        }
        for path in [first, second] {
            let converted = try SafetensorsFile.read(path: path)
            #expect(converted.tensors.map(\.name).sorted() == expected.tensors.map(\.name).sorted())
            for (name, tensor) in expected.tensors {
                #expect(converted[name]?.shape == tensor.shape && converted[name]?.scalars == tensor.scalars, "\(name)")
            }
        }
        let header = try #require(FileHandle(forReadingAtPath: torch)?.readData(ofLength: 4))
        #expect(header == Data([0x50, 0x4B, 0x03, 0x04]), "a PyTorch checkpoint is a zip file")
    }

    @Test(arguments: [
        (["train", "--epochs", "3"], "dataset folder"),
        (["train", "/nonexistent", "--set", "ImageFolder", "--epochs", "1"], "/nonexistent"),
        (["train", "--set", "Synthetic", "--increase-start", "5", "--increase-end", "2"], "increase-end 2"),
        (["train", "--set", "Synthetic", "-e"], "--pretrained"),
        (["train", "--set", "Synthetic", "--engine", "sparse"], "--engine sparse applies to --evaluate"),
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
        // Its FLOPs (architecture recognised without -a) are those `maxq flops` counts for the checkpoint.
        #expect(object?["arch"] as? String == "c_resnet18")
        #expect(table.out.contains("FLOPs as c_resnet18 at 32x32: "))
        let counted = try maxq([
            "flops", "-a", "c_resnet18", "--num-classes", "4", "--pretrained", checkpoint, "--layers", "--json",
        ])
        #expect(counted.status == 0, "\(counted.err)")
        let flops = try #require(JSONSerialization.jsonObject(with: Data(counted.out.utf8)) as? [String: Any])
        let inspected = try #require(object?["flops"] as? Double)
        #expect(flops["flops"] as? Double == inspected && inspected < object?["flops_dense"] as? Double ?? 0)
        let statuses = try #require(flops["layers"] as? [[String: Any]]).compactMap { $0["status"] as? String }
        #expect(statuses.filter { $0 == "2:4" }.count == 19 && statuses.count == 21, "\(statuses)")
        let wrong = try maxq(["inspect", checkpoint, "-a", "resnet50"])
        #expect(wrong.status != 0 && wrong.err.contains("load 'conv1.weight': shapes [64, 3, 7, 7] and [64, 3, 3, 3]"))
        // The picture: a bar per layer, 19 of them N:M (green), the stem and classifier dense (blue).
        let picture = temporary.appendingPathComponent("layers.svg")
        #expect(try maxq(["inspect", checkpoint, "--svg", picture.path]).status == 0)
        let svg = try String(contentsOf: picture, encoding: .utf8)
        #expect(svg.components(separatedBy: "fill=\"#2ca02c\"/>").count - 1 == 19 + 1)  // and the legend's
        #expect(svg.contains(">layer4.1.convbn2</text>") && svg.contains("2:4 · 50.0% zeros"))
        #expect(svg.contains("dense (no mask) · 0.0% zeros · 1.7K weights"))
        #expect(svg.contains("a valid N:M pattern in 19 of 21 layers"))
    }

    /// Misleading messages and crashes found by trying the commands as a hostile-but-fair user.
    @Test(arguments: [
        (["mask", "F/checkpoints/torch_saved.pth.tar", "--out", "OUT"], "it is a PyTorch (zip) checkpoint"),
        (["mask", "F/masks", "--out", "OUT"], "F/masks: cannot read: is a directory"),
        (
            ["mask", "F/masks/case03.weights.safetensors", "--out", "F/masks/./case03.weights.safetensors"],
            "is the input file"
        ),
        (
            ["predict", "--pretrained", "F/masks/case03.weights.safetensors", "-a", "resnet18", "F/images/photo.jpg"],
            "none of its 3 tensors belongs to resnet18"
        ),
        (
            ["train", "--set", "Synthetic", "--resume", "F/checkpoints/torch_saved.pth.tar", "--save_dir", "DIR"],
            "PyTorch copy"
        ),
        (
            ["train", "--set", "Synthetic", "--lr", "-1", "--save_dir", "DIR"],
            "--lr must be a finite number > 0, got -1.0"
        ),
        (["train", "--set", "Synthetic", "--save_dir", "F/images/photo.jpg/run"], "cannot create --save_dir"),
        (["bench", "eval", "-b", "0"], "--batch-size, --iterations and --classes must be at least 1"),
        (["bench", "train-step", "--iterations", "0"], "--batch-size, --iterations and --classes must be at least 1"),
        (["bench", "data", "F/images", "-b=-1"], "must be at least 1"),
    ])
    func hostileUseGivesOneClearError(_ arguments: [String], _ expected: String) throws {
        let output = temporary.appendingPathComponent("out.safetensors").path
        func expand(_ s: String) -> String {
            s == "OUT"
                ? output
                : s == "DIR"
                    ? temporary.appendingPathComponent("run").path
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
        #expect(FileManager.default.createFile(atPath: stale, contents: Data("torn".utf8)))
        let second = try maxq(
            common + ["--epochs", "2", "--resume", temporary.appendingPathComponent(checkpoint).path])
        #expect(second.status == 0, "\(second.err)")
        #expect(!FileManager.default.fileExists(atPath: stale))
        let after = try FileManager.default.contentsOfDirectory(atPath: temporary.path)
        #expect(after.filter { $0.hasPrefix("checkpoint.") } == [checkpoint], "\(after)")
        let logName = try #require(after.first { $0.hasSuffix(".log") })
        #expect(after.filter { $0.hasSuffix(".log") }.count == 1)
        let log = try String(contentsOfFile: temporary.appendingPathComponent(logName).path, encoding: .utf8)
        #expect(log.contains("  0/  1 -----") && log.contains("=> resumed from") && log.contains("  1/  2 -----"))
    }

    /// `maxq bench infer --layers`: every N:M convolution with its kernel (quads at 2:4 where the
    /// CPU has AVX-512, but for the 1x1 shortcut of 64 input channels), timed on the layout the deployed
    /// model hands it (channel-major from the second block of stage 3 on, whose 8x8 planes it passes so),
    /// then the closing line with both rates.
    @Test func benchInferReportsEveryLayerAndBothEngines() throws {
        let run = try maxq([
            "bench", "infer", "-a", "c_resnet18", "--N", "2", "--M", "4", "-b", "2", "--classes", "10", "--iterations",
            "1", "--layers",
        ])
        #expect(run.status == 0, "\(run.err)")
        let lines = run.out.split(separator: "\n")
        #expect(lines.first == "layer  weight  input  dense_ms  sparse_ms  ratio", "\(run.out)")
        let layers = lines.filter { $0.hasPrefix("layer") && $0.hasSuffix(")") }
        let perChannel = layers.filter { $0.contains(" (per channel") }
        let quads = layers.filter { $0.contains(" (quads") }
        let channelMajor = layers.filter { $0.hasSuffix(", channel-major)") }.map { $0.prefix { $0 != " " } }
        #expect(
            channelMajor == [
                "layer3.1.convbn1", "layer3.1.convbn2", "layer4.0.convbn1", "layer4.0.convbn2", "layer4.0.shortcut.0",
                "layer4.1.convbn1", "layer4.1.convbn2",
            ], "\(run.out)")
        if KernelLevel.supported == .avx512 {
            #expect(quads.count == 18 && perChannel.map { $0.prefix(20) } == ["layer2.0.shortcut.0 "], "\(run.out)")
        } else {
            #expect(quads.isEmpty && perChannel.count == 19, "\(run.out)")
        }
        #expect(lines.contains("units: 19 sparse, 0 dense"))
        let last = try #require(lines.last)
        #expect(last.hasPrefix("arch=c_resnet18 N:M=2:4 batch=2 dense_img_s=") && last.contains(" speedup="))
    }

    @Test func doctorRunsEndToEnd() throws {
        let run = try maxq(["doctor"])
        #expect(run.status == 0, "\(run.err)")
        let lines = run.out.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(run.out.contains("oneDNN") && lines.last == "ok", "the smoke test's verdict is the last line")
    }
}
