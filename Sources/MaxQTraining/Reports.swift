// What a run leaves besides checkpoints: metrics.csv (a row per epoch), curves.svg (loss,
// accuracy and the sparsity ramp at a glance) and a row of results.csv at the end.
import Foundation

public struct EpochMetrics: Sendable {
    public var epoch: Int
    public var lr: Double
    public var trainLoss: Double, trainTop1: Double
    public var valLoss: Double, valTop1: Double, valTop5: Double
    /// Fraction of groups that are N:M this epoch (MaxQ: 1 - preserve rate; SR-STE 1; dense 0).
    public var nmFraction: Double
    public var seconds: Double

    public init(
        epoch: Int, lr: Double, trainLoss: Double, trainTop1: Double, valLoss: Double, valTop1: Double, valTop5: Double,
        nmFraction: Double, seconds: Double
    ) {
        (self.epoch, self.lr, self.trainLoss, self.trainTop1) = (epoch, lr, trainLoss, trainTop1)
        (self.valLoss, self.valTop1, self.valTop5, self.nmFraction, self.seconds) = (
            valLoss, valTop1, valTop5, nmFraction, seconds
        )
    }
}

public enum Reports {
    public static func writeMetrics(_ rows: [EpochMetrics], to path: String) throws {
        var text = "epoch,lr,train_loss,train_top1,val_loss,val_top1,val_top5,nm_fraction,seconds\n"
        for r in rows {
            text += String(
                format: "%d,%.6f,%.4f,%.3f,%.4f,%.3f,%.3f,%.4f,%.1f\n",
                r.epoch, r.lr, r.trainLoss, r.trainTop1, r.valLoss, r.valTop1, r.valTop5, r.nmFraction, r.seconds)
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// The rows `writeMetrics` wrote (none when the file is absent; malformed rows are skipped).
    public static func readMetrics(from path: String) -> [EpochMetrics] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").dropFirst().compactMap { line in
            let f = line.split(separator: ",").compactMap { Double($0) }
            guard f.count == 9, let epoch = Int(exactly: f[0]) else { return nil }
            return EpochMetrics(
                epoch: epoch, lr: f[1], trainLoss: f[2], trainTop1: f[3], valLoss: f[4], valTop1: f[5], valTop5: f[6],
                nmFraction: f[7], seconds: f[8])
        }
    }

    /// Appends one row (with a header when the file is new).
    public static func appendResult(_ fields: [(String, String)], to path: String) throws {
        let exists = FileManager.default.fileExists(atPath: path)
        var text = exists ? "" : fields.map(\.0).joined(separator: ",") + "\n"
        text += fields.map(\.1).joined(separator: ",") + "\n"
        if exists, let handle = FileHandle(forWritingAtPath: path) {
            handle.seekToEndOfFile()
            handle.write(Data(text.utf8))
            try handle.close()
        } else {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
    }

    /// Two panels: losses (left) and top-1 accuracies with the N:M fraction (right).
    public static func curvesSVG(_ rows: [EpochMetrics], title: String) -> String {
        let (width, height, pad) = (900.0, 360.0, 50.0)
        let panel = (width - 3 * pad) / 2
        func x(_ i: Int, _ left: Double) -> Double {
            left + (rows.count > 1 ? Double(i) / Double(rows.count - 1) * panel : panel / 2)
        }
        func polyline(_ values: [Double], top: Double, left: Double, color: String, dash: Bool = false) -> String {
            let points = values.enumerated().map { i, v in
                String(format: "%.1f,%.1f", x(i, left), pad + (1 - min(max(v / top, 0), 1)) * (height - 2 * pad))
            }.joined(separator: " ")
            let pattern = dash ? " stroke-dasharray=\"6 4\"" : ""
            return "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(pattern) points=\"\(points)\"/>"
        }
        let maxLoss = max(rows.map { max($0.trainLoss, $0.valLoss) }.max() ?? 1, 1e-6) * 1.1
        let right = 2 * pad + panel
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
        svg += "font-family=\"sans-serif\" font-size=\"12\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"\(pad)\" y=\"20\" font-size=\"14\">\(title)</text>\n"
        for left in [pad, right] {
            svg += "<rect x=\"\(left)\" y=\"\(pad)\" width=\"\(panel)\" height=\"\(height - 2 * pad)\" "
            svg += "fill=\"none\" stroke=\"#999\"/>\n"
            svg += "<text x=\"\(left)\" y=\"\(height - pad + 16)\">epoch 0</text>"
            svg +=
                "<text x=\"\(left + panel - 50)\" y=\"\(height - pad + 16)\">epoch \(max(rows.count - 1, 0))</text>\n"
        }
        svg += String(format: "<text x=\"%.0f\" y=\"%.0f\">loss (top %.2f)</text>\n", pad, pad - 6, maxLoss)
        svg += polyline(rows.map(\.trainLoss), top: maxLoss, left: pad, color: "#1f77b4") + "\n"
        svg += polyline(rows.map(\.valLoss), top: maxLoss, left: pad, color: "#ff7f0e") + "\n"
        svg += "<text x=\"\(right)\" y=\"\(pad - 6)\">top-1 % (0-100) and N:M groups (dashed, 0-1)</text>\n"
        svg += polyline(rows.map(\.trainTop1), top: 100, left: right, color: "#1f77b4") + "\n"
        svg += polyline(rows.map(\.valTop1), top: 100, left: right, color: "#ff7f0e") + "\n"
        svg += polyline(rows.map(\.nmFraction), top: 1, left: right, color: "#2ca02c", dash: true) + "\n"
        svg += "<text x=\"\(pad)\" y=\"\(height - 8)\" fill=\"#1f77b4\">train</text>"
        svg += "<text x=\"\(pad + 50)\" y=\"\(height - 8)\" fill=\"#ff7f0e\">validation</text>"
        svg += "<text x=\"\(pad + 130)\" y=\"\(height - 8)\" fill=\"#2ca02c\">fraction of N:M groups</text>\n</svg>\n"
        return svg
    }
}
