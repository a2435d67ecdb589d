// ResNet-18/34/50 and their CIFAR variants (docs/models.md), with the reference code's names:
// `layer{s}.{j}.convbn{k}`, `downsample` (`shortcut.0` for CIFAR), N:M conv-bn units everywhere
// but the stem and the classifier.
import Foundation
import MaxQNN
import MaxQSparsity
import MaxQTensor

/// Residual blocks per stage and the block type (torchvision's table).
public struct ResNetSpec: Sendable {
    public let blocks: [Int]
    public let bottleneck: Bool
    public let cifar: Bool

    var expansion: Int { bottleneck ? 4 : 1 }

    public static let resnet18 = ResNetSpec(blocks: [2, 2, 2, 2], bottleneck: false, cifar: false)
    public static let resnet34 = ResNetSpec(blocks: [3, 4, 6, 3], bottleneck: false, cifar: false)
    public static let resnet50 = ResNetSpec(blocks: [3, 4, 6, 3], bottleneck: true, cifar: false)

    public var forCIFAR: ResNetSpec { ResNetSpec(blocks: blocks, bottleneck: bottleneck, cifar: true) }
}

/// Shared by the builders: the sparsity of every unit, one generator for weights, a seed
/// counter for the units' own streams, and whether weights are re-drawn kaiming-normal.
struct UnitFactory {
    let config: SparsityConfig
    var generator: RandomGenerator
    var seeds: UInt64 = 0
    /// true: the ImageNet ResNet (and torchvision MobileNet) initialisation, weight ~
    /// Normal(0, sqrt(2 / (k*k*out))), kaiming-normal with fan-out; false: PyTorch's default
    /// Conv2d initialisation, uniform +-1/sqrt(fan_in), as the original's CIFAR ResNets keep it.
    var kaimingFanOut = true

    /// A conv-bn unit initialised as `kaimingFanOut` says. `sparse: false` keeps it dense.
    mutating func unit(
        _ input: Int, _ output: Int, kernel: Int, stride: Int = 1, groups: Int = 1, sparse: Bool = true,
        activation: Activation? = nil, names: UnitNames = .reference, eps: Float = 1e-5, momentum: Float = 0.1
    ) throws(TensorError) -> ConvBNUnit {
        seeds += 1
        let u = try ConvBNUnit(
            input, output, kernelSize: kernel, stride: stride, groups: groups, config: sparse ? config : .dense,
            activation: activation, names: names,
            eps: eps, momentum: momentum, seed: seeds, generator: &generator)
        if kaimingFanOut {
            let std = (2 / Float(kernel * kernel * output)).squareRoot()
            u.conv.weight.value = Tensor(normal: u.conv.weight.shape, std: std, generator: &generator)
        }
        return u
    }
}

/// A residual block: conv-bn units (ReLU after all but the last), the shortcut, a final ReLU.
/// Its units can be replaced by any one-input layer (`Layer.replace(at:with:)`).
final class ResidualBlock: Composite, UnaryLayer {
    private(set) var convbns: [any UnaryLayer]
    private(set) var shortcut: (any UnaryLayer)?
    let shortcutName: String

    init(_ input: Int, _ planes: Int, stride: Int, spec: ResNetSpec, factory: inout UnitFactory) throws(TensorError) {
        let output = planes * spec.expansion
        if spec.bottleneck {
            convbns = [
                try factory.unit(input, planes, kernel: 1, activation: .relu),
                try factory.unit(planes, planes, kernel: 3, stride: stride, activation: .relu),
                try factory.unit(planes, output, kernel: 1),
            ]
        } else {
            convbns = [
                try factory.unit(input, planes, kernel: 3, stride: stride, activation: .relu),
                try factory.unit(planes, planes, kernel: 3),
            ]
        }
        shortcut = stride != 1 || input != output ? try factory.unit(input, output, kernel: 1, stride: stride) : nil
        shortcutName = spec.cifar ? "shortcut.0" : "downsample"
    }

    var children: [(String, any Layer)] {
        convbns.enumerated().map { ("convbn\($0.offset + 1)", $0.element as any Layer) }
            + (shortcut.map { [(shortcutName, $0)] } ?? [])
    }

