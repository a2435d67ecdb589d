// `maxq bench masks`: milliseconds to recompute every mask of a model once, as a training
// step does (the reference spends 1,730 ms on ResNet-50 with SoftMaxQConv2DBN 2:4).
import ArgumentParser
import MaxQModels
import MaxQSparsity
import MaxQTensor

extension Architecture: ExpressibleByArgument {}

struct BenchMasks: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "masks", abstract: "Time the recomputation of all of a model's masks (one training step's worth).")

    @Option(name: [.customShort("a"), .long], help: "Architecture.") var arch: Architecture = .resnet50
    @OptionGroup var sparsity: SparsityOptions
    @Option(help: "Epoch for the incremental schedule.") var epoch = 0
    @Option(help: "Timed iterations (median reported).") var iterations = 10

    func validate() throws {
        guard iterations >= 1, epoch >= 0 else { throw ValidationError("need --iterations >= 1 and --epoch >= 0") }
    }

    func run() throws {
        let model: any Model
        do { model = try arch.build(classes: 1000, sparsity: try sparsity.config()) } catch { throw Failure(error) }
        model.setEpoch(epoch)
        let units = model.units.map(\.1).filter { $0.mask != nil }
        let weights = units.map { $0.conv.weight.value.count }.reduce(0, +)
        let milliseconds: Double
        do {
            milliseconds = try medianMilliseconds(iterations: iterations) { try model.recomputeMasks() }
        } catch { throw Failure(error) }
        print(
            "\(arch.rawValue) \(sparsity.convBNType.rawValue) \(sparsity.n):\(sparsity.m) epoch \(epoch): "
                + "\(units.count) masked layers, \(weights) weights, threads \(Threading.count)")
        print(String(format: "masks per step: %.1f ms (median of %d)", milliseconds, iterations))
    }
}
