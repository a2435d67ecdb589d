// `--amp bf16|bf16-fp32-grad|off` on the command line: a bf16 training run and its evaluation,
// the benchmarks, and the refusal on a CPU without AVX512_BF16.
import Foundation
import MaxQTensor
import Testing

@testable import maxq

@Suite struct MixedPrecisionCLITests {
    let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("maxq-amp-\(UUID().uuidString)")

    @Test(.enabled(if: Precision.cpuHasBFloat16, "this CPU has no AVX512_BF16"))
    func aBFloat16RunTrainsSavesAndEvaluates() throws {
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: temporary) }
        let common = [
            "--set", "Synthetic", "-a", "c_resnet18", "-b", "16", "--synthetic-images", "32", "--synthetic-classes",
            "4", "--save_dir", temporary.path, "-j", "2", "--amp", "bf16",
        ]
        let run = try maxq(["train", "--epochs", "1"] + common)
        #expect(run.status == 0, "\(run.err)")
        #expect(
            run.out.contains("] mixed precision: bf16 convolutions and classifier (float32 accumulation), bf16 input"))
        #expect(run.out.contains(" * Prec@1 ") && run.out.contains("done: last top-1"))
        let files = try FileManager.default.contentsOfDirectory(atPath: temporary.path)
        let checkpoint = try #require(files.first { $0.hasPrefix("checkpoint.") && $0.hasSuffix(".safetensors") })
        // The checkpoint is an ordinary float32 one: it evaluates with and without --amp.
        for amp in ["bf16", "off"] {
            let arguments =
                ["train", "-e", "--pretrained", "\(temporary.path)/\(checkpoint)"] + common.dropLast() + [amp]
            let evaluation = try maxq(arguments)
            #expect(evaluation.status == 0, "\(evaluation.err)")
            #expect(evaluation.out.contains(" * Prec@1 ") && evaluation.out.contains("missing keys: none"))
            #expect(evaluation.out.contains("mixed precision: bf16") == (amp == "bf16"))
        }
    }

    @Test(
        .enabled(if: Precision.cpuHasBFloat16, "this CPU has no AVX512_BF16"),
        arguments: [("train-step", "bf16"), ("train-step", "bf16-fp32-grad"), ("eval", "bf16")])
    func theModelBenchmarksRunInBFloat16(_ which: String, _ amp: String) throws {
        let run = try maxq([
            "bench", which, "-a", "c_resnet18", "-b", "4", "--classes", "10", "--iterations", "1", "--amp", amp,
        ])
        #expect(run.status == 0, "\(run.err)")
        #expect(run.out.contains(" amp=\(amp) ") && run.out.contains("_img_s="), "\(run.out)")
    }

    @Test func bf16IsRefusedOnACPUWithoutAVX512BF16() throws {
        #expect(try Amp.off.scope(cpuHasBFloat16: false).precision == .fp32)
        let autocast = try Amp.bf16.scope(cpuHasBFloat16: true)
        #expect(autocast.precision == .bf16 && autocast.inputGradients == .bf16)
        let float32Gradients = try Amp.bf16Float32Gradients.scope(cpuHasBFloat16: true)
        #expect(float32Gradients.precision == .bf16 && float32Gradients.inputGradients == .fp32)
        let error = #expect(throws: Failure.self) { try Amp.bf16.scope(cpuHasBFloat16: false) }
        #expect(error?.description.contains("AVX512_BF16") == true)
        let run = try maxq(["train", "--set", "Synthetic", "--amp", "fp16"])
        #expect(run.status != 0 && run.err.contains("--amp"), "\(run.err)")
    }
}
