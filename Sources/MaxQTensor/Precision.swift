// Mixed precision: which arithmetic convolutions and the classifier use. In `bf16` their forward
// products and their weight gradients read bfloat16 inputs (activations, weights, output
// gradients rounded) and sum in float32 with float32 results; their input gradients, which carry
// the backward pass from layer to layer, are bfloat16 too where the scope asks for it (as PyTorch's
// CPU autocast does, and `--amp bf16`: 13-17 % faster training, and after one CIFAR epoch from 0.75
// below to 3.1 above float32's top-1 over five seeds) and float32 otherwise (`--amp bf16-fp32-grad`).
// Every tensor kept between steps (weights, masks, optimizer state, batch-norm statistics) and
// every other operation stay float32. The precision is a scope, like `torch.autocast`: an
// operation recorded inside it runs its backward in the same precisions (docs/mixed-precision.md).
import CKernels

public enum Precision: String, Sendable, CaseIterable, CustomStringConvertible {
    case fp32, bf16

    public var description: String { rawValue }

    /// The precision operations recorded now compute in (`Precision.run`).
    @TaskLocal public static var current: Precision = .fp32
    /// The precision the input gradients of operations recorded now are computed in: float32
    /// unless a bf16 scope asks for bf16 gradients too.
    @TaskLocal public static var currentInputGradients: Precision = .fp32

    /// Runs `body` with operations computing in `precision`, their input gradients in
    /// `inputGradients` (never finer than `precision`: a float32 scope computes them in float32).
    public static func run<R, E: Error>(
        _ precision: Precision, inputGradients: Precision = .fp32, _ body: () throws(E) -> R
    ) throws(E) -> R {
        let gradients: Precision = precision == .bf16 ? inputGradients : .fp32
        let result: Result<R, E> = $current.withValue(precision) {
            $currentInputGradients.withValue(gradients) {
                do throws(E) { return .success(try body()) } catch { return .failure(error) }
            }
        }
        return try result.get()
    }

    /// Whether this CPU multiplies bfloat16 natively (AVX512_BF16); without it bf16 would be
    /// slower than float32, so the command line refuses it.
    public static var cpuHasBFloat16: Bool { maxq_cpu_has_avx512_bf16() != 0 }

    /// Peak bfloat16 multiply-add rate of one thread in GFLOP/s (a multiply-add counts as 2),
    /// from a tight loop of independent `vdpbf16ps`; nil without AVX512_BF16.
    public static func bfloat16PeakGFLOPS(seconds: Double = 0.2) -> Double? {
        let rate = maxq_bf16_peak_gflops(seconds)
        return rate > 0 ? rate : nil
    }
}

extension Float {
    /// The nearest bfloat16 (ties to even), as a float: the rounding oneDNN's reorders apply.
    /// NaN stays NaN; values beyond bfloat16's range become infinite.
    public var roundedToBFloat16: Float {
        let bits = bitPattern
        if isNaN { return Float(bitPattern: (bits | 0x0040_0000) & 0xFFFF_0000) }
        return Float(bitPattern: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000)
    }
}

extension Tensor {
    /// Every element rounded to bfloat16 (a copy on the same device).
    public func roundedToBFloat16() -> Tensor {
        var y = Tensor(uninitializedShape: shape, layout: layout)
        y.device = device
        let (source, destination) = (pointer, y.mutablePointer)
        for i in 0..<count { destination[i] = source[i].roundedToBFloat16 }
        return y
    }

    /// This tensor as `precision`'s kernels read it: itself for fp32, rounded for bf16.
    public func rounded(to precision: Precision) -> Tensor {
        precision == .bf16 ? roundedToBFloat16() : self
    }
}
