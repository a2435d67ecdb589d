// Results over many runs: the results.csv rows runs append, grouped by configuration (arch, data
// set, conv-bn type, N:M, schedule, epochs), with the mean and standard deviation of the final
// and best top-1 per configuration, as the original's `scripts/show_results.py` reports them.
import Foundation

public struct ResultsSummary: Sendable {
    /// What makes two runs the same experiment (seeds and dates differ).
    public struct Configuration: Hashable, Sendable, Comparable {
        public var arch: String, set: String, convBNType: String
        public var n: Int, m: Int
        public var schedule: String
        public var epochs: Int

        public static func < (a: Self, b: Self) -> Bool {
            let (x, y) = ((a.arch, a.set, a.convBNType), (b.arch, b.set, b.convBNType))
            return x != y ? x < y : (a.m, a.n, a.schedule, a.epochs) < (b.m, b.n, b.schedule, b.epochs)
        }
    }

    public struct Line: Sendable {
        public let configuration: Configuration
        public let runs: Int
        public let lastMean: Double, lastStd: Double
        public let bestMean: Double, bestStd: Double
    }

    public enum Problem: Error, CustomStringConvertible {
        case unreadable(path: String, reason: String)
        case noResults([String])

        public var description: String {
            switch self {
            case .unreadable(let path, let reason): "\(path): \(reason)"
            case .noResults(let paths): "no results.csv rows under \(paths.joined(separator: ", "))"
            }
        }
    }

    public let lines: [Line]
    /// The results.csv files read.
    public let files: [String]

    /// Every results.csv at or below `paths` (a file, or a folder searched recursively).
    public init(paths: [String]) throws(Problem) {
        var files: [String] = []
        for path in paths {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
                throw .unreadable(path: path, reason: "no such file or folder")
            }
            guard isFolder.boolValue else {
                files.append(path)
                continue
            }
            let found =
                FileManager.default.enumerator(atPath: path)?.compactMap { $0 as? String }
                .filter { $0 == "results.csv" || $0.hasSuffix("/results.csv") }.sorted() ?? []
            files += found.map { "\(path)/\($0)" }
        }
        var runs: [Configuration: [(last: Double, best: Double)]] = [:]
        for file in files {
            for run in try Self.rows(of: file) { runs[run.configuration, default: []].append((run.last, run.best)) }
        }
        guard !runs.isEmpty else { throw .noResults(paths) }
        lines = runs.keys.sorted().map { configuration in
            let values = runs[configuration]!
            let (last, best) = (Self.meanAndStd(values.map(\.last)), Self.meanAndStd(values.map(\.best)))
            return Line(
                configuration: configuration, runs: values.count, lastMean: last.mean, lastStd: last.std,
                bestMean: best.mean, bestStd: best.std)
        }
        self.files = files
    }

    /// The rows of one results.csv, columns found by name (any order, extra columns ignored).
    static func rows(of file: String) throws(Problem) -> [(configuration: Configuration, last: Double, best: Double)] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw .unreadable(path: file, reason: "cannot read it as text")
        }
        let lines = text.split(whereSeparator: \.isNewline).map {
            $0.split(separator: ",", omittingEmptySubsequences: false)
        }
        guard let header = lines.first?.map(String.init) else { return [] }
        let needed = [
            "N", "M", "arch", "set", "last_top1", "best_top1", "epochs", "conv_bn_type", "increase_start",
            "increase_end", "prune_schedule",
        ]
        var column: [String: Int] = [:]
        for name in needed {
            guard let index = header.firstIndex(of: name) else {
                throw .unreadable(path: file, reason: "no column '\(name)' in its header")
            }
            column[name] = index
        }
        return try lines.dropFirst().enumerated().map { (offset, fields) throws(Problem) in
            func field(_ name: String) -> String {
                fields.indices.contains(column[name]!) ? String(fields[column[name]!]) : ""
            }
            guard let n = Int(field("N")), let m = Int(field("M")), let epochs = Int(field("epochs")),
                let last = Double(field("last_top1")), let best = Double(field("best_top1"))
            else {
                throw .unreadable(path: file, reason: "row \(offset + 2) has no N, M, epochs or top-1 numbers")
            }
            let schedule = "\(field("prune_schedule")) \(field("increase_start"))-\(field("increase_end"))"
            let configuration = Configuration(
                arch: field("arch"), set: field("set"), convBNType: field("conv_bn_type"), n: n, m: m,
                schedule: schedule, epochs: epochs)
            return (configuration, last, best)
        }
    }

    /// Mean and sample standard deviation (n - 1; 0 for one run).
    static func meanAndStd(_ values: [Double]) -> (mean: Double, std: Double) {
        let mean = values.reduce(0, +) / Double(values.count)
        guard values.count > 1 else { return (mean, 0) }
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)
        return (mean, variance.squareRoot())
    }

    public static let columns = [
        "arch", "set", "conv_bn_type", "N:M", "schedule", "epochs", "runs", "last_top1_mean", "last_top1_std",
        "best_top1_mean", "best_top1_std",
    ]

    /// Each line's fields, in `columns` order.
    public var table: [[String]] {
        lines.map { line in
            let c = line.configuration
            return [c.arch, c.set, c.convBNType, "\(c.n):\(c.m)", c.schedule, "\(c.epochs)", "\(line.runs)"]
                + [line.lastMean, line.lastStd, line.bestMean, line.bestStd].map { String(format: "%.2f", $0) }
        }
    }

    public var csv: String { ([Self.columns] + table).map { $0.joined(separator: ",") }.joined(separator: "\n") + "\n" }

    public var markdown: String {
        let header = "| " + Self.columns.joined(separator: " | ") + " |\n"
        let rule = "|" + String(repeating: "---|", count: Self.columns.count) + "\n"
        return header + rule + table.map { "| " + $0.joined(separator: " | ") + " |\n" }.joined()
    }

    /// Aligned columns, top-1 as mean ± std.
    public var text: String {
        let head = ["arch", "set", "conv-bn type", "N:M", "schedule", "epochs", "runs", "last top-1", "best top-1"]
        let rows = table.map { Array($0[0..<7]) + ["\($0[7]) ± \($0[8])", "\($0[9]) ± \($0[10])"] }
        let widths = head.indices.map { i in ([head] + rows).map { $0[i].count }.max()! }
        return ([head] + rows).map { row in
            row.enumerated().map { i, value in value.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n") + "\n"
    }
}
