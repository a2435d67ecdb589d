// The channel-blocked activation layout: conversions, the public accessors' NCHW order, and every
// kernel that reads the layout against the same kernel on NCHW.
import MaxQTensor
import MaxQTestSupport
import Testing

@Suite struct ChannelBlockTests {
    let cpu = CPUBackend.shared

    func random(_ shape: [Int], seed: UInt64, low: Float = -1) -> Tensor {
        var generator = RandomGenerator(seed: seed)
        return Tensor(uniform: shape, low: low, high: 1, generator: &generator)
    }

    func expectClose(_ a: Tensor, _ b: Tensor, _ tolerance: Float, _ what: String) {
        #expect(a.shape == b.shape, "\(what): shapes \(a.shape) and \(b.shape)")
        let error = relativeL2(a, b)
        #expect(error <= tolerance, "\(what): relative L2 \(error)")
    }

    @Test func conversionStoresSixteenChannelsPerPixelAndRoundTrips() throws {
        let x = random([2, 32, 3, 5], seed: 1)
        let blocked = x.inLayout(.channelBlocked)
        #expect(blocked.layout == .channelBlocked && blocked.shape == x.shape)
        // Value (n, c, h, w) sits at ((n * C/16 + c/16) * H * W + h * W + w) * 16 + c % 16.
        let (n, c, h, w) = (1, 21, 2, 4)
        let nchw = ((n * 32 + c) * 3 + h) * 5 + w
        #expect(blocked.storedScalars[((n * 2 + c / 16) * 15 + h * 5 + w) * 16 + c % 16] == x.scalars[nchw])
        #expect(blocked.inNCHW().layout == .nchw && blocked.inNCHW().scalars == x.scalars)
        // Every way in gives NCHW order.
        #expect(blocked.scalars == x.scalars && blocked[flat: nchw] == x[flat: nchw])
        #expect(blocked.withUnsafeBufferPointer { Array($0) } == x.scalars)
        let reshaped = try blocked.reshaped([2, 480])
        #expect(reshaped.scalars == x.scalars)
        #expect(blocked.firstValuePerChannel() == (0..<32).map { x[flat: $0 * 15] })
        var written = blocked
        written[flat: nchw] = 42
        #expect(written.scalars[nchw] == 42 && blocked.scalars == x.scalars)
        // Channels that are not a multiple of 16 stay NCHW.
        #expect(random([1, 24, 2, 2], seed: 2).inLayout(.channelBlocked).layout == .nchw)
    }

    /// Convolutions read and write blocks without changing a single value: oneDNN computes in the
    /// blocked layout either way, only the reorders around it go.
    @Test(arguments: [
        (input: [2, 16, 9, 9], weight: [32, 16, 3, 3], geometry: Conv2dGeometry(stride: 1, padding: 1)),
        (input: [3, 32, 8, 8], weight: [64, 32, 1, 1], geometry: Conv2dGeometry(stride: 2)),
        (input: [2, 3, 11, 11], weight: [16, 3, 7, 7], geometry: Conv2dGeometry(stride: 2, padding: 3)),
        (input: [2, 32, 6, 6], weight: [32, 1, 3, 3], geometry: Conv2dGeometry(stride: 1, padding: 1, groups: 32)),
        (input: [2, 32, 5, 5], weight: [24, 32, 1, 1], geometry: Conv2dGeometry()),
    ])
    func convolutionsGiveTheSameValuesInEitherLayout(
        input: [Int], weight: [Int], geometry: Conv2dGeometry
    ) throws {
        let x = random(input, seed: 3), w = random(weight, seed: 4)
        for precision in Precision.allCases where precision == .fp32 || Precision.cpuHasBFloat16 {
            let y = try cpu.conv2d(x, w, geometry, precision: precision)
            let blockedX = x.inLayout(.channelBlocked)
            let blockedY = try TensorLayout.run(.channelBlocked) { () throws(TensorError) in
                try cpu.conv2d(blockedX, w, geometry, precision: precision)
            }
            #expect(blockedY.layout == (weight[0] % 16 == 0 ? .channelBlocked : .nchw))
            #expect(blockedY.scalars == y.scalars, "\(precision) forward")
            let dy = random(y.shape, seed: 5)
            for inputPrecision in [precision, .fp32] {
                let plain = try cpu.conv2dBackward(
                    dy, input: x, weight: w, geometry, inputGradient: true, weightGradient: true,
                    precision: precision, inputGradientPrecision: inputPrecision)
                let blocked = try cpu.conv2dBackward(
                    dy.inLayout(blockedY.layout), input: blockedX, weight: w, geometry, inputGradient: true,
                    weightGradient: true, precision: precision, inputGradientPrecision: inputPrecision)
                #expect(blocked.input!.layout == blockedX.layout)
                #expect(blocked.input!.scalars == plain.input!.scalars, "\(precision)/\(inputPrecision) dx")
                #expect(blocked.weight!.scalars == plain.weight!.scalars, "\(precision)/\(inputPrecision) dw")
            }
        }
    }

