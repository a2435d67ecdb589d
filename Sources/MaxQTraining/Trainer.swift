// The training run: epochs of SGD steps with the reference's log lines, validation, the mask
// report, checkpoints, metrics and the final results row; evaluation alone for `--evaluate`.
import Foundation
import MaxQData
import MaxQFormats
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

/// Set by SIGINT; the loop stops at the next iteration boundary, leaving no partial file.
nonisolated(unsafe) private var interruptRequested: Int32 = 0

public final class Trainer {
    public let config: TrainingConfig
    public let model: any Model
    public let optimizer: SGD
    let train: DataLoader?
    let validation: DataLoader
    let log: RunLog
    let prefix: String
    let topK: Int
    public private(set) var bestAcc1: Double = 0
    public private(set) var startEpoch: Int
    private var metrics: [EpochMetrics] = []

    public init(
        config: TrainingConfig, model: any Model, train: DataLoader?, validation: DataLoader, classes: Int, log: RunLog, prefix: String
    ) {
        self.config = config
        self.model = model
        self.train = train
        self.validation = validation
        self.log = log
        self.prefix = prefix
        topK = min(5, classes)
        startEpoch = config.startEpoch
        optimizer = TrainStep.optimizer(
            for: model, learningRate: Float(config.lr), momentum: Float(config.momentum), weightDecay: Float(config.weightDecay),
            nesterov: config.nesterov, noBNDecay: config.noBNDecay)
    }

    /// Continues from a run checkpoint: the epoch after the saved one, its best top-1. Staging
    /// files that a killed process left for this run's checkpoints are removed.
    public func resume(from path: String) throws {
        for file in [checkpointPath, bestPath, Self.pthCopy(of: checkpointPath), Self.pthCopy(of: bestPath)]
        where AtomicWrite.removeStale(for: file) {
            log.line("=> removed \(AtomicWrite.partialPath(of: file)), left by an interrupted write")
        }
        let state = try RunCheckpoint.load(path, into: model, optimizer: optimizer)
        guard state.config.arch == config.arch, state.config.convBNType == config.convBNType, state.config.n == config.n,
            state.config.m == config.m
        else { throw TrainingError.resume("\(path) was written for \(state.config.arch) \(state.config.convBNType) \(state.config.n):\(state.config.m)") }
        startEpoch = state.epoch + 1
        bestAcc1 = state.bestAcc1
        log.line("=> resumed from \(path) (epoch \(state.epoch), best Acc \(String(format: "%.2f", state.bestAcc1))%)")
    }

    var checkpointPath: String { "\(config.saveDir)/checkpoint.\(config.arch).\(prefix).safetensors" }
    var bestPath: String { "\(config.saveDir)/best.\(config.arch).\(prefix).safetensors" }
    /// The reference-format copy written beside a run checkpoint with `--save-format pth`.
    static func pthCopy(of path: String) -> String { path.replacingOccurrences(of: ".safetensors", with: ".pth.tar") }

