// MobileNet V1 (the reference's names) and V2, V3-Small, V3-Large (torchvision's architectures
// and names). N:M units are the 1x1 expansion and projection convolutions of the blocks and
// the last 1x1 convolution; stems, depthwise and squeeze-excitation convolutions stay dense.
import MaxQNN
import MaxQSparsity
import MaxQTensor

/// torchvision's `_make_divisible(v, 8)`: round to a multiple of 8, never below 90% of v.
func makeDivisible(_ v: Double, _ divisor: Int = 8) -> Int {
    var rounded = max(divisor, Int(v + Double(divisor) / 2) / divisor * divisor)
    if Double(rounded) < 0.9 * v { rounded += divisor }
    return rounded
}

/// Squeeze-excitation (torchvision): global pool, fc1 (1x1 conv) + ReLU, fc2 + hardsigmoid, scale.
final class SqueezeExcitation: Composite, UnaryLayer {
    let fc1: Conv2d, fc2: Conv2d

    init(_ channels: Int, squeeze: Int, generator: inout RandomGenerator) throws(TensorError) {
        fc1 = try Conv2d(channels, squeeze, kernelSize: 1, bias: true, generator: &generator)
        fc2 = try Conv2d(squeeze, channels, kernelSize: 1, bias: true, generator: &generator)
        for conv in [fc1, fc2] {
            conv.weight.value = Tensor(
                normal: conv.weight.shape, std: (2 / Float(conv.weight.shape[0])).squareRoot(), generator: &generator)
            conv.bias!.value = Tensor(zeros: conv.bias!.shape)
        }
    }

    public var children: [(String, any Layer)] { [("fc1", fc1), ("fc2", fc2)] }

    func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        let pooled = try x.globalAveragePool().reshaped([x.shape[0], x.shape[1], 1, 1])
        let s = try fc2(fc1(pooled).relu()).activation(.hardsigmoid)
        return try x * s
    }
}

/// An inverted-residual block: its steps (conv-bn units, a squeeze-excitation after the
/// depthwise step) as a chain, and the identity shortcut when shapes allow.
final class InvertedResidual: Composite, UnaryLayer {
    let body: Sequential
    let residual: Bool

    init(_ steps: [(name: String, layer: any UnaryLayer)], residual: Bool) {
        body = Sequential(steps)
        self.residual = residual
    }

    var children: [(String, any Layer)] { body.children }

    func replaceChild(named name: String, with layer: any Layer) throws(TensorError) {
        try body.replaceChild(named: name, with: layer)
    }

    func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        residual ? try body.output(x, adding: x) : try body(x)
    }
}

/// The whole network: stem and blocks as a chain, global pooling, the classifier chain. Their
/// members sit at the top of the state dict (`features.3`, `classifier.1`), as in torchvision.
public final class MobileNet: Model, Composite {
    let features: Sequential
    let head: Sequential

    init(features: [(name: String, layer: any UnaryLayer)], head: [(name: String, layer: any UnaryLayer)]) {
        self.features = Sequential(features)
        self.head = Sequential(head)
    }

    public var children: [(String, any Layer)] { features.children + head.children }
    /// Every conv-bn unit (found again after a replacement).
    public var units: [(String, ConvBNUnit)] { descendants(of: ConvBNUnit.self) }

    public func replaceChild(named name: String, with layer: any Layer) throws(TensorError) {
        let chain = features.layers.contains { $0.name == name } ? features : head
        try chain.replaceChild(named: name, with: layer)
    }

    /// Once deployed: from which activation shape on the features pass channel-major activations.
    private var channelMajorFrom: (@Sendable ([Int]) -> Bool)?

