// The training run: epochs of SGD steps, validation, the stored masks' update and checkpoints;
// evaluation alone for `--evaluate`. What it reports goes out as events to its observers
// (TrainingEvents.swift); it prints nothing itself.
import Foundation
import MaxQData
import MaxQFormats
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

public final class Trainer {
    public let config: TrainingConfig
    public let model: any Model
    public let optimizer: SGD
    let train: DataLoader?
    let validation: DataLoader
    let observers: [any TrainingObserver]
    let prefix: String
    let topK: Int
    public private(set) var bestAcc1: Double = 0
    public private(set) var startEpoch: Int
    /// Asked at every iteration boundary; true stops the run there (`TrainingError.interrupted`),
    /// leaving no partial file. The command line sets it from SIGINT.
    public var stopRequested: @Sendable () -> Bool = { false }

    public init(
        config: TrainingConfig, model: any Model, train: DataLoader?, validation: DataLoader, classes: Int,
        observers: [any TrainingObserver], prefix: String
    ) {
        self.config = config
        self.model = model
        self.train = train
        self.validation = validation
        self.observers = observers
        self.prefix = prefix
        topK = min(5, classes)
        startEpoch = config.startEpoch
        optimizer = TrainStep.optimizer(
            for: model, learningRate: Float(config.lr), momentum: Float(config.momentum),
            weightDecay: Float(config.weightDecay),
            nesterov: config.nesterov, noBNDecay: config.noBNDecay)
    }

    /// Continues from a run checkpoint: the epoch after the saved one, its best top-1. Staging
    /// files that a killed process left for this run's checkpoints are removed.
    public func resume(from path: String) throws {
        for file in [checkpointPath, bestPath, Self.pthCopy(of: checkpointPath), Self.pthCopy(of: bestPath)]
        where AtomicWrite.removeStale(for: file) {
            try emit(.removedPartialFile(AtomicWrite.partialPath(of: file)))
        }
        let state = try RunCheckpoint.load(path, into: model, optimizer: optimizer)
        guard state.config.arch == config.arch, state.config.convBNType == config.convBNType,
            state.config.n == config.n,
            state.config.m == config.m
        else {
            throw TrainingError.resume(
                "\(path) was written for \(state.config.arch.rawValue) \(state.config.convBNType.rawValue) "
                    + "\(state.config.n):\(state.config.m)"
            )
        }
        startEpoch = state.epoch + 1
        bestAcc1 = state.bestAcc1
        try emit(.resumed(path: path, epoch: state.epoch, bestTop1: state.bestAcc1))
    }

    var checkpointPath: String { "\(config.saveDir)/checkpoint.\(config.arch.rawValue).\(prefix).safetensors" }
    var bestPath: String { "\(config.saveDir)/best.\(config.arch.rawValue).\(prefix).safetensors" }
    /// The reference-format copy written beside a run checkpoint with `--save-format pth`.
    static func pthCopy(of path: String) -> String { path.replacingOccurrences(of: ".safetensors", with: ".pth.tar") }

    /// Trains from `startEpoch` to `epochs` (or only up to epoch `until`, exclusive, as if
    /// stopped there); returns (last top-1, best top-1).
    @discardableResult
    public func run(until: Int? = nil) throws -> (last: Double, best: Double) {
        let sparsity = try config.sparsity()
        var last = 0.0
        var epochSeconds: [Double] = []
        for epoch in startEpoch..<min(config.epochs, until ?? config.epochs) {
            let started = Date()
            let need = (epochSeconds.reduce(0, +) / Double(max(epochSeconds.count, 1))) * Double(config.epochs - epoch)
            try emit(.epochStarted(epoch: epoch, epochs: config.epochs, secondsNeeded: need))
            let lr = config.learningRate(epoch: epoch)
            optimizer.learningRate = Float(lr)
            model.setEpoch(epoch)
            let (trainLoss, trainTop1) = try trainEpoch(epoch)
            // The stored masks, from the final weights, and what they zero per layer.
            try ConvBNUnit.recomputeMasks(of: model.units, forNextForward: false)
            try emit(
                .masksUpdated(
                    model.units.filter { $0.1.mask != nil }.map { name, unit in
                        let (zeros, total) = unit.zeroCount
                        return MaskReport(layer: name, zeros: zeros, total: total)
                    }))
            let (valLoss, top1, top5) = try evaluate()
            last = top1
            let isBest = top1 > bestAcc1
            bestAcc1 = max(bestAcc1, top1)
            let state = RunState(epoch: epoch, bestAcc1: bestAcc1, config: config)
            let pth = config.saveFormat == .pth ? Self.pthCopy(of: checkpointPath) : nil
            try RunCheckpoint.save(model, optimizer: optimizer, state: state, path: checkpointPath, pthPath: pth)
            if isBest {
                try RunCheckpoint.save(
                    model, optimizer: optimizer, state: state, path: bestPath,
                    pthPath: pth.map { _ in Self.pthCopy(of: bestPath) })
            }
            epochSeconds.append(Date().timeIntervalSince(started))
            // Methods that ignore the incremental schedule (SR-STE) are N:M from the start.
            let method = sparsity.type.method
            let nm = method.map { $0.followsSchedule ? 1 - sparsity.schedule.preserveRate(epoch: epoch) : 1 } ?? 0
            try emit(
                .epochFinished(
                    EpochMetrics(
                        epoch: epoch, lr: lr, trainLoss: trainLoss, trainTop1: trainTop1, valLoss: valLoss,
                        valTop1: top1,
                        valTop5: top5, nmFraction: nm, seconds: epochSeconds.last!),
                    bestTop1: bestAcc1))
        }
        try emit(.runFinished(lastTop1: last, bestTop1: bestAcc1))
        return (last, bestAcc1)
    }

