// Masked conv-bn units: forward with W * mask, straight-through or masked gradients, SR-STE
import Foundation
// decay, mask recomputation in training and the stored mask in evaluation, state names.
import MaxQNN
import MaxQSparsity
import MaxQTensor
import MaxQTestSupport
import Testing

func unit(
    _ type: ConvBNType, inputs: Int = 8, n: Int = 2, m: Int = 4, seed: UInt64 = 3, activation: Activation? = nil
) throws -> ConvBNUnit {
    var generator = RandomGenerator(seed: seed)
    let config = SparsityConfig(
        type: type, pattern: try NMPattern(n: n, m: m),
        schedule: try IncrementalSchedule(.linear, increaseStart: 0, increaseEnd: 0))
    return try ConvBNUnit(inputs, 4, kernelSize: 3, config: config, activation: activation, generator: &generator)
}

@Suite struct ConvBNUnitTests {
    @Test(arguments: ConvBNType.allCases)
    func forwardUsesTheMaskedWeightAndGradientsFollowTheType(_ type: ConvBNType) throws {
        let u = try unit(type)
        var generator = RandomGenerator(seed: 4)
        let x = Variable(Tensor(normal: [2, 8, 5, 5], generator: &generator))
        let y = try u(x)
        let mask = u.mask?.value ?? Tensor(shape: u.conv.weight.shape, repeating: 1)
        #expect((u.mask == nil) == (type == .dense))
        // The same output from a plain convolution with W * mask.
        let effective = try CPUBackend.shared.multiply(u.conv.weight.value, mask)
        let reference = try GradientMode.withoutGradients {
            try u.scale(Variable(CPUBackend.shared.conv2d(x.value, effective, u.conv.geometry)))
        }
        #expect(toleranceFailure(y.value, reference.value) == nil)
        let seed = Tensor(normal: y.shape, generator: &generator)
        try y.backward(seed: seed)
        // dL/dW_eff from a plain variable holding W * mask.
        let weffVariable = Variable(effective, requiresGrad: true)
        let xs = Variable(x.value)
        try u.scale(xs.conv2d(weffVariable, u.conv.geometry)).backward(seed: seed)
        let expected =
            [.hardSRSTE, .hardMaxQ].contains(type)
            ? try CPUBackend.shared.multiply(weffVariable.grad!, mask) : weffVariable.grad!
        #expect(toleranceFailure(u.conv.weight.grad!, expected) == nil, "\(type)")
    }

