// The FLOPs and parameter counts of the paper's tables, from the model's operator graph and its
// shapes (no forward pass), in two forms (docs/flops.md):
// - reference: the convention of the original's compute_flops.py, checked against that script's
//   own output (Tests/Fixtures/flops.json). A convolution costs (kh * kw * in / groups + 1) * out
//   * H' * W' (one operation per multiply-add, plus one for the bias that folding batch norm
//   leaves), all of it at N/M unless the convolution is depthwise or 7x7; a linear layer costs its
//   weights plus biases; each ReLU one per input element; batch norm, other activations, pooling
//   and additions nothing. Parameters: every one, each 4-D weight at N/M unless its kernel is 7
//   wide or it has one input channel per group.
// - this model: the same operations, each convolution with only its folded weight's non-zeros
//   (mask included) multiplied, plus its biases; parameters all counted, a unit's weight by its
//   non-zeros with the mask (a checkpoint's exact count).
import MaxQDeploy
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

public struct CostReport: Sendable {
    /// One convolution or linear layer of the inference graph.
    public struct Layer: Sendable {
        public let name: String
        /// The folded weight's shape: (out, in / groups, kh, kw) or (out, in).
        public let shape: [Int]
        /// "2:4" for an exactly N:M unit, otherwise "dense: " and why.
        public let status: String
        /// Non-zero weights plus biases, as this model runs it.
        public let parameters: Int
        public let flops: Double
        /// The FLOPs the original's convention gives it.
        public let referenceFLOPs: Double
    }

    public let layers: [Layer]
    /// One per element entering a ReLU (both conventions count these).
    public let reluFLOPs: Double
    public let referenceFLOPs: Double, referenceParameters: Double
    public let flops: Double, parameters: Double

    /// Counts `model` (built with `pattern`, weights loaded if any) at a `resolution` x
    /// `resolution` input, batch 1.
    public init(_ model: any Model, pattern: NMPattern, resolution: Int) throws(InterchangeError) {
        let kept = Double(pattern.n) / Double(pattern.m)
        referenceParameters = model.namedParameters(prefix: "").reduce(0.0) { sum, named in
            let shape = named.1.shape, count = Double(named.1.value.count)
            let pruned = shape.count == 4 && shape[3] != 7 && shape[1] != 1
            return sum + (pruned ? count * kept : count)
        }
        // This model's: every parameter, each unit's weight by the non-zeros it has with its mask.
        let masked = Dictionary(
            model.units.filter { $0.1.mask != nil }.map { name, unit in (unit.weightKey(prefix: name), unit) }
        ) { first, _ in first }
        parameters = model.namedParameters(prefix: "").reduce(0.0) { sum, named in
            let (zeros, total) = masked[named.0]?.zeroCount ?? (0, named.1.value.count)
            return sum + Double(total - zeros)
        }
        // The model as it is (units folded as they describe themselves): its shapes and weights.
        let (graph, _) = try InferenceGraph.describe(model)
        let shapes: [String: [Int]]
        do { shapes = try graph.shapes(input: [1, 3, resolution, resolution]) } catch {
            throw .deployment(.tensor(error))
        }
        let weights = Dictionary(graph.initializers.map { ($0.name, $0.tensor) }) { first, _ in first }
        let status = Self.statuses(model, weights: weights, pattern: pattern)
        var layers: [Layer] = []
        var reluFLOPs = 0.0
        for node in graph.nodes {
            switch node.op {
            case "Conv":
                guard let w = weights[node.inputs[1]], let y = shapes[node.name], let x = shapes[node.inputs[0]] else {
                    continue
                }
                let pixels = Double(y[2] * y[3]), outputs = w.shape[0]
                let nonZero = w.count - w.backend.countZeros(w)
                let dense = Double(w.shape[1] * w.shape[2] * w.shape[3] + 1) * Double(outputs) * pixels
                let depthwise = w.shape[1] == 1, wide = w.shape[2] == 7
                let name = Self.layerName(node)
                layers.append(
                    Layer(
                        name: name, shape: w.shape,
                        status: status[name] ?? Self.denseReason(name, weight: w, inputChannels: x[1]),
                        parameters: nonZero + outputs, flops: Double(nonZero + outputs) * pixels,
                        referenceFLOPs: depthwise || wide ? dense : dense * kept))
            case "Gemm":
                guard let w = weights[node.inputs[1]] else { continue }
                let bias = node.inputs.dropFirst(2).compactMap { weights[$0]?.count }.reduce(0, +)
                let nonZero = w.count - w.backend.countZeros(w)
                layers.append(
                    Layer(
                        name: Self.layerName(node), shape: w.shape, status: "dense: classifier",
                        parameters: nonZero + bias,
                        flops: Double(nonZero + bias), referenceFLOPs: Double(w.count + bias)))
            case "Relu":
                reluFLOPs += Double(shapes[node.inputs[0]]?.reduce(1, *) ?? 0)
            default: break
            }
        }
        self.layers = layers
        self.reluFLOPs = reluFLOPs
        referenceFLOPs = layers.reduce(reluFLOPs) { $0 + $1.referenceFLOPs }
        flops = layers.reduce(reluFLOPs) { $0 + $1.flops }
    }

    /// A layer's name as the state dict has it: its weight's name without `.weight`.
    private static func layerName(_ node: OperatorGraph.Node) -> String {
        let weight = node.inputs[1]
        return weight.hasSuffix(".weight") ? String(weight.dropLast(".weight".count)) : node.name
    }

    /// The status of every unit that trains N:M: exactly N:M as folded, or dense and why.
    private static func statuses(_ model: any Model, weights: [String: Tensor], pattern: NMPattern) -> [String: String]
    {
        let (n, m) = (pattern.n, pattern.m)
        var status: [String: String] = [:]
        for (name, unit) in model.units where unit.mask != nil && !unit.config.pattern.isDense {
            guard let w = weights["\(name).weight"], w.rank == 4 else { continue }
            guard w.shape[1] % m == 0 else {
                status[name] = "dense: \(w.shape[1]) input channels, not a multiple of \(m)"
                continue
            }
            let overfull = NMWeights.overfullGroups(w, n: n, m: m), groups = w.count / m
            status[name] =
                overfull == 0
                ? "\(n):\(m)" : "dense: not \(n):\(m), \(overfull) of \(groups) groups keep more than \(n)"
        }
        return status
    }

    /// Why the architecture keeps a convolution dense, from where it sits and its shape.
    private static func denseReason(_ name: String, weight w: Tensor, inputChannels: Int) -> String {
        if inputChannels == 3 { return "dense: stem (reads the image)" }
        if w.shape[1] == 1 && inputChannels > 1 { return "dense: depthwise" }
        if name.hasSuffix(".fc1") || name.hasSuffix(".fc2") { return "dense: squeeze-excitation" }
        if name == "fc" { return "dense: classifier" }
        return "dense: no N:M mask"
    }
}
