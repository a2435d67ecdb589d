// The tensor type, the random streams and the typed shape errors.
import Foundation
import MaxQTensor
import MaxQTestSupport
import Testing

@Suite struct TensorTests {
    @Test func copyOnWriteKeepsValuesIndependent() throws {
        let a = try Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
        var b = a
        b[flat: 0] = 10
        #expect(a.scalars == [1, 2, 3, 4])
        #expect(b.scalars == [10, 2, 3, 4])
    }

    /// Every position (in the 8-wide part and in the tail) and every kind of non-finite value is
    /// found; the largest finite values are finite.
    @Test func finitenessFindsEveryNonFiniteValue() throws {
        for count in [0, 1, 7, 8, 9, 33] {
            let finite = Tensor(shape: [count], repeating: .greatestFiniteMagnitude)
            #expect(finite.isAllFinite, "\(count) finite values")
            for position in 0..<count {
                for bad in [Float.infinity, -.infinity, .nan, -.nan] {
                    var t = finite
                    t[flat: position] = bad
                    #expect(!t.isAllFinite, "\(bad) at \(position) of \(count)")
                }
            }
        }
    }

    @Test func reshapeKeepsElementsAndRejectsWrongCounts() throws {
        let a = try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        #expect(try a.reshaped([3, 2]).scalars == a.scalars)
        #expect(throws: TensorError.shapeMismatch(op: "reshape", [2, 3], [4, 2])) { try a.reshaped([4, 2]) }
        #expect(throws: TensorError.elementCount(shape: [2, 2], count: 3)) {
            try Tensor(shape: [2, 2], scalars: [1, 2, 3])
        }
    }

    @Test func generatorMatchesThePublishedAlgorithm() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("xoshiro_seed42.json")))
        let expected = try JSONDecoder().decode([String: [String]].self, from: data.replacingSeed())["outputs"]!
        var generator = RandomGenerator(seed: 42)
        #expect(expected.map { UInt64($0)! } == (0..<expected.count).map { _ in generator.next() })
    }

    @Test func generatorStreamsAreReproducibleAndWellDistributed() {
        var a = RandomGenerator(seed: 7), b = RandomGenerator(seed: 7)
        let normals = (0..<20_000).map { _ in a.normal() }
        #expect(normals == (0..<20_000).map { _ in b.normal() })
        let mean = normals.reduce(0, +) / Float(normals.count)
        let variance = normals.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(normals.count)
        #expect(abs(mean) < 0.03 && abs(variance - 1) < 0.05)
        let uniforms = (0..<20_000).map { _ in a.uniform() }
        #expect(uniforms.allSatisfy { $0 >= 0 && $0 < 1 })
        #expect(abs(uniforms.reduce(0, +) / 20_000 - 0.5) < 0.01)
        var counts = [Int](repeating: 0, count: 6)
        for _ in 0..<60_000 { counts[a.integer(below: 6)] += 1 }
        #expect(counts.allSatisfy { abs($0 - 10_000) < 500 })
        let permutation = a.permutation(100)
        #expect(permutation.sorted() == Array(0..<100) && permutation != Array(0..<100))
    }

    @Test func generatorStateResumesTheStream() {
        var a = RandomGenerator(seed: 3)
        _ = (0..<5).map { _ in a.next() }
        var resumed = RandomGenerator(state: a.state)
        #expect((0..<5).map { _ in a.next() } == (0..<5).map { _ in resumed.next() })
    }

    /// A normal tensor holds exactly the values drawn one by one (its blocks computed in
    /// parallel), across block boundaries, and leaves the generator where one-by-one draws would.
    @Test func normalTensorsEqualSequentialDraws() {
        for count in [1, 4097, (1 << 15) * 2 + 123] {
            var (a, b) = (RandomGenerator(seed: 9), RandomGenerator(seed: 9))
            let tensor = Tensor(normal: [count], mean: 0.5, std: 2, generator: &a)
            let drawn = (0..<count).map { _ in b.normal(mean: 0.5, std: 2) }
            #expect(tensor.scalars == drawn, "\(count)")
            #expect(a.next() == b.next())
        }
    }

    @Test func wrongShapesRaiseTypedErrorsNamingBothShapes() {
        let x = Tensor(zeros: [2, 3, 8, 8])
        #expect(throws: TensorError.shapeMismatch(op: "conv2d (groups 1)", [2, 3, 8, 8], [4, 5, 3, 3])) {
            try cpu.conv2d(x, Tensor(zeros: [4, 5, 3, 3]), Conv2dGeometry(padding: 1))
        }
        #expect(throws: TensorError.shapeMismatch(op: "add", [2, 3, 8, 8], [2, 4, 1, 1])) {
            try cpu.add(x, Tensor(zeros: [2, 4, 1, 1]))
        }
        #expect(throws: TensorError.shapeMismatch(op: "linear", [2, 5], [3, 4])) {
            try cpu.linear(Tensor(zeros: [2, 5]), Tensor(zeros: [3, 4]), nil)
        }
        #expect(throws: TensorError.shapeMismatch(op: "batch_norm", [2, 3, 8, 8], [4])) {
            try cpu.batchNormTraining(x, weight: Tensor(zeros: [4]), bias: Tensor(zeros: [3]), eps: 1e-5)
        }
        #expect(throws: TensorError.shapeMismatch(op: "cross_entropy (logits vs labels)", [2, 3], [3])) {
            try cpu.crossEntropy(Tensor(zeros: [2, 3]), labels: [0, 1, 2], labelSmoothing: 0)
        }
        #expect(throws: TensorError.self) {
            try cpu.maxPool2d(Tensor(zeros: [2, 3]), kernel: 3, stride: 2, padding: 1)
        }
        let message = TensorError.shapeMismatch(op: "add", [2, 3], [4]).description
        #expect(message.contains("[2, 3]") && message.contains("[4]"))
    }
}

extension Data {
    /// The fixture stores the seed as a number beside the string outputs; keep only the outputs.
    fileprivate func replacingSeed() throws -> Data {
        let object = try JSONSerialization.jsonObject(with: self) as! [String: Any]
        return try JSONSerialization.data(withJSONObject: ["outputs": object["outputs"]!])
    }
}