    private func trainEpoch(_ epoch: Int) throws -> (loss: Double, top1: Double) {
        guard let train else { throw TrainingError.invalid("no training data") }
        model.setTraining(true)
        var batchTime = AverageMeter(), dataTime = AverageMeter(), losses = AverageMeter(), top1 = AverageMeter(),
            top5 = AverageMeter()
        var skipped = 0
        let total = train.batchesPerEpoch
        let batches = train.epoch(epoch)
        var tick = Date()
        var i = 0
        while let batch = batches.next() {
            dataTime.update(Date().timeIntervalSince(tick))
            skipped += batch.skipped.count
            for file in batch.skipped { try emit(.skippedFile(file)) }
            defer { i += 1 }
            guard !batch.labels.isEmpty else { continue }
            let result: StepResult
            do {
                result = try TrainStep.run(
                    model, optimizer, images: batch.images, labels: batch.labels,
                    labelSmoothing: Float(config.labelSmoothing),
                    srsteDecay: config.decayType == .v1 ? Float(config.decay) : 0)
            } catch {
                guard case .nonFinite(let name) = error else { throw error }
                throw TrainingError.nonFiniteWeight(epoch: epoch, iteration: i, name: name)
            }
            guard result.loss.isFinite else {
                throw TrainingError.nonFiniteLoss(epoch: epoch, iteration: i, loss: result.loss)
            }
            let accuracy = try result.logits.topKAccuracy(labels: batch.labels, ks: [1, topK])
            let n = Double(batch.labels.count)
            losses.update(Double(result.loss), weight: n)
            top1.update(Double(accuracy[0]), weight: n)
            top5.update(Double(accuracy[1]), weight: n)
            batchTime.update(Date().timeIntervalSince(tick))
            try emit(
                .trainingIteration(
                    IterationReport(
                        epoch: epoch, epochs: config.epochs, iteration: i, iterations: total,
                        images: batch.labels.count,
                        batchTime: batchTime, dataTime: dataTime, loss: losses, top1: top1, top5: top5)))
            if stopRequested() { throw TrainingError.interrupted(epoch: epoch, iteration: i) }
            tick = Date()
        }
        if skipped > 0 { try emit(.epochSkippedFiles(epoch: epoch, count: skipped)) }
        return (losses.average, top1.average)
    }

    /// Validation: the reference's Test lines and summary; returns (loss, top-1, top-5).
    @discardableResult
    public func evaluate() throws -> (loss: Double, top1: Double, top5: Double) {
        model.setTraining(false)
        var batchTime = AverageMeter(), losses = AverageMeter(), top1 = AverageMeter(), top5 = AverageMeter()
        let total = validation.batchesPerEpoch
        let batches = validation.epoch(0)
        var tick = Date()
        var i = 0
        while let batch = batches.next() {
            defer { i += 1 }
            for file in batch.skipped { try emit(.skippedFile(file)) }
            guard !batch.labels.isEmpty else { continue }
            let logits = try GradientMode.withoutGradients { try model(Variable(batch.images)) }
            let loss = try logits.value.backend.crossEntropy(
                logits.value, labels: batch.labels, labelSmoothing: Float(config.labelSmoothing)
            ).loss
            let accuracy = try logits.value.topKAccuracy(labels: batch.labels, ks: [1, topK])
            let n = Double(batch.labels.count)
            losses.update(Double(loss), weight: n)
            top1.update(Double(accuracy[0]), weight: n)
            top5.update(Double(accuracy[1]), weight: n)
            batchTime.update(Date().timeIntervalSince(tick))
            try emit(
                .validationIteration(
                    ValidationReport(
                        iteration: i, iterations: total, batchTime: batchTime, loss: losses, top1: top1, top5: top5)))
            if stopRequested() { throw TrainingError.interrupted(epoch: -1, iteration: i) }
            tick = Date()
        }
        try emit(.validationFinished(loss: losses.average, top1: top1.average, top5: top5.average))
        return (losses.average, top1.average, top5.average)
    }

    private func emit(_ event: TrainingEvent) throws {
        for observer in observers { try observer.observe(event) }
    }
}