    /// Batch norm sums in another order in blocks (four partial sums per channel and sample, not
    /// sixteen per sample), so it agrees to float32 rounding; its results keep the layout.
    @Test(arguments: [[4, 32, 7, 7], [2, 16, 1, 1], [3, 48, 5, 3]])
    func batchNormAgreesWithNCHW(shape: [Int]) throws {
        let x = random(shape, seed: 6, low: 0.5), dy = random(shape, seed: 7)
        let c = shape[1]
        let gamma = random([c], seed: 8, low: 0.5), beta = random([c], seed: 9)
        let blockedX = x.inLayout(.channelBlocked)
        for relu in [false, true] {
            let (y, saved) = try cpu.batchNormTraining(x, weight: gamma, bias: beta, eps: 1e-5, relu: relu)
            let (blockedY, blockedSaved) = try cpu.batchNormTraining(
                blockedX, weight: gamma, bias: beta, eps: 1e-5, relu: relu)
            #expect(blockedY.layout == .channelBlocked)
            expectClose(blockedSaved.mean, saved.mean, 1e-6, "mean")
            expectClose(blockedSaved.variance, saved.variance, 1e-5, "variance")
            expectClose(blockedY, y, 1e-5, "output, relu \(relu)")
            let plain = try cpu.batchNormBackward(dy, x, weight: gamma, saved: saved, reluOutput: relu ? y : nil)
            let blocked = try cpu.batchNormBackward(
                dy.inLayout(.channelBlocked), blockedX, weight: gamma, saved: saved, reluOutput: relu ? blockedY : nil)
            #expect(blocked.0.layout == .channelBlocked)
            expectClose(blocked.0, plain.0, 1e-5, "dx, relu \(relu)")
            expectClose(blocked.1, plain.1, 1e-5, "dgamma, relu \(relu)")
            expectClose(blocked.2, plain.2, 1e-5, "dbeta, relu \(relu)")
        }
        // Synchronised batch norm's two halves.
        let (_, saved) = try cpu.batchNormTraining(x, weight: gamma, bias: beta, eps: 1e-5)
        let plainSums = try cpu.batchNormGradientSums(dy, x, mean: saved.mean)
        let blockedSums = try cpu.batchNormGradientSums(dy.inLayout(.channelBlocked), blockedX, mean: saved.mean)
        for (a, b) in zip(blockedSums.sumDy + blockedSums.sumDyCentered, plainSums.sumDy + plainSums.sumDyCentered) {
            #expect(abs(a - b) <= 1e-4 * max(1, abs(b)))
        }
        let count = Double(shape[0] * shape[2] * shape[3])
        let dx = try cpu.batchNormInputGradient(
            dy, x, weight: gamma, saved: saved, sumDy: plainSums.sumDy, sumDyCentered: plainSums.sumDyCentered,
            count: count)
        let blockedDx = try cpu.batchNormInputGradient(
            dy.inLayout(.channelBlocked), blockedX, weight: gamma, saved: saved, sumDy: plainSums.sumDy,
            sumDyCentered: plainSums.sumDyCentered, count: count)
        #expect(blockedDx.layout == .channelBlocked && blockedDx.scalars == dx.scalars)
    }