    func replaceChild(named name: String, with layer: any Layer) throws(TensorError) {
        let unary = try Self.oneInput(layer, replacing: name)
        if name == shortcutName, shortcut != nil {
            shortcut = unary
        } else if name.hasPrefix("convbn"), let k = Int(name.dropFirst(6)), convbns.indices.contains(k - 1) {
            convbns[k - 1] = unary
        } else {
            throw Self.noChild(name)
        }
    }

    func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        var h = x
        // A deployed last unit adds the shortcut and applies the ReLU as it writes its output.
        if let last = convbns.last as? any ResidualFusing {
            for unit in convbns.dropLast() { h = try unit(h) }
            let identity = try shortcut.map { (s) throws(TensorError) in try s(x) } ?? x
            return try last.fusedOutput(h, adding: identity, relu: true)
        }
        for unit in convbns { h = try unit(h) }
        return try h.addingReLU(shortcut.map { (s) throws(TensorError) in try s(x) } ?? x)
    }
}

public final class ResNet: Model, Composite {
    let conv1: Conv2d
    let bn1: BatchNorm2d
    let stages: [[ResidualBlock]]
    let fc: Linear?  // ImageNet: Linear(512 * expansion, classes)
    let fcConv: Conv2d?  // CIFAR: a 1x1 convolution with bias on the pooled features
    let spec: ResNetSpec
    /// Once deployed: the stem as one blocked network (`blockedStem`), built for the precision of the
    /// first pass that uses it and again when another precision asks.
    private var deployedStem: (wanted: Bool, built: BlockedNetwork?) = (false, nil)
    /// Every conv-bn unit (found again after a replacement).
    public var units: [(String, ConvBNUnit)] { descendants(of: ConvBNUnit.self) }

    /// A deployed ResNet runs its stem (convolution, batch norm, ReLU, max pool) as one blocked network:
    /// the batch norm folded, the ReLU fused, the pooling in oneDNN's layout, one reorder to NCHW at the
    /// end, where layer by layer each of the four read and wrote the whole (N, 64, H/2, W/2) tensor.
    /// Measured on resnet50, fp32, both forms alternately in one process: batch 16 21.6 ms against 31.8 (conv
    /// 19-20, batch norm 1.7, ReLU 1.6, max pool 6.6, of a 2:4 sparse pass's 530), batch 1 1.2 against 1.6.
    public func deployStem() { deployedStem.wanted = true }

    /// From which activation shape on the blocks pass channel-major activations, once deployed.
    private var channelMajorFrom: (@Sendable ([Int]) -> Bool)?

    /// A deployed ResNet's blocks hand each other channel-major activations from the first block
    /// whose input `prefers` it: every unit, and the residual additions fused into them, read and write
    /// that layout, so the sparse 1x1 layers of small planes read their input and write their output
    /// in place, where in NCHW those planes were copied side by side before each layer and back after
    /// it. The pooled features are read back to NCHW once.
    public func deployChannelMajor(when prefers: @escaping @Sendable ([Int]) -> Bool) {
        channelMajorFrom = prefers
    }

