// `maxq flops`: the FLOPs and parameter counts of the paper's tables for an architecture and N:M
// (the original compute_flops.py's convention), and those of this model or of a checkpoint
// (every zero weight skipped), counted from shapes without running the model.
import ArgumentParser
import Foundation
import MaxQInterchange
import MaxQModels
import MaxQSparsity

struct Flops: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "FLOPs and parameters: the original's convention for an N:M, and this model's (or a checkpoint's).")

    @Option(name: [.customShort("a"), .long], help: "Architecture.") var arch: Architecture = .resnet50
    @Option(name: .customLong("num-classes"), help: "Classes of the classifier.") var numClasses = 1000
    @OptionGroup var sparsity: SparsityOptions
    @Option(help: "A checkpoint to count (its masks and zeros); without one, every N:M unit is exactly N:M.")
    var pretrained: String?
    @Option(
        name: [.customLong("resolution"), .customLong("input-size")],
        help: "Input resolution (default: the architecture's).")
    var resolution: Int?
    @Flag(help: "Also list every convolution and linear layer: shape, N:M or dense and why, params, FLOPs.")
    var layers = false
    @Flag(help: "One JSON object instead of lines.") var json = false

    func validate() throws {
        guard numClasses >= 1 else { throw ValidationError("--num-classes must be at least 1") }
        if let resolution, !(8...4096).contains(resolution) {
            throw ValidationError("--resolution must be within 8 to 4096")
        }
    }

    func run() throws {
        do {
            var config = try sparsity.config()
            if pretrained == nil {
                config.schedule = try IncrementalSchedule(.linear, increaseStart: 0, increaseEnd: 0)
            }
            let model = try arch.build(classes: numClasses, sparsity: config)
            if let pretrained {
                try loadReporting(model, checkpoint: pretrained, architecture: arch)
            } else {
                try ConvBNUnit.recomputeMasks(of: model.units, forNextForward: false)
            }
            let resolution = resolution ?? arch.resolution
            let report = try CostReport(model, pattern: config.pattern, resolution: resolution)
            let pattern = "\(config.pattern.n):\(config.pattern.m)"
            if json {
                var object: [String: Any] = [
                    "arch": arch.rawValue, "N": config.pattern.n, "M": config.pattern.m, "resolution": resolution,
                    "flops_reference": report.referenceFLOPs, "params_reference": report.referenceParameters,
                    "flops": report.flops, "params": report.parameters,
                ]
                if layers { object["layers"] = report.layers.map(\.json) }
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            let counted =
                pretrained.map { "the checkpoint \(URL(fileURLWithPath: $0).lastPathComponent)" }
                ?? "this model, every N:M unit exactly \(pattern)"
            if layers { printLayers(report) }
            print("\(arch.rawValue) \(pattern), \(resolution)x\(resolution) input, \(numClasses) classes")
            print(
                String(
                    format: "flops_reference   %.4f G   (the original compute_flops.py's convention)",
                    report.referenceFLOPs / 1e9))
            print(String(format: "params_reference  %.2f M", report.referenceParameters / 1e6))
            print(String(format: "flops             %.4f G   (%@: zero weights skipped)", report.flops / 1e9, counted))
            print(String(format: "params            %.2f M", report.parameters / 1e6))
        } catch {
            throw Failure(error)
        }
    }

    private func printLayers(_ report: CostReport) {
        print(
            "layer".padding(toLength: 32, withPad: " ", startingAt: 0)
                + "shape".padding(toLength: 20, withPad: " ", startingAt: 0)
                + "params".leftPadded(10) + "MFLOPs".leftPadded(12) + "reference".leftPadded(12) + "  N:M or dense")
        for layer in report.layers {
            print(
                layer.name.padding(toLength: 32, withPad: " ", startingAt: 0)
                    + "\(layer.shape)".padding(toLength: 20, withPad: " ", startingAt: 0)
                    + "\(layer.parameters)".leftPadded(10)
                    + String(format: "%12.4f%12.4f  ", layer.flops / 1e6, layer.referenceFLOPs / 1e6) + layer.status)
        }
        print(
            "ReLU inputs".padding(toLength: 62, withPad: " ", startingAt: 0)
                + String(format: "%12.4f%12.4f", report.reluFLOPs / 1e6, report.reluFLOPs / 1e6))
    }
}

extension CostReport.Layer {
    fileprivate var json: [String: Any] {
        [
            "name": name, "shape": shape, "status": status, "params": parameters, "flops": flops,
            "flops_reference": referenceFLOPs,
        ]
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
