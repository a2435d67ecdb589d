// The `maxq` command line: one subcommand per job, no default subcommand.
import ArgumentParser
import Foundation

@main
struct Maxq: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "maxq",
        abstract: "N:M sparse training and deployment of convolutional networks (MaxQ, SR-STE).",
        subcommands: [
            Train.self, Demo.self, Predict.self, Export.self, Inspect.self, Mask.self, Convert.self, Replay.self,
            Results.self, Flops.self, Bench.self, Doctor.self,
        ])
}

/// A failure of a command's work, reported by swift-argument-parser as one line
/// (`Error: <message>`) with exit status 1 (a `ValidationError` would add the usage text).
struct Failure: Error, CustomStringConvertible {
    let description: String

    init(_ problem: Any) {
        description = "\(problem)"
    }
}

/// Median wall time in milliseconds of `body` over `iterations` runs after one warm-up run.
func medianMilliseconds(iterations: Int, _ body: () throws -> Void) rethrows -> Double {
    try body()
    var times: [Double] = []
    for _ in 0..<iterations {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
    }
    return times.sorted()[times.count / 2]
}
