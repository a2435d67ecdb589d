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

/// A conv-bn unit and the activation after it (none for projections).
struct ConvStep {
    let name: String
    let unit: ConvBNUnit
    let activation: Activation?
}

/// Squeeze-excitation (torchvision): global pool, fc1 (1x1 conv) + ReLU, fc2 + hardsigmoid, scale.
final class SqueezeExcitation: Composite {
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

/// An inverted-residual block: its steps in order, an optional squeeze-excitation after the
/// depthwise step, and the identity shortcut when shapes allow.
final class InvertedResidual: Composite {
    let steps: [ConvStep]
    let se: (name: String, layer: SqueezeExcitation, after: Int)?
    let residual: Bool

    init(steps: [ConvStep], se: (String, SqueezeExcitation, Int)? = nil, residual: Bool) {
        self.steps = steps
        self.se = se
        self.residual = residual
    }

    public var children: [(String, any Layer)] {
        var list = steps.map { ($0.name, $0.unit as any Layer) }
        if let se { list.insert((se.name, se.layer), at: se.after + 1) }
        return list
    }

    func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        var h = x
        for (i, step) in steps.enumerated() {
            h = try step.unit(h, activation: step.activation)
            if let se, se.after == i { h = try se.layer(h) }
        }
        return residual ? try h + x : h
    }
}

/// The whole network: stem and blocks as a sequence, global pooling, a classifier head.
public final class MobileNet: Model, Composite {
    let features: [(String, any Layer, (Variable) throws(TensorError) -> Variable)]
    let head: [(String, any Layer)]
    let classify: (Variable) throws(TensorError) -> Variable
    public private(set) var units: [(String, ConvBNUnit)] = []

    init(
        features: [(String, any Layer, (Variable) throws(TensorError) -> Variable)], head: [(String, any Layer)],
        classify: @escaping (Variable) throws(TensorError) -> Variable
    ) {
        self.features = features
        self.head = head
        self.classify = classify
        units = descendants(of: ConvBNUnit.self)
    }

