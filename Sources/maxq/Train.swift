// `maxq train`: the reference's `pruning_train.py` command line (same flags, defaults and log
// lines), training or, with `--evaluate`, validating a checkpoint.
import ArgumentParser
import Foundation
import MaxQData
import MaxQDeploy
import MaxQDistributed
import MaxQFormats
import MaxQModels
import MaxQSparsity
import MaxQTensor
import MaxQTraining

/// Python-style `True`/`False` values, as the reference parses them.
enum PyBool: String, ExpressibleByArgument {
    case `true` = "True", `false` = "False"
    init?(argument: String) {
        switch argument.lowercased() {
        case "true", "1", "yes": self = .true
        case "false", "0", "no": self = .false
        default: return nil
        }
    }
    var value: Bool { self == .true }
}

extension DatasetKind: ExpressibleByArgument {}
extension LRSchedule: ExpressibleByArgument {}
extension SaveFormat: ExpressibleByArgument {}
extension DecayType: ExpressibleByArgument {}

/// Set by SIGINT (a signal handler can only reach a global).
nonisolated(unsafe) private var interruptRequested: Int32 = 0

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train (or with --evaluate, validate) a network with N:M sparsity; "
            + "flags as the reference's pruning_train.py."
    )

    @Argument(help: "Dataset folder (not needed for --set Synthetic).") var data: String?
    @Option(help: "ImageNet, ImageFolder, CIFAR10, CIFAR100 or Synthetic.") var set: DatasetKind = .imageNet
    @Option(name: [.customShort("a"), .long], help: "Architecture.") var arch: Architecture = .resnet18
    @Option(name: .customLong("save_dir"), help: "Folder for logs, checkpoints and results.") var saveDir = "./"
    @Option(name: [.customShort("j"), .long], help: "Data-loading threads.") var workers = 8
    @Option(help: "Epochs.") var epochs = 120
    @Option(name: .customLong("start-epoch"), help: "First epoch (0-based).") var startEpoch = 0
    @Option(name: [.customShort("b"), .customLong("batch-size")], help: "Batch size.") var batchSize = 256
    @Option(parsing: .unconditional, help: "Learning rate.") var lr = 0.1
    @Option(parsing: .unconditional, help: "SGD momentum.") var momentum = 0.9
    @Option(name: [.customLong("weight-decay"), .customLong("wd")], parsing: .unconditional, help: "Weight decay.")
    var weightDecay = 1e-4
    @Option(help: "Nesterov momentum: True or False.") var nesterov: PyBool = .false
    @Option(name: .customLong("no-bn-decay"), help: "No weight decay on 1-D parameters: True or False.") var noBNDecay:
        PyBool = .false
    @Option(name: .customLong("lr-schedule"), help: "cos or step.") var lrSchedule: LRSchedule = .cos
    @Option(name: .customLong("lr-adjust"), help: "Step schedule: x0.1 every this many epochs.") var lrAdjust = 30
    @Option(name: .customLong("warmup-length"), help: "Epochs of linear warm-up.") var warmupLength = 0
    @Option(
        name: .customLong("label-smoothing"), parsing: .unconditional,
        help: "Default 0.1 (ImageNet, ImageFolder), 0 (CIFAR, Synthetic).")
    var labelSmoothing: Double?
    @OptionGroup var sparsity: SparsityOptions
    @OptionGroup var amp: AmpOption
    @Option(parsing: .unconditional, help: "SR-STE decay lambda.") var decay = 2e-4
    @Option(name: .customLong("decay-type"), help: "SR-STE decay type (v1).") var decayType: DecayType = .v1
    @Option(help: "Checkpoint to start from (any format).") var pretrained: String?
    @Option(help: "Run checkpoint to continue exactly.") var resume: String?
    @Flag(name: [.customShort("e"), .long], help: "Validate --pretrained and stop.") var evaluate = false
    @Option(help: "With --evaluate: validate on the sparse (N:M) or the dense inference engine.")
    var engine: Engine = .dense
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Option(name: [.customShort("p"), .customLong("print-freq")], help: "Log every this many iterations.")
    var printFreq = 100
    @Option(name: .customLong("save-format"), help: "safetensors, or pth to also write the reference's .pth.tar.")
    var saveFormat: SaveFormat = .safetensors
    @Option(name: .customLong("synthetic-classes"), help: "Synthetic: classes.") var syntheticClasses = 10
    @Option(name: .customLong("synthetic-images"), help: "Synthetic: training images (validation: a fifth).")
    var syntheticImages = 5000
    @Flag(
        name: .customLong("sync-bn"),
        help: "Under mpirun: batch-norm statistics over all processes' batches (as one batch of K x -b).")
    var syncBN = false

    func validate() throws {
        do { try config.validate() } catch { throw ValidationError(error.description) }
        if engine == .sparse && !evaluate { throw ValidationError("--engine sparse applies to --evaluate") }
        if evaluate && pretrained == nil && resume == nil {
            throw ValidationError("--evaluate needs --pretrained (or --resume)")
        }
        if resume != nil && pretrained != nil { throw ValidationError("give --resume or --pretrained, not both") }
        for path in [pretrained, resume].compactMap({ $0 }) where !FileManager.default.fileExists(atPath: path) {
            throw ValidationError("checkpoint \(path) does not exist")
        }
    }

    func run() throws {
        let group: MPIProcessGroup?
        do { group = try DataParallel.join() } catch { throw Failure(error) }
        do {
            try train(group: group)
        } catch {
            guard let group else { throw Failure(error) }
            try DataParallel.fail(group, error)
        }
        group?.finalize()
    }

    var config: TrainingConfig {
        TrainingConfig(
            data: data ?? "", set: set, arch: arch, saveDir: saveDir, workers: workers, epochs: epochs,
            startEpoch: startEpoch, batchSize: batchSize, lr: lr, momentum: momentum, weightDecay: weightDecay,
            nesterov: nesterov.value, noBNDecay: noBNDecay.value, lrSchedule: lrSchedule, lrAdjust: lrAdjust,
            warmupLength: warmupLength, labelSmoothing: labelSmoothing, convBNType: sparsity.convBNType, n: sparsity.n,
            m: sparsity.m, decay: decay, decayType: decayType, tau: Double(sparsity.tau),
            increaseStart: sparsity.increaseStart,
            increaseEnd: sparsity.increaseEnd, pruneSchedule: sparsity.pruneSchedule, seed: seed, printFreq: printFreq,
            saveFormat: saveFormat, syntheticClasses: syntheticClasses, syntheticImages: syntheticImages)
    }

    /// (train, validation, classes) for the chosen set.
    func datasets() throws -> (any Dataset, any Dataset, Int) {
        let resolution = arch.resolution
        switch set {
        case .synthetic:
            let train = try SyntheticDataset(
                classes: syntheticClasses, images: syntheticImages, resolution: resolution, seed: seed)
            let val = try SyntheticDataset(
                classes: syntheticClasses, images: max(syntheticImages / 5, syntheticClasses), resolution: resolution,
                seed: seed &+ 1)
            return (train, val, syntheticClasses)
        case .cifar10, .cifar100:
            let classes = set == .cifar10 ? 10 : 100
            return (
                try CIFARDataset(root: data!, classes: classes, train: true),
                try CIFARDataset(root: data!, classes: classes, train: false), classes
            )
        case .imageNet, .imageFolder:
            let (train, val) = try ImageFolderDataset.splits(root: data!, resolution: resolution)
            guard train.classNames == val.classNames else {
                throw ValidationError("\(data!): train/ and validation folders have different classes")
            }
            return (train, val, train.classNames.count)
        }
    }

    /// Creates `--save_dir` if needed and proves it writable, before any work.
    private func checkSaveDirectory() throws {
        do { try FileManager.default.createDirectory(atPath: saveDir, withIntermediateDirectories: true) } catch {
            throw ValidationError("cannot create --save_dir \(saveDir): \(FileProblem.describe(saveDir, error))")
        }
        let probe = "\(saveDir)/.maxq-write-check-\(getpid())"
        guard FileManager.default.createFile(atPath: probe, contents: Data("ok".utf8)) else {
            throw ValidationError("--save_dir \(saveDir) is not writable: \(String(cString: strerror(errno)))")
        }
        try? FileManager.default.removeItem(atPath: probe)
    }

    /// A resumed run keeps its name prefix (`checkpoint.<arch>.<prefix>.safetensors`), so its
    /// checkpoints and log continue rather than start again beside the old ones.
    private func runPrefix() -> String {
        let resumed = resume.map { URL(fileURLWithPath: $0).lastPathComponent }
        let lead = "checkpoint.\(arch.rawValue).", tail = ".safetensors"
        if let name = resumed, name.hasPrefix(lead), name.hasSuffix(tail), name.count > lead.count + tail.count {
            return String(name.dropFirst(lead.count).dropLast(tail.count))
        }
        return "\(RunLog.timestamp().prefix(10))-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
    }

    /// `group`: the processes of a data-parallel run; rank 0 alone writes the log and the files.
    private func train(group: MPIProcessGroup?) throws {
        let rank = group?.rank ?? 0, processes = group?.size ?? 1
        let precision = try amp.scope()
        try checkSaveDirectory()
        let config = self.config
        let (trainSet, valSet, classes) = try datasets()
        if let group { try DataParallel.checkSameData(group, sizes: [trainSet.count, valSet.count, classes]) }
        let model = try arch.build(classes: classes, sparsity: try config.sparsity(), seed: seed)
        let prefix = runPrefix()
        let log = try RunLog(path: rank == 0 ? "\(saveDir)/\(arch.rawValue).\(prefix).log" : nil, echo: rank == 0)
        log.line("maxq \(CommandLine.arguments.dropFirst().joined(separator: " "))")
        if group == nil && syncBN {
            log.line("note: --sync-bn applies to runs started by mpirun; this one process uses its own batch")
        }
        if group != nil {
            log.line(
                "data parallel: \(processes) processes x batch \(batchSize) (\(processes * batchSize) per step), "
                    + "\(Threading.count) compute thread(s) each, batch norm "
                    + (syncBN ? "synchronised" : "per process") + "; \(MPIProcessGroup.libraryVersion)")
        }
        let parameterCount = model.parameters.map { $0.value.count }.reduce(0, +)
        let sparseUnits = model.units.filter { $0.1.mask != nil }.count
        if precision.precision == .bf16 {
            log.line(
                "mixed precision: bf16 convolutions and classifier (float32 accumulation), "
                    + "\(precision.inputGradients == .bf16 ? "bf16" : "float32") "
                    + "input gradients, float32 weights, optimizer state, batch norm and loss")
        }
        log.line(
            "\(arch.rawValue): \(parameterCount) parameters, \(sparseUnits) N:M layers "
                + "(\(config.convBNType.rawValue) \(config.n):\(config.m)), \(classes) classes, "
                + "\(trainSet.count) training and \(valSet.count) validation images")
        for name in model.denseUnits {
            log.line("note: \(name) stays dense: its input channels are not a multiple of M = \(config.m)")
        }
        let valBatch = set.validationBatchSize(training: batchSize)
        let trainer = Trainer(
            config: config, model: model,
            train: evaluate
                ? nil
                : DataLoader(
                    dataset: trainSet, batchSize: batchSize, shuffle: true, seed: seed, workers: workers,
                    shard: DataShard(rank: rank, count: processes, padded: true)),
            validation: DataLoader(
                dataset: valSet, batchSize: valBatch, shuffle: false, seed: seed, workers: workers,
                shard: DataShard(rank: rank, count: processes, padded: false)),
            classes: classes,
            observers: rank == 0 ? Trainer.standardObservers(config: config, log: log, progress: group == nil) : [],
            prefix: prefix, group: group, synchronizeBatchNorm: syncBN)
        // SIGINT stops the run at the next iteration boundary, leaving no partial file.
        signal(SIGINT) { _ in interruptRequested = 1 }
        defer { signal(SIGINT, SIG_DFL) }
        trainer.stopRequested = { interruptRequested != 0 }
        if let pretrained {
            let report = try model.load(checkpoint: pretrained, architecture: arch.rawValue)
            let list = { (keys: [String]) in keys.isEmpty ? "none" : keys.joined(separator: ", ") }
            log.line(
                "=> loaded \(pretrained); missing keys: \(list(report.missing)); "
                    + "unexpected keys: \(list(report.unexpected))")
        }
        if let resume { try trainer.resume(from: resume) }
        if evaluate {
            try precision.run { try evaluateOnly(model, trainer: trainer, batch: valBatch, log: log) }
            return
        }
        let (last, best) = try precision.run { try trainer.run() }
        log.line(
            String(
                format: "done: last top-1 %.2f%%, best top-1 %.2f%%; checkpoints, metrics.csv and curves.svg in %@",
                last, best, saveDir))
    }

    /// `--evaluate`: the reference's validation, on the sparse engine if asked (its layers chosen
    /// by timing in the precision of the caller's scope).
    private func evaluateOnly(_ model: any Model, trainer: Trainer, batch: Int, log: RunLog) throws {
        if engine == .sparse {
            let deployment = try deploySparse(model, batch: batch, resolution: arch.resolution) {
                log.line("note: \($0)")
            }
            let tunedDense = deployment.dense.filter { $0.cause == .measuredFaster }.count
            log.line(
                "=> sparse engine: \(deployment.sparse.count) N:M layers on the sparse kernel, "
                    + "\(tunedDense) measured faster dense")
        }
        try trainer.evaluate()
    }
}
