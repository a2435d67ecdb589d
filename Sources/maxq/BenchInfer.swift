// `maxq bench infer`: the dense and the sparse (N:M) inference engines on the same model and
// batch, in the same run; with --layers, each convolution on its own.
import ArgumentParser
import Foundation
import MaxQDeploy
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

struct BenchInfer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Images per second of the dense and the sparse inference engines (random weights, exact N:M masks).")

    @OptionGroup var options: ModelBenchOptions
    @Flag(help: "Also time every convolution alone: shape, dense ms, sparse ms, ratio, kernel.") var layers = false
    @Flag(help: "Keep each N:M layer sparse only where it measured faster than dense on this batch.") var tuned = false

    func run() throws {
        do {
            guard options.sparsity.convBNType.hasMask, options.sparsity.n < options.sparsity.m else {
                throw ValidationError("--conv-bn-type must be an N:M type with N < M")
            }
            // A finished schedule: every group N:M, as after training.
            let config = SparsityConfig(
                type: options.sparsity.convBNType, pattern: try NMPattern(n: options.sparsity.n, m: options.sparsity.m),
                schedule: try IncrementalSchedule(.linear, increaseStart: 0, increaseEnd: 0))
            // Two copies of the same model (the same seed: the same weights and masks), one deployed.
            let build = { () throws -> any Model in
                let model = try options.arch.build(classes: options.classes, sparsity: config)
                try model.recomputeMasks()
                model.setTraining(false)
                return model
            }
            let (reference, model) = (try build(), try build())
            let (images, _) = options.batch()
            let forward = { (model: any Model) in
                { () throws in _ = try GradientMode.withoutGradients { try model(Variable(images)) } }
            }
            let perLayer = layers ? try LayerTiming.dense(reference, images, iterations: options.iterations) : []
            let report = try Deployment.deploy(model, tunedOn: tuned ? images : nil)
            // The dense engine as evaluation runs it: one blocked network (oneDNN's layouts between operations).
            let dense = reference.evaluation().forward
            let (denseMilliseconds, sparse, pairs) = try interleavedMilliseconds(
                iterations: options.iterations, { _ = try dense(images) }, forward(model))
            if layers { try LayerTiming.printSparse(perLayer, model, images, iterations: options.iterations) }
            print("units: \(report.sparse.count) sparse, \(report.dense.count) dense")
            print(
                "speed-up of each dense/sparse pair of passes: "
                    + String(
                        format: "min %.2f, median %.2f, max %.2f", pairs.first!, pairs[pairs.count / 2], pairs.last!))
            let rate = { (ms: Double) in String(format: "%.2f", Double(options.batchSize) / ms * 1000) }
            print(
                "arch=\(options.arch.rawValue) N:M=\(options.sparsity.n):\(options.sparsity.m) "
                    + "batch=\(options.batchSize) dense_img_s=\(rate(denseMilliseconds)) sparse_img_s=\(rate(sparse)) "
                    + "speedup=\(String(format: "%.2f", denseMilliseconds / sparse))")
        } catch let error as ValidationError {
            throw error
        } catch {
            throw Failure(error)
        }
    }
}

/// Median milliseconds of `dense` and `sparse` run alternately (each first in every other pair, after a
/// warm-up of each), and the sorted ratios dense / sparse of the pairs. This machine's speed moves between
/// and within seconds: one series after the other measured mobilenet_v1 2:4 anywhere between 0.73x and
/// 1.27x within an hour; pairs side by side see much the same machine.
func interleavedMilliseconds(iterations: Int, _ dense: () throws -> Void, _ sparse: () throws -> Void) rethrows
    -> (dense: Double, sparse: Double, ratios: [Double])
{
    try dense()
    try sparse()
    var (denseTimes, sparseTimes): ([Double], [Double]) = ([], [])
    for i in 0..<iterations {
        for takeDense in i % 2 == 0 ? [true, false] : [false, true] {
            let start = DispatchTime.now().uptimeNanoseconds
            try takeDense ? dense() : sparse()
            let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
            if takeDense { denseTimes.append(ms) } else { sparseTimes.append(ms) }
        }
    }
    let median = { (times: [Double]) in times.sorted()[times.count / 2] }
    return (median(denseTimes), median(sparseTimes), zip(denseTimes, sparseTimes).map { $0 / $1 }.sorted())
}

/// Per-layer timing: each unit's input shape learnt from one forward pass, then each layer run
/// alone on a random input of that shape, dense (folded) before deployment, as deployed after and
/// in the layout the deployed model hands it (channel-major where it passes that).
enum LayerTiming {
    struct Layer {
        let name: String
        let input: Tensor
        let weightShape: [Int]
        let denseMilliseconds: Double
    }

    static func dense(_ model: any Model, _ images: Tensor, iterations: Int) throws -> [Layer] {
        let shapes = try InputShapeRecorder.inputShapes(of: model, for: images)
        var generator = RandomGenerator(seed: 1)
        return try model.units.map { name, unit in
            let input = Tensor(normal: shapes[name]!, generator: &generator)
            let (weight, bias) = try unit.foldedWeights()
            let layer = FoldedConvolution(
                weight: weight, bias: bias, geometry: unit.conv.geometry, activation: unit.activation)
            let ms = try medianMilliseconds(iterations: iterations) { _ = try layer(Variable(input)) }
            return Layer(name: name, input: input, weightShape: weight.shape, denseMilliseconds: ms)
        }
    }

    static func printSparse(_ layers: [Layer], _ model: any Model, _ images: Tensor, iterations: Int) throws {
        let sparse = model.descendants(of: NMConvolution.self).map { ($0, $1 as any UnaryLayer) }
        let dense = model.descendants(of: FoldedConvolution.self).map { ($0, $1 as any UnaryLayer) }
        let deployed = Dictionary(uniqueKeysWithValues: sparse + dense)
        let deployedInputs = try InputShapeRecorder.inputShapes(of: model, at: sparse + dense, for: images)
        print("layer  weight  input  dense_ms  sparse_ms  ratio")
        for layer in layers {
            guard let sparse = deployed[layer.name] else { continue }
            let channelMajor = deployedInputs[layer.name]?.count == 5
            let input = channelMajor ? layer.input.channelMajor() : layer.input
            let ms = try medianMilliseconds(iterations: iterations) { _ = try sparse(Variable(input)) }
            let kind =
                ((sparse as? NMConvolution).map { " (\($0.kernel)" } ?? " (dense")
                + (channelMajor ? ", channel-major)" : ")")
            print(
                "\(layer.name)  \(layer.weightShape)  \(layer.input.shape)  "
                    + String(format: "%.3f  %.3f  %.2f", layer.denseMilliseconds, ms, layer.denseMilliseconds / ms)
                    + kind)
        }
    }
}
