// `maxq results`: runs grouped by configuration, mean and sample standard deviation of top-1,
// columns found by name, and one-line errors for what is not a results file.
import Foundation
import MaxQTraining
import Testing

struct ResultsSummaryTests {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("results-\(UUID().uuidString)")

    func write(_ relative: String, _ text: String) throws {
        let url = folder.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: true, encoding: .utf8)
    }

    @Test func runsAreGroupedByConfiguration() throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        let header =
            "date,N,M,arch,set,last_top1,best_top1,epochs,seed,conv_bn_type,increase_start,increase_end,"
            + "prune_schedule\n"
        try write(
            "run1/results.csv",
            header + "d,2,4,resnet50,ImageNet,76.0,77.0,120,1,SoftMaxQConv2DBN,0,90,linear\n"
                + "d,1,4,resnet50,ImageNet,70.0,71.0,120,1,SoftMaxQConv2DBN,0,90,linear\n")
        // Another run of the first configuration, with the columns in another order.
        try write(
            "deeper/run2/results.csv",
            "arch,N,M,set,best_top1,last_top1,epochs,conv_bn_type,increase_start,increase_end,prune_schedule\n"
                + "resnet50,2,4,ImageNet,79.0,78.0,120,SoftMaxQConv2DBN,0,90,linear\n")
        let summary = try ResultsSummary(paths: [folder.path])
        #expect(summary.files.count == 2)
        #expect(summary.lines.map(\.runs) == [1, 2])
        let twoRuns = summary.lines[1]
        #expect(twoRuns.configuration.n == 2 && twoRuns.lastMean == 77 && twoRuns.bestMean == 78)
        #expect(abs(twoRuns.lastStd - 2.squareRoot()) < 1e-12 && summary.lines[0].lastStd == 0)
        #expect(
            summary.csv.split(separator: "\n")[2] == "resnet50,ImageNet,SoftMaxQConv2DBN,2:4,linear 0-90,120,2,"
                + "77.00,1.41,78.00,1.41")
        #expect(summary.markdown.hasPrefix("| arch | set |") && summary.markdown.contains("| 1:4 |"))
        #expect(summary.text.contains("77.00 ± 1.41"))
        // One line through both N:M of the configuration, an error bar where runs differ.
        let svg = summary.svg(title: "runs")
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 1)
        #expect(svg.contains(">2:4 (2)</text>") && svg.contains(">1:4 (1)</text>"))
        #expect(svg.components(separatedBy: "stroke=\"#1f77b4\"/>").count - 1 == 1)
    }

    @Test func whatIsNotAResultsFileIsOneLine() throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        try write("metrics.csv", "epoch,lr\n0,0.1\n")
        #expect { try ResultsSummary(paths: [folder.appendingPathComponent("metrics.csv").path]) } throws: {
            "\($0)".hasSuffix("metrics.csv: no column 'N' in its header")
        }
        try write("empty/other.txt", "")
        #expect { try ResultsSummary(paths: [folder.appendingPathComponent("empty").path]) } throws: {
            "\($0)".hasPrefix("no results.csv rows under")
        }
        #expect { try ResultsSummary(paths: ["/no/such/runs"]) } throws: {
            "\($0)" == "/no/such/runs: no such file or folder"
        }
    }
}