    @Test(arguments: [Activation.relu, .relu6, .hardswish])
    func foldedEvaluationMatchesTheUnfoldedUnit(_ activation: Activation) throws {
        for type in [ConvBNType.dense, .softMaxQ] {
            let u = try unit(type, activation: activation)
            var generator = RandomGenerator(seed: 12)
            let x = Variable(Tensor(normal: [2, 8, 6, 6], generator: &generator))
            _ = try u(x)  // training step: batch statistics move the running estimates, the mask is set
            u.scale.weight.value = Tensor(uniform: [4], low: 0.5, high: 1.5, generator: &generator)
            u.scale.bias.value = Tensor(normal: [4], generator: &generator)
            u.setTraining(false)
            let folded = try GradientMode.withoutGradients { try u(x) }
            let unfolded = try u(x)  // recording gradients: the plain path
            #expect(
                toleranceFailure(folded.value, unfolded.value, rtol: 1e-4, atol: 1e-5) == nil, "\(type) \(activation)")
        }
    }

    /// A residual block's last unit adds the shortcut (and applies the ReLU) inside its batch norm's
    /// passes in training: the same output, gradients and running statistics as the unit followed
    /// by `addingReLU` (or `+`), bit for bit. The input is also the shortcut, and the output is used
    /// twice: both receive two gradients to add.
    @Test(arguments: [true, false])
    func residualFusedIntoBatchNormGivesTheUnfusedNumbers(relu: Bool) throws {
        for precision in Precision.allCases where precision == .fp32 || Precision.cpuHasBFloat16 {
            var results: [[Tensor]] = []
            for fused in [false, true] {
                var generator = RandomGenerator(seed: 40)
                let config = SparsityConfig(
                    type: .softMaxQ, pattern: try NMPattern(n: 2, m: 4),
                    schedule: try IncrementalSchedule(.linear, increaseStart: 0, increaseEnd: 0))
                let u = try ConvBNUnit(16, 16, kernelSize: 3, config: config, generator: &generator)
                let x = Variable(Tensor(normal: [2, 16, 6, 5], generator: &generator), requiresGrad: true)
                let seed = Tensor(normal: [2, 16, 6, 5], generator: &generator)
                try TensorLayout.run(.channelBlocked) { () throws(TensorError) in
                    try Precision.run(precision, inputGradients: precision) { () throws(TensorError) in
                        let y =
                            fused
                            ? try u.fusedOutput(x, adding: x, relu: relu)
                            : try u.unfusedOutput(x, adding: x, relu: relu)
                        #expect(y.value.layout == .channelBlocked)
                        try (y + y).backward(seed: seed)
                        results.append(
                            [y.value, x.grad!, u.conv.weight.grad!, u.scale.weight.grad!, u.scale.bias.grad!]
                                + u.scale.namedBuffers(prefix: "").map(\.1.value))
                    }
                }
            }
            for (index, (a, b)) in zip(results[0], results[1]).enumerated() {
                #expect(differingBits(a, b) == 0, "\(precision): result \(index)")
            }
        }
    }

    @Test func srsteDecayTouchesOnlyPrunedWeights() throws {
        let u = try unit(.softSRSTE)
        _ = try u(Variable(Tensor(shape: [1, 8, 4, 4], repeating: 1)))
        let w = u.conv.weight.value, mask = u.mask!.value
        u.conv.weight.grad = Tensor(zeros: w.shape)
        try u.applySRSTEDecay(2e-4)
        let g = u.conv.weight.grad!
        for i in 0..<w.count {
            #expect(g[flat: i] == (mask[flat: i] == 0 ? 2e-4 * w[flat: i] : 0))
        }
        #expect(mask.scalars.contains(0))
    }

    @Test func trainingRecomputesTheMaskAndEvaluationKeepsTheStoredOne() throws {
        let u = try unit(.softMaxQ)
        let x = Variable(Tensor(shape: [1, 8, 4, 4], repeating: 1))
        _ = try u(x)
        let trained = u.mask!.value.scalars
        // Changing the weights changes the mask only in training mode.
        var generator = RandomGenerator(seed: 8)
        u.conv.weight.value = Tensor(normal: u.conv.weight.shape, generator: &generator)
        u.setTraining(false)
        _ = try u(x)
        #expect(u.mask!.value.scalars == trained)
        u.setTraining(true)
        _ = try u(x)
        #expect(u.mask!.value.scalars != trained)
        var check = RandomGenerator(seed: 0)
        #expect(
            u.mask!.value.scalars == (try Masks.compute(u.conv.weight.value, u.maskSettings, generator: &check)).scalars
        )
    }

    @Test func incompatibleInputChannelsStayDenseAndAreReported() throws {
        let u = try unit(.softMaxQ, inputs: 6)
        #expect(u.staysDense && u.mask == nil)
        #expect(!(try unit(.softMaxQ)).staysDense)
        #expect(!(try unit(.dense)).staysDense)
    }

    @Test func stateNamesFollowTheReference() throws {
        let names = try unit(.softMaxQ).stateDict(prefix: "layer1.0.convbn1").map(\.0)
        #expect(
            names == [
                "layer1.0.convbn1.conv.weight", "layer1.0.convbn1.scale.weight", "layer1.0.convbn1.scale.bias",
                "layer1.0.convbn1.scale.running_mean", "layer1.0.convbn1.scale.running_var",
                "layer1.0.convbn1.scale.num_batches_tracked", "layer1.0.convbn1.mask",
            ])
        #expect(!(try unit(.dense)).stateDict().map(\.0).contains("mask"))
    }

    @Test func schedulesFollowTheSpecificationEdgeCases() throws {
        let linear = try IncrementalSchedule(.linear, increaseStart: 10, increaseEnd: 30)
        #expect(
            linear.preserveRate(epoch: 0) == 1 && linear.preserveRate(epoch: 20) == 0.5
                && linear.preserveRate(epoch: 30) == 0)
        #expect(try IncrementalSchedule(.cubic, increaseStart: 0, increaseEnd: 10).preserveRate(epoch: 5) == 0.125)
        let cos = try IncrementalSchedule(.cos, increaseStart: 2, increaseEnd: 20)
        #expect(cos.preserveRate(epoch: 1) == 1 && cos.preserveRate(epoch: 2) == 1 && cos.preserveRate(epoch: 20) == 0)
        let exp = try IncrementalSchedule(.exp, increaseStart: 0, increaseEnd: 5)
        #expect(exp.preserveRate(epoch: 0) == 1 && exp.preserveRate(epoch: 4) == 0 && exp.preserveRate(epoch: 5) == 0)
        #expect(abs(exp.preserveRate(epoch: 2) - (1 - (1 - Foundation.exp(-0.1)) / (1 - Foundation.exp(-0.2)))) < 1e-12)
        #expect(try IncrementalSchedule(.linear, increaseStart: 0, increaseEnd: 0).preserveRate(epoch: 0) == 0)
        #expect(throws: SparsityError.self) { try IncrementalSchedule(.linear, increaseStart: 5, increaseEnd: 3) }
        #expect(throws: SparsityError.self) { try IncrementalSchedule(.exp, increaseStart: 3, increaseEnd: 4) }
    }
}
