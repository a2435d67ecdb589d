// Training runs end to end on the built-in dataset: exact resume, a non-finite loss stopping
// the run with the last checkpoint kept, the learning-rate schedules, the files a run leaves.
import Foundation
import MaxQData
import MaxQFormats
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor
import MaxQTraining
import Testing

func config(_ saveDir: String, epochs: Int = 3, type: ConvBNType = .softMaxQ) -> TrainingConfig {
    TrainingConfig(
        data: "", set: .synthetic, arch: .cResnet18, saveDir: saveDir, workers: 2, epochs: epochs, startEpoch: 0,
        batchSize: 16,
        lr: 0.05, momentum: 0.9, weightDecay: 1e-4, nesterov: true, noBNDecay: true, lrSchedule: .cos, lrAdjust: 30,
        warmupLength: 1, labelSmoothing: 0.1, convBNType: type, n: 2, m: 4, decay: 2e-4, decayType: .v1, tau: 0.01,
        increaseStart: 0, increaseEnd: 2, pruneSchedule: .linear, seed: 7, printFreq: 100, saveFormat: .safetensors,
        syntheticClasses: 4, syntheticImages: 32)
}

/// `group`, `synchronizeBatchNorm`, `shard`: one process of a data-parallel run.
func trainer(
    _ c: TrainingConfig, prefix: String, train: (any Dataset)? = nil, observers: [any TrainingObserver]? = nil,
    group: (any ProcessGroup)? = nil, synchronizeBatchNorm: Bool = false, shard: DataShard = .whole,
    prepare: (any Model) -> Void = { _ in }
) throws -> Trainer {
    let trainSet = try train ?? SyntheticDataset(classes: 4, images: 32, resolution: 32, seed: 7)
    let valSet = try SyntheticDataset(classes: 4, images: 8, resolution: 32, seed: 8)
    let model = try Architecture.cResnet18.build(classes: 4, sparsity: try c.sparsity(), seed: c.seed)
    prepare(model)
    return Trainer(
        config: c, model: model,
        train: DataLoader(
            dataset: trainSet, batchSize: c.batchSize, shuffle: true, seed: c.seed, workers: 2, shard: shard),
        validation: DataLoader(
            dataset: valSet, batchSize: c.batchSize, shuffle: false, seed: c.seed, workers: 2,
            shard: DataShard(rank: shard.rank, count: shard.count, padded: false)),
        classes: 4,
        observers: try observers
            ?? Trainer.standardObservers(config: c, log: RunLog(path: "\(c.saveDir)/\(prefix).log")),
        prefix: prefix, group: group, synchronizeBatchNorm: synchronizeBatchNorm)
}

/// A dataset whose images are NaN: the loss cannot be finite.
struct PoisonedDataset: Dataset {
    var count: Int { 8 }
    var classNames: [String] { ["a", "b"] }
    var sampleShape: [Int] { [3, 32, 32] }
    func label(_ index: Int) -> Int { index % 2 }
    func load(_ index: Int, into destination: UnsafeMutablePointer<Float>, generator: inout RandomGenerator)
        throws(DataError)
    {
        destination.initialize(repeating: .nan, count: 3 * 32 * 32)
    }
}

