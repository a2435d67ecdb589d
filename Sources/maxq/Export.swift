// `maxq export`: a checkpoint into the compressed inference model (`.nm.safetensors`): every
// conv-bn unit folded, N:M units stored as kept values and packed positions; says which units
// stay dense and how much smaller the file is than the folded dense weights.
import ArgumentParser
import Foundation
import MaxQDeploy
import MaxQFormats
import MaxQModels

enum ExportFormat: String, ExpressibleByArgument, CaseIterable {
    case nm
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a checkpoint as a compressed N:M inference model (.nm.safetensors).")

    @Argument(help: "Checkpoint (.pth, .pth.tar or .safetensors).") var checkpoint: String
    @Option(name: [.customShort("a"), .long], help: "Architecture.") var arch: Architecture = .resnet18
    @Option(name: .customLong("num-classes"), help: "Classes of the checkpoint's classifier.") var numClasses = 1000
    @OptionGroup var sparsity: SparsityOptions
    @Option(help: "File format: nm (compressed N:M weights in safetensors).") var format: ExportFormat = .nm
    @Option(help: "Output file (MODEL.nm.safetensors).") var out: String

    func validate() throws {
        guard numClasses >= 1 else { throw ValidationError("--num-classes must be at least 1") }
        guard out.hasSuffix(".safetensors") else { throw ValidationError("--out must end in .safetensors") }
    }

    func run() throws {
        do {
            let config = try sparsity.config()
            let model = try arch.build(classes: numClasses, sparsity: config)
            try loadReporting(model, checkpoint: checkpoint, architecture: arch)
            let (exported, report) = try ExportedModel.export(
                model, architecture: arch, classes: numClasses, sparsity: config)
            let notNM = report.dense.filter { $0.cause == .notNM }
            for unit in notNM { note("\(unit.name) stays dense: \(unit.reason)") }
            if !notNM.isEmpty {
                note(
                    "the N:M patterns come from the checkpoint's masks or, where it has none, from the schedule at "
                        + "epoch 0 (--increase-start/--increase-end; --increase-end 0 makes every group N:M)")
            }
            let encoded = try exported.file.encoded()
            try AtomicWrite.write(encoded, to: out)
            let compressed = exported.units.filter { if case .nm = $0.weights { true } else { false } }.count
            print("wrote \(out): \(compressed) N:M layers compressed, \(exported.units.count - compressed) dense")
            let (dense, size) = (Double(exported.denseBytes), Double(encoded.count))
            print(
                String(
                    format: "dense fp32 %.2f MB, compressed %.2f MB, ratio %.3f", dense / 1e6, size / 1e6, size / dense)
            )
        } catch {
            throw Failure(error)
        }
    }
}
