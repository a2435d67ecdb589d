// `maxq doctor`: the native libraries, threads and CPU features this build runs with, MPI (under
// mpirun: the process count and a 1 MB allreduce's time), and a small forward and backward pass
// end to end.
import ArgumentParser
import Foundation
import MaxQDistributed
import MaxQNN
import MaxQTensor
import Synchronization

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print library versions, threads and CPU features, then train a tiny network for a few steps.")

    func run() throws {
        let group: MPIProcessGroup?
        do { group = try DataParallel.join() } catch { throw Failure(error) }
        defer { group?.finalize() }
        if let group {
            // Every process times the sums together; rank 0 reports.
            let seconds: Double
            do { seconds = try group.timeSum(bytes: 1 << 20, repetitions: 20) } catch { throw Failure(error) }
            guard group.rank == 0 else { return }
            print("maxq doctor")
            print("  MPI         \(MPIProcessGroup.libraryVersion)")
            print(
                "  processes   \(group.size) (\(group.localSize) on this machine), 1 MB allreduce "
                    + String(format: "%.3f ms", seconds * 1000))
        } else {
            print("maxq doctor")
            print(
                "  MPI         \(MPIProcessGroup.libraryVersion); 1 process (mpirun -np K maxq doctor times allreduce)")
        }
        print("  oneDNN      \(CPUBackend.oneDNNVersion)")
        print("  OpenBLAS    \(CPUBackend.openBLASVersion)")
        print("  threads     \(Threading.count)")
        print("  CPU         \(cpuModel())")
        print("  features    \(cpuFeatures().joined(separator: " "))")
        print("  kernels     \(KernelLevel.active)")
        print("  bf16        \(bfloat16Line())")
        do {
            try smokeTest()
        } catch {
            throw Failure(error)
        }
    }

    /// Whether `--amp bf16` runs here, and the bf16 peak: every thread in a vdpbf16ps loop at once.
    private func bfloat16Line() -> String {
        guard Precision.cpuHasBFloat16 else { return "no AVX512_BF16: --amp bf16 is refused on this CPU" }
        let threads = Threading.count
        let rates = Mutex([Double](repeating: 0, count: threads))
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            let rate = Precision.bfloat16PeakGFLOPS() ?? 0
            rates.withLock { $0[thread] = rate }
        }
        let total = rates.withLock { $0.reduce(0, +) }
        return "AVX512_BF16: --amp bf16 available; vdpbf16ps peak "
            + String(format: "%.0f GFLOP/s on %d thread(s)", total, threads)
    }

    private func cpuInfoLines() -> [Substring] {
        ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "").split(separator: "\n")
    }

    private func cpuModel() -> String {
        guard let line = cpuInfoLines().first(where: { $0.hasPrefix("model name") }) else { return "unknown" }
        return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) }
            ?? "unknown"
    }

    private func cpuFeatures() -> [String] {
        let wanted = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile"]
        guard let line = cpuInfoLines().first(where: { $0.hasPrefix("flags") }) else { return [] }
        let flags = Set(line.split(separator: " ").map(String.init))
        return wanted.map { flags.contains($0) ? $0 : "-\($0)" }
    }

    /// conv-bn-relu, max-pool, conv-bn, residual add, global pool, linear, cross-entropy; SGD steps
    /// on one fixed batch: the loss must fall.
    private func smokeTest() throws {
        var generator = RandomGenerator(seed: 42)
        let conv1 = try Conv2d(3, 16, kernelSize: 3, padding: 1, generator: &generator)
        let bn1 = BatchNorm2d(16)
        let conv2 = try Conv2d(16, 16, kernelSize: 3, padding: 1, generator: &generator)
        let bn2 = BatchNorm2d(16)
        let fc = Linear(16, 4, generator: &generator)
        let layers: [any Layer] = [conv1, bn1, conv2, bn2, fc]
        let parameters = layers.flatMap(\.parameters)
        let optimizer = SGD(groups: [.init(parameters: parameters, weightDecay: 1e-4)], learningRate: 0.1)
        let x = Variable(Tensor(normal: [8, 3, 32, 32], generator: &generator))
        let labels = (0..<8).map { $0 % 4 }
        var losses: [Float] = []
        let start = Date()
        for _ in 0..<10 {
            parameters.forEach { $0.zeroGrad() }
            let h = try bn1(conv1(x)).relu().maxPool2d()
            let y = try (bn2(conv2(h)) + h).relu()
            let loss = try fc(y.globalAveragePool()).crossEntropy(labels: labels, labelSmoothing: 0.1)
            try loss.backward()
            try optimizer.step()
            losses.append(loss.value.scalarValue)
        }
        let milliseconds = Date().timeIntervalSince(start) * 1000
        print(
            String(
                format: "  smoke test  10 SGD steps in %.0f ms, loss %.4f -> %.4f", milliseconds, losses[0], losses[9]))
        guard losses[9] < losses[0] else {
            throw Failure("smoke test: the loss did not fall (\(losses[0]) -> \(losses[9]))")
        }
        print("  ok")
    }
}
