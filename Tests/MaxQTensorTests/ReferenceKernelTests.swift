// The oneDNN convolution paths against the naive direct-loop twins, over many geometries.
import MaxQTensor
import MaxQTestSupport
import Testing

@Suite struct ReferenceKernelTests {
    /// (N, C, H, O, kernel, stride, padding, groups)
    static let geometries: [(Int, Int, Int, Int, Int, Int, Int, Int)] = [
        (2, 8, 10, 16, 3, 1, 1, 1), (1, 16, 11, 8, 3, 2, 1, 1), (2, 16, 6, 32, 1, 1, 0, 1),
        (1, 8, 9, 8, 1, 2, 0, 1), (2, 12, 7, 12, 3, 1, 1, 12), (1, 16, 9, 16, 3, 2, 1, 16),
        (1, 3, 20, 8, 7, 2, 3, 1), (2, 8, 5, 4, 3, 1, 1, 4), (1, 4, 8, 8, 5, 1, 2, 1),
    ]

    @Test(arguments: 0..<geometries.count)
    func convolutionMatchesNaiveTwin(_ index: Int) throws {
        let (n, c, h, o, k, s, p, g) = Self.geometries[index]
        var generator = RandomGenerator(seed: UInt64(index))
        let x = Tensor(normal: [n, c, h, h], generator: &generator)
        let w = Tensor(normal: [o, c / g, k, k], generator: &generator)
        let geometry = Conv2dGeometry(stride: s, padding: p, groups: g)
        let y = try cpu.conv2d(x, w, geometry)
        #expect(toleranceFailure(y, try ReferenceKernels.conv2d(x, w, geometry), rtol: 1e-4, atol: 1e-4) == nil)
        let dy = Tensor(normal: y.shape, generator: &generator)
        #expect(
            toleranceFailure(
                try cpu.conv2dBackwardInput(dy, w, inputShape: x.shape, geometry),
                try ReferenceKernels.conv2dBackwardInput(dy, w, inputShape: x.shape, geometry), rtol: 1e-4, atol: 1e-4)
                == nil)
        #expect(
            toleranceFailure(
                try cpu.conv2dBackwardWeight(dy, x, weightShape: w.shape, geometry),
                try ReferenceKernels.conv2dBackwardWeight(dy, x, weightShape: w.shape, geometry), rtol: 1e-4, atol: 1e-4
            ) == nil)
    }

    /// Batch norm's parts (sums, normalisation; backward's sums and input gradient) against their
    /// naive twins; composed with this process's own sums and count they give plain backward.
    @Test(arguments: [[2, 3, 5, 5], [1, 7, 1, 1], [4, 16, 3, 9], [3, 1, 11, 2]])
    func batchNormPartsMatchNaiveTwins(_ shape: [Int]) throws {
        var generator = RandomGenerator(seed: UInt64(shape.reduce(0, +)))
        let reference = ReferenceBackend.shared
        // A large mean: the shifted sums must not cancel.
        let x = try Tensor(shape: shape, scalars: Tensor(normal: shape, generator: &generator).scalars.map { $0 + 40 })
        let shift = Tensor(uniform: [shape[1]], low: 39, high: 41, generator: &generator)
        for s in [nil, shift] {
            let sums = try cpu.batchNormSums(x, shift: s), expected = try reference.batchNormSums(x, shift: s)
            #expect(sums.count == expected.count && sums.shift == expected.shift)
            for (a, b) in zip(sums.sum + sums.squares, expected.sum + expected.squares) {
                #expect(abs(a - b) <= 1e-5 * max(abs(b), 1))
            }
        }
        let (weight, bias) = (Tensor(normal: [shape[1]], generator: &generator), Tensor(zeros: [shape[1]]))
        let dy = Tensor(normal: shape, generator: &generator)
        guard shape[0] * shape[2] * shape[3] > 1 else { return }
        let (y, saved) = try cpu.batchNormTraining(x, weight: weight, bias: bias, eps: 1e-5, shift: shift)
        let naiveY = try reference.batchNormNormalize(x, weight: weight, bias: bias, saved: saved)
        #expect(toleranceFailure(y, naiveY, rtol: 1e-4, atol: 1e-4) == nil)
        let sums = try cpu.batchNormGradientSums(dy, x, mean: saved.mean)
        let expectedSums = try reference.batchNormGradientSums(dy, x, mean: saved.mean)
        for (a, b) in zip(sums.sumDy + sums.sumDyCentered, expectedSums.sumDy + expectedSums.sumDyCentered) {
            #expect(abs(a - b) <= 1e-4 * max(abs(b), 1))
        }
        let count = Double(shape[0] * shape[2] * shape[3])
        let dx = try cpu.batchNormInputGradient(
            dy, x, weight: weight, saved: saved, sumDy: sums.sumDy, sumDyCentered: sums.sumDyCentered, count: count)
        let naive = try reference.batchNormInputGradient(
            dy, x, weight: weight, saved: saved, sumDy: sums.sumDy, sumDyCentered: sums.sumDyCentered, count: count)
        #expect(toleranceFailure(dx, naive, rtol: 1e-4, atol: 1e-4) == nil)
        // One process: the parts are plain batch norm's backward, bit for bit.
        let (plain, _, _) = try cpu.batchNormBackward(dy, x, weight: weight, saved: saved)
        #expect(dx.scalars == plain.scalars)
    }

    /// Batch norm with ReLU fused into its passes gives batch norm then ReLU bit for bit, forward
    /// and backward, and its naive twin's numbers.
    @Test(arguments: [[3, 5, 7, 9], [2, 4, 4, 4], [1, 3, 1, 17]])
    func batchNormWithFusedReLUIsBatchNormThenReLU(_ shape: [Int]) throws {
        var generator = RandomGenerator(seed: 9)
        let x = Tensor(normal: shape, generator: &generator), dy = Tensor(normal: shape, generator: &generator)
        let (weight, bias) = (
            Tensor(normal: [shape[1]], generator: &generator), Tensor(normal: [shape[1]], generator: &generator)
        )
        let (plain, saved) = try cpu.batchNormTraining(x, weight: weight, bias: bias, eps: 1e-5)
        let relu = cpu.activation(.relu, plain)
        let (fused, _) = try cpu.batchNormTraining(x, weight: weight, bias: bias, eps: 1e-5, relu: true)
        #expect(fused.scalars == relu.scalars && fused.scalars.contains(0))
        let separate = try cpu.batchNormBackward(
            cpu.activationBackward(.relu, dy, x: plain, y: relu), x, weight: weight, saved: saved)
        let together = try cpu.batchNormBackward(dy, x, weight: weight, saved: saved, reluOutput: fused)
        #expect(together.0.scalars == separate.0.scalars)
        #expect(together.1.scalars == separate.1.scalars && together.2.scalars == separate.2.scalars)
        let reference = ReferenceBackend.shared
        let naiveY = try reference.batchNormNormalize(x, weight: weight, bias: bias, saved: saved, relu: true)
        #expect(toleranceFailure(fused, naiveY, rtol: 1e-4, atol: 1e-4) == nil)
        let naive = try reference.batchNormBackward(dy, x, weight: weight, saved: saved, reluOutput: naiveY)
        #expect(toleranceFailure(together.0, naive.0, rtol: 1e-4, atol: 1e-4) == nil)
        #expect(toleranceFailure(together.1, naive.1, rtol: 1e-4, atol: 1e-4) == nil)
    }

    /// Plans (oneDNN primitives) are cached per shape: a later call of the same shape must compute
    /// with its own tensors, not the memory the plan was first run on.
    @Test func aReusedPlanComputesWithTheNewCallsData() throws {
        var generator = RandomGenerator(seed: 9)
        let geometry = Conv2dGeometry(padding: 1)
        let (x1, w1) = (
            Tensor(normal: [3, 8, 7, 5], generator: &generator), Tensor(normal: [8, 8, 3, 3], generator: &generator)
        )
        let (x2, w2) = (
            Tensor(normal: [3, 8, 7, 5], generator: &generator), Tensor(normal: [8, 8, 3, 3], generator: &generator)
        )
        let first = try cpu.conv2d(x1, w1, geometry)
        let second = try cpu.conv2d(x2, w2, geometry)
        let dy = Tensor(normal: second.shape, generator: &generator)
        #expect(toleranceFailure(second, try ReferenceKernels.conv2d(x2, w2, geometry), rtol: 1e-4, atol: 1e-4) == nil)
        #expect(toleranceFailure(first, try ReferenceKernels.conv2d(x1, w1, geometry), rtol: 1e-4, atol: 1e-4) == nil)
        #expect(try cpu.conv2d(x1, w1, geometry).scalars == first.scalars, "the same call again gives the same bits")
        for (x, w) in [(x1, w1), (x2, w2)] {
            #expect(
                toleranceFailure(
                    try cpu.conv2dBackwardWeight(dy, x, weightShape: w.shape, geometry),
                    try ReferenceKernels.conv2dBackwardWeight(dy, x, weightShape: w.shape, geometry), rtol: 1e-4,
                    atol: 1e-4) == nil)
            #expect(
                toleranceFailure(
                    try cpu.conv2dBackwardInput(dy, w, inputShape: x.shape, geometry),
                    try ReferenceKernels.conv2dBackwardInput(dy, w, inputShape: x.shape, geometry), rtol: 1e-4,
                    atol: 1e-4) == nil)
        }
    }

    /// The classifier's matrix products, whose output columns are split across threads in blocks of 64:
    /// forward and both gradients against the naive loops, at sizes that split and that do not. (OpenBLAS's
    /// sums differ in the last bits between ways of splitting the columns, as between its own thread
    /// counts: a given thread count gives the same results every time.)
    @Test(arguments: [(5, 300, 200), (1, 64, 130), (7, 9, 3), (64, 130, 70)])
    func linearMatchesNaiveLoops(_ batch: Int, _ inputs: Int, _ outputs: Int) throws {
        var generator = RandomGenerator(seed: UInt64(batch * inputs + outputs))
        let reference = ReferenceBackend.shared
        let x = Tensor(normal: [batch, inputs], generator: &generator)
        let w = Tensor(normal: [outputs, inputs], generator: &generator)
        let b = Tensor(normal: [outputs], generator: &generator)
        let dy = Tensor(normal: [batch, outputs], generator: &generator)
        #expect(toleranceFailure(try cpu.linear(x, w, b), try reference.linear(x, w, b)) == nil)
        let (dx, dw, db) = cpu.linearBackward(dy, x, w)
        let (naiveX, naiveW, naiveB) = reference.linearBackward(dy, x, w)
        #expect(toleranceFailure(dx, naiveX) == nil && toleranceFailure(dw, naiveW) == nil)
        #expect(toleranceFailure(db, naiveB) == nil)
        #expect(try cpu.linear(x, w, b).scalars == (try cpu.linear(x, w, b)).scalars)
    }
}
