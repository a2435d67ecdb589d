// `maxq convert`: a checkpoint from one format to the other (safetensors <-> the reference's
// PyTorch `.pth.tar` layout), so models move between this toolkit and PyTorch scripts.
import ArgumentParser
import Foundation
import MaxQFormats

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a checkpoint between safetensors and PyTorch's format (by the output's extension).")

    @Argument(help: "Input checkpoint (.safetensors, .pth, .pth.tar, .pt).") var input: String
    @Option(help: "Output checkpoint; .safetensors writes safetensors, anything else PyTorch's zip format.") var out:
        String
    @Option(help: "Architecture name stored in a PyTorch checkpoint.") var arch = ""

    func run() throws {
        do {
            let state = try CheckpointFile.readStateDict(path: input)
            if out.hasSuffix(".safetensors") {
                try SafetensorsFile(tensors: state).write(path: out)
            } else {
                try TorchCheckpoint(stateDict: state, epoch: 0, arch: arch).write(path: out)
            }
            print("wrote \(state.count) tensors to \(out)")
        } catch {
            throw Failure(error)
        }
    }
}
