// Evaluation as one blocked network (oneDNN's layouts kept between operations) against the models'
// own layer-by-layer forward passes.
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor
import MaxQTestSupport
import Testing

@Suite struct BlockedInferenceTests {
    static func model(_ arch: Architecture) throws -> (any Model, Tensor) {
        var generator = RandomGenerator(seed: 5)
        let model = try maskedModel(arch, n: 2, m: 4, seed: 3)
        randomizeBatchNorm(model, generator: &generator)
        model.setTraining(false)
        let side = arch.resolution == 32 ? 32 : 64
        return (model, Tensor(normal: [2, 3, side, side], generator: &generator))
    }

    static func layerByLayer(_ model: any Model, _ x: Tensor, _ precision: Precision) throws -> Tensor {
        try Precision.run(precision) { try GradientMode.withoutGradients { try model(Variable(x)) }.value }
    }

    /// float32: the layer-by-layer logits up to summation order (the residual addition inside the
    /// convolution); bfloat16 (activations stored in bfloat16 between operations, as PyTorch's autocast
    /// does): within 2 % of float32's, and not equal to them. A second batch size re-plans the network.
    @Test(arguments: [Architecture.cResnet18, .resnet18, .resnet50, .mobilenetV1, .mobilenetV2])
    func matchesTheLayerByLayerForwardPass(_ arch: Architecture) throws {
        let (model, x) = try Self.model(arch)
        let expected = try Self.layerByLayer(model, x, .fp32)
        let blocked = try BlockedInference(model, precision: .fp32)
        #expect(relativeL2(try blocked(x), expected) < 1e-5, "\(arch)")
        let three = try Tensor(shape: [3] + x.shape.dropFirst(), scalars: x.scalars + x.scalars.prefix(x.count / 2))
        #expect(relativeL2(try blocked(three), try Self.layerByLayer(model, three, .fp32)) < 1e-5, "\(arch)")
        guard Precision.cpuHasBFloat16 else { return }
        let bf16 = try BlockedInference(model, precision: .bf16)(x)
        let error = relativeL2(bf16, expected)
        #expect(error < 2e-2 && error > 0, "\(arch): \(error)")
    }

    @Test func aModelWithAnOperatorWithoutBlockedFormIsRefusedNamingIt() throws {
        let (model, _) = try Self.model(.mobilenetV3Small)
        #expect {
            _ = try BlockedInference(model, precision: .fp32)
        } throws: { error in
            "\(error)".contains("HardSwish")
        }
    }
}
