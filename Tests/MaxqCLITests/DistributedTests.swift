// `mpirun -np K maxq train`: one process under mpirun with --sync-bn is the plain run bit for bit;
// two processes take the steps of one with twice the batch (within float summation order); rank
// 0's log in the usual formats; a killed rank ends the run with the others while the last
// checkpoint stays resumable with another process count.
// Skipped, with the reason, where Open MPI's mpirun is missing (CI installs it: Scripts/setup.sh).
import Foundation
import MaxQFormats
import Testing

/// mpirun from PATH, or nil.
let mpirun: URL? = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":")
    .map { URL(fileURLWithPath: String($0)).appendingPathComponent("mpirun") }
    .first { FileManager.default.isExecutableFile(atPath: $0.path) }

/// What mpirun needs here: CI runs as root, and this machine has 2 cores.
let mpirunEnvironment = [
    "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
]

@Suite(.enabled(if: mpirun != nil, "mpirun is missing: Scripts/setup.sh installs openmpi-bin"))
struct DistributedTests {
    let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("maxq-mpi-\(UUID().uuidString)")

    /// c_resnet18 SoftMaxQ 2:4 (or `type`), an incremental schedule over the 3 epochs, Nesterov, on 16
    /// Synthetic images.
    func trainArguments(
        _ saveDir: String, batch: Int, epochs: Int = 3, type: String = "SoftMaxQConv2DBN"
    ) -> [String] {
        [
            "train", "--set", "Synthetic", "-a", "c_resnet18", "--synthetic-images", "16", "--synthetic-classes", "4",
            "--epochs", "\(epochs)", "--increase-start", "0", "--increase-end", "2", "--nesterov", "True",
            "--conv-bn-type", type, "--N", "2", "--M", "4", "--lr", "0.01", "-j", "2", "--seed", "7",
            "-p", "1", "-b", "\(batch)", "--save_dir", temporary.appendingPathComponent(saveDir).path,
        ]
    }

