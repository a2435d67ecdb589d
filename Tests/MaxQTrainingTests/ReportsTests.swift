// The report files a run leaves: metrics.csv, results.csv (appended run after run), curves.svg.
import Foundation
import MaxQTraining
import Testing

@Suite struct ReportsTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("maxq-reports-\(UUID().uuidString)")
        .path

    static let rows = [
        EpochMetrics(
            epoch: 0, lr: 0.1, trainLoss: 2.25, trainTop1: 20, valLoss: 2, valTop1: 30.5, valTop5: 80,
            nmFraction: 0.5, seconds: 12.34),
        EpochMetrics(
            epoch: 1, lr: 0.05, trainLoss: 1.5, trainTop1: 45, valLoss: 1.25, valTop1: 50, valTop5: 90,
            nmFraction: 1, seconds: 11),
    ]

    @Test func metricsHoldOneRowPerEpoch() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Reports.writeMetrics(Self.rows, to: "\(directory)/metrics.csv")
        #expect(
            try String(contentsOfFile: "\(directory)/metrics.csv", encoding: .utf8) == """
                epoch,lr,train_loss,train_top1,val_loss,val_top1,val_top5,nm_fraction,seconds
                0,0.100000,2.2500,20.000,2.0000,30.500,80.000,0.5000,12.3
                1,0.050000,1.5000,45.000,1.2500,50.000,90.000,1.0000,11.0

                """)
    }

    /// A resumed run's metrics.csv keeps the epochs before the resume point.
    @Test func aResumedRunKeepsTheEarlierMetrics() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Reports.writeMetrics(Self.rows, to: "\(directory)/metrics.csv")
        #expect(Reports.readMetrics(from: "\(directory)/metrics.csv").map(\.valTop1) == [30.5, 50])
        let observer = ReportFilesObserver(config: TrainingConfig(saveDir: directory))
        try observer.observe(.resumed(path: "checkpoint", epoch: 0, bestTop1: 30.5))
        var redone = Self.rows[1]
        redone.valTop1 = 55
        try observer.observe(.epochFinished(redone, bestTop1: 55))
        let rows = Reports.readMetrics(from: "\(directory)/metrics.csv")
        #expect(rows.map(\.epoch) == [0, 1] && rows.map(\.valTop1) == [30.5, 55])
    }

    @Test func resultsGetTheHeaderOnceAndARowPerRun() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Reports.appendResult([("arch", "c_resnet18"), ("last_top1", "30.500")], to: "\(directory)/results.csv")
        try Reports.appendResult([("arch", "resnet50"), ("last_top1", "76.100")], to: "\(directory)/results.csv")
        #expect(
            try String(contentsOfFile: "\(directory)/results.csv", encoding: .utf8)
                == "arch,last_top1\nc_resnet18,30.500\nresnet50,76.100\n")
    }

    /// Five series with a marker per epoch; the first point of the training loss sits where its
    /// value puts it on the logarithmic loss axis (losses 1.25 to 2.25: the axis spans 1 to 10,
    /// 260 pixels high from y = 60); both panels have tick labels.
    @Test func curvesDrawEverySeriesToScale() {
        let svg = Reports.curvesSVG(Self.rows, title: "run")
        let polylines = svg.components(separatedBy: "<polyline").dropFirst()
        #expect(polylines.count == 5)
        let firstPoint = polylines.first?.components(separatedBy: "points=\"").last?.split(separator: " ").first
        let y = 60 + (1 - log10(2.25)) * 260
        #expect(firstPoint == Substring(String(format: "60.0,%.1f", y)), "\(String(describing: firstPoint))")
        #expect(svg.components(separatedBy: "<circle").count - 1 == 8)
        for label in [">1</text>", ">10</text>", ">0</text>", ">100</text>", ">epoch</text>", ">run</text>"] {
            #expect(svg.contains(label), "\(label)")
        }
    }
}
