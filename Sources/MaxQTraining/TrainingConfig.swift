// Everything a run is configured by (the reference's `pruning_train.py` flags), stored in every
// checkpoint so that `--resume` continues exactly the same run.
import Foundation
import MaxQData
import MaxQModels
import MaxQSparsity

public enum LRSchedule: String, CaseIterable, Codable, Sendable {
    case cos, step
}

public enum SaveFormat: String, CaseIterable, Codable, Sendable {
    /// safetensors only; `pth` writes the original's `.pth.tar` beside each checkpoint too.
    case safetensors, pth
}

/// The original's SR-STE decay variants; v1 is the one defined (docs/algorithm.md 6).
public enum DecayType: String, CaseIterable, Codable, Sendable {
    case v1
}

public struct TrainingConfig: Codable, Sendable, Equatable {
    public var data: String
    public var set: DatasetKind
    public var arch: Architecture
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
    public var lrSchedule: LRSchedule
    public var lrAdjust: Int
    public var warmupLength: Int
    public var labelSmoothing: Double
    public var convBNType: ConvBNType
    public var n: Int
    public var m: Int
    public var decay: Double
    public var decayType: DecayType
    public var tau: Double
    public var increaseStart: Int
    public var increaseEnd: Int
    public var pruneSchedule: PruneSchedule
    public var seed: UInt64
    public var printFreq: Int
    public var saveFormat: SaveFormat
    /// Synthetic dataset size (classes, training images, resolution).
    public var syntheticClasses: Int
    public var syntheticImages: Int

    /// Defaults are the original's (docs/training.md); `labelSmoothing` nil takes the set's.
    public init(
        data: String = "", set: DatasetKind = .imageNet, arch: Architecture = .resnet18, saveDir: String = "./",
        workers: Int = 8, epochs: Int = 120, startEpoch: Int = 0, batchSize: Int = 256, lr: Double = 0.1,
        momentum: Double = 0.9, weightDecay: Double = 1e-4, nesterov: Bool = false, noBNDecay: Bool = false,
        lrSchedule: LRSchedule = .cos, lrAdjust: Int = 30, warmupLength: Int = 0, labelSmoothing: Double? = nil,
        convBNType: ConvBNType = .softMaxQ, n: Int = 2, m: Int = 4, decay: Double = 2e-4, decayType: DecayType = .v1,
        tau: Double = 0.01, increaseStart: Int = 0, increaseEnd: Int = 90, pruneSchedule: PruneSchedule = .linear,
        seed: UInt64 = 42, printFreq: Int = 100, saveFormat: SaveFormat = .safetensors, syntheticClasses: Int = 10,
        syntheticImages: Int = 5000
    ) {
        (self.data, self.set, self.arch, self.saveDir, self.workers, self.epochs, self.startEpoch, self.batchSize) =
            (data, set, arch, saveDir, workers, epochs, startEpoch, batchSize)
        (self.lr, self.momentum, self.weightDecay, self.nesterov, self.noBNDecay, self.lrSchedule, self.lrAdjust) =
            (lr, momentum, weightDecay, nesterov, noBNDecay, lrSchedule, lrAdjust)
        (self.warmupLength, self.labelSmoothing, self.convBNType, self.n, self.m, self.decay, self.decayType) =
            (warmupLength, labelSmoothing ?? set.defaultLabelSmoothing, convBNType, n, m, decay, decayType)
        (self.tau, self.increaseStart, self.increaseEnd, self.pruneSchedule, self.seed, self.printFreq) =
            (tau, increaseStart, increaseEnd, pruneSchedule, seed, printFreq)
        (self.saveFormat, self.syntheticClasses, self.syntheticImages) = (saveFormat, syntheticClasses, syntheticImages)
    }

    /// Refuses settings that cannot train, before any work, naming the flag as `maxq train`
    /// spells it: a Swift caller gets the command line's errors.
    public func validate() throws(TrainingError) {
        if set.needsData && data.isEmpty { throw .invalid("give the dataset folder (or --set Synthetic)") }
        guard epochs >= 1, startEpoch >= 0, startEpoch < epochs else {
            throw .invalid("need 0 <= --start-epoch < --epochs")
        }
        guard batchSize >= 1, workers >= 1 else { throw .invalid("--batch-size and --workers must be at least 1") }
        guard warmupLength >= 0, warmupLength < epochs || warmupLength == 0 else {
            throw .invalid("need 0 <= --warmup-length < --epochs")
        }
        guard lrAdjust >= 1 else { throw .invalid("--lr-adjust must be at least 1") }
        try Self.checkOptimisation(
            lr: lr, momentum: momentum, weightDecay: weightDecay, decay: decay, labelSmoothing: labelSmoothing)
        guard tau.isFinite, tau > 0 else { throw .invalid("--tau must be a finite number > 0, got \(tau)") }
        do { _ = try sparsity() } catch { throw .invalid(error.description) }
    }

    /// The optimisation settings `train` and `replay` share: not finite or out of range is refused
    /// (a NaN weight decay would reach the weights, and the masks computed from them, before the
    /// loss shows it).
    public static func checkOptimisation(
        lr: Double, momentum: Double, weightDecay: Double, decay: Double, labelSmoothing: Double
    ) throws(TrainingError) {
        guard lr.isFinite, lr > 0 else { throw .invalid("--lr must be a finite number > 0, got \(lr)") }
        for (flag, value) in [("--momentum", momentum), ("--wd", weightDecay), ("--decay", decay)] {
            guard value.isFinite, value >= 0 else {
                throw .invalid("\(flag) must be a finite number >= 0, got \(value)")
            }
        }
        guard labelSmoothing >= 0 && labelSmoothing < 1 else {
            throw .invalid("--label-smoothing must be in [0, 1), got \(labelSmoothing)")
        }
    }

    public func sparsity() throws(SparsityError) -> SparsityConfig {
        SparsityConfig(
            type: convBNType, pattern: try NMPattern(n: n, m: m),
            schedule: try IncrementalSchedule(pruneSchedule, increaseStart: increaseStart, increaseEnd: increaseEnd),
            tau: Float(tau))
    }

    /// The learning rate of epoch e (docs/training.md): linear warm-up, then cosine; or x0.1 steps.
    public func learningRate(epoch e: Int) -> Double {
        if lrSchedule == .step { return lr * Foundation.pow(0.1, Double(e / max(lrAdjust, 1))) }
        if e < warmupLength { return lr * Double(e + 1) / Double(warmupLength) }
        return 0.5 * lr
            * (1 + Foundation.cos(Double.pi * Double(e - warmupLength) / Double(max(epochs - warmupLength, 1))))
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
        case let .interrupted(epoch, iteration):
            "interrupted at epoch \(epoch), iteration \(iteration); the last checkpoint is kept"
        case .resume(let m): "cannot resume: \(m)"
        }
    }
}