    /// Trains from `startEpoch` to `epochs` (or only up to epoch `until`, exclusive, as if
    /// stopped there); returns (last top-1, best top-1).
    @discardableResult
    public func run(until: Int? = nil) throws -> (last: Double, best: Double) {
        signal(SIGINT) { _ in interruptRequested = 1 }
        defer { signal(SIGINT, SIG_DFL) }
        let sparsity = try config.sparsity()
        var last = 0.0
        var epochSeconds: [Double] = []
        for epoch in startEpoch..<min(config.epochs, until ?? config.epochs) {
            let started = Date()
            let need = (epochSeconds.reduce(0, +) / Double(max(epochSeconds.count, 1))) * Double(config.epochs - epoch)
            log.line(String(format: " [%@] :: %3d/%3d ----- [%@] [Need: %@]", config.arch, epoch, config.epochs, log.stamp(), RunLog.duration(need)))
            let lr = config.learningRate(epoch: epoch)
            optimizer.learningRate = Float(lr)
            model.setEpoch(epoch)
            let (trainLoss, trainTop1) = try trainEpoch(epoch)
            // The stored masks, from the final weights, and what they zero per layer.
            try ConvBNUnit.recomputeMasks(of: model.units, forNextForward: false)
            for (_, unit) in model.units where unit.mask != nil {
                let (zeros, total) = unit.zeroCount
                log.line("weight num: \(total), zero num: \(zeros)")
            }
            let (valLoss, top1, top5) = try evaluate()
            last = top1
            let isBest = top1 > bestAcc1
            bestAcc1 = max(bestAcc1, top1)
            log.line(String(format: "=> Epoch: %d, LR: %.4f, Acc: %.2f%%, Best Acc: %.2f%%", epoch, lr, top1, bestAcc1))
            let state = RunState(epoch: epoch, bestAcc1: bestAcc1, config: config)
            let pth = config.saveFormat == "pth" ? Self.pthCopy(of: checkpointPath) : nil
            try RunCheckpoint.save(model, optimizer: optimizer, state: state, path: checkpointPath, pthPath: pth)
            if isBest {
                try RunCheckpoint.save(
                    model, optimizer: optimizer, state: state, path: bestPath,
                    pthPath: pth.map { _ in Self.pthCopy(of: bestPath) })
            }
            epochSeconds.append(Date().timeIntervalSince(started))
            // Only MaxQ types follow the incremental schedule; SR-STE is N:M from the start.
            let nm = sparsity.type.isMaxQ ? 1 - sparsity.schedule.preserveRate(epoch: epoch) : sparsity.type.hasMask ? 1 : 0
            metrics.append(EpochMetrics(
                epoch: epoch, lr: lr, trainLoss: trainLoss, trainTop1: trainTop1, valLoss: valLoss, valTop1: top1, valTop5: top5,
                nmFraction: nm, seconds: epochSeconds.last!))
            try Reports.writeMetrics(metrics, to: "\(config.saveDir)/metrics.csv")
            try Reports.curvesSVG(metrics, title: "\(config.arch) \(config.convBNType) \(config.n):\(config.m) on \(config.set)")
                .write(toFile: "\(config.saveDir)/curves.svg", atomically: true, encoding: .utf8)
        }
        try Reports.appendResult(resultFields(last: last), to: "\(config.saveDir)/results.csv")
        return (last, bestAcc1)
    }

