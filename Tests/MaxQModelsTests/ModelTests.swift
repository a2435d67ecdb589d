// The model zoo against torchvision: state-dict names and shapes, and whole-model logits with
// the same deterministic weights (Scripts/make_fixtures.py `formula`).
import Foundation
import MaxQFormats
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor
import MaxQTestSupport
import Testing

/// The fixture script's `formula`: sines of the element index salted by the tensor's name.
func formula(_ name: String, _ shape: [Int]) -> Tensor {
    let values = (0..<shape.reduce(1, *)).map { i -> Float in
        let v = Foundation.sin(Double(i) * 0.37 + Double(name.count) * 1.3)
        if name.hasSuffix("running_var") { return Float(1 + 0.5 * v) }
        if name.hasSuffix("num_batches_tracked") { return 0 }
        if shape.count == 1 && name.hasSuffix("weight") { return Float(1 + 0.1 * v) }
        return Float(0.05 * v)
    }
    return try! Tensor(shape: shape, scalars: values)
}

func dense(_ arch: Architecture, classes: Int = 10) throws -> any Model {
    try arch.build(classes: classes, sparsity: .dense)
}

@Suite struct ModelTests {
    @Test(arguments: [
        Architecture.resnet18, .resnet34, .resnet50, .cResnet18, .mobilenetV1, .mobilenetV2, .mobilenetV3Small,
        .mobilenetV3Large,
    ])
    func matchesTorchvisionNamesShapesAndLogits(_ arch: Architecture) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("models/\(arch.rawValue).keys.json")))
        let torchvision = (try JSONSerialization.jsonObject(with: data) as! [[Any]]).map {
            ($0[0] as! String, $0[1] as! [Int])
        }
        let model = try dense(arch)
        let ours = Dictionary(uniqueKeysWithValues: model.stateDict().map { ($0.0, $0.1.shape) })
        let mapped = torchvision.map { (name: ResNet.ownName($0.0), shape: $0.1, original: $0.0) }
        #expect(Set(mapped.map(\.name)) == Set(ours.keys))
        for entry in mapped { #expect(ours[entry.name] == entry.shape, "\(entry.name)") }
        let report = try model.load(mapped.map { ($0.name, formula($0.original, $0.shape)) })
        #expect(report.missing.isEmpty && report.unexpected.isEmpty)
        model.setTraining(false)
        let x = try CPUBackend.shared.scale(formula("input", [2, 3, 64, 64]), by: 20).reshaped([2, 3, 64, 64])
        let logits = try GradientMode.withoutGradients { try model(Variable(x)) }.value
        let expected = try SafetensorsFile.read(path: Fixtures.path("models/\(arch.rawValue).safetensors")).tensor(
            "logits")
        #expect(toleranceFailure(logits, expected, rtol: 1e-3, atol: 1e-4) == nil)
    }

    @Test func mobileNetV1HasTheReferenceNames() throws {
        let names = try dense(.mobilenetV1).stateDict().map(\.0)
        #expect(names.prefix(2) == ["conv1.0.weight", "conv1.1.weight"])
        #expect(names.contains("features.0.0.weight") && names.contains("features.0.1.running_var"))
        #expect(names.contains("features.12.3.conv.weight") && names.contains("features.12.3.scale.bias"))
        #expect(names.contains("fc.weight") && names.contains("fc.bias") && names.count == Set(names).count)
        let sparse = try Architecture.mobilenetV1.build(
            classes: 10,
            sparsity: SparsityConfig(
                type: .softMaxQ, pattern: try NMPattern(n: 2, m: 4),
                schedule: try IncrementalSchedule(.linear, increaseStart: 0, increaseEnd: 0)))
        #expect(sparse.units.filter { $0.1.mask != nil }.count == 13)
        #expect(sparse.stateDict().map(\.0).contains("features.0.3.mask"))
    }

    @Test(arguments: Architecture.allCases)
    func everyArchitectureRunsForwardAndBackwardWithMasks(_ arch: Architecture) throws {
        let config = SparsityConfig(
            type: .softMaxQ, pattern: try NMPattern(n: 2, m: 4),
            schedule: try IncrementalSchedule(.linear, increaseStart: 0, increaseEnd: 0))
        let model = try arch.build(classes: 5, sparsity: config)
        let size = arch.resolution == 32 ? 32 : 64
        var generator = RandomGenerator(seed: 1)
        let logits = try model(Variable(Tensor(normal: [2, 3, size, size], generator: &generator)))
        #expect(logits.shape == [2, 5])
        try logits.crossEntropy(labels: [0, 4]).backward()
        #expect(model.parameters.allSatisfy { $0.grad != nil })
        // MobileNet masks sit beside their weights, torchvision-style.
        if arch == .mobilenetV2 { #expect(model.stateDict().map(\.0).contains("features.2.conv.0.0.mask")) }
        // A unit built N:M gets a mask exactly when it is an ordinary convolution whose input
        // channels are a multiple of M; the others are listed as staying dense. Units the
        // architecture builds dense (MobileNet V1's depthwise convolutions) have no mask and are
        // not listed.
        for (name, unit) in model.units {
            let shape = unit.conv.weight.value.shape
            let fits = unit.conv.geometry.groups == 1 && shape[1] % 4 == 0
            let builtSparse = unit.config.type.hasMask
            #expect((unit.mask != nil) == (builtSparse && fits), "\(name) \(shape)")
            #expect(model.denseUnits.contains(name) == (builtSparse && !fits), "\(name) \(shape)")
        }
        #expect(model.units.contains { $0.1.mask != nil })
    }

    @Test func torchvisionResNetNamesMapPositionally() {
        #expect(ResNet.ownName("layer1.0.conv2.weight") == "layer1.0.convbn2.conv.weight")
        #expect(ResNet.ownName("layer2.0.bn1.running_mean") == "layer2.0.convbn1.scale.running_mean")
        #expect(ResNet.ownName("layer3.0.downsample.0.weight") == "layer3.0.downsample.conv.weight")
        #expect(ResNet.ownName("layer3.0.downsample.1.bias") == "layer3.0.downsample.scale.bias")
        #expect(ResNet.ownName("fc.weight") == "fc.weight")
        #expect(ResNet.ownName("layer1.0.convbn1.conv.weight") == "layer1.0.convbn1.conv.weight")
    }

    /// torchvision's names mapped back: every key of a ResNet goes to torchvision's and returns.
    @Test func referenceNamesMapToTorchvisionAndBack() throws {
        #expect(ResNet.torchvisionName("layer1.0.convbn2.conv.weight") == "layer1.0.conv2.weight")
        #expect(ResNet.torchvisionName("layer3.0.downsample.scale.running_var") == "layer3.0.downsample.1.running_var")
        for arch in [Architecture.resnet18, .resnet50] {
            for (name, _) in try dense(arch).stateDict() {
                #expect(ResNet.ownName(ResNet.torchvisionName(name)) == name)
            }
        }
    }

    /// A checkpoint's masks are used as saved, whichever layout names them (beside the unit, or
    /// beside the weight as in MobileNet V2/V3), not computed again from the weights.
    @Test(arguments: [Architecture.cResnet18, .mobilenetV1, .mobilenetV2, .mobilenetV3Small])
    func savedMasksAreLoadedNotRecomputed(_ arch: Architecture) throws {
        let trained = try maskedModel(arch, n: 2, m: 4, seed: 2)
        // At epoch 0 of a long schedule, masks computed on load would keep every weight.
        let fresh = try arch.build(classes: 10, sparsity: try softMaxQ(n: 2, m: 4, increaseEnd: 100))
        let report = try fresh.load(trained.stateDict().map { (name: $0.0, tensor: $0.1) })
        #expect(report.missing.isEmpty && report.unexpected.isEmpty)
        for ((name, saved), (_, loaded)) in zip(trained.units, fresh.units) where saved.mask != nil {
            let same = loaded.mask?.value.scalars == saved.mask?.value.scalars
            #expect(same, "\(arch) \(name)")
        }
    }

    /// A state dict names its architecture and class count (masks and batch counters aside);
    /// one that fits none, or another's layer renamed, gets none.
    @Test(arguments: [Architecture.resnet18, .resnet50, .cResnet34, .mobilenetV2, .mobilenetV3Large])
    func aStateDictIsMatchedToItsArchitecture(_ arch: Architecture) throws {
        let state = try arch.build(classes: 7, sparsity: try softMaxQ(n: 2, m: 4)).stateDict().map {
            (name: $0.0, tensor: $0.1)
        }
        #expect(state.contains { $0.name.hasSuffix(".mask") })
        let match = try #require(Architecture.matching(state))
        #expect(match.0 == arch && match.classes == 7)
        let renamed = state.map { ($0.name == arch.classifierWeight ? "head.weight" : $0.name, $0.tensor) }
        #expect(Architecture.matching(renamed) == nil)
        let firstConvolution = try #require(state.first { $0.tensor.rank == 4 }).name
        #expect(Architecture.matching(state.filter { $0.name != firstConvolution }) == nil)
    }

    @Test func loadingRefusesAShapeMismatchNamingTheKey() throws {
        let model = try dense(.resnet18)
        #expect { try model.load([("fc.weight", Tensor(zeros: [7, 512]))]) } throws: {
            "\($0)".contains("fc.weight") && "\($0)".contains("[10, 512]")
        }
    }

    /// docs/models.md: CIFAR ResNets and MobileNet V1 keep PyTorch's default U(+-1/sqrt(fan_in));
    /// ImageNet ResNets draw convolutions from Normal(0, sqrt(2 / (k*k*out))).
    @Test(arguments: [Architecture.cResnet18, .cResnet50, .mobilenetV1, .resnet18])
    func initialisationFollowsTheOriginal(_ arch: Architecture) throws {
        let model = try dense(arch)
        let convolutions = model.namedParameters(prefix: "").filter { $0.1.shape.count == 4 && $0.1.shape[0] >= 64 }
        #expect(convolutions.count > 5)
        for (name, weight) in convolutions {
            let shape = weight.shape, values = weight.value.scalars
            let fanIn = shape[1] * shape[2] * shape[3]
            let std = (values.map { Double($0 * $0) }.reduce(0, +) / Double(values.count)).squareRoot()
            if arch == .resnet18 {
                let expected = (2 / Double(shape[2] * shape[3] * shape[0])).squareRoot()
                #expect(abs(std / expected - 1) < 0.05, "\(name): std \(std), kaiming-normal fan-out gives \(expected)")
            } else {
                let bound = 1 / Float(fanIn).squareRoot()
                #expect(values.allSatisfy { abs($0) <= bound }, "\(name): outside +-\(bound)")
                #expect(
                    abs(std / (Double(bound) / 3.0.squareRoot()) - 1) < 0.05, "\(name): std \(std) of U(+-\(bound))")
            }
        }
    }
}

