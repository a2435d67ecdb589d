// The fuzzers' corpus kept as regression fixtures (Tests/Fixtures/fuzz/TARGET: the smallest inputs
// that together reach every branch the fuzzing runs reached, chosen by libFuzzer's merge): each is
// replayed through the same reader calls as under the fuzzer (`maxq-fuzz TARGET FILE...`), which
// must end without a crash, however malformed the input.
import Foundation
import MaxQTestSupport
import Testing

@Suite struct FuzzCorpusTests {
    @Test(arguments: ["pickle", "zip", "safetensors", "jpeg", "png", "nm"])
    func corpusReplaysWithoutACrash(_ target: String) throws {
        let folder = Fixtures.path("fuzz/\(target)")
        let inputs = try FileManager.default.contentsOfDirectory(atPath: folder).sorted().map { "\(folder)/\($0)" }
        #expect(inputs.count >= 10)
        let run = try runBuiltTool("maxq-fuzz", [target] + inputs)
        #expect(run.status == 0, "\(run.err)")
        #expect(run.out.contains("\(target): \(inputs.count) inputs replayed without a crash"))
    }
}