    private func trainEpoch(_ epoch: Int) throws -> (loss: Double, top1: Double) {
        guard let train else { throw TrainingError.invalid("no training data") }
        model.setTraining(true)
        var batchTime = AverageMeter(), dataTime = AverageMeter(), losses = AverageMeter(), top1 = AverageMeter(), top5 = AverageMeter()
        var skipped = 0
        let total = train.batchesPerEpoch
        let batches = train.epoch(epoch)
        var tick = Date()
        var i = 0
        while let batch = batches.next() {
            dataTime.update(Date().timeIntervalSince(tick))
            skipped += batch.skipped.count
            for file in batch.skipped { log.line("warning: skipped \(file)") }
            defer { i += 1 }
            guard !batch.labels.isEmpty else { continue }
            let result: StepResult
            do {
                result = try TrainStep.run(
                    model, optimizer, images: batch.images, labels: batch.labels,
                    labelSmoothing: Float(config.labelSmoothing), srsteDecay: config.decayType == "v1" ? Float(config.decay) : 0)
            } catch {
                guard case .nonFinite(let name) = error else { throw error }
                throw TrainingError.nonFiniteWeight(epoch: epoch, iteration: i, name: name)
            }
            guard result.loss.isFinite else { throw TrainingError.nonFiniteLoss(epoch: epoch, iteration: i, loss: result.loss) }
            let accuracy = try result.logits.topKAccuracy(labels: batch.labels, ks: [1, topK])
            let n = Double(batch.labels.count)
            losses.update(Double(result.loss), weight: n)
            top1.update(Double(accuracy[0]), weight: n)
            top5.update(Double(accuracy[1]), weight: n)
            batchTime.update(Date().timeIntervalSince(tick))
            if i % max(config.printFreq, 1) == 0 {
                log.line(String(format: "Epoch: [%d][%d/%d]\tTime %.3f (%.3f)\tData %.3f (%.3f)\tLoss %.4f (%.4f)\tPrec@1 %.3f (%.3f)\tPrec@5 %.3f (%.3f)",
                    epoch, i, total, batchTime.value, batchTime.average, dataTime.value, dataTime.average, losses.value, losses.average,
                    top1.value, top1.average, top5.value, top5.average))
            }
            let rate = n / max(batchTime.value, 1e-9)
            log.progress(String(format: "epoch %d/%d [%d/%d] %.1f img/s  loss %.4f  top-1 %.2f%%  epoch ETA %@",
                epoch, config.epochs, i + 1, total, rate, losses.average, top1.average, RunLog.duration(batchTime.average * Double(total - i - 1))))
            if interruptRequested != 0 { throw TrainingError.interrupted(epoch: epoch, iteration: i) }
            tick = Date()
        }
        if skipped > 0 { log.line("epoch \(epoch): skipped \(skipped) unreadable file(s)") }
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
            for file in batch.skipped { log.line("warning: skipped \(file)") }
            guard !batch.labels.isEmpty else { continue }
            let logits = try GradientMode.withoutGradients { try model(Variable(batch.images)) }
            let loss = try logits.value.backend.crossEntropy(logits.value, labels: batch.labels, labelSmoothing: Float(config.labelSmoothing)).loss
            let accuracy = try logits.value.topKAccuracy(labels: batch.labels, ks: [1, topK])
            let n = Double(batch.labels.count)
            losses.update(Double(loss), weight: n)
            top1.update(Double(accuracy[0]), weight: n)
            top5.update(Double(accuracy[1]), weight: n)
            batchTime.update(Date().timeIntervalSince(tick))
            if i % max(config.printFreq, 1) == 0 {
                log.line(String(format: "Test: [%d/%d]\tTime %.3f (%.3f)\tLoss %.4f (%.4f)\tPrec@1 %.3f (%.3f)\tPrec@5 %.3f (%.3f)",
                    i, total, batchTime.value, batchTime.average, losses.value, losses.average, top1.value, top1.average, top5.value, top5.average))
            }
            log.progress(String(format: "validation [%d/%d]  top-1 %.2f%%", i + 1, total, top1.average))
            if interruptRequested != 0 { throw TrainingError.interrupted(epoch: -1, iteration: i) }
            tick = Date()
        }
        log.line(String(format: " * Prec@1 %.3f Prec@5 %.3f Error@1 %.3f", top1.average, top5.average, 100 - top1.average))
        return (losses.average, top1.average, top5.average)
    }

    private func resultFields(last: Double) -> [(String, String)] {
        let c = config
        return [
            ("date", log.stamp()), ("N", "\(c.n)"), ("M", "\(c.m)"), ("arch", c.arch), ("set", c.set),
            ("last_top1", String(format: "%.3f", last)), ("best_top1", String(format: "%.3f", bestAcc1)),
            ("device", "cpu x\(Threading.count)"), ("epochs", "\(c.epochs)"), ("weight_decay", "\(c.weightDecay)"),
            ("seed", "\(c.seed)"), ("nesterov", c.nesterov ? "True" : "False"), ("lr", "\(c.lr)"), ("batch_size", "\(c.batchSize)"),
            ("conv_bn_type", c.convBNType), ("no_bn_decay", c.noBNDecay ? "True" : "False"), ("increase_start", "\(c.increaseStart)"),
            ("increase_end", "\(c.increaseEnd)"), ("prune_schedule", c.pruneSchedule),
        ]
    }
}
