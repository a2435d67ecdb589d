// The standard observers of a run: the original's log lines, the progress line on a terminal,
// metrics.csv and curves.svg after every epoch, a results.csv row at the end.
import Foundation
import MaxQTensor

/// The lines the original code prints, in its formats (docs/training.md), to stdout and the log.
public final class ReferenceLogObserver: TrainingObserver {
    let log: RunLog
    let arch: String
    let printFrequency: Int

    public init(log: RunLog, arch: String, printFrequency: Int) {
        (self.log, self.arch, self.printFrequency) = (log, arch, max(printFrequency, 1))
    }

    public func observe(_ event: TrainingEvent) {
        switch event {
        case let .resumed(path, epoch, best):
            log.line("=> resumed from \(path) (epoch \(epoch), best Acc \(String(format: "%.2f", best))%)")
        case let .removedPartialFile(path):
            log.line("=> removed \(path), left by an interrupted write")
        case let .epochStarted(epoch, epochs, need):
            log.line(
                String(
                    format: " [%@] :: %3d/%3d ----- [%@] [Need: %@]", arch, epoch, epochs, log.stamp(),
                    RunLog.duration(need)))
        case let .skippedFile(path):
            log.line("warning: skipped \(path)")
        case let .trainingIteration(r) where r.iteration % printFrequency == 0:
            log.line(
                String(
                    format: "Epoch: [%d][%d/%d]\tTime %.3f (%.3f)\tData %.3f (%.3f)\tLoss %.4f (%.4f)\t"
                        + "Prec@1 %.3f (%.3f)\tPrec@5 %.3f (%.3f)",
                    r.epoch, r.iteration, r.iterations, r.batchTime.value, r.batchTime.average, r.dataTime.value,
                    r.dataTime.average,
                    r.loss.value, r.loss.average, r.top1.value, r.top1.average, r.top5.value, r.top5.average))
        case let .epochSkippedFiles(epoch, count):
            log.line("epoch \(epoch): skipped \(count) unreadable file(s)")
        case let .masksUpdated(layers):
            for layer in layers { log.line("weight num: \(layer.total), zero num: \(layer.zeros)") }
        case let .validationIteration(r) where r.iteration % printFrequency == 0:
            log.line(
                String(
                    format: "Test: [%d/%d]\tTime %.3f (%.3f)\tLoss %.4f (%.4f)\tPrec@1 %.3f (%.3f)\tPrec@5 %.3f (%.3f)",
                    r.iteration, r.iterations, r.batchTime.value, r.batchTime.average, r.loss.value, r.loss.average,
                    r.top1.value, r.top1.average, r.top5.value, r.top5.average))
        case let .validationFinished(_, top1, top5):
            log.line(String(format: " * Prec@1 %.3f Prec@5 %.3f Error@1 %.3f", top1, top5, 100 - top1))
        case let .exchangeFinished(r):
            log.line(
                String(
                    format:
                        "=> data parallel: %d processes; gradient sums %.1f MB per step, %.1f ms per step not hidden "
                        + "behind backward", r.processes, Double(r.bytesPerStep) / 1e6, r.exposedSecondsPerStep * 1e3))
        case let .epochFinished(metrics, best):
            log.line(
                String(
                    format: "=> Epoch: %d, LR: %.4f, Acc: %.2f%%, Best Acc: %.2f%%", metrics.epoch, metrics.lr,
                    metrics.valTop1, best))
        default:
            break
        }
    }
}

/// The live line on a terminal: rate and ETA while training, progress while validating.
public final class ProgressObserver: TrainingObserver {
    let log: RunLog

    public init(log: RunLog) {
        self.log = log
    }

    public func observe(_ event: TrainingEvent) {
        switch event {
        case let .trainingIteration(r):
            let rate = Double(r.images) / max(r.batchTime.value, 1e-9)
            let eta = r.batchTime.average * Double(r.iterations - r.iteration - 1)
            log.progress(
                String(
                    format: "epoch %d/%d [%d/%d] %.1f img/s  loss %.4f  top-1 %.2f%%  epoch ETA %@",
                    r.epoch, r.epochs, r.iteration + 1, r.iterations, rate, r.loss.average, r.top1.average,
                    RunLog.duration(eta)))
        case let .validationIteration(r):
            log.progress(
                String(format: "validation [%d/%d]  top-1 %.2f%%", r.iteration + 1, r.iterations, r.top1.average))
        default:
            break
        }
    }
}

/// metrics.csv and curves.svg rewritten after every epoch; one results.csv row per finished run.
public final class ReportFilesObserver: TrainingObserver {
    let config: TrainingConfig
    let stamp: () -> String
    private var rows: [EpochMetrics] = []

    public init(config: TrainingConfig, stamp: @escaping () -> String = RunLog.timestamp) {
        (self.config, self.stamp) = (config, stamp)
    }

    public func observe(_ event: TrainingEvent) throws {
        switch event {
        case let .resumed(_, epoch, _):
            // A resumed run keeps the rows of the epochs it does not redo.
            rows = Reports.readMetrics(from: "\(config.saveDir)/metrics.csv").filter { $0.epoch <= epoch }
        case let .epochFinished(metrics, _):
            rows.append(metrics)
            try Reports.writeMetrics(rows, to: "\(config.saveDir)/metrics.csv")
            try Reports.curvesSVG(
                rows,
                title: "\(config.arch.rawValue) \(config.convBNType.rawValue) \(config.n):\(config.m) "
                    + "on \(config.set.rawValue)"
            )
            .write(toFile: "\(config.saveDir)/curves.svg", atomically: true, encoding: .utf8)
        case let .runFinished(last, best):
            try Reports.appendResult(resultFields(last: last, best: best), to: "\(config.saveDir)/results.csv")
        default:
            break
        }
    }

    private func resultFields(last: Double, best: Double) -> [(String, String)] {
        let c = config
        return [
            ("date", stamp()), ("N", "\(c.n)"), ("M", "\(c.m)"), ("arch", c.arch.rawValue), ("set", c.set.rawValue),
            ("last_top1", String(format: "%.3f", last)), ("best_top1", String(format: "%.3f", best)),
            ("device", "cpu x\(Threading.count)"), ("epochs", "\(c.epochs)"), ("weight_decay", "\(c.weightDecay)"),
            ("seed", "\(c.seed)"), ("nesterov", c.nesterov ? "True" : "False"), ("lr", "\(c.lr)"),
            ("batch_size", "\(c.batchSize)"),
            ("conv_bn_type", c.convBNType.rawValue), ("no_bn_decay", c.noBNDecay ? "True" : "False"),
            ("increase_start", "\(c.increaseStart)"),
            ("increase_end", "\(c.increaseEnd)"), ("prune_schedule", c.pruneSchedule.rawValue),
        ]
    }
}

extension Trainer {
    /// The log lines, the progress line (unless `progress` is false: under mpirun, whose output
    /// forwarding would interleave it) and the report files: what `maxq train` attaches.
    public static func standardObservers(config: TrainingConfig, log: RunLog, progress: Bool = true)
        -> [any TrainingObserver]
    {
        [
            ReferenceLogObserver(log: log, arch: config.arch.rawValue, printFrequency: config.printFreq),
            ReportFilesObserver(config: config),
        ] + (progress ? [ProgressObserver(log: log)] : [])
    }
}
