// A training step computes in channel-blocked activations (TrainStep): whole models forward and
// backward in that layout against NCHW, from the same weights and batch.
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor
import MaxQTestSupport
import Testing

@Suite struct ChannelBlockedStepTests {
    /// An ImageNet ResNet at half width (blocks everywhere but the stem's input, max pooling), MobileNet
    /// V2 (channel counts such as 24 that stay NCHW, residual additions) and V3 (squeeze-excitation's
    /// broadcasts, hard swish), with SoftMaxQ 2:4 masks.
    static let models: [(String, @Sendable () throws -> any Model)] = [
        (
            "resnet18/2",
            { try ResNet(.resnet18, classes: 10, sparsity: try softMaxQ(n: 2, m: 4), seed: 3, widthDivisor: 2) }
        ),
        (
            "mobilenet_v2",
            { try Architecture.mobilenetV2.build(classes: 10, sparsity: try softMaxQ(n: 2, m: 4), seed: 3) }
        ),
        (
            "mobilenet_v3_small",
            { try Architecture.mobilenetV3Small.build(classes: 10, sparsity: try softMaxQ(n: 2, m: 4), seed: 3) }
        ),
    ]

    /// Batch norm sums in another order in blocks, and a freshly initialised network carries that
    /// rounding into gradients that differ by up to about 1 % per parameter. So the blocked step is
    /// held to what rounding explains: its gradients are no further from NCHW's than those of the
    /// reference backend (plain loops, every sum in its own order) are, and its loss agrees to 1e-5.
    @Test(arguments: models.indices)
    func gradientsAgreeWithNCHWToFloat32Rounding(_ index: Int) throws {
        let (name, build) = Self.models[index]
        var generator = RandomGenerator(seed: 4)
        let images = Tensor(normal: [4, 3, 64, 64], generator: &generator)
        var runs: [(loss: Float, gradients: [Tensor])] = []
        for (layout, device) in [(TensorLayout.nchw, Device.cpu), (.channelBlocked, .cpu), (.nchw, .reference)] {
            // A model of its own for each run: its dropout draws the same masks.
            let model = try build()
            try ConvBNUnit.recomputeMasks(of: model.units, forNextForward: false)
            model.move(to: device)
            model.setTraining(true)
            let loss = try TensorLayout.run(layout) { () throws(TensorError) in
                try model(Variable(images.on(device))).crossEntropy(labels: [0, 1, 2, 3], labelSmoothing: 0.1)
            }
            try loss.backward()
            runs.append((loss.value.scalarValue, model.parameters.compactMap(\.grad)))
        }
        let (nchw, blocked, reference) = (runs[0], runs[1], runs[2])
        #expect(abs(blocked.loss - nchw.loss) <= 1e-5 * abs(nchw.loss), "\(name)")
        #expect(!nchw.gradients.isEmpty && blocked.gradients.count == nchw.gradients.count)
        #expect(blocked.gradients.allSatisfy { $0.layout == .nchw })
        /// The largest relative L2 distance from NCHW's gradients, over those not zero but for rounding.
        func distance(_ run: [Tensor]) -> Float {
            zip(run, nchw.gradients).filter { $0.1.scalars.contains { abs($0) > 1e-4 } }.map { relativeL2($0, $1) }
                .max() ?? .infinity
        }
        let (fromBlocked, fromReference) = (distance(blocked.gradients), distance(reference.gradients))
        #expect(fromBlocked <= max(fromReference, 1e-5), "\(name): blocked \(fromBlocked), reference \(fromReference)")
        // Not the same arithmetic: the blocked kernels ran.
        #expect(blocked.gradients.map(\.scalars) != nchw.gradients.map(\.scalars), "\(name)")
    }
}