/// Stands in for a unit: computes with it, keeps its state names, and counts its calls.
final class CountingStandIn: UnaryLayer {
    let unit: ConvBNUnit
    var calls = 0

    init(_ unit: ConvBNUnit) {
        self.unit = unit
    }

    func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        calls += 1
        return try unit(x)
    }

    func namedParameters(prefix: String) -> [(String, Variable)] { unit.namedParameters(prefix: prefix) }
    func namedBuffers(prefix: String) -> [(String, Buffer)] { unit.namedBuffers(prefix: prefix) }
    func setTraining(_ training: Bool) { unit.setTraining(training) }
}

/// `Layer.replace(at:with:)`, the seam deployment uses to swap units: a replaced unit is no longer
/// called, its stand-in is, in the same place of the computation.
@Suite struct LayerReplacementTests {
    @Test(arguments: [Architecture.cResnet18, .resnet50, .mobilenetV1, .mobilenetV2, .mobilenetV3Small])
    func aUnitIsReplacedInPlace(_ arch: Architecture) throws {
        let model = try dense(arch)
        model.setTraining(false)
        var generator = RandomGenerator(seed: 4)
        let x = Variable(Tensor(normal: [1, 3, arch.resolution, arch.resolution], generator: &generator))
        let before = try GradientMode.withoutGradients { try model(x) }.value
        let names = model.stateDict().map(\.0)
        let (path, unit) = model.units[model.units.count / 2]
        let standIn = CountingStandIn(unit)
        try model.replace(at: path, with: standIn)
        let after = try GradientMode.withoutGradients { try model(x) }.value
        #expect(standIn.calls == 1, "\(path)")
        #expect(after.scalars == before.scalars)
        #expect(!model.units.contains { $0.0 == path } && model.stateDict().map(\.0) == names)
        #expect(throws: TensorError.self) { try model.replace(at: "\(path).nothing", with: standIn) }
    }
}

