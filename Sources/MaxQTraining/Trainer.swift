// The training run: epochs of SGD steps, validation, the stored masks' update and checkpoints;
// evaluation alone for `--evaluate`. What it reports goes out as events to its observers
// (TrainingEvents.swift); it prints nothing itself. In a data-parallel run (a process group) every
// process runs it on its share of the data, with the same steps; rank 0 writes the files.
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
    /// The processes of a data-parallel run; nil: this process alone.
    public let exchange: GradientExchange?
    var group: (any ProcessGroup)? { exchange?.group }
    /// Whether this process writes checkpoints (rank 0, or the only process).
    var writesFiles: Bool { (group?.rank ?? 0) == 0 }

    /// `group`: train data-parallel with these processes (the loaders hold this process's shard);
    /// `synchronizeBatchNorm`: batch statistics over all processes' batches.
    public init(
        config: TrainingConfig, model: any Model, train: DataLoader?, validation: DataLoader, classes: Int,
        observers: [any TrainingObserver], prefix: String, group: (any ProcessGroup)? = nil,
        synchronizeBatchNorm: Bool = false
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
        exchange = group.map { GradientExchange(parameters: model.parameters, group: $0) }
        if synchronizeBatchNorm, let group {
            for norm in model.batchNorms { norm.synchronization = group }
        }
    }

    /// Continues from a run checkpoint: the epoch after the saved one, its best top-1. Staging
    /// files that a killed process left for this run's checkpoints are removed.
    public func resume(from path: String) throws {
        for file in [checkpointPath, bestPath, Self.pthCopy(of: checkpointPath), Self.pthCopy(of: bestPath)]
        where writesFiles && AtomicWrite.removeStale(for: file) {
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
        // All processes start from rank 0's weights (the same seed builds the same ones anyway).
        try group?.broadcastState(of: model, parameters: true)
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
            try group?.broadcastState(of: model, parameters: false)
            let (valLoss, top1, top5) = try evaluate()
            last = top1
            let isBest = top1 > bestAcc1
            bestAcc1 = max(bestAcc1, top1)
            let state = RunState(epoch: epoch, bestAcc1: bestAcc1, config: config)
            let pth = config.saveFormat == .pth ? Self.pthCopy(of: checkpointPath) : nil
            if writesFiles {
                try RunCheckpoint.save(model, optimizer: optimizer, state: state, path: checkpointPath, pthPath: pth)
            }
            if isBest && writesFiles {
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
                    srsteDecay: config.decayType == .v1 ? Float(config.decay) : 0, topK: topK, exchange: exchange)
            } catch {
                guard case .nonFinite(let name) = error else { throw error }
                throw TrainingError.nonFiniteWeight(epoch: epoch, iteration: i, name: name)
            }
            guard result.loss.isFinite else {
                throw TrainingError.nonFiniteLoss(epoch: epoch, iteration: i, loss: result.loss)
            }
            let n = Double(result.images)
            losses.update(Double(result.loss), weight: n)
            top1.update(Double(result.top1), weight: n)
            top5.update(Double(result.topK), weight: n)
            batchTime.update(Date().timeIntervalSince(tick))
            try emit(
                .trainingIteration(
                    IterationReport(
                        epoch: epoch, epochs: config.epochs, iteration: i, iterations: total, images: result.images,
                        batchTime: batchTime, dataTime: dataTime, loss: losses, top1: top1, top5: top5)))
            if try anyProcessStops() { throw TrainingError.interrupted(epoch: epoch, iteration: i) }
            tick = Date()
        }
        if skipped > 0 { try emit(.epochSkippedFiles(epoch: epoch, count: skipped)) }
        if let exchange {
            try emit(
                .exchangeFinished(
                    ExchangeReport(
                        epoch: epoch, processes: exchange.group.size, bytesPerStep: exchange.bytesPerStep,
                        exposedSecondsPerStep: exchange.takeExposedSecondsPerStep())))
        }
        return (losses.average, top1.average)
    }

    /// Whether a stop was requested here or, in a data-parallel run, in any process: all stop at
    /// the same iteration.
    private func anyProcessStops() throws -> Bool {
        guard let group else { return stopRequested() }
        var requests = [stopRequested() ? 1.0 : 0]
        try group.sum(&requests)
        return requests[0] > 0
    }

    /// Validation: the reference's Test lines and summary; returns (loss, top-1, top-5).
    @discardableResult
    public func evaluate() throws -> (loss: Double, top1: Double, top5: Double) {
        model.setTraining(false)
        var batchTime = AverageMeter(), losses = AverageMeter(), top1 = AverageMeter(), top5 = AverageMeter()
        let total = validation.batchesPerEpoch
        let batches = validation.epoch(0)
        // The weights stay as they are until validation ends: one blocked network for all batches.
        let forward = model.evaluation().forward
        var tick = Date()
        var i = 0
        while let batch = batches.next() {
            defer { i += 1 }
            for file in batch.skipped { try emit(.skippedFile(file)) }
            guard !batch.labels.isEmpty else { continue }
            let logits = Variable(try forward(batch.images))
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
            if stopRequested() && group == nil { throw TrainingError.interrupted(epoch: -1, iteration: i) }
            tick = Date()
        }
        var result = (loss: losses.average, top1: top1.average, top5: top5.average)
        if let group {
            // Each process validated its own share: the whole set's means, each image once.
            var sums = [losses.sum, top1.sum, top5.sum, losses.count]
            try group.sum(&sums)
            let images = max(sums[3], 1)
            result = (sums[0] / images, sums[1] / images, sums[2] / images)
            if try anyProcessStops() { throw TrainingError.interrupted(epoch: -1, iteration: i) }
        }
        try emit(.validationFinished(loss: result.loss, top1: result.top1, top5: result.top5))
        return result
    }

    private func emit(_ event: TrainingEvent) throws {
        for observer in observers { try observer.observe(event) }
    }
}
