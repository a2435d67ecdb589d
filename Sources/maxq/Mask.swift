// `maxq mask`: what MaxQ (or SR-STE) would make of a set of weights: the mask of every 4-D
// tensor of a safetensors file, under the same names.
import ArgumentParser
import Foundation
import MaxQFormats
import MaxQSparsity
import MaxQTensor

struct Mask: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute the N:M mask of every convolution weight in a safetensors file.")

    @Argument(help: "Weights (.safetensors).") var weights: String
    @Option(help: "Where to write the masks (.safetensors).") var out: String
    @OptionGroup var sparsity: SparsityOptions
    @Option(help: "Current epoch (0-based) for the incremental schedule.") var epoch = 0
    @Option(help: "Seed of the Random variant's choice of dense groups.") var seed: UInt64 = 42

    func validate() throws {
        guard sparsity.convBNType.hasMask else {
            throw ValidationError("\(ConvBNType.dense.rawValue) has no mask; choose an SR-STE or MaxQ type")
        }
        guard epoch >= 0 else { throw ValidationError("--epoch must be 0 or more") }
        let input = URL(fileURLWithPath: weights).standardizedFileURL.resolvingSymlinksInPath()
        guard input != URL(fileURLWithPath: out).standardizedFileURL.resolvingSymlinksInPath() else {
            throw ValidationError("--out \(out) is the input file; give another path, so that the weights are kept")
        }
    }

    func run() throws {
        do {
            try computeMasks()
        } catch {
            throw Failure(error)
        }
    }

    private func computeMasks() throws {
        let input = try SafetensorsFile.read(path: weights)
        let config = try sparsity.config()
        let settings = MaskSettings(
            type: config.type, pattern: config.pattern, preserveRate: config.schedule.preserveRate(epoch: epoch),
            tau: config.tau)
        var generator = RandomGenerator(seed: seed)
        var output = SafetensorsFile(metadata: [
            "conv_bn_type": config.type.rawValue, "N": "\(config.pattern.n)", "M": "\(config.pattern.m)",
            "epoch": "\(epoch)",
            "preserve_rate": "\(settings.preserveRate)", "tau": "\(config.tau)",
        ])
        for (name, tensor) in input.tensors {
            guard tensor.rank == 4 else {
                note("skipping '\(name)' \(tensor.shape): not a convolution weight")
                continue
            }
            let mask = try Masks.compute(tensor, settings, name: name, generator: &generator)
            output.tensors.append((name, mask))
            let zeros = mask.scalars.filter { $0 == 0 }.count
            let kept = mask.scalars.filter { $0 != 0 }
            print(
                String(
                    format: "%@ %@: %.1f%% zeros, kept values in [%.4f, %.4f]", name, "\(tensor.shape)",
                    100 * Double(zeros) / Double(max(mask.count, 1)), kept.min() ?? 0, kept.max() ?? 0))
        }
        guard !output.tensors.isEmpty else { throw ValidationError("\(weights) holds no 4-D convolution weights") }
        try output.write(path: out)
        print("wrote \(output.tensors.count) masks to \(out)")
    }
}

/// A remark on standard error that is not a failure.
func note(_ message: String) {
    FileHandle.standardError.write(Data("note: \(message)\n".utf8))
}
