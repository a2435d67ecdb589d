// The NCHW depthwise kernel a deployed model runs: its naive twin against oneDNN's grouped
// convolution, the kernel (through the folded layer) against the twin at every CPU level, and
// NaN kept through the fused ReLU.
import MaxQDeploy
import MaxQNN
import MaxQTensor
import MaxQTestSupport
import Testing

struct DepthwiseConvolutionTests {
    /// Random (C, 1, 3, 3) weights, bias and an NCHW input.
    func operands(channels: Int, _ input: [Int], generator: inout RandomGenerator) -> (Tensor, Tensor, Tensor) {
        (
            Tensor(normal: [channels, 1, 3, 3], generator: &generator),
            Tensor(normal: [channels], generator: &generator),
            Tensor(normal: input, generator: &generator)
        )
    }

    @Test(arguments: [1, 2])
    func referenceTwinEqualsTheGroupedConvolution(_ stride: Int) throws {
        var generator = RandomGenerator(seed: UInt64(40 + stride))
        for input in [[2, 5, 9, 7], [1, 3, 1, 4], [3, 2, 16, 16]] {
            let (w, bias, x) = operands(channels: input[1], input, generator: &generator)
            let geometry = Conv2dGeometry(stride: stride, padding: 1, groups: input[1])
            let dense = try x.backend.conv2dInference(x, w, bias: bias, geometry, activation: nil)
            let twin = ReferenceDepthwiseConvolution.conv2d(
                x, weight: w, bias: bias, stride: stride, lower: -.infinity, upper: .infinity)
            #expect(toleranceFailure(twin, dense, rtol: 1e-5, atol: 1e-5) == nil, "\(input) stride \(stride)")
        }
    }

    /// Planes of one pixel up to 112x112, rows narrower than a vector (the stride-1 form reads
    /// planes as one flat run), odd sizes, planes of more than 256 vectors (the masks are made for
    /// 256 at a time), stride 2 on odd and even sizes; every fused activation; NCHW and channel-major.
    @Test func kernelMatchesItsTwinAtEveryLevel() throws {
        defer { KernelLevel.use(.supported) }
        var generator = RandomGenerator(seed: 77)
        let cases: [(batch: Int, channels: Int, height: Int, width: Int, stride: Int)] = [
            (1, 1, 1, 1, 1), (2, 3, 1, 17, 1), (1, 4, 7, 7, 1), (2, 5, 14, 14, 1), (1, 3, 2, 40, 1),
            (3, 2, 5, 33, 1), (1, 2, 65, 70, 1), (1, 2, 112, 112, 1), (2, 5, 14, 14, 2), (1, 3, 13, 11, 2),
            (3, 2, 2, 1, 2), (1, 1, 1, 1, 2), (1, 2, 112, 112, 2), (2, 3, 7, 7, 2), (1, 2, 9, 67, 2),
        ]
        for c in cases {
            let (w, bias, x) = operands(
                channels: c.channels, [c.batch, c.channels, c.height, c.width], generator: &generator)
            let geometry = Conv2dGeometry(stride: c.stride, padding: 1, groups: c.channels)
            for activation in [nil, Activation.relu, .relu6, .hardswish] {
                let twin = twinOutput(activation) { lower, upper in
                    ReferenceDepthwiseConvolution.conv2d(
                        x, weight: w, bias: bias, stride: c.stride, lower: lower, upper: upper)
                }
                let layer = FoldedConvolution(weight: w, bias: bias, geometry: geometry, activation: activation)
                for level in KernelLevel.allCases where level <= .supported {
                    KernelLevel.use(level)
                    let fast = try layer(Variable(x)).value
                    #expect(
                        toleranceFailure(fast, twin, rtol: 1e-5, atol: 1e-5) == nil,
                        "\(c) \(String(describing: activation)) \(level)")
                    // The same planes read and written channel-major.
                    let major = try layer(Variable(x.channelMajor())).value
                    #expect(major.isChannelMajor, "\(c)")
                    #expect(
                        toleranceFailure(major.channelMajorToNCHW(), twin, rtol: 1e-5, atol: 1e-5) == nil,
                        "channel-major \(c) \(String(describing: activation)) \(level)")
                }
            }
        }
    }

    /// A NaN input pixel makes exactly the outputs whose taps read it NaN (ReLU fused), the others
    /// stay finite, at both strides and every level; a pixel on the plane's edge and one inside.
    @Test(arguments: [1, 2])
    func aNaNInputStaysNaNThroughTheReLU(_ stride: Int) throws {
        defer { KernelLevel.use(.supported) }
        var generator = RandomGenerator(seed: 6)
        let (w, bias, clean) = operands(channels: 2, [1, 2, 9, 20], generator: &generator)
        let layer = FoldedConvolution(
            weight: w, bias: bias, geometry: Conv2dGeometry(stride: stride, padding: 1, groups: 2), activation: .relu)
        let (rows, columns) = (8 / stride + 1, 19 / stride + 1)
        for (row, column) in [(0, 0), (4, 19), (5, 7)] {
            var x = clean
            x.withUnsafeMutableBufferPointer { $0[9 * 20 + row * 20 + column] = .nan }
            for level in KernelLevel.allCases where level <= .supported {
                KernelLevel.use(level)
                let y = try layer(Variable(x)).value.scalars
                for oy in 0..<rows {
                    for ox in 0..<columns {
                        let reads = abs(oy * stride - row) <= 1 && abs(ox * stride - column) <= 1
                        #expect(y[oy * columns + ox].isFinite, "channel 0 (\(oy), \(ox)) \(level)")
                        #expect(
                            y[(rows + oy) * columns + ox].isNaN == reads,
                            "NaN at (\(row), \(column)), output (\(oy), \(ox)), stride \(stride) \(level)")
                    }
                }
            }
        }
    }
}