    func checkpoint(_ saveDir: String) throws -> SafetensorsFile {
        let folder = temporary.appendingPathComponent(saveDir).path
        let name = try #require(
            try FileManager.default.contentsOfDirectory(atPath: folder).first { $0.hasPrefix("checkpoint.") })
        return try SafetensorsFile.read(path: "\(folder)/\(name)")
    }

    /// Relative L2 distances of two checkpoints: (weights, momentum buffers, masks).
    func distances(_ a: SafetensorsFile, _ b: SafetensorsFile) throws -> [String: Double] {
        var sums: [String: (Double, Double)] = [:]
        for entry in a.tensors {
            let kind =
                entry.name.hasSuffix("mask")
                ? "masks" : entry.name.hasSuffix("momentum_buffer") ? "momentum" : "weights"
            guard !entry.name.contains("running_") && !entry.name.contains("num_batches") else { continue }
            let other = try #require(b[entry.name])
            var (difference, norm) = sums[kind] ?? (0, 0)
            for (x, y) in zip(entry.tensor.scalars, other.scalars) {
                difference += Double(x - y) * Double(x - y)
                norm += Double(x) * Double(x)
            }
            sums[kind] = (difference, norm)
        }
        return sums.mapValues { ($0.0 / max($0.1, 1e-30)).squareRoot() }
    }

    @Test func oneProcessUnderMpirunWithSyncBNIsThePlainRunBitForBit() throws {
        defer { try? FileManager.default.removeItem(at: temporary) }
        let tool = builtTool("maxq")
        let plain = try run(tool, trainArguments("plain", batch: 8))
        #expect(plain.status == 0, "\(plain.err)")
        let launched = try run(
            mpirun!, ["-np", "1", tool.path] + trainArguments("launched", batch: 8) + ["--sync-bn"],
            environment: mpirunEnvironment)
        #expect(launched.status == 0, "\(launched.out)\n\(launched.err)")
        let (a, b) = (try checkpoint("plain"), try checkpoint("launched"))
        #expect(a.tensors.map(\.name) == b.tensors.map(\.name))
        for entry in a.tensors { #expect(entry.tensor.scalars == b[entry.name]?.scalars, "\(entry.name)") }
    }

    /// Two processes with batch 4 against one with batch 8, for an epoch of two steps: the same
    /// weights and momentum buffers up to float summation order (dense units: MaxQ's soft masks,
    /// temperature 0.01, magnify any difference in the weights they are computed from).
    @Test func twoProcessesWithSyncBNTakeTheStepsOfOneWithTwiceTheBatch() throws {
        defer { try? FileManager.default.removeItem(at: temporary) }
        let tool = builtTool("maxq")
        let one = try run(tool, trainArguments("one", batch: 8, epochs: 1, type: "DenseConv2dBN"))
        #expect(one.status == 0, "\(one.err)")
        let two = try run(
            mpirun!,
            ["-np", "2", tool.path] + trainArguments("two", batch: 4, epochs: 1, type: "DenseConv2dBN") + ["--sync-bn"],
            environment: mpirunEnvironment)
        #expect(two.status == 0, "\(two.out)\n\(two.err)")
        let apart = try distances(try checkpoint("one"), try checkpoint("two"))
        #expect(apart["weights"]! <= 1e-5 && apart["momentum"]! <= 1e-5, "\(apart)")
        // Rank 0's log: the usual lines, the global batch of 2 x 4 images per step.
        #expect(two.out.contains("data parallel: 2 processes x batch 4 (8 per step)"))
        #expect(two.out.contains("Epoch: [0][1/2]") && two.out.contains(" * Prec@1 "))
        let files = try FileManager.default.contentsOfDirectory(atPath: temporary.appendingPathComponent("two").path)
        #expect(files.filter { $0.hasSuffix(".log") }.count == 1)
    }

    /// Between machines the processes talk over the network: two processes whose messages go through
    /// TCP (Open MPI's `tcp` transport, as between nodes) take exactly the steps of two that share
    /// memory (`vader`), on the run with --sync-bn: every sum is of two values, which add
    /// alike in either order, so the checkpoints are equal bit for bit.
    @Test func overTCPTwoProcessesTakeTheStepsTheyTakeOverSharedMemory() throws {
        defer { try? FileManager.default.removeItem(at: temporary) }
        let tool = builtTool("maxq")
        for (saveDir, transport) in [("memory", "self,vader"), ("network", "self,tcp")] {
            let launched = try run(
                mpirun!, ["-np", "2", tool.path] + trainArguments(saveDir, batch: 4) + ["--sync-bn"],
                environment: mpirunEnvironment.merging(["OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": transport]) { $1 })
            #expect(launched.status == 0, "\(transport): \(launched.out)\n\(launched.err)")
        }
        let (a, b) = (try checkpoint("memory"), try checkpoint("network"))
        #expect(a.tensors.map(\.name) == b.tensors.map(\.name))
        for entry in a.tensors { #expect(entry.tensor.scalars == b[entry.name]?.scalars, "\(entry.name)") }
    }

    /// `maxq bench train-step` under mpirun: rank 0 alone reports, with the processes, the gradient
    /// bytes and the exposed communication, and a rate for all processes' images.
    @Test func benchTrainStepUnderMpirunReportsTheDataParallelRate() throws {
        let bench = try run(
            mpirun!,
            [
                "-np", "2", builtTool("maxq").path, "bench", "train-step", "-a", "c_resnet18", "-b", "4", "--classes",
                "10", "--iterations", "2", "--conv-bn-type", "SoftMaxQConv2DBN",
            ], environment: mpirunEnvironment)
        #expect(bench.status == 0, "\(bench.out)\n\(bench.err)")
        let lines = bench.out.split(separator: "\n")
        #expect(
            lines.filter { $0.hasPrefix("data parallel: 2 processes x batch 4, 1 compute thread(s) each") }.count == 1)
        #expect(lines.filter { $0.contains("gradient sums") && $0.contains("ms per step not hidden") }.count == 1)
        let rate = try #require(lines.first { $0.contains("batch=2x4") && $0.contains("train_img_s=") })
        let value = try #require(Double(rate.split(separator: "=").last!))
        #expect(value > 0, "\(rate)")
    }

    /// The run (SoftMaxQ 2:4, 3 epochs of an incremental schedule, Nesterov) without --sync-bn.
    @Test func withoutSyncBNTheRunCompletesWithTheSameLogLines() throws {
        defer { try? FileManager.default.removeItem(at: temporary) }
        let two = try run(
            mpirun!, ["-np", "2", builtTool("maxq").path] + trainArguments("two", batch: 4),
            environment: mpirunEnvironment)
        #expect(two.status == 0, "\(two.out)\n\(two.err)")
        for line in ["Epoch: [2][0/2]", "Test: [0/", " * Prec@1 ", "=> Epoch: 2, LR:", "gradient sums"] {
            #expect(two.out.contains(line), "no '\(line)' in \(two.out)")
        }
    }

    /// Two processes that read different data (here: Synthetic sets of different sizes) stop with
    /// a message naming it, instead of training on mismatched shares.
    @Test func processesWithDifferentDataAreRefused() throws {
        defer { try? FileManager.default.removeItem(at: temporary) }
        let tool = builtTool("maxq").path
        var other = trainArguments("two", batch: 4, epochs: 1)
        other[other.firstIndex(of: "--synthetic-images")! + 1] = "20"
        let two = try run(
            mpirun!,
            ["-np", "1", tool] + trainArguments("two", batch: 4, epochs: 1) + [":", "-np", "1", tool] + other,
            environment: mpirunEnvironment)
        #expect(two.status != 0)
        #expect(two.err.contains("every process must read the same dataset"), "\(two.err)")
    }

    @Test func aKilledRankEndsTheRunAndItsCheckpointResumesWithOneProcess() throws {
        defer { try? FileManager.default.removeItem(at: temporary) }
        let tool = builtTool("maxq")
        let launcher = Process()
        launcher.executableURL = mpirun
        launcher.arguments = ["-np", "2", tool.path] + trainArguments("killed", batch: 4, epochs: 50)
        launcher.environment = ProcessInfo.processInfo.environment.merging(mpirunEnvironment) { $1 }
        let output = temporary.appendingPathComponent("mpirun.out")
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        (launcher.standardOutput, launcher.standardError) = (handle, handle)
        try launcher.run()
        // Wait for the first checkpoint, then kill rank 1.
        let folder = temporary.appendingPathComponent("killed").path
        let deadline = Date().addingTimeInterval(300)
        while Date() < deadline,
            (try? FileManager.default.contentsOfDirectory(atPath: folder))?.contains(where: {
                $0.hasPrefix("checkpoint.")
            }) != true
        {
            Thread.sleep(forTimeInterval: 0.2)
        }
        let rank1 = try #require(Self.rankProcess(1, under: launcher.processIdentifier))
        let killed = Date()
        kill(rank1, SIGKILL)
        while launcher.isRunning && Date().timeIntervalSince(killed) < 60 { Thread.sleep(forTimeInterval: 0.1) }
        let seconds = Date().timeIntervalSince(killed)
        if launcher.isRunning { launcher.terminate() }
        launcher.waitUntilExit()
        let said = String(decoding: try Data(contentsOf: output), as: UTF8.self)
        #expect(seconds < 30, "the other rank ran on for \(seconds) s")
        #expect(launcher.terminationStatus != 0)
        #expect(said.contains("rank 1"), "\(said)")
        // The last checkpoint resumes with one process for one more epoch.
        let saved = try #require(
            try FileManager.default.contentsOfDirectory(atPath: folder).first {
                $0.hasPrefix("checkpoint.") && $0.hasSuffix(".safetensors")
            })
        let epoch = try #require(Int(try SafetensorsFile.read(path: "\(folder)/\(saved)").metadata["epoch"] ?? ""))
        var arguments = trainArguments("killed", batch: 8, epochs: epoch + 2)
        arguments += ["--resume", "\(folder)/\(saved)"]
        let resumed = try run(tool, arguments)
        #expect(resumed.status == 0, "\(resumed.err)")
        #expect(resumed.out.contains("=> Epoch: \(epoch + 1), LR:"))
    }

    /// The pid of rank `rank` among the processes mpirun `launcher` started (its environment says
    /// OMPI_COMM_WORLD_RANK).
    static func rankProcess(_ rank: Int, under launcher: Int32) -> Int32? {
        let processes = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { Int32($0) } ?? []
        return processes.first { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 2, Int32(fields[1]) == launcher,
                let environment = FileManager.default.contents(atPath: "/proc/\(pid)/environ")
            else { return false }
            return environment.split(separator: 0).contains { Array($0) == Array("OMPI_COMM_WORLD_RANK=\(rank)".utf8) }
        }
    }
}
