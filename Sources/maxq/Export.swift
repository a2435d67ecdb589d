// `maxq export`: a checkpoint into the compressed inference model (`.nm.safetensors`: every
// conv-bn unit folded, N:M units stored as kept values and packed positions; says which units
// stay dense and how much smaller the file is than the folded dense weights), into ONNX, or into
// a plain torchvision state dict.
import ArgumentParser
import Foundation
import MaxQDeploy
import MaxQFormats
import MaxQInterchange
import MaxQModels
import MaxQSparsity

enum ExportFormat: String, ExpressibleByArgument, CaseIterable {
    case nm, onnx, torchvision
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a checkpoint as a compressed N:M inference model (.nm.safetensors), ONNX or torchvision.")

    @Argument(help: "Checkpoint (.pth, .pth.tar or .safetensors).") var checkpoint: String
    @Option(name: [.customShort("a"), .long], help: "Architecture.") var arch: Architecture = .resnet18
    @Option(name: .customLong("num-classes"), help: "Classes of the checkpoint's classifier.") var numClasses = 1000
    @OptionGroup var sparsity: SparsityOptions
    @Option(help: "File format: nm (compressed N:M weights in safetensors), onnx, torchvision (a state dict).")
    var format: ExportFormat = .nm
    @Option(help: "ONNX opset (13 to 21).") var opset = ONNXExport.defaultOpset
    @Flag(help: "torchvision: multiply each N:M weight by its mask (otherwise the raw weights).") var foldMask = false
    @Option(help: "Output file (MODEL.nm.safetensors, MODEL.onnx, MODEL.pth).") var out: String

    func validate() throws {
        guard numClasses >= 1 else { throw ValidationError("--num-classes must be at least 1") }
        let suffix = [ExportFormat.nm: ".safetensors", .onnx: ".onnx", .torchvision: ".pth"][format]!
        guard out.hasSuffix(suffix) else { throw ValidationError("--out must end in \(suffix) for --format \(format)") }
        guard ONNXExport.opsets.contains(opset) else {
            throw ValidationError("--opset \(opset) is not supported (13 to 21)")
        }
        let folder = URL(fileURLWithPath: out).deletingLastPathComponent().path
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
            throw ValidationError("--out: the folder \(folder) does not exist")
        }
    }

    func run() throws {
        do {
            let config = try sparsity.config()
            let model = try arch.build(classes: numClasses, sparsity: config)
            try loadReporting(model, checkpoint: checkpoint, architecture: arch)
            switch format {
            case .onnx: return try exportONNX(model, config)
            case .torchvision: return try exportTorchvision(model)
            case .nm: break
            }
            let (exported, report) = try ExportedModel.export(
                model, architecture: arch, classes: numClasses, sparsity: config)
            noteInexactUnits(report, stay: "stays dense")
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

    private func exportONNX(_ model: any Model, _ config: SparsityConfig) throws {
        let (proto, report) = try ONNXExport.model(
            model, architecture: arch, classes: numClasses, sparsity: config, opset: opset)
        noteInexactUnits(report, stay: "is not exactly N:M in the file")
        let encoded: Data = try proto.serializedBytes()
        try AtomicWrite.write(encoded, to: out)
        print(
            "wrote \(out): opset \(opset), \(proto.graph.node.count) nodes, \(proto.graph.initializer.count) "
                + String(format: "initializers, %.2f MB", Double(encoded.count) / 1e6))
    }

    private func exportTorchvision(_ model: any Model) throws {
        let state = try TorchvisionExport.stateDict(model, architecture: arch, foldMask: foldMask)
        try TorchCheckpoint(stateDict: state).writeStateDict(path: out)
        print("wrote \(out): \(state.count) tensors under torchvision's names\(foldMask ? ", masks folded in" : "")")
    }

    /// A note per unit that trained N:M but whose folded weights are not N:M, and where the patterns come from.
    private func noteInexactUnits(_ report: DeploymentReport, stay: String) {
        let notNM = report.dense.filter { $0.cause == .notNM }
        for unit in notNM { note("\(unit.name) \(stay): \(unit.reason)") }
        if !notNM.isEmpty {
            note(
                "the N:M patterns come from the checkpoint's masks or, where it has none, from the schedule at "
                    + "epoch 0 (--increase-start/--increase-end; --increase-end 0 makes every group N:M)")
        }
    }
}
