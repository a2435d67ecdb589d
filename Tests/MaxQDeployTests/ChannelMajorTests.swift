// Channel-major activations ((1, C, N, H, W), `Tensor.channelMajor`): the conversion, and every
// deployed layer giving in that layout what it gives in NCHW, residual and ReLU fused. Layers are
// compared within the twin tests' 1e-5, not bit for bit: other tests lower the process's kernel
// level while these run, and kernels at other levels sum in another order.
import MaxQDeploy
import MaxQNN
import MaxQTensor
import MaxQTestSupport
import Testing

struct ChannelMajorTests {
    @Test func conversionPutsAChannelsImagesTogetherAndBack() throws {
        let x = try Tensor(shape: [2, 3, 1, 2], scalars: (0..<12).map(Float.init))
        let major = x.channelMajor()
        #expect(major.shape == [1, 3, 2, 1, 2] && major.isChannelMajor && !x.isChannelMajor)
        // Channel 1 of image 0, then channel 1 of image 1.
        #expect(Array(major.scalars[4..<8]) == [2, 3, 8, 9])
        #expect(major.channelMajorToNCHW().scalars == x.scalars)
        #expect(major.channelMajorToNCHW().shape == x.shape)
        // One image: the same values in both orders (no copy is made).
        let one = try Tensor(shape: [1, 3, 1, 2], scalars: (0..<6).map(Float.init))
        #expect(one.channelMajor().shape == [1, 3, 1, 1, 2] && one.channelMajor().scalars == one.scalars)
        #expect(one.channelMajor().channelMajorToNCHW().shape == one.shape)
    }

    /// Pointwise at stride 1 (the input read in place, the output written in place) and 2, 3x3 at
    /// stride 1 and 2 (laid out from and compacted into channel-major planes), batch 1 and 3, lines
    /// ending inside a vector; with and without a fused residual and ReLU.
    @Test(arguments: [(1, 1), (1, 2), (3, 1), (3, 2)])
    func sparseLayerGivesInChannelMajorWhatItGivesInNCHW(_ kernel: Int, _ stride: Int) throws {
        var generator = RandomGenerator(seed: UInt64(10 * kernel + stride))
        for (batch, size) in [(1, 7), (3, 7), (3, 10)] {
            let w = randomNMWeight([12, 16, kernel, kernel], n: 2, m: 4, generator: &generator)
            let layer = NMConvolution(
                weights: try NMWeights(packing: w, n: 2, m: 4, layer: "c"),
                bias: Tensor(normal: [12], generator: &generator),
                geometry: Conv2dGeometry(stride: stride, padding: kernel / 2), activation: .relu)
            let x = Tensor(normal: [batch, 16, size, size], generator: &generator)
            let plain = try layer(Variable(x)).value
            let major = try layer(Variable(x.channelMajor())).value
            #expect(major.isChannelMajor, "\(kernel)x\(kernel) stride \(stride)")
            #expect(
                toleranceFailure(major.channelMajorToNCHW(), plain, rtol: 1e-5, atol: 1e-5) == nil,
                "\(kernel)x\(kernel) s\(stride) b\(batch)")
            let residual = Tensor(normal: plain.shape, generator: &generator)
            let unfused = try layer.fusedOutput(Variable(x), adding: Variable(residual), relu: true).value
            let fused = try layer.fusedOutput(
                Variable(x.channelMajor()), adding: Variable(residual.channelMajor()), relu: true
            ).value
            #expect(
                toleranceFailure(fused.channelMajorToNCHW(), unfused, rtol: 1e-5, atol: 1e-5) == nil,
                "residual \(kernel)x\(kernel) stride \(stride) batch \(batch)")
        }
    }

    /// The dense layers of a deployed model (a 3x3 convolution and a depthwise one) in both layouts.
    @Test func denseLayersGiveInChannelMajorWhatTheyGiveInNCHW() throws {
        var generator = RandomGenerator(seed: 4)
        let x = Tensor(normal: [2, 8, 9, 9], generator: &generator)
        for (weightShape, groups) in [([6, 8, 3, 3], 1), ([8, 1, 3, 3], 8)] {
            let layer = FoldedConvolution(
                weight: Tensor(normal: weightShape, generator: &generator),
                bias: Tensor(normal: [weightShape[0]], generator: &generator),
                geometry: Conv2dGeometry(stride: 1, padding: 1, groups: groups), activation: .relu6)
            let plain = try layer(Variable(x)).value
            let major = try layer(Variable(x.channelMajor())).value
            #expect(major.isChannelMajor, "\(weightShape)")
            #expect(
                toleranceFailure(major.channelMajorToNCHW(), plain, rtol: 1e-5, atol: 1e-5) == nil, "\(weightShape)")
        }
    }
}
