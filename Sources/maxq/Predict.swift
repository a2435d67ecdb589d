// `maxq predict`: a checkpoint's top-5 classes for images, after the validation transform.
import ArgumentParser
import Foundation
import MaxQData
import MaxQDeploy
import MaxQFormats
import MaxQModels
import MaxQNN
import MaxQTensor

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify images with a checkpoint (validation transform, evaluation mode).")

    @Option(name: [.customShort("a"), .long], help: "Architecture.") var arch: Architecture = .resnet18
    @Option(help: "Checkpoint (.pth, .pth.tar or .safetensors) or exported model (.nm.safetensors).")
    var pretrained: String
    @Option(name: .customLong("num-classes"), help: "Classes of the checkpoint's classifier.") var numClasses = 1000
    @OptionGroup var sparsity: SparsityOptions
    @OptionGroup var amp: AmpOption
    @Option(
        help: "Inference engine: sparse (N:M kernels where they measure faster; the default for N:M models) or dense.")
    var engine: Engine?
    @Flag(help: "One JSON object per image: image, logits, top5.") var json = false
    @Argument(help: "JPEG or PNG images.") var images: [String]

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one image") }
        guard numClasses >= 1 else { throw ValidationError("--num-classes must be at least 1") }
    }

    func run() throws {
        do {
            let precision = try amp.scope()
            try precision.run { try predict() }
        } catch {
            throw Failure(error)
        }
    }

    private func predict() throws {
        let model: any Model
        if let exported = try ExportedModel.readIfExported(path: pretrained) {
            try check(exported)
            let sparse = (engine ?? .sparse) == .sparse
            // Each N:M layer keeps the sparse kernel where it measures faster than dense for one image.
            let sample = sparse ? Tensor(zeros: [1, 3, arch.resolution, arch.resolution]) : nil
            model = try exported.model(sparse: sparse, tunedOn: sample, path: pretrained).0
        } else {
            model = try arch.build(classes: numClasses, sparsity: try sparsity.config())
            try loadReporting(model, checkpoint: pretrained, architecture: arch)
            model.setTraining(false)
            if engine ?? (sparsity.convBNType.hasMask && sparsity.n < sparsity.m ? .sparse : .dense) == .sparse {
                _ = try deploySparse(model, batch: 1, resolution: arch.resolution) { note($0) }
            }
        }
        let forward = model.evaluation().forward
        let recipe = ImageRecipe(resolution: arch.resolution)
        for path in images {
            let image = try EncodedImage(path: path)
            var input = Tensor(uninitializedShape: [1, 3, recipe.resolution, recipe.resolution])
            try input.withUnsafeMutableBufferPointer { buffer in try recipe.validation(image, into: buffer.baseAddress!)
            }
            let logits = try forward(input).scalars
            let peak = logits.max() ?? 0
            let exps = logits.map { Foundation.exp(Double($0 - peak)) }
            let total = exps.reduce(0, +)
            let top = logits.indices.sorted { (logits[$0], -$0) > (logits[$1], -$1) }.prefix(5).map {
                ($0, exps[$0] / total)
            }
            if json {
                let object: [String: Any] = [
                    "image": path, "logits": logits.map(Double.init), "top5": top.map { [$0.0, $0.1] as [Any] },
                ]
                print(
                    String(
                        decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
                        as: UTF8.self))
            } else {
                print(path)
                for (index, probability) in top {
                    print(String(format: "  class %4d  %6.2f%%", index, 100 * probability))
                }
            }
        }
    }

    /// An exported model runs as it was exported: the model options must agree with it.
    private func check(_ exported: ExportedModel) throws {
        let given = [
            ("-a", arch.rawValue, exported.architecture.rawValue),
            ("--num-classes", "\(numClasses)", "\(exported.classes)"),
            ("--conv-bn-type", sparsity.convBNType.rawValue, exported.type.rawValue),
            ("--N/--M", "\(sparsity.n):\(sparsity.m)", "\(exported.pattern.n):\(exported.pattern.m)"),
        ]
        for (option, value, inFile) in given where value != inFile {
            throw Failure("\(pretrained) was exported as \(option) \(inFile), not \(value)")
        }
    }
}

/// Loads a checkpoint into `model`, noting missing and unexpected keys as PyTorch's `strict=False` reports them.
func loadReporting(_ model: any Model, checkpoint: String, architecture: Architecture) throws {
    let report = try model.load(checkpoint: checkpoint, architecture: architecture.rawValue)
    if !report.missing.isEmpty {
        note("missing keys (left as initialised): \(report.missing.joined(separator: ", "))")
    }
    if !report.unexpected.isEmpty {
        note("unexpected keys (ignored): \(report.unexpected.joined(separator: ", "))")
    }
}
