// bf16 mixed precision (`Precision`): rounding, the oneDNN bf16 convolutions against their naive
// twin (rounded inputs, float32 loops), against float32 within the error one bf16 rounding of the
// inputs allows, and against PyTorch's CPU autocast (Scripts/make_autocast_fixtures.py).
import MaxQFormats
import MaxQTensor
import MaxQTestSupport
import Testing

@Suite struct MixedPrecisionTests {
    @Test func roundingToBFloat16IsToNearestEven() {
        #expect(Float(1).roundedToBFloat16 == 1)
        #expect(Float(bitPattern: 0x3F80_8000).roundedToBFloat16 == 1)  // tie, even below
        #expect(Float(bitPattern: 0x3F81_8000).roundedToBFloat16 == Float(bitPattern: 0x3F82_0000))  // tie, even above
        #expect(Float(bitPattern: 0x3F80_8001).roundedToBFloat16 == Float(bitPattern: 0x3F81_0000))
        #expect(Float(-0.0).roundedToBFloat16.bitPattern == Float(-0.0).bitPattern)
        #expect(Float.greatestFiniteMagnitude.roundedToBFloat16 == .infinity)
        #expect(Float.nan.roundedToBFloat16.isNaN && Float.infinity.roundedToBFloat16 == .infinity)
        #expect(Float(0.1).roundedToBFloat16 == Float(bitPattern: 0x3DCD_0000))
    }

    /// Forward and both gradients: oneDNN's bf16 kernels against the naive twin (sums of exact
    /// products of the rounded inputs, so they differ by float32 summation order only); against
    /// float32 within the bound one rounding of each input gives, (2u + u^2) * sum |a| |b|, and
    /// within 1e-2 relative; against PyTorch's autocast within twice that plus the rounding of
    /// its bf16 output. And bf16 is really used: the result differs from float32.
    @Test(
        .enabled(if: Precision.cpuHasBFloat16, "oneDNN's bf16 kernels need AVX512_BF16"),
        arguments: ["conv_3x3", "conv_1x1_stride2", "conv_7x7_stem", "conv_depthwise"])
    func convolutionInBFloat16(_ name: String) throws {
        let f = try Fixtures.op("autocast_\(name)")
        let (x, w, dy) = (try f.tensor("x"), try f.tensor("w"), try f.tensor("dy"))
        let g = try f.tensor("geometry").labels
        let geometry = Conv2dGeometry(stride: g[0], padding: g[1], groups: g[2])
        let reference = ReferenceBackend.shared
        typealias Compute = (any Backend, Tensor, Tensor, Precision) throws -> Tensor
        let cases: [(String, Compute, Tensor, Tensor, Tensor)] = [
            ("y", { try $0.conv2d($1, $2, geometry, precision: $3) }, x, w, try f.tensor("y")),
            (
                "dx", { try $0.conv2dBackwardInput($1, $2, inputShape: x.shape, geometry, precision: $3) }, dy, w,
                try f.tensor("dx")
            ),
            (
                "dw", { try $0.conv2dBackwardWeight($1, $2, weightShape: w.shape, geometry, precision: $3) }, dy, x,
                try f.tensor("dw")
            ),
        ]
        for (what, compute, a, b, torch) in cases {
            let bf16 = try compute(cpu, a, b, .bf16)
            let fp32 = try compute(cpu, a, b, .fp32)
            let magnitude = try compute(reference, absolute(a), absolute(b), .fp32)  // sum |a| |b|
            let u = bf16Roundoff
            let twin = try compute(reference, a.on(.reference), b.on(.reference), .bf16)
            #expect(boundFailure(bf16, twin, bound: combine(magnitude, 1e-5)) == nil, "\(name) \(what) vs twin")
            let roundingBound = combine(magnitude, 2 * u + u * u + 1e-5)
            #expect(boundFailure(bf16, fp32, bound: roundingBound) == nil, "\(name) \(what) vs fp32")
            #expect(relativeL2(bf16, fp32) <= 1e-2, "\(name) \(what)")
            #expect(relativeL2(bf16, fp32) > 1e-6, "\(name) \(what): bf16 computed as float32")
            let torchBound = combine(magnitude, 2 * (2 * u + u * u) + 1e-5, absolute(torch), u)
            #expect(boundFailure(bf16, torch, bound: torchBound) == nil, "\(name) \(what) vs PyTorch autocast")
        }
    }

    /// The folded inference convolution (bias, fused ReLU) in bf16 against its twin.
    @Test(.enabled(if: Precision.cpuHasBFloat16, "oneDNN's bf16 kernels need AVX512_BF16"))
    func inferenceConvolutionInBFloat16() throws {
        let f = try Fixtures.op("autocast_conv_3x3")
        let (x, w) = (try f.tensor("x"), try f.tensor("w"))
        let bias = try Tensor(shape: [w.shape[0]], scalars: (0..<w.shape[0]).map { Float($0 % 5) - 2 })
        let geometry = Conv2dGeometry(stride: 1, padding: 1)
        let fast = try cpu.conv2dInference(x, w, bias: bias, geometry, activation: .relu, precision: .bf16)
        let twin = try ReferenceBackend.shared.conv2dInference(
            x.on(.reference), w.on(.reference), bias: bias, geometry, activation: .relu, precision: .bf16)
        let magnitude = try ReferenceBackend.shared.conv2d(absolute(x), absolute(w), geometry)
        let bound = combine(magnitude, 1e-5, Tensor(shape: magnitude.shape, repeating: 1), 1e-5)
        #expect(boundFailure(fast, twin, bound: bound) == nil)
        #expect(fast.scalars.contains(0) && fast.scalars.contains { $0 > 1 })
    }
}

/// Long reductions: a weight gradient summed over 32 x 32 x 32 positions. oneDNN's bf16 kernel
/// must sum in float32 throughout: against the float32 kernel on the same rounded inputs it may
/// differ by summation order only.
@Test(.enabled(if: Precision.cpuHasBFloat16, "oneDNN's bf16 kernels need AVX512_BF16"))
func longReductionsInBFloat16SumInFloat32() throws {
    var generator = RandomGenerator(seed: 21)
    let x = Tensor(normal: [32, 16, 32, 32], generator: &generator).roundedToBFloat16()
    let dy = Tensor(normal: [32, 32, 32, 32], generator: &generator).roundedToBFloat16()
    let w = Tensor(normal: [32, 16, 3, 3], generator: &generator).roundedToBFloat16()
    let geometry = Conv2dGeometry(stride: 1, padding: 1)
    let bf16 = try cpu.conv2dBackwardWeight(dy, x, weightShape: w.shape, geometry, precision: .bf16)
    let fp32 = try cpu.conv2dBackwardWeight(dy, x, weightShape: w.shape, geometry, precision: .fp32)
    let magnitude = try cpu.conv2dBackwardWeight(absolute(dy), absolute(x), weightShape: w.shape, geometry)
    #expect(boundFailure(bf16, fp32, bound: combine(magnitude, 1e-5)) == nil, "weight gradient")
    let dxBF16 = try cpu.conv2dBackwardInput(dy, w, inputShape: x.shape, geometry, precision: .bf16)
    let dxFP32 = try cpu.conv2dBackwardInput(dy, w, inputShape: x.shape, geometry, precision: .fp32)
    let dxMagnitude = try cpu.conv2dBackwardInput(absolute(dy), absolute(w), inputShape: x.shape, geometry)
    #expect(boundFailure(dxBF16, dxFP32, bound: combine(dxMagnitude, 1e-5)) == nil, "input gradient")
}
