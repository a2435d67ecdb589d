// `--amp bf16|bf16-fp32-grad|off`: mixed precision for training, evaluation, prediction and the
// model benchmarks (docs/mixed-precision.md). bf16 is PyTorch's CPU autocast (input gradients in
// bfloat16 too); bf16-fp32-grad keeps input gradients in float32, slower and, over five CIFAR seeds,
// no more accurate (docs/mixed-precision.md). Both need a CPU that multiplies bfloat16
// natively: without AVX512_BF16 they would be slower than float32, so they are refused rather than run.
import ArgumentParser
import MaxQTensor

enum Amp: String, ExpressibleByArgument, CaseIterable {
    case off, bf16
    case bf16Float32Gradients = "bf16-fp32-grad"

    /// The precisions this mode computes in, after checking that the CPU has them.
    func scope(cpuHasBFloat16: Bool = Precision.cpuHasBFloat16) throws -> AmpScope {
        guard self == .off || cpuHasBFloat16 else {
            throw Failure(
                "--amp \(rawValue) needs a CPU with AVX512_BF16 (this one has none: `maxq doctor` lists its features); "
                    + "use --amp off")
        }
        switch self {
        case .off: return AmpScope(precision: .fp32, inputGradients: .fp32)
        case .bf16: return AmpScope(precision: .bf16, inputGradients: .bf16)
        case .bf16Float32Gradients: return AmpScope(precision: .bf16, inputGradients: .fp32)
        }
    }
}

/// The precision scope (`Precision.run`) of an `--amp` mode.
struct AmpScope {
    var precision: Precision, inputGradients: Precision

    func run<R>(_ body: () throws -> R) throws -> R {
        try Precision.run(precision, inputGradients: inputGradients, body)
    }
}

struct AmpOption: ParsableArguments {
    @Option(
        help: """
            Mixed precision: bf16 (convolutions and classifier in bfloat16 with float32 accumulation, \
            as PyTorch's CPU autocast), bf16-fp32-grad (the same with input gradients in float32: slower) \
            or off. Both bf16 modes need a CPU with AVX512_BF16.
            """)
    var amp: Amp = .off

    /// The precisions `--amp` asks for, refused where the CPU lacks them.
    func scope() throws -> AmpScope { try amp.scope() }
}
