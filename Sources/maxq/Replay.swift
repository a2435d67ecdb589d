// `maxq replay`: training steps on batches fixed in a file, for comparing a trajectory with
// another implementation (the original PyTorch code) step by step, with no data or
// augmentation randomness in between. Prints and writes each step's loss.
import ArgumentParser
import Foundation
import MaxQFormats
import MaxQModels
import MaxQNN
import MaxQTensor
import MaxQTraining

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train on the batches of a file (images.<i>, labels.<i>), one step each, and report every loss.")

    @Argument(help: "Batches (.safetensors): images.<i> (N,3,H,W) and labels.<i> (N), i = 0, 1, ...")
    var batches: String
    @Option(name: [.customShort("a"), .long], help: "Architecture.") var arch: Architecture = .cResnet18
    @Option(name: .customLong("num-classes"), help: "Classes of the classifier.") var numClasses = 10
    @Option(help: "Initial weights (any checkpoint format).") var pretrained: String
    @OptionGroup var sparsity: SparsityOptions
    @Option(parsing: .unconditional, help: "Learning rate.") var lr = 0.1
    @Option(parsing: .unconditional, help: "SGD momentum.") var momentum = 0.9
    @Option(name: [.customLong("weight-decay"), .customLong("wd")], parsing: .unconditional, help: "Weight decay.")
    var weightDecay = 1e-4
    @Option(help: "Nesterov momentum: True or False.") var nesterov: PyBool = .false
    @Option(name: .customLong("no-bn-decay"), help: "No weight decay on 1-D parameters: True or False.")
    var noBNDecay: PyBool = .false
    @Option(name: .customLong("label-smoothing"), parsing: .unconditional, help: "Label smoothing.")
    var labelSmoothing = 0.0
    @Option(parsing: .unconditional, help: "SR-STE decay lambda.") var decay = 2e-4
    @Option(help: "Epoch (0-based) the incremental schedule is evaluated at.") var epoch = 0
    @Option(help: "Steps to take (default: one per batch in the file).") var steps: Int?
    @Option(help: "CSV of step,loss to write.") var out: String?
    @Option(help: "Write the final model state and momentum buffers here (.safetensors).")
    var save: String?

    func validate() throws {
        do {
            try TrainingConfig.checkOptimisation(
                lr: lr, momentum: momentum, weightDecay: weightDecay, decay: decay, labelSmoothing: labelSmoothing)
        } catch { throw ValidationError(error.description) }
        guard epoch >= 0 else { throw ValidationError("--epoch must be >= 0") }
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1") }
    }

    func run() throws {
        do {
            try replay()
        } catch {
            throw Failure(error)
        }
    }

    private func replay() throws {
        let file = try SafetensorsFile.read(path: batches)
        let available = file.tensors.filter { $0.name.hasPrefix("images.") }.count
        guard available > 0 else { throw ValidationError("\(batches) holds no images.<i> tensors") }
        let model = try arch.build(classes: numClasses, sparsity: try sparsity.config())
        _ = try model.load(try CheckpointFile.readStateDict(path: pretrained))
        model.setEpoch(epoch)
        model.setTraining(true)
        let optimizer = TrainStep.optimizer(
            for: model, learningRate: Float(lr), momentum: Float(momentum), weightDecay: Float(weightDecay),
            nesterov: nesterov.value, noBNDecay: noBNDecay.value)
        var csv = "step,loss\n"
        for step in 0..<(steps ?? available) {
            let i = step % available
            let images = try file.tensor("images.\(i)", path: batches)
            let labels = try file.tensor("labels.\(i)", path: batches).scalars.map { Int($0) }
            guard images.rank == 4, images.shape[0] == labels.count else {
                throw ValidationError(
                    "\(batches): images.\(i) \(images.shape) does not match labels.\(i) (\(labels.count))")
            }
            guard labels.allSatisfy({ (0..<numClasses).contains($0) }) else {
                throw ValidationError("\(batches): labels.\(i) has a label outside 0..<\(numClasses)")
            }
            let result = try TrainStep.run(
                model, optimizer, images: images, labels: labels, labelSmoothing: Float(labelSmoothing),
                srsteDecay: Float(decay))
            print(String(format: "step %d\tloss %.6f", step, result.loss))
            csv += String(format: "%d,%.8f\n", step, result.loss)
            guard result.loss.isFinite else {
                throw TrainingError.nonFiniteLoss(epoch: epoch, iteration: step, loss: result.loss)
            }
        }
        if let out { try csv.write(toFile: out, atomically: true, encoding: .utf8) }
        if let save {
            var state = SafetensorsFile(tensors: model.stateDict().map { ($0.0, $0.1) })
            for (name, parameter) in model.namedParameters(prefix: "") {
                if let buffer = optimizer.momentumBuffers[ObjectIdentifier(parameter)] {
                    state.tensors.append(("momentum.\(name)", buffer))
                }
            }
            try state.write(path: save)
        }
    }
}