@Suite struct NonFiniteWeightTests {
    /// Scripts/make_hostile_fixtures.py: `conv1.weight` holds an infinity, `w` a NaN.
    static let file = Fixtures.path("hostile/nonfinite_weights.safetensors")

    @Test func loadingAWeightThatIsNotANumberNamesIt() throws {
        let model = try ResNet(ResNetSpec.resnet18.forCIFAR, classes: 10, sparsity: .dense, widthDivisor: 16)
        let stem = try SafetensorsFile.read(path: Self.file).tensors.filter { $0.name == "conv1.weight" }
        #expect { try model.load(stem) } throws: { "\($0)" == "'conv1.weight' holds NaN or infinite values" }
    }

    @Test func noMaskIsComputedFromNaN() throws {
        let w = try SafetensorsFile.read(path: Self.file).tensor("w")
        var generator = RandomGenerator(seed: 1)
        for type in [ConvBNType.softMaxQ, .softSRSTE] {
            let settings = MaskSettings(type: type, pattern: try NMPattern(n: 2, m: 4))
            #expect(throws: SparsityError.nonFinite(name: "w")) {
                try Masks.compute(w, settings, name: "w", generator: &generator)
            }
        }
    }

    @Test func trainingStopsAtAWeightThatBecameNaNNamingTheLayer() throws {
        let sparsity = SparsityConfig(
            type: .softMaxQ, pattern: try NMPattern(n: 2, m: 4),
            schedule: try IncrementalSchedule(.linear, increaseStart: 0, increaseEnd: 0))
        let model = try ResNet(ResNetSpec.resnet18.forCIFAR, classes: 10, sparsity: sparsity, widthDivisor: 16)
        let (name, unit) = try #require(model.units.first { $0.1.mask != nil })
        unit.conv.weight.value[flat: 5] = .nan
        #expect(throws: TensorError.nonFinite(name: "\(name).conv.weight")) { try model.recomputeMasks() }
    }
}
