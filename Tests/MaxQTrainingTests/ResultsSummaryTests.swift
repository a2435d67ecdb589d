// `maxq results`: runs grouped by configuration, mean and sample standard deviation of top-1,
// columns found by name, unfinished runs from their logs, and one-line errors for what is not a
// results file.
import Foundation
import MaxQData
import MaxQModels
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
            summary.csv.split(separator: "\n")[2] == "resnet50,ImageNet,SoftMaxQConv2DBN,2:4,linear 0-90,120,yes,2,"
                + "77.00,1.41,78.00,1.41")
        #expect(summary.markdown.hasPrefix("| arch | set |") && summary.markdown.contains("| 1:4 |"))
        #expect(summary.text.contains("77.00 ± 1.41"))
        // One line through both N:M of the configuration, an error bar where runs differ.
        let svg = summary.svg(title: "runs")
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 1)
        #expect(svg.contains(">2:4 (2)</text>") && svg.contains(">1:4 (1)</text>"))
        #expect(svg.components(separatedBy: "stroke=\"#1f77b4\"/>").count - 1 == 1)
    }

    /// A log without its `done:` line: top-1 from the last epoch line, a configuration of its own.
    @Test func anUnfinishedRunComesFromItsLog() throws {
        let log = """
            [2026-01-01 10:00:00] maxq train --set Synthetic -a c_resnet18 --epochs 90
            [2026-01-01 10:10:00] => Epoch: 0, LR: 0.1000, Acc: 31.50%, Best Acc: 31.50%
            [2026-01-01 10:20:00] => Epoch: 1, LR: 0.0999, Acc: 30.25%, Best Acc: 31.50%

            """
        let config = TrainingConfig(set: .synthetic, arch: .cResnet18, epochs: 90)
        let run = try #require(ResultsSummary.unfinishedRun(log: log, config: config))
        #expect(run.last == 30.25 && run.best == 31.5 && !run.configuration.finished)
        #expect(run.configuration.arch == "c_resnet18" && run.configuration.epochs == 90)
        let done = log + "[2026-01-01 10:30:00] done: last top-1 30.25%, best top-1 31.50%; ...\n"
        #expect(ResultsSummary.unfinishedRun(log: done, config: config) == nil)
        let summary = try ResultsSummary(runs: [run], files: ["x.log"], paths: ["runs"])
        #expect(summary.csv.contains(",90,no,1,30.25,0.00,31.50,0.00"))
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
