// Everything a run is configured by (the reference's `pruning_train.py` flags), stored in every
// checkpoint so that `--resume` continues exactly the same run.
import Foundation
import MaxQSparsity

public struct TrainingConfig: Codable, Sendable, Equatable {
    public var data: String
    public var set: String
    public var arch: String
    public var saveDir: String
    public var workers: Int
    public var epochs: Int
    public var startEpoch: Int
    public var batchSize: Int
    public var lr: Double
    public var momentum: Double
    public var weightDecay: Double
    public var nesterov: Bool
    public var noBNDecay: Bool
    public var lrSchedule: String
    public var lrAdjust: Int
    public var warmupLength: Int
    public var labelSmoothing: Double
    public var convBNType: String
    public var n: Int
    public var m: Int
    public var decay: Double
    public var decayType: String
    public var tau: Double
    public var increaseStart: Int
    public var increaseEnd: Int
    public var pruneSchedule: String
    public var seed: UInt64
    public var printFreq: Int
    public var saveFormat: String
    /// Synthetic dataset size (classes, training images, resolution).
    public var syntheticClasses: Int
    public var syntheticImages: Int

    public init(
        data: String, set: String, arch: String, saveDir: String, workers: Int, epochs: Int, startEpoch: Int, batchSize: Int,
        lr: Double, momentum: Double, weightDecay: Double, nesterov: Bool, noBNDecay: Bool, lrSchedule: String, lrAdjust: Int,
        warmupLength: Int, labelSmoothing: Double, convBNType: String, n: Int, m: Int, decay: Double, decayType: String,
        tau: Double, increaseStart: Int, increaseEnd: Int, pruneSchedule: String, seed: UInt64, printFreq: Int,
        saveFormat: String, syntheticClasses: Int, syntheticImages: Int
    ) {
        (self.data, self.set, self.arch, self.saveDir, self.workers, self.epochs, self.startEpoch, self.batchSize) =
            (data, set, arch, saveDir, workers, epochs, startEpoch, batchSize)
        (self.lr, self.momentum, self.weightDecay, self.nesterov, self.noBNDecay, self.lrSchedule, self.lrAdjust) =
            (lr, momentum, weightDecay, nesterov, noBNDecay, lrSchedule, lrAdjust)
        (self.warmupLength, self.labelSmoothing, self.convBNType, self.n, self.m, self.decay, self.decayType) =
            (warmupLength, labelSmoothing, convBNType, n, m, decay, decayType)
        (self.tau, self.increaseStart, self.increaseEnd, self.pruneSchedule, self.seed, self.printFreq) =
            (tau, increaseStart, increaseEnd, pruneSchedule, seed, printFreq)
        (self.saveFormat, self.syntheticClasses, self.syntheticImages) = (saveFormat, syntheticClasses, syntheticImages)
    }

    public func sparsity() throws -> SparsityConfig {
        guard let type = ConvBNType(rawValue: convBNType) else { throw TrainingError.invalid("unknown --conv-bn-type \(convBNType)") }
        guard let schedule = PruneSchedule(rawValue: pruneSchedule) else { throw TrainingError.invalid("unknown --prune-schedule \(pruneSchedule)") }
        return SparsityConfig(
            type: type, pattern: try NMPattern(n: n, m: m),
            schedule: try IncrementalSchedule(schedule, increaseStart: increaseStart, increaseEnd: increaseEnd), tau: Float(tau))
    }

    /// The learning rate of epoch e (docs/training.md): linear warm-up, then cosine; or x0.1 steps.
    public func learningRate(epoch e: Int) -> Double {
        if lrSchedule == "step" { return lr * Foundation.pow(0.1, Double(e / max(lrAdjust, 1))) }
        if e < warmupLength { return lr * Double(e + 1) / Double(warmupLength) }
        return 0.5 * lr * (1 + Foundation.cos(Double.pi * Double(e - warmupLength) / Double(max(epochs - warmupLength, 1))))
    }

    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }
}

public enum TrainingError: Error, Equatable, CustomStringConvertible {
    case invalid(String)
    case nonFiniteLoss(epoch: Int, iteration: Int, loss: Float)
    case nonFiniteWeight(epoch: Int, iteration: Int, name: String)
    case interrupted(epoch: Int, iteration: Int)
    case resume(String)

    public var description: String {
        switch self {
        case .invalid(let m): m
        case let .nonFiniteLoss(epoch, iteration, loss):
            "loss became \(loss) at epoch \(epoch), iteration \(iteration); stopped, the last checkpoint is kept"
        case let .nonFiniteWeight(epoch, iteration, name):
            "'\(name)' became NaN or infinite before epoch \(epoch), iteration \(iteration); "
                + "stopped, the last checkpoint is kept"
        case let .interrupted(epoch, iteration): "interrupted at epoch \(epoch), iteration \(iteration); the last checkpoint is kept"
        case .resume(let m): "cannot resume: \(m)"
        }
    }
}