    /// A residual block's last batch norm with the shortcut's addition (and the ReLU) in its passes:
    /// bit for bit the separate operations in blocks, and the reference's composition to rounding.
    /// Backward adds the gradients the output received (one, two or three) as backward would.
    @Test(arguments: [true, false])
    func batchNormAddingGivesTheNumbersOfItsParts(relu: Bool) throws {
        let shape = [3, 32, 5, 4]
        let x = random(shape, seed: 20, low: 0.5).inLayout(.channelBlocked)
        var residual = random(shape, seed: 21)
        let gamma = random([32], seed: 22, low: 0.5), beta = random([32], seed: 23)
        let (normalized, saved) = try cpu.batchNormTraining(x, weight: gamma, bias: beta, eps: 1e-5)
        // Sums of exactly 0 (the ReLU's kink) and a NaN, which both ways pass on.
        for i in [0, 7, 100] { residual[flat: i] = -normalized[flat: i] }
        residual[flat: 50] = .nan
        let fused = try cpu.batchNormNormalizeAdding(
            x, weight: gamma, bias: beta, saved: saved, residual: residual, relu: relu)
        let parts = relu ? try cpu.addReLU(normalized, residual) : try cpu.add(normalized, residual)
        #expect(fused.layout == .channelBlocked)
        #expect(differingBits(fused, parts) == 0)
        #expect(fused[flat: 0] == 0 && fused[flat: 50].isNaN)
        let reference = ReferenceBackend.shared
        let referenceSaved = BatchNormSaved(
            mean: saved.mean.on(.reference), invStd: saved.invStd.on(.reference), variance: saved.variance)
        let twin = try reference.batchNormNormalizeAdding(
            x.on(.reference), weight: gamma.on(.reference), bias: beta.on(.reference), saved: referenceSaved,
            residual: residual.on(.reference), relu: relu)
        #expect(toleranceFailure(fused, twin, rtol: 1e-5, atol: 1e-6) == nil)
        for count in 1...3 {
            let gradients = (0..<count).map { random(shape, seed: 30 + UInt64($0)).inLayout(.channelBlocked) }
            let (dx, dGamma, dBeta, dResidual) = try cpu.batchNormAddingBackward(
                gradients, x, weight: gamma, saved: saved, reluOutput: relu ? fused : nil)
            let sum = try cpu.sum(of: gradients)
            let g = relu ? cpu.activationBackward(.relu, sum, x: fused, y: fused) : sum
            let expected = try cpu.batchNormBackward(g, x, weight: gamma, saved: saved, reluOutput: nil)
            #expect(dx.layout == .channelBlocked && dResidual.layout == .channelBlocked)
            for (name, a, b) in [("dx", dx, expected.0), ("dgamma", dGamma, expected.1), ("dbeta", dBeta, expected.2)]
                + [("dresidual", dResidual, g)]
            {
                #expect(differingBits(a, b) == 0, "\(count) gradient(s): \(name)")
            }
            // The reference gates with the fast kernel's output, so that both pass the same entries.
            let twins = try reference.batchNormAddingBackward(
                gradients.map { $0.on(.reference) }, x.on(.reference), weight: gamma.on(.reference),
                saved: referenceSaved, reluOutput: relu ? fused.on(.reference) : nil)
            for (a, b) in [(dx, twins.0), (dGamma, twins.1), (dBeta, twins.2), (dResidual, twins.3)] {
                #expect(toleranceFailure(a, b, rtol: 1e-4, atol: 1e-5) == nil, "\(count) gradient(s) against the twin")
            }
        }
    }

    /// Pooling compares and sums each channel in the same order in both layouts: equal values.
    @Test func poolingGivesTheSameValuesInEitherLayout() throws {
        var x = random([2, 32, 9, 8], seed: 10)
        x[flat: 5] = x[flat: 6]  // a tie: the first maximum wins in both
        let blockedX = x.inLayout(.channelBlocked)
        let (y, argmax) = try cpu.maxPool2d(x, kernel: 3, stride: 2, padding: 1)
        let (blockedY, blockedArgmax) = try cpu.maxPool2d(blockedX, kernel: 3, stride: 2, padding: 1)
        #expect(blockedY.layout == .channelBlocked && blockedY.scalars == y.scalars)
        #expect(try cpu.maxPool2dValues(blockedX, kernel: 3, stride: 2, padding: 1).scalars == y.scalars)
        let dy = random(y.shape, seed: 11)
        let dx = cpu.maxPool2dBackward(dy, argmax: argmax, inputShape: x.shape)
        let blockedDx = cpu.maxPool2dBackward(dy.inLayout(.channelBlocked), argmax: blockedArgmax, inputShape: x.shape)
        #expect(blockedDx.layout == .channelBlocked && blockedDx.scalars == dx.scalars)
        #expect(try cpu.globalAveragePool(blockedX).scalars == cpu.globalAveragePool(x).scalars)
    }

    /// Element-wise kernels keep their first operand's layout and take the other in any layout;
    /// broadcasting reads NCHW.
    @Test func pointwiseKernelsKeepTheLayout() throws {
        let a = random([2, 16, 3, 3], seed: 12), b = random([2, 16, 3, 3], seed: 13)
        let blockedA = a.inLayout(.channelBlocked)
        let (sum, plainSum) = (try cpu.add(blockedA, b), try cpu.add(a, b))
        #expect(sum.layout == .channelBlocked && sum.scalars == plainSum.scalars)
        let relu = cpu.activation(.relu, blockedA)
        #expect(relu.layout == .channelBlocked && relu.scalars == cpu.activation(.relu, a).scalars)
        #expect(
            cpu.activationBackward(.relu, b, x: blockedA, y: relu).scalars
                == cpu.activationBackward(.relu, b, x: a, y: relu).scalars)
        let perChannel = random([1, 16, 1, 1], seed: 14)
        #expect(try cpu.multiply(blockedA, perChannel).scalars == cpu.multiply(a, perChannel).scalars)
        #expect(try cpu.sum(blockedA, toShape: [1, 16, 1, 1]).scalars == cpu.sum(a, toShape: [1, 16, 1, 1]).scalars)
        #expect(cpu.scale(blockedA, by: 3).scalars == cpu.scale(a, by: 3).scalars)
    }
}