@Suite(.serialized) struct TrainerTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("maxq-train-\(UUID().uuidString)")
        .path

    init() throws { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }

    /// In float32 and in bf16 mixed precision (whose checkpoints hold float32 master weights).
    @Test(arguments: Precision.cpuHasBFloat16 ? Precision.allCases : [.fp32])
    func resumingAfterAnEpochGivesBitIdenticalWeights(_ precision: Precision) throws {
        let (whole, parts) = ("\(directory)/whole-\(precision)", "\(directory)/parts-\(precision)")
        try Precision.run(precision) {
            try FileManager.default.createDirectory(atPath: whole, withIntermediateDirectories: true)
            try trainer(config(whole), prefix: "whole").run()
            try FileManager.default.createDirectory(atPath: parts, withIntermediateDirectories: true)
            try trainer(config(parts), prefix: "first").run(until: 1)
            let second = try trainer(config(parts), prefix: "second")
            try second.resume(from: "\(parts)/checkpoint.c_resnet18.first.safetensors")
            try second.run()
        }
        let a = try SafetensorsFile.read(path: "\(whole)/checkpoint.c_resnet18.whole.safetensors")
        let b = try SafetensorsFile.read(path: "\(parts)/checkpoint.c_resnet18.second.safetensors")
        #expect(a.tensors.map(\.name) == b.tensors.map(\.name))
        #expect(
            a.tensors.contains { $0.name.hasPrefix("optimizer.") } && a.tensors.contains { $0.name.hasSuffix(".mask") })
        for (name, tensor) in a.tensors { #expect(tensor.scalars == b[name]?.scalars, "\(name) differs") }
        for file in ["metrics.csv", "curves.svg", "results.csv"] {
            #expect(FileManager.default.fileExists(atPath: "\(whole)/\(file)"), "\(file)")
        }
        // Master weights stay float32: most trained weights are not bfloat16 values.
        let weight = try #require(a["layer1.0.convbn1.conv.weight"]).scalars
        #expect(weight.filter { $0.roundedToBFloat16 != $0 }.count > weight.count / 2)
    }

    /// One training step in bf16 against float32 from the same weights and batch: the same masks
    /// (computed from the float32 master weights before any bf16 arithmetic), the loss within
    /// 1e-2, and gradients that point the same way (cosine >= 0.9) but differ (bf16 was used).
    /// They differ by up to about 30 % relative L2: batch norm's backward subtracts the output
    /// gradient's projections, which cancels most of it in a freshly initialised network (with
    /// PyTorch's autocast, torchvision's resnet18 on the same kind of batch differs from its
    /// float32 step by 23 to 42 % per layer).
    @Test(.enabled(if: Precision.cpuHasBFloat16, "oneDNN's bf16 kernels need AVX512_BF16"))
    func aBFloat16StepComputesTheFloat32StepsGradientsToBFloat16Accuracy() throws {
        var generator = RandomGenerator(seed: 5)
        let images = Tensor(normal: [8, 3, 32, 32], generator: &generator)
        let labels = (0..<8).map { $0 % 4 }
        var results: [Precision: (loss: Float, gradients: [[Float]], masks: [[Float]])] = [:]
        for precision in Precision.allCases {
            let model = try Architecture.cResnet18.build(
                classes: 4, sparsity: try config(directory).sparsity(), seed: 3)
            let optimizer = TrainStep.optimizer(
                for: model, learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4, nesterov: false, noBNDecay: false)
            let step = try Precision.run(precision) { () throws(TensorError) in
                try TrainStep.run(
                    model, optimizer, images: images, labels: labels, labelSmoothing: 0.1, srsteDecay: 2e-4)
            }
            results[precision] = (
                step.loss, model.parameters.map { $0.grad?.scalars ?? [] },
                model.units.compactMap { $0.1.mask?.value.scalars }
            )
        }
        let (fp32, bf16) = (results[.fp32]!, results[.bf16]!)
        #expect(abs(fp32.loss - bf16.loss) <= 1e-2 * abs(fp32.loss))
        #expect(!fp32.masks.isEmpty && fp32.masks == bf16.masks)
        for (a, b) in zip(fp32.gradients, bf16.gradients) where !a.isEmpty {
            let dot = zip(a, b).map { Double($0) * Double($1) }.reduce(0, +)
            let norms = [a, b].map { $0.map { Double($0) * Double($0) }.reduce(0, +).squareRoot() }
            #expect(dot >= 0.9 * norms[0] * norms[1], "gradient cosine \(dot / (norms[0] * norms[1]))")
        }
        #expect(fp32.gradients != bf16.gradients)
    }

    @Test func aNonFiniteLossStopsTheRunNamingEpochAndIteration() throws {
        let saveDir = "\(directory)/nan"
        try FileManager.default.createDirectory(atPath: saveDir, withIntermediateDirectories: true)
        let run = try trainer(config(saveDir, type: .dense), prefix: "nan", train: PoisonedDataset())
        let error = #expect(throws: TrainingError.self) { try run.run() }
        #expect(error.map { "\($0)" }?.contains("epoch 0, iteration 0") == true, "\(String(describing: error))")
        #expect(!FileManager.default.fileExists(atPath: "\(saveDir)/checkpoint.c_resnet18.nan.safetensors"))
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A weight that is no longer a number stops the run before any mask is computed from it.
    @Test func aNonFiniteWeightStopsTheRunNamingTheLayer() throws {
        let saveDir = "\(directory)/nan-weight"
        try FileManager.default.createDirectory(atPath: saveDir, withIntermediateDirectories: true)
        let run = try trainer(config(saveDir), prefix: "nanweight") { model in
            model.units.first { $0.0 == "layer2.0.convbn1" }?.1.conv.weight.value[flat: 3] = .infinity
        }
        #expect(throws: TrainingError.nonFiniteWeight(epoch: 0, iteration: 0, name: "layer2.0.convbn1.conv.weight")) {
            try run.run()
        }
        #expect(!FileManager.default.fileExists(atPath: "\(saveDir)/checkpoint.c_resnet18.nanweight.safetensors"))
        try? FileManager.default.removeItem(atPath: directory)
    }

    @Test func learningRateSchedulesFollowTheReference() {
        var c = config(directory, epochs: 10)
        c.warmupLength = 2
        #expect(abs(c.learningRate(epoch: 0) - 0.025) < 1e-12 && abs(c.learningRate(epoch: 1) - 0.05) < 1e-12)
        #expect(abs(c.learningRate(epoch: 2) - 0.05) < 1e-12 && abs(c.learningRate(epoch: 6) - 0.025) < 1e-12)
        c.lrSchedule = .step
        c.lrAdjust = 3
        #expect(abs(c.learningRate(epoch: 2) - 0.05) < 1e-12 && abs(c.learningRate(epoch: 3) - 0.005) < 1e-12)
    }

    /// A caller's own observer sees the run as the standard ones do, in order.
    @Test func observersSeeEveryStepOfTheRunInOrder() throws {
        let saveDir = "\(directory)/observed"
        try FileManager.default.createDirectory(atPath: saveDir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let recorder = EventRecorder()
        let run = try trainer(config(saveDir, epochs: 1), prefix: "observed", observers: [recorder])
        try run.run()
        #expect(
            recorder.kinds == [
                "epochStarted", "trainingIteration 0/2", "trainingIteration 1/2", "masksUpdated 19",
                "validationIteration 0/1",
                "validationFinished", "epochFinished 0", "runFinished",
            ])
        #expect(
            !FileManager.default.fileExists(atPath: "\(saveDir)/metrics.csv"), "report files come from observers only")
    }

    @Test func aStopRequestEndsTheRunAtTheNextIterationBoundary() throws {
        let saveDir = "\(directory)/stopped"
        try FileManager.default.createDirectory(atPath: saveDir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let run = try trainer(config(saveDir, epochs: 1), prefix: "stopped")
        run.stopRequested = { true }
        #expect(throws: TrainingError.interrupted(epoch: 0, iteration: 0)) { try run.run() }
        #expect(!FileManager.default.fileExists(atPath: "\(saveDir)/checkpoint.c_resnet18.stopped.safetensors"))
    }

    /// A Swift caller gets the command line's errors, naming the flags.
    @Test func aConfigRefusesWhatCannotTrain() {
        let cases: [(TrainingConfig, String)] = [
            (TrainingConfig(set: .imageFolder), "give the dataset folder"),
            (TrainingConfig(set: .synthetic, lr: .nan), "--lr must be a finite number > 0, got nan"),
            (TrainingConfig(set: .synthetic, weightDecay: -1), "--wd must be a finite number >= 0"),
            (TrainingConfig(set: .synthetic, labelSmoothing: 1), "--label-smoothing must be in [0, 1)"),
            (TrainingConfig(set: .synthetic, epochs: 2, startEpoch: 2), "--start-epoch"),
            (TrainingConfig(set: .synthetic, n: 5, m: 4), "5:4"),
            (TrainingConfig(set: .synthetic, increaseStart: 9, increaseEnd: 3), "increase-end 3"),
            (TrainingConfig(set: .synthetic, tau: 0), "--tau must be a finite number > 0"),
        ]
        for (config, expected) in cases {
            let error = #expect(throws: TrainingError.self) { try config.validate() }
            #expect(error?.description.contains(expected) == true, "\(String(describing: error)) lacks \(expected)")
        }
        #expect(throws: Never.self) { try TrainingConfig(set: .synthetic).validate() }
        #expect(
            TrainingConfig(set: .cifar10).labelSmoothing == 0 && TrainingConfig(set: .imageNet).labelSmoothing == 0.1)
    }

    /// Checkpoints store the config as JSON with the flags' spellings; the typed config reads the
    /// files written before it was typed.
    @Test func theStoredConfigKeepsTheFlagsSpellings() throws {
        let c = config(directory)
        for field in [
            #""set":"Synthetic""#, #""arch":"c_resnet18""#, #""convBNType":"SoftMaxQConv2DBN""#,
            #""lrSchedule":"cos""#, #""pruneSchedule":"linear""#, #""saveFormat":"safetensors""#, #""decayType":"v1""#,
        ] {
            #expect(c.json.contains(field), "\(field)")
        }
        #expect(try JSONDecoder().decode(TrainingConfig.self, from: Data(c.json.utf8)) == c)
    }
}

final class EventRecorder: TrainingObserver {
    var kinds: [String] = []

    func observe(_ event: TrainingEvent) {
        switch event {
        case .epochStarted: kinds.append("epochStarted")
        case let .trainingIteration(r): kinds.append("trainingIteration \(r.iteration)/\(r.iterations)")
        case let .masksUpdated(layers): kinds.append("masksUpdated \(layers.count)")
        case let .validationIteration(r): kinds.append("validationIteration \(r.iteration)/\(r.iterations)")
        case .validationFinished: kinds.append("validationFinished")
        case let .epochFinished(metrics, _): kinds.append("epochFinished \(metrics.epoch)")
        case .runFinished: kinds.append("runFinished")
        default: kinds.append("other")
        }
    }
}
