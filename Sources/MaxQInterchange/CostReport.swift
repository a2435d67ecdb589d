// The FLOPs and parameter counts of the paper's tables, from the model's operator graph and its
// shapes (no forward pass), in two forms (docs/flops.md):
// - reference: the convention of the original's compute_flops.py. A convolution costs
//   (kh * kw * in / groups + 1) * out * H' * W' (one operation per multiply-add, plus one for the
//   bias that folding batch norm leaves), a linear layer weights + biases; batch norm, activations
//   and pooling are not counted. A convolution counts at N/M unless it is depthwise, 7x7 or reads
//   the 3 image channels; a 1x1 stride-2 convolution (a downsample) counts at N/M only in
//   resnet50. Parameters: every one, the weights of the same convolutions at N/M (downsamples
//   dense outside resnet50).
// - this model: the same formulas, each convolution at the fraction of its folded weight (mask
//   included) that is not zero; parameters all counted, a unit's weight by its non-zeros with
//   the mask (a checkpoint's exact count).
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

public struct CostReport: Sendable {
    public let referenceFLOPs: Double, referenceParameters: Double
    public let flops: Double, parameters: Double

    /// Counts `model` (built for `architecture` with `pattern`, weights loaded if any) at a
    /// `resolution` x `resolution` input, batch 1.
    public init(_ model: any Model, architecture: Architecture, pattern: NMPattern, resolution: Int)
        throws(InterchangeError)
    {
        let kept = Double(pattern.n) / Double(pattern.m)
        let isResNet50 = architecture == .resnet50
        // Parameters, by the reference's rule on each 4-D weight.
        var referenceParameters = 0.0
        for (name, parameter) in model.namedParameters(prefix: "") {
            let shape = parameter.shape, count = Double(parameter.value.count)
            let dense =
                shape.count != 4 || shape[3] == 7 || [1, 3].contains(shape[1])
                || (Self.isDownsample(name) && !isResNet50)
            referenceParameters += dense ? count : count * kept
        }
        // This model's: every parameter, each unit's weight by the non-zeros it has with its mask.
        var parameters = 0.0
        let masked = Dictionary(
            model.units.filter { $0.1.mask != nil }.map { name, unit in (unit.weightKey(prefix: name), unit) }
        ) { first, _ in first }
        for (name, parameter) in model.namedParameters(prefix: "") {
            let (zeros, total) = masked[name]?.zeroCount ?? (0, parameter.value.count)
            parameters += Double(total - zeros)
        }
        // The model as it is (units folded as they describe themselves): its shapes and weights.
        let (graph, _) = try InferenceGraph.describe(model)
        let shapes: [String: [Int]]
        do { shapes = try graph.shapes(input: [1, 3, resolution, resolution]) } catch {
            throw .deployment(.tensor(error))
        }
        let weights = Dictionary(graph.initializers.map { ($0.name, $0.tensor) }) { first, _ in first }
        var (referenceFLOPs, flops) = (0.0, 0.0)
        for node in graph.nodes {
            switch node.op {
            case "Conv":
                guard let w = weights[node.inputs[1]], let y = shapes[node.name], let x = shapes[node.inputs[0]] else {
                    continue
                }
                let dense = Double(w.shape[1] * w.shape[2] * w.shape[3] + 1) * Double(y.dropFirst().reduce(1, *))
                let nonZero = Double(w.count - w.backend.countZeros(w)) / Double(max(w.count, 1))
                let depthwise = w.shape[1] == 1 && x[1] > 1, stem = w.shape[3] == 7 || x[1] == 3
                let downsample = w.shape[3] == 1 && Self.stride(node) == 2
                let referenceKept = depthwise || stem || (downsample && !isResNet50) ? 1 : kept
                referenceFLOPs += dense * referenceKept
                flops += dense * nonZero
            case "Gemm":
                let count = node.inputs.dropFirst().compactMap { weights[$0]?.count }.reduce(0, +)
                referenceFLOPs += Double(count)
                flops += Double(count)
            default: break
            }
        }
        (self.referenceFLOPs, self.flops) = (referenceFLOPs, flops)
        self.referenceParameters = referenceParameters
        self.parameters = parameters
    }

    private static func isDownsample(_ name: String) -> Bool {
        name.contains(".downsample.") || name.contains(".shortcut.")
    }

    private static func stride(_ node: OperatorGraph.Node) -> Int {
        if case .ints(let strides)? = node.attributes["strides"] { strides.first ?? 1 } else { 1 }
    }
}
