// `maxq results`: one line per configuration over many runs' results.csv rows (runs, mean and
// standard deviation of the final and best top-1), as text, CSV or Markdown.
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
            let summary = try ResultsSummary(paths: paths)
            if let svg {
                let title = "best top-1 against N:M, \(summary.files.count) results files"
                try AtomicWrite.write(Data(summary.svg(title: title).utf8), to: svg)
            }
            print(csv ? summary.csv : markdown ? summary.markdown : summary.text, terminator: "")
        } catch {
            throw Failure(error)
        }
    }
}
