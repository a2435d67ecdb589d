// What a run reports while it goes. The trainer computes and emits events; observers present
// them. The reference log lines, the terminal's progress line, metrics.csv with curves.svg and
// the results.csv row are each an observer (Observers.swift); a caller adds its own the same
// way (a dashboard, or a filter that lets only one process of a distributed run write).

/// One training iteration, with the running averages of the epoch so far.
public struct IterationReport: Sendable {
    public var epoch: Int, epochs: Int
    public var iteration: Int, iterations: Int
    public var images: Int
    public var batchTime: AverageMeter, dataTime: AverageMeter
    public var loss: AverageMeter, top1: AverageMeter, top5: AverageMeter
}

/// One validation batch, with the running averages so far.
public struct ValidationReport: Sendable {
    public var iteration: Int, iterations: Int
    public var batchTime: AverageMeter
    public var loss: AverageMeter, top1: AverageMeter, top5: AverageMeter
}

/// A masked layer's stored mask after an epoch.
public struct MaskReport: Sendable {
    public var layer: String
    public var zeros: Int, total: Int
}

public enum TrainingEvent: Sendable {
    case resumed(path: String, epoch: Int, bestTop1: Double)
    case removedPartialFile(String)
    case epochStarted(epoch: Int, epochs: Int, secondsNeeded: Double)
    case skippedFile(String)
    case trainingIteration(IterationReport)
    case epochSkippedFiles(epoch: Int, count: Int)
    case masksUpdated([MaskReport])
    case validationIteration(ValidationReport)
    case validationFinished(loss: Double, top1: Double, top5: Double)
    /// After the epoch's checkpoints are written.
    case epochFinished(EpochMetrics, bestTop1: Double)
    case runFinished(lastTop1: Double, bestTop1: Double)
    /// A data-parallel epoch's gradient exchange (after its training iterations).
    case exchangeFinished(ExchangeReport)
}

/// What a data-parallel epoch's gradient sums cost each process.
public struct ExchangeReport: Sendable {
    public var epoch: Int
    public var processes: Int
    public var bytesPerStep: Int
    /// Mean seconds per step spent waiting for the sums after backward (communication not hidden).
    public var exposedSecondsPerStep: Double
}

public protocol TrainingObserver: AnyObject {
    /// An observer that throws stops the run (a report file that cannot be written).
    func observe(_ event: TrainingEvent) throws
}
