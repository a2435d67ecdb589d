// FLOPs and parameters: the original's convention against what the original's compute_flops.py
// itself printed (Scripts/make_flops_fixtures.py), and this model's counts against its non-zero weights.
import Foundation
import MaxQInterchange
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor
import MaxQTestSupport
import Testing

struct CostReportTests {
    static let fixtures: [String: [String: [Double]]] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: Fixtures.path("flops.json")))
        return try! JSONSerialization.jsonObject(with: data) as! [String: [String: [Double]]]
    }()

    @Test(arguments: [
        (Architecture.resnet34, 2, 4), (.resnet34, 1, 16), (.resnet50, 2, 4), (.resnet50, 1, 16), (.mobilenetV1, 1, 4),
        (.mobilenetV1, 2, 4), (.mobilenetV1, 1, 16), (.mobilenetV1, 2, 8),
    ])
    func referenceCountsEqualTheOriginalConvention(_ arch: Architecture, _ n: Int, _ m: Int) throws {
        let model = try arch.build(classes: 1000, sparsity: try softMaxQ(n: n, m: m))
        let report = try CostReport(model, pattern: try NMPattern(n: n, m: m), resolution: 224)
        let expected = try #require(Self.fixtures[arch.rawValue]?["\(n):\(m)"])
        #expect(abs(report.referenceFLOPs - expected[0]) <= 1e-9 * expected[0], "\(report.referenceFLOPs)")
        #expect(abs(report.referenceParameters - expected[1]) <= 1e-9 * expected[1], "\(report.referenceParameters)")
    }

    /// An exactly N:M model: every N:M unit keeps N of each M weights, everything else counts whole.
    @Test(arguments: [(Architecture.resnet18, 2, 4), (.mobilenetV2, 1, 16), (.cResnet18, 2, 8)])
    func parametersAreTheNonZeroWeights(_ arch: Architecture, _ n: Int, _ m: Int) throws {
        let model = try maskedModel(arch, n: n, m: m, seed: 4)
        let all = model.namedParameters(prefix: "").reduce(0) { $0 + $1.1.value.count }
        let pruned = model.units.filter { $0.1.mask != nil }.reduce(0) {
            $0 + $1.1.conv.weight.value.count / m * (m - n)
        }
        let report = try CostReport(model, pattern: try NMPattern(n: n, m: m), resolution: 32)
        #expect(report.parameters == Double(all - pruned))
        // Its FLOPs lie between the dense model's times N/M (every convolution N:M) and the dense count.
        let dense = try CostReport(
            try arch.build(classes: 10, sparsity: .dense), pattern: try NMPattern(n: 1, m: 1),
            resolution: 32)
        #expect(abs(dense.flops - dense.referenceFLOPs) <= 1e-6 * dense.referenceFLOPs)  // an init weight may be 0
        #expect(report.flops < dense.flops && report.flops > dense.flops * Double(n) / Double(m))
    }

    /// `--layers`: the totals are the layers' sums; exactly N:M units say their pattern, units that
    /// are not (yet) N:M say so with the count of overfull groups, the rest why they are dense.
    @Test(arguments: [(Architecture.mobilenetV3Small, 0), (.cResnet18, 0), (.cResnet18, 3)])
    func layersAddUpAndSayWhyTheyAreDense(_ arch: Architecture, _ increaseEnd: Int) throws {
        let model = try maskedModel(arch, n: 2, m: 4, increaseEnd: increaseEnd, seed: 2)
        let report = try CostReport(model, pattern: try NMPattern(n: 2, m: 4), resolution: 64)
        #expect(report.layers.reduce(report.reluFLOPs) { $0 + $1.flops } == report.flops)
        #expect(report.layers.reduce(report.reluFLOPs) { $0 + $1.referenceFLOPs } == report.referenceFLOPs)
        let status = Dictionary(uniqueKeysWithValues: report.layers.map { ($0.name, $0.status) })
        let nm = model.units.filter { $0.1.mask != nil }.map(\.0)
        #expect(!nm.isEmpty && status.count == report.layers.count)
        for name in nm {
            let text = status[name] ?? "missing"
            #expect(
                increaseEnd == 0
                    ? text == "2:4" : text.hasPrefix("dense: not 2:4, ") && text.hasSuffix(" groups keep more than 2"),
                "\(name): \(text)")
        }
        #expect(status[arch == .cResnet18 ? "conv1" : "features.0"] == "dense: stem (reads the image)")
        #expect(status[arch == .cResnet18 ? "fc" : "classifier.3"] == "dense: classifier")
        if arch == .mobilenetV3Small {
            #expect(status["features.1.block.0"] == "dense: depthwise")
            #expect(status["features.1.block.1.fc1"] == "dense: squeeze-excitation")
        }
    }
}
