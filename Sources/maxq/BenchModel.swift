// `maxq bench train-step` and `maxq bench eval`: images per second of a whole model
// (compare with Scripts/bench_pytorch.py model on the same machine).
import ArgumentParser
import MaxQModels
import MaxQNN
import MaxQTensor
import MaxQTraining

struct ModelBenchOptions: ParsableArguments {
    @Option(name: [.customShort("a"), .long], help: "Architecture.") var arch: Architecture = .resnet18
    @Option(name: [.customShort("b"), .long], help: "Batch size.") var batchSize = 32
    @Option(help: "Classes of the classifier.") var classes = 1000
    @Option(help: "Timed iterations (median reported, after one warm-up).") var iterations = 5
    @OptionGroup var sparsity: SparsityOptions
    @OptionGroup var amp: AmpOption

    func validate() throws {
        guard batchSize >= 1, iterations >= 1, classes >= 1 else {
            throw ValidationError("--batch-size, --iterations and --classes must be at least 1")
        }
    }

    func model() throws -> any Model {
        try arch.build(classes: classes, sparsity: try sparsity.config())
    }

    func batch() -> (Tensor, [Int]) {
        var generator = RandomGenerator(seed: 0)
        let images = Tensor(normal: [batchSize, 3, arch.resolution, arch.resolution], generator: &generator)
        return (images, (0..<batchSize).map { _ in generator.integer(below: classes) })
    }

    /// One line; with `processes` > 1 the batch is per process and the rate is all processes'.
    func report(_ what: String, milliseconds: Double, processes: Int = 1) {
        let batch = processes > 1 ? "\(processes)x\(batchSize)" : "\(batchSize)"
        print(
            "\(arch.rawValue) \(sparsity.convBNType.rawValue) \(sparsity.n):\(sparsity.m) batch=\(batch) "
                + "res=\(arch.resolution) threads=\(Threading.count) amp=\(amp.amp.rawValue) \(what)_img_s="
                + String(format: "%.2f", Double(processes * batchSize) / milliseconds * 1000))
    }
}

struct BenchTrainStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-step",
        abstract: "Training step (forward, loss, backward, SR-STE decay, SGD) images per second.",
        discussion: """
            Under mpirun (mpirun -np K maxq bench train-step ...), data parallel as `maxq train` runs it: \
            -b is the batch per process, gradients are summed across the processes during backward, and \
            rank 0 reports all processes' images per second and the communication not hidden behind backward.
            """)

    @OptionGroup var options: ModelBenchOptions

    func run() throws {
        let group = try DataParallel.join()
        do {
            let precision = try options.amp.scope()
            let model = try options.model()
            let (images, labels) = options.batch()
            let optimizer = TrainStep.optimizer(
                for: model, learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4, nesterov: false, noBNDecay: false)
            let decay: Float = options.sparsity.convBNType.hasMask ? 2e-4 : 0
            let exchange = group.map { GradientExchange(parameters: model.parameters, group: $0) }
            try group?.broadcastState(of: model, parameters: true)
            let ms = try medianMilliseconds(iterations: options.iterations) {
                _ = try precision.run {
                    try TrainStep.run(
                        model, optimizer, images: images, labels: labels, labelSmoothing: 0.1, srsteDecay: decay,
                        exchange: exchange)
                }
            }
            guard let group, let exchange else { return options.report("train", milliseconds: ms) }
            let exposed = exchange.takeExposedSecondsPerStep()
            if group.rank == 0 {
                print(
                    String(
                        format: "data parallel: %d processes x batch %d, %d compute thread(s) each: %.1f ms per step, "
                            + "gradient sums %.1f MB per step, %.1f ms per step not hidden behind backward",
                        group.size, options.batchSize, Threading.count, ms, Double(exchange.bytesPerStep) / 1e6,
                        exposed * 1e3))
                options.report("train", milliseconds: ms, processes: group.size)
            }
            group.finalize()
        } catch {
            guard let group else { throw Failure(error) }
            try DataParallel.fail(group, error)
        }
    }
}

struct BenchEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Evaluation (no-grad forward) images per second.")

    @OptionGroup var options: ModelBenchOptions

    func run() throws {
        do {
            let precision = try options.amp.scope()
            let model = try options.model()
            let (images, _) = options.batch()
            try model.recomputeMasks()
            model.setTraining(false)
            // As validation runs it: one blocked network where the model has one, else layer by layer.
            let (forward, blocked) = try precision.run { model.evaluation() }
            print(blocked ? "engine: blocked (oneDNN's layouts kept between operations)" : "engine: layer by layer")
            let ms = try medianMilliseconds(iterations: options.iterations) {
                _ = try precision.run { try forward(images) }
            }
            options.report("eval", milliseconds: ms)
        } catch {
            throw Failure(error)
        }
    }
}
