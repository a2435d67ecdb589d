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

    /// Two panels over the epochs, a marker per epoch: losses on a logarithmic axis (left, so a
    /// first loss of hundreds does not flatten the rest), top-1 accuracies and the N:M fraction in
    /// percent (right).
    public static func curvesSVG(_ rows: [EpochMetrics], title: String) -> String {
        let (width, height, pad) = (900.0, 380.0, 60.0)
        let panelWidth = (width - 3 * pad) / 2, panelHeight = height - 2 * pad
        let epochs = rows.map { Double($0.epoch) }
        let xRange = (epochs.min() ?? 0)...max(epochs.max() ?? 1, (epochs.min() ?? 0) + 1)
        let xTicks = SVGPanel.ticks(xRange, count: 8).filter { $0 == $0.rounded() }
        let losses = rows.flatMap { [$0.trainLoss, $0.valLoss] }.filter { $0 > 0 && $0.isFinite }
        let lossRange = pow(10, floor(log10(losses.min() ?? 0.1)))...pow(10, ceil(log10(max(losses.max() ?? 1, 1e-6))))
        let lossPanel = SVGPanel(
            left: pad, top: pad, width: panelWidth, height: panelHeight, x: xRange,
            y: lossRange.lowerBound...max(lossRange.upperBound, lossRange.lowerBound * 10), logY: true)
        let accuracyPanel = SVGPanel(
            left: 2 * pad + panelWidth, top: pad, width: panelWidth, height: panelHeight, x: xRange, y: 0...100)
        func points(_ value: (EpochMetrics) -> Double) -> [(x: Double, y: Double)] {
            rows.map { (Double($0.epoch), value($0)) }
        }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
        svg += "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"\(pad)\" y=\"20\" font-size=\"14\">\(title)</text>\n"
        svg += lossPanel.frame(
            xTicks: xTicks, yTicks: SVGPanel.logTicks(lossPanel.yRange), xTitle: "epoch", yTitle: "loss (log scale)")
        svg += lossPanel.series(points(\.trainLoss), color: "#1f77b4")
        svg += lossPanel.series(points(\.valLoss), color: "#ff7f0e")
        svg += accuracyPanel.frame(
            xTicks: xTicks, yTicks: [0, 25, 50, 75, 100], xTitle: "epoch", yTitle: "top-1 % and N:M groups % (dashed)")
        svg += accuracyPanel.series(points(\.trainTop1), color: "#1f77b4")
        svg += accuracyPanel.series(points(\.valTop1), color: "#ff7f0e")
        svg += accuracyPanel.series(points { 100 * $0.nmFraction }, color: "#2ca02c", dash: true)
        svg += "<text x=\"\(pad)\" y=\"\(height - 8)\" fill=\"#1f77b4\">train</text>"
        svg += "<text x=\"\(pad + 50)\" y=\"\(height - 8)\" fill=\"#ff7f0e\">validation</text>"
        svg += "<text x=\"\(pad + 130)\" y=\"\(height - 8)\" fill=\"#2ca02c\">fraction of N:M groups</text>\n</svg>\n"
        return svg
    }
}
