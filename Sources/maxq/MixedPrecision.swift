// `--amp bf16|off`: mixed precision for training, evaluation, prediction and the model
// benchmarks (docs/mixed-precision.md). bf16 needs a CPU that multiplies bfloat16 natively:
// without AVX512_BF16 it would be slower than float32, so it is refused rather than run.
import ArgumentParser
import MaxQTensor

enum Amp: String, ExpressibleByArgument, CaseIterable {
    case off, bf16

    /// The precision this mode computes in, after checking that the CPU has it.
    func precision(cpuHasBFloat16: Bool = Precision.cpuHasBFloat16) throws -> Precision {
        switch self {
        case .off: return .fp32
        case .bf16:
            guard cpuHasBFloat16 else {
                throw Failure(
                    "--amp bf16 needs a CPU with AVX512_BF16 (this one has none: `maxq doctor` lists its features); "
                        + "use --amp off")
            }
            return .bf16
        }
    }
}

struct AmpOption: ParsableArguments {
    @Option(help: "Mixed precision: bf16 (convolutions and classifier in bfloat16, CPUs with AVX512_BF16) or off.")
    var amp: Amp = .off

    /// The precision `--amp` asks for, refused where the CPU lacks it.
    func precision() throws -> Precision { try amp.precision() }
}
