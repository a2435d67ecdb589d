// `maxq results`: one line per configuration over many runs' results.csv rows (runs, mean and
// standard deviation of the final and best top-1), as text, CSV or Markdown. Runs that stopped
// before their end left no row: their logs are read (settings from the command line the log
// starts with, top-1 from its last epoch line) and shown on lines of their own, not finished.
import ArgumentParser
import Foundation
import MaxQFormats
import MaxQTraining

struct Results: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarise runs: mean and standard deviation of top-1 per configuration, from results.csv files.")

    @Argument(help: "results.csv files, or folders searched for them (runs' --save_dir).") var paths: [String]
    @Flag(help: "CSV output.") var csv = false
    @Flag(help: "Markdown table output.") var markdown = false
    @Option(help: "Also plot best top-1 against N:M per configuration into this SVG file.") var svg: String?

    func validate() throws {
        guard !(csv && markdown) else { throw ValidationError("--csv and --markdown exclude each other") }
    }

    func run() throws {
        do {
            let (finished, files) = try ResultsSummary.finishedRuns(in: paths)
            let (unfinished, logs) = try unfinishedRuns()
            let summary = try ResultsSummary(runs: finished + unfinished, files: files + logs, paths: paths)
            if let svg {
                let title = "best top-1 against N:M, \(summary.files.count) results files"
                try AtomicWrite.write(Data(summary.svg(title: title).utf8), to: svg)
            }
            print(csv ? summary.csv : markdown ? summary.markdown : summary.text, terminator: "")
        } catch {
            throw Failure(error)
        }
    }

    /// Runs whose log has no `done:` line: their settings parsed as `maxq train` parses them.
    private func unfinishedRuns() throws -> ([ResultsSummary.Run], [String]) {
        var runs: [ResultsSummary.Run] = [], logs: [String] = []
        for log in try ResultsSummary.files(under: paths, matching: { name, _ in name.hasSuffix(".log") }) {
            guard let text = try? String(contentsOfFile: log, encoding: .utf8),
                let first = text.split(whereSeparator: \.isNewline).first,
                let command = first.range(of: "] maxq train "),
                let train = try? Train.parse(first[command.upperBound...].split(separator: " ").map(String.init)),
                let run = ResultsSummary.unfinishedRun(log: text, config: train.config)
            else { continue }
            runs.append(run)
            logs.append(log)
        }
        return (runs, logs)
    }
}
