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
        /// False for runs read from a log that never reached its end (no results.csv row).
        public var finished = true

        public static func < (a: Self, b: Self) -> Bool {
            let (x, y) = ((a.arch, a.set, a.convBNType), (b.arch, b.set, b.convBNType))
            let (u, v) = ((a.m, a.n, a.schedule, a.epochs), (b.m, b.n, b.schedule, b.epochs))
            return x != y ? x < y : u != v ? u < v : a.finished && !b.finished
        }
    }

    /// One run: its configuration, final and best top-1.
    public struct Run: Sendable {
        public let configuration: Configuration
        public let last: Double, best: Double
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
        let (runs, files) = try Self.finishedRuns(in: paths)
        try self.init(runs: runs, files: files, paths: paths)
    }

    /// `runs` grouped by configuration; `files` are where they came from.
    public init(runs: [Run], files: [String], paths: [String]) throws(Problem) {
        let grouped = Dictionary(grouping: runs, by: \.configuration)
        guard !grouped.isEmpty else { throw .noResults(paths) }
        lines = grouped.keys.sorted().map { configuration in
            let values = grouped[configuration]!
            let (last, best) = (Self.meanAndStd(values.map(\.last)), Self.meanAndStd(values.map(\.best)))
            return Line(
                configuration: configuration, runs: values.count, lastMean: last.mean, lastStd: last.std,
                bestMean: best.mean, bestStd: best.std)
        }
        self.files = files
    }

    /// The rows of every results.csv at or below `paths`, and those files.
    public static func finishedRuns(in paths: [String]) throws(Problem) -> (runs: [Run], files: [String]) {
        // A file named on the command line is read whatever its name (unless it is a log).
        let files = try Self.files(under: paths) { name, named in
            name == "results.csv" || named && !name.hasSuffix(".log")
        }
        var runs: [Run] = []
        for file in files { runs += try Self.rows(of: file) }
        return (runs, files)
    }

    /// Files at or below `paths` whose name `matches` (with whether the file was named itself
    /// rather than found in a folder).
    public static func files(
        under paths: [String], matching matches: (_ name: String, _ named: Bool) -> Bool
    ) throws(Problem) -> [String] {
        var files: [String] = []
        for path in paths {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
                throw .unreadable(path: path, reason: "no such file or folder")
            }
            guard isFolder.boolValue else {
                if matches(URL(fileURLWithPath: path).lastPathComponent, true) { files.append(path) }
                continue
            }
            let found =
                FileManager.default.enumerator(atPath: path)?.compactMap { $0 as? String }
                .filter { matches(URL(fileURLWithPath: $0).lastPathComponent, false) }.sorted() ?? []
            files += found.map { "\(path)/\($0)" }
        }
        return files
    }

    /// A run that stopped before its end, from its log (`=> Epoch: E, LR: .., Acc: A%, Best Acc: B%`
    /// lines; nil when the log has none, or when the run finished: its results.csv row counts).
    public static func unfinishedRun(log text: String, config: TrainingConfig) -> Run? {
        guard !text.contains("] done: ") else { return nil }
        let epochs = text.split(whereSeparator: \.isNewline).filter { $0.contains("] => Epoch: ") }
        guard let line = epochs.last, let acc = line.range(of: "Acc: "), let best = line.range(of: "Best Acc: "),
            let last = Double(line[acc.upperBound...].prefix { $0 != "%" }),
            let bestValue = Double(line[best.upperBound...].prefix { $0 != "%" })
        else { return nil }
        var configuration = Configuration(config)
        configuration.finished = false
        return Run(configuration: configuration, last: last, best: bestValue)
    }

    /// The rows of one results.csv, columns found by name (any order, extra columns ignored).
    static func rows(of file: String) throws(Problem) -> [Run] {
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
            return Run(configuration: configuration, last: last, best: best)
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
        "arch", "set", "conv_bn_type", "N:M", "schedule", "epochs", "finished", "runs", "last_top1_mean",
        "last_top1_std",
        "best_top1_mean", "best_top1_std",
    ]

    /// Each line's fields, in `columns` order.
    public var table: [[String]] {
        lines.map { line in
            let c = line.configuration
            return [
                c.arch, c.set, c.convBNType, "\(c.n):\(c.m)", c.schedule, "\(c.epochs)", c.finished ? "yes" : "no",
                "\(line.runs)",
            ]
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
        let head = [
            "arch", "set", "conv-bn type", "N:M", "schedule", "epochs", "finished", "runs", "last top-1", "best top-1",
        ]
        let rows = table.map { Array($0[0..<8]) + ["\($0[8]) ± \($0[9])", "\($0[10]) ± \($0[11])"] }
        let widths = head.indices.map { i in ([head] + rows).map { $0[i].count }.max()! }
        return ([head] + rows).map { row in
            row.enumerated().map { i, value in value.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n") + "\n"
    }
}

extension ResultsSummary {
    /// Best top-1 (mean, with a bar of one standard deviation each side) against the kept fraction
    /// N/M, one line per configuration with the N:M left out (arch, set, conv-bn type, schedule,
    /// epochs).
    public func svg(title: String) -> String {
        struct Family: Hashable { let arch, set, type, schedule: String; let epochs: Int }
        let families = Dictionary(grouping: lines) { line in
            let c = line.configuration
            return Family(arch: c.arch, set: c.set, type: c.convBNType, schedule: c.schedule, epochs: c.epochs)
        }
        let order = families.keys.sorted { "\($0.arch) \($0.type) \($0.set)" < "\($1.arch) \($1.type) \($1.set)" }
        let values = lines.flatMap { [$0.bestMean - $0.bestStd, $0.bestMean + $0.bestStd] }
        let low = max(0, ((values.min() ?? 0) - 2) / 5).rounded(.down) * 5
        let high = min(100, ((values.max() ?? 100) + 2) / 5).rounded(.up) * 5
        let panel = SVGPanel(
            left: 70, top: 50, width: 560, height: 320, x: 0...1, y: low...max(high, low + 5))
        let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1150\" height=\"420\" "
        svg += "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"70\" y=\"20\" font-size=\"14\">\(title)</text>\n"
        svg += panel.frame(
            xTicks: [0, 0.25, 0.5, 0.75, 1], yTicks: SVGPanel.ticks(panel.yRange),
            xTitle: "kept fraction N/M (1:16 = 0.0625, 1:4 = 0.25, 2:4 = 0.5)", yTitle: "best top-1 %")
        for (index, family) in order.enumerated() {
            let color = colors[index % colors.count]
            let points = families[family]!.sorted { $0.configuration.density < $1.configuration.density }
            svg += panel.series(points.map { ($0.configuration.density, $0.bestMean) }, color: color)
            for line in points where line.bestStd > 0 {
                let x = String(format: "%.1f", panel.x(line.configuration.density))
                let (top, bottom) = (panel.y(line.bestMean + line.bestStd), panel.y(line.bestMean - line.bestStd))
                svg += String(format: "<line x1=\"%@\" y1=\"%.1f\" x2=\"%@\" y2=\"%.1f\" ", x, top, x, bottom)
                svg += "stroke=\"\(color)\"/>\n"
            }
            for line in points {
                let c = line.configuration
                svg += String(
                    format: "<text x=\"%.1f\" y=\"%.1f\" fill=\"%@\" font-size=\"10\">%d:%d (%d)</text>\n",
                    panel.x(c.density) + 5, panel.y(line.bestMean) - 5, color, c.n, c.m, line.runs)
            }
            let label = "\(family.arch) \(family.type) \(family.set), \(family.epochs) epochs, \(family.schedule)"
            svg += "<text x=\"700\" y=\"\(60 + 18 * index)\" fill=\"\(color)\">\(label)</text>\n"
        }
        return svg + "<text x=\"700\" y=\"\(60 + 18 * order.count + 10)\" font-size=\"10\">"
            + "(runs) after each N:M; bars: one standard deviation</text>\n</svg>\n"
    }
}

extension ResultsSummary.Configuration {
    /// The fraction of weights kept, N/M (dense runs have N = M).
    var density: Double { Double(n) / Double(max(m, 1)) }
}

extension ResultsSummary.Configuration {
    /// The configuration a training run's settings describe (as its results.csv row would).
    public init(_ c: TrainingConfig) {
        self.init(
            arch: c.arch.rawValue, set: c.set.rawValue, convBNType: c.convBNType.rawValue, n: c.n, m: c.m,
            schedule: "\(c.pruneSchedule.rawValue) \(c.increaseStart)-\(c.increaseEnd)", epochs: c.epochs)
    }
}