    /// `widthDivisor` divides every width (stem 64, stages 64..512): 1 builds the paper's
    /// models; narrower ones keep test fixtures small.
    public init(
        _ spec: ResNetSpec, classes: Int, sparsity: SparsityConfig, seed: UInt64 = 0, widthDivisor: Int = 1
    ) throws(TensorError) {
        self.spec = spec
        // The original initialises its ImageNet ResNets kaiming-normal (fan-out) and leaves its
        // CIFAR ResNets at PyTorch's defaults (docs/models.md).
        var factory = UnitFactory(config: sparsity, generator: RandomGenerator(seed: seed), kaimingFanOut: !spec.cifar)
        let stemKernel = spec.cifar ? 3 : 7, base = 64 / max(widthDivisor, 1)
        conv1 = try Conv2d(
            3, base, kernelSize: stemKernel, stride: spec.cifar ? 1 : 2, padding: stemKernel / 2,
            generator: &factory.generator)
        if factory.kaimingFanOut {
            let std = (2 / Float(stemKernel * stemKernel * base)).squareRoot()
            conv1.weight.value = Tensor(normal: conv1.weight.shape, std: std, generator: &factory.generator)
        }
        bn1 = BatchNorm2d(base)
        var input = base
        var stages: [[ResidualBlock]] = []
        for (s, planes) in [base, 2 * base, 4 * base, 8 * base].enumerated() {
            var blocks: [ResidualBlock] = []
            for j in 0..<spec.blocks[s] {
                blocks.append(
                    try ResidualBlock(input, planes, stride: j == 0 && s > 0 ? 2 : 1, spec: spec, factory: &factory))
                input = planes * spec.expansion
            }
            stages.append(blocks)
        }
        self.stages = stages
        if spec.cifar {
            fcConv = try Conv2d(input, classes, kernelSize: 1, bias: true, generator: &factory.generator)
            fc = nil
        } else {
            fc = Linear(input, classes, generator: &factory.generator)
            fcConv = nil
        }
    }

    public var children: [(String, any Layer)] {
        var list: [(String, any Layer)] = [("conv1", conv1), ("bn1", bn1)]
        for (s, blocks) in stages.enumerated() {
            for (j, block) in blocks.enumerated() { list.append(("layer\(s + 1).\(j)", block)) }
        }
        list.append(("fc", (fc ?? fcConv)!))
        return list
    }

    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        var h: Variable
        if deployedStem.wanted {
            if deployedStem.built?.precision != Precision.current {
                deployedStem.built = try blockedStem(precision: .current)
            }
            h = Variable(try deployedStem.built!(x.value))
        } else {
            h = try bn1(conv1(x), activation: .relu)
            if !spec.cifar { h = try h.maxPool2d(kernel: 3, stride: 2, padding: 1) }
        }
        for blocks in stages {
            for block in blocks { h = try block(channelMajorWhere(channelMajorFrom, h)) }
        }
        let pooled = try nchw(h).globalAveragePool()
        if let fc { return try fc(pooled) }
        let c = pooled.shape[1]
        return try fcConv!(pooled.reshaped([pooled.shape[0], c, 1, 1])).reshaped([
            pooled.shape[0], fcConv!.weight.shape[0],
        ])
    }
}

extension ResNet {
    /// torchvision ResNet names to the reference's: `layerS.J.convK`/`bnK` are the conv and
    /// scale of `convbnK`; `downsample.0`/`.1` those of `downsample`. Other names pass through.
    public static func ownName(_ name: String) -> String {
        var parts = name.split(separator: ".").map(String.init)
        guard parts.count >= 4, parts[0].hasPrefix("layer") else { return name }
        if parts[2].hasPrefix("conv"), !parts[2].hasPrefix("convbn"), let k = Int(parts[2].dropFirst(4)) {
            parts[2] = "convbn\(k).conv"
        } else if parts[2].hasPrefix("bn"), let k = Int(parts[2].dropFirst(2)) {
            parts[2] = "convbn\(k).scale"
        } else if parts[2] == "downsample", parts[3] == "0" || parts[3] == "1" {
            parts[3] = parts[3] == "0" ? "conv" : "scale"
        }
        return parts.joined(separator: ".")
    }

    /// The reference's names to torchvision's (the inverse of `ownName`): `convbnK.conv`/`.scale`
    /// are `convK`/`bnK`, `downsample.conv`/`.scale` are `downsample.0`/`.1`.
    public static func torchvisionName(_ name: String) -> String {
        var parts = name.split(separator: ".").map(String.init)
        guard parts.count >= 5, parts[0].hasPrefix("layer") else { return name }
        if parts[2].hasPrefix("convbn"), let k = Int(parts[2].dropFirst(6)), ["conv", "scale"].contains(parts[3]) {
            parts.replaceSubrange(2...3, with: [parts[3] == "conv" ? "conv\(k)" : "bn\(k)"])
        } else if parts[2] == "downsample", ["conv", "scale"].contains(parts[3]) {
            parts[3] = parts[3] == "conv" ? "0" : "1"
        }
        return parts.joined(separator: ".")
    }
}