    public var children: [(String, any Layer)] { features.map { ($0.0, $0.1) } + head }

    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        var h = x
        for (_, _, forward) in features { h = try forward(h) }
        return try classify(h.globalAveragePool())
    }

    /// A unit plus its activation as one feature step.
    static func step(_ name: String, _ unit: ConvBNUnit, _ activation: Activation?) -> (
        String, any Layer, (Variable) throws(TensorError) -> Variable
    ) {
        (name, unit, { (x) throws(TensorError) in try unit(x, activation: activation) })
    }

    static func block(_ name: String, _ block: InvertedResidual) -> (
        String, any Layer, (Variable) throws(TensorError) -> Variable
    ) {
        (name, block, { (x) throws(TensorError) in try block(x) })
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
            3, input, kernelSize: 3, stride: 2, config: .dense, names: .torchvision, generator: &generator)
        var features: [(String, any Layer, (Variable) throws(TensorError) -> Variable)] = [step("conv1", stem, .relu)]
        let table: [(Int, Int)] = [
            (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
            (512, 1), (512, 1), (1024, 2), (1024, 1),
        ].map { ($0.0 / divisor, $0.1) }
        for (i, (output, stride)) in table.enumerated() {
            let depthwise = try ConvBNUnit(
                input, input, kernelSize: 3, stride: stride, groups: input, config: .dense, names: .torchvision,
                seed: UInt64(i),
                generator: &generator)
            let pointwise = try ConvBNUnit(
                input, output, kernelSize: 1, config: sparsity, seed: UInt64(100 + i), generator: &generator)
            features.append(
                block(
                    "features.\(i)",
                    InvertedResidual(
                        steps: [
                            ConvStep(name: "", unit: depthwise, activation: .relu),
                            ConvStep(name: "3", unit: pointwise, activation: .relu),
                        ],
                        residual: false)))
            input = output
        }
        let fc = Linear(input, classes, generator: &generator)
        return MobileNet(features: features, head: [("fc", fc)]) { (x) throws(TensorError) in try fc(x) }
    }

    /// torchvision's mobilenet_v2 (width 1.0): rows t (expansion), c (channels), n (repeats), s (stride).
    public static func v2(classes: Int, sparsity: SparsityConfig, seed: UInt64 = 0) throws(TensorError) -> MobileNet {
        var factory = UnitFactory(config: sparsity, generator: RandomGenerator(seed: seed))
        let stem = try factory.unit(3, 32, kernel: 3, stride: 2, sparse: false, names: .torchvision)
        var features: [(String, any Layer, (Variable) throws(TensorError) -> Variable)] = [
            step("features.0", stem, .relu6)
        ]
        var input = 32
        let table = [
            (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
        ]
        for (t, c, n, s) in table {
            for j in 0..<n {
                let stride = j == 0 ? s : 1
                let hidden = Int((Double(input) * Double(t)).rounded())
                var steps: [ConvStep] = []
                if t != 1 {
                    steps.append(
                        ConvStep(
                            name: "conv.0", unit: try factory.unit(input, hidden, kernel: 1, names: .torchvision),
                            activation: .relu6))
                }
                let dw = try factory.unit(
                    hidden, hidden, kernel: 3, stride: stride, groups: hidden, sparse: false, names: .torchvision)
                steps.append(ConvStep(name: "conv.\(steps.count)", unit: dw, activation: .relu6))
                let projectionNames = UnitNames(
                    conv: "\(steps.count)", scale: "\(steps.count + 1)", maskBesideWeight: true)
                steps.append(
                    ConvStep(
                        name: "conv", unit: try factory.unit(hidden, c, kernel: 1, names: projectionNames),
                        activation: nil))
                features.append(
                    block(
                        "features.\(features.count)",
                        InvertedResidual(steps: steps, residual: stride == 1 && input == c)))
                input = c
            }
        }
        features.append(
            step("features.\(features.count)", try factory.unit(input, 1280, kernel: 1, names: .torchvision), .relu6))
        let dropout = Dropout(probability: 0.2, seed: seed &+ 1)
        let fc = linear(1280, classes, generator: &factory.generator)
        return MobileNet(features: features, head: [("classifier.0", dropout), ("classifier.1", fc)]) {
            (x) throws(TensorError) in
            try fc(dropout(x))
        }
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
            3, 16, kernel: 3, stride: 2, sparse: false, names: .torchvision, eps: eps, momentum: momentum)
        var features: [(String, any Layer, (Variable) throws(TensorError) -> Variable)] = [
            step("features.0", stem, .hardswish)
        ]
        for (input, kernel, expanded, output, useSE, hardswish, stride) in table {
            let activation: Activation = hardswish ? .hardswish : .relu
            var steps: [ConvStep] = []
            if expanded != input {
                let expand = try factory.unit(
                    input, expanded, kernel: 1, names: .torchvision, eps: eps, momentum: momentum)
                steps.append(ConvStep(name: "block.0", unit: expand, activation: activation))
            }
            let dw = try factory.unit(
                expanded, expanded, kernel: kernel, stride: stride, groups: expanded, sparse: false,
                names: .torchvision, eps: eps,
                momentum: momentum)
            steps.append(ConvStep(name: "block.\(steps.count)", unit: dw, activation: activation))
            let depthwiseIndex = steps.count - 1
            let se =
                useSE
                ? try SqueezeExcitation(
                    expanded, squeeze: makeDivisible(Double(expanded / 4)), generator: &factory.generator) : nil
            let projectIndex = steps.count + (useSE ? 1 : 0)
            let project = try factory.unit(
                expanded, output, kernel: 1, names: .torchvision, eps: eps, momentum: momentum)
            steps.append(ConvStep(name: "block.\(projectIndex)", unit: project, activation: nil))
            features.append(
                block(
                    "features.\(features.count)",
                    InvertedResidual(
                        steps: steps, se: se.map { ("block.\(depthwiseIndex + 1)", $0, depthwiseIndex) },
                        residual: stride == 1 && input == output)))
        }
        let lastInput = table.last!.3, lastOutput = 6 * lastInput, lastChannel = large ? 1280 : 1024
        features.append(
            step(
                "features.\(features.count)",
                try factory.unit(lastInput, lastOutput, kernel: 1, names: .torchvision, eps: eps, momentum: momentum),
                .hardswish))
        let fc0 = linear(lastOutput, lastChannel, generator: &factory.generator)
        let dropout = Dropout(probability: 0.2, seed: seed &+ 1)
        let fc3 = linear(lastChannel, classes, generator: &factory.generator)
        return MobileNet(
            features: features, head: [("classifier.0", fc0), ("classifier.2", dropout), ("classifier.3", fc3)]
        ) {
            (x) throws(TensorError) in try fc3(dropout(fc0(x).activation(.hardswish)))
        }
    }
}
