// `maxq demo`: the README's main job. Trains a small network on the built-in Synthetic
// dataset with MaxQ 2:4 and incremental sparsity (about two minutes on two cores), prints the
// final accuracy and shows `maxq inspect` of the result. No data to download.
import ArgumentParser
import Foundation

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Train c_resnet18 with SoftMaxQConv2DBN 2:4 on the built-in Synthetic dataset, then inspect the result.")

    @Option(name: .customLong("save_dir"), help: "Where the run is written.") var saveDir = "./runs/demo"
    @Option(help: "Epochs.") var epochs = 4

    func run() throws {
        let arguments = [
            "--set", "Synthetic", "-a", "c_resnet18", "--epochs", "\(epochs)", "-b", "64", "--lr", "0.05", "-j", "2",
            "--conv-bn-type", "SoftMaxQConv2DBN", "--N", "2", "--M", "4", "--increase-start", "0", "--increase-end",
            "\(max(epochs - 1, 1))",
            "--synthetic-images", "2000", "-p", "10", "--save_dir", saveDir,
        ]
        print("maxq train \(arguments.joined(separator: " "))")
        fflush(nil)
        let train = try Train.parse(arguments)
        try train.run()
        let files = (try? FileManager.default.contentsOfDirectory(atPath: saveDir)) ?? []
        let newest = files.filter { $0.hasPrefix("checkpoint.c_resnet18.") && $0.hasSuffix(".safetensors") }
            .max { modified("\(saveDir)/\($0)") < modified("\(saveDir)/\($1)") }
        guard let newest else { throw Failure("the demo run left no checkpoint in \(saveDir)") }
        print("\nmaxq inspect \(saveDir)/\(newest)")
        fflush(nil)
        let inspect = try Inspect.parse(["\(saveDir)/\(newest)"])
        try inspect.run()
    }

    private func modified(_ path: String) -> Date {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date) ?? .distantPast
    }
}
