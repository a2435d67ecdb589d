// `maxq bench ...`: measured performance, to compare with PyTorch on the same machine
// (Scripts/bench_pytorch.py; method in docs/performance.md).
import ArgumentParser
import Foundation
import MaxQNN
import MaxQTensor

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (release builds; compare with PyTorch measured in the same run).",
        subcommands: [
            BenchOps.self, BenchMasks.self, BenchTrainStep.self, BenchEval.self, BenchData.self, BenchInfer.self,
        ])
}

struct BenchOps: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops",
        abstract:
            "Forward and forward+backward milliseconds of the layer shapes of Scripts/bench_pytorch.py ops (batch 32).")

    @Option(help: "Timed iterations per case (median reported).") var iterations = 5
    @Option(help: "Batch size.") var batchSize = 32

    /// (name, input channels, spatial size, output channels, kernel, stride, groups), as pytorch_ops.py.
    static let cases: [(String, Int, Int, Int, Int, Int, Int)] = [
        ("conv3x3 64->64 56x56", 64, 56, 64, 3, 1, 1),
        ("conv1x1 256->64 56x56", 256, 56, 64, 1, 1, 1),
        ("conv1x1 64->256 56x56", 64, 56, 256, 1, 1, 1),
        ("conv3x3 128->128 s2 56x56", 128, 56, 128, 3, 2, 1),
        ("conv3x3 512->512 7x7", 512, 7, 512, 3, 1, 1),
        ("depthwise3x3 128 112x112", 128, 112, 128, 3, 1, 128),
    ]

    func run() throws {
        do {
            try runCases()
        } catch {
            throw Failure(error)
        }
    }

    private func runCases() throws {
        var generator = RandomGenerator(seed: 0)
        print("threads \(Threading.count), batch \(batchSize), median of \(iterations)")
        for (name, c, size, o, k, s, groups) in Self.cases {
            let x = Variable(Tensor(normal: [batchSize, c, size, size], generator: &generator), requiresGrad: true)
            let w = Variable(Tensor(normal: [o, c / groups, k, k], generator: &generator), requiresGrad: true)
            let geometry = Conv2dGeometry(stride: s, padding: k / 2, groups: groups)
            let forward = try medianMilliseconds(iterations: iterations) {
                _ = try GradientMode.withoutGradients { try x.conv2d(w, geometry) }
            }
            let seed = try Tensor(normal: x.conv2d(w, geometry).shape, generator: &generator)
            let both = try medianMilliseconds(iterations: iterations) {
                x.zeroGrad()
                w.zeroGrad()
                try x.conv2d(w, geometry).backward(seed: seed)
            }
            print(line(name, forward: forward, both: both))
        }
        let x = Variable(Tensor(normal: [batchSize, 256, 56, 56], generator: &generator), requiresGrad: true)
        let bn = BatchNorm2d(256)
        let seed = Tensor(normal: x.shape, generator: &generator)
        let both = try medianMilliseconds(iterations: iterations) {
            x.zeroGrad()
            try bn(x).relu().backward(seed: seed)
        }
        print(line("batchnorm+relu 256 56x56", forward: nil, both: both))
    }

    private func line(_ name: String, forward: Double?, both: Double) -> String {
        let f = forward.map { String(format: "forward %8.2f ms   ", $0) } ?? String(repeating: " ", count: 23)
        return name.padding(toLength: 28, withPad: " ", startingAt: 0) + " batch \(batchSize): " + f
            + String(format: "forward+backward %8.2f ms", both)
    }
}