    /// A deployed MobileNet without squeeze-excitation (V1, V2) hands its layers channel-major
    /// activations from the first one whose input `prefers` it, as a deployed ResNet does: its
    /// pointwise layers then read and write their small planes in place, and the depthwise kernel
    /// reads that layout too. Squeeze-excitation pools and scales per image, so V3 keeps NCHW.
    public func deployChannelMajor(when prefers: @escaping @Sendable ([Int]) -> Bool) {
        if descendants(of: SqueezeExcitation.self).isEmpty { channelMajorFrom = prefers }
    }

    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        var h = x
        for (_, layer) in features.layers { h = try layer(channelMajorWhere(channelMajorFrom, h)) }
        return try head(nchw(h).globalAveragePool())
    }

    /// A classifier `Linear` with torchvision's MobileNet initialisation: Normal(0, 0.01), bias 0.
    static func linear(_ input: Int, _ output: Int, generator: inout RandomGenerator) -> Linear {
        let fc = Linear(input, output, generator: &generator)
        fc.weight.value = Tensor(normal: fc.weight.shape, std: 0.01, generator: &generator)
        fc.bias!.value = Tensor(zeros: [output])
        return fc
    }

    /// MobileNet V1 as the reference code builds it (PyTorch's default initialisation);
    /// `widthDivisor` divides every width (1: the paper's model; narrower ones for test fixtures).
    public static func v1(
        classes: Int, sparsity: SparsityConfig, seed: UInt64 = 0, widthDivisor: Int = 1
    ) throws(TensorError) -> MobileNet {
        var generator = RandomGenerator(seed: seed)
        let divisor = max(widthDivisor, 1)
        var input = 32 / divisor
        let stem = try ConvBNUnit(
            3, input, kernelSize: 3, stride: 2, config: .dense, activation: .relu, names: .torchvision,
            generator: &generator)
        var features: [(name: String, layer: any UnaryLayer)] = [("conv1", stem)]
        let table: [(Int, Int)] = [
            (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
            (512, 1), (512, 1), (1024, 2), (1024, 1),
        ].map { ($0.0 / divisor, $0.1) }
        for (i, (output, stride)) in table.enumerated() {
            let depthwise = try ConvBNUnit(
                input, input, kernelSize: 3, stride: stride, groups: input, config: .dense, activation: .relu,
                names: .torchvision, seed: UInt64(i), generator: &generator)
            let pointwise = try ConvBNUnit(
                input, output, kernelSize: 1, config: sparsity, activation: .relu, seed: UInt64(100 + i),
                generator: &generator)
            features.append(("features.\(i)", InvertedResidual([("", depthwise), ("3", pointwise)], residual: false)))
            input = output
        }
        let fc = Linear(input, classes, generator: &generator)
        return MobileNet(features: features, head: [("fc", fc)])
    }

    /// torchvision's mobilenet_v2 (width 1.0): rows t (expansion), c (channels), n (repeats), s (stride).
    public static func v2(classes: Int, sparsity: SparsityConfig, seed: UInt64 = 0) throws(TensorError) -> MobileNet {
        var factory = UnitFactory(config: sparsity, generator: RandomGenerator(seed: seed))
        let stem = try factory.unit(3, 32, kernel: 3, stride: 2, sparse: false, activation: .relu6, names: .torchvision)
        var features: [(name: String, layer: any UnaryLayer)] = [("features.0", stem)]
        var input = 32
        let table = [
            (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
        ]
        for (t, c, n, s) in table {
            for j in 0..<n {
                let stride = j == 0 ? s : 1
                let hidden = Int((Double(input) * Double(t)).rounded())
                var steps: [(name: String, layer: any UnaryLayer)] = []
                if t != 1 {
                    steps.append(
                        ("conv.0", try factory.unit(input, hidden, kernel: 1, activation: .relu6, names: .torchvision)))
                }
                let dw = try factory.unit(
                    hidden, hidden, kernel: 3, stride: stride, groups: hidden, sparse: false, activation: .relu6,
                    names: .torchvision)
                steps.append(("conv.\(steps.count)", dw))
                let projectionNames = UnitNames(
                    conv: "\(steps.count)", scale: "\(steps.count + 1)", maskBesideWeight: true)
                steps.append(("conv", try factory.unit(hidden, c, kernel: 1, names: projectionNames)))
                features.append(
                    ("features.\(features.count)", InvertedResidual(steps, residual: stride == 1 && input == c)))
                input = c
            }
        }
        features.append(
            (
                "features.\(features.count)",
                try factory.unit(input, 1280, kernel: 1, activation: .relu6, names: .torchvision)
            ))
        let dropout = Dropout(probability: 0.2, seed: seed &+ 1)
        let fc = linear(1280, classes, generator: &factory.generator)
        return MobileNet(features: features, head: [("classifier.0", dropout), ("classifier.1", fc)])
    }

    /// torchvision's mobilenet_v3_small / _large: rows (input, kernel, expanded, output, SE,
    /// hardswish, stride); BatchNorm eps 0.001, momentum 0.01 as torchvision builds them.
    public static func v3(large: Bool, classes: Int, sparsity: SparsityConfig, seed: UInt64 = 0) throws(TensorError)
        -> MobileNet
    {
        let table: [(Int, Int, Int, Int, Bool, Bool, Int)] =
            large
            ? [
                (16, 3, 16, 16, false, false, 1), (16, 3, 64, 24, false, false, 2), (24, 3, 72, 24, false, false, 1),
                (24, 5, 72, 40, true, false, 2), (40, 5, 120, 40, true, false, 1), (40, 5, 120, 40, true, false, 1),
                (40, 3, 240, 80, false, true, 2), (80, 3, 200, 80, false, true, 1), (80, 3, 184, 80, false, true, 1),
                (80, 3, 184, 80, false, true, 1), (80, 3, 480, 112, true, true, 1), (112, 3, 672, 112, true, true, 1),
                (112, 5, 672, 160, true, true, 2), (160, 5, 960, 160, true, true, 1), (160, 5, 960, 160, true, true, 1),
            ]
            : [
                (16, 3, 16, 16, true, false, 2), (16, 3, 72, 24, false, false, 2), (24, 3, 88, 24, false, false, 1),
                (24, 5, 96, 40, true, true, 2), (40, 5, 240, 40, true, true, 1), (40, 5, 240, 40, true, true, 1),
                (40, 5, 120, 48, true, true, 1), (48, 5, 144, 48, true, true, 1), (48, 5, 288, 96, true, true, 2),
                (96, 5, 576, 96, true, true, 1), (96, 5, 576, 96, true, true, 1),
            ]
        var factory = UnitFactory(config: sparsity, generator: RandomGenerator(seed: seed))
        let (eps, momentum): (Float, Float) = (0.001, 0.01)
        let stem = try factory.unit(
            3, 16, kernel: 3, stride: 2, sparse: false, activation: .hardswish, names: .torchvision, eps: eps,
            momentum: momentum)
        var features: [(name: String, layer: any UnaryLayer)] = [("features.0", stem)]
        for (input, kernel, expanded, output, useSE, hardswish, stride) in table {
            let activation: Activation = hardswish ? .hardswish : .relu
            var steps: [(name: String, layer: any UnaryLayer)] = []
            if expanded != input {
                let expand = try factory.unit(
                    input, expanded, kernel: 1, activation: activation, names: .torchvision, eps: eps,
                    momentum: momentum)
                steps.append(("block.0", expand))
            }
            let dw = try factory.unit(
                expanded, expanded, kernel: kernel, stride: stride, groups: expanded, sparse: false,
                activation: activation, names: .torchvision, eps: eps, momentum: momentum)
            steps.append(("block.\(steps.count)", dw))
            // Squeeze-excitation after the depthwise step (drawn before the projection's weights).
            if useSE {
                let se = try SqueezeExcitation(
                    expanded, squeeze: makeDivisible(Double(expanded / 4)), generator: &factory.generator)
                steps.append(("block.\(steps.count)", se))
            }
            let project = try factory.unit(
                expanded, output, kernel: 1, names: .torchvision, eps: eps, momentum: momentum)
            steps.append(("block.\(steps.count)", project))
            features.append(
                ("features.\(features.count)", InvertedResidual(steps, residual: stride == 1 && input == output)))
        }
        let lastInput = table.last!.3, lastOutput = 6 * lastInput, lastChannel = large ? 1280 : 1024
        let last = try factory.unit(
            lastInput, lastOutput, kernel: 1, activation: .hardswish, names: .torchvision, eps: eps, momentum: momentum)
        features.append(("features.\(features.count)", last))
        let fc0 = linear(lastOutput, lastChannel, generator: &factory.generator)
        let dropout = Dropout(probability: 0.2, seed: seed &+ 1)
        let fc3 = linear(lastChannel, classes, generator: &factory.generator)
        return MobileNet(
            features: features,
            head: [
                ("classifier.0", fc0), ("classifier.1", ActivationLayer(.hardswish)), ("classifier.2", dropout),
                ("classifier.3", fc3),
            ])
    }
}
