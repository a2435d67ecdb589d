// Masks against the original implementation's golden outputs, against the naive twin, and
// their defining properties.
import Foundation
import MaxQFormats
import MaxQSparsity
import MaxQTensor
import MaxQTestSupport
import Testing

struct GoldenCase: Decodable {
    let `case`: String
    let conv_bn_type: String
    let N: Int, M: Int
    let prune_schedule: String
    let epoch: Int, increase_start: Int, increase_end: Int
    let tau: Float

    var settings: MaskSettings {
        let schedule = try! IncrementalSchedule(
            PruneSchedule(rawValue: prune_schedule)!, increaseStart: increase_start, increaseEnd: increase_end)
        return MaskSettings(
            type: ConvBNType(rawValue: conv_bn_type)!, pattern: try! NMPattern(n: N, m: M),
            preserveRate: schedule.preserveRate(epoch: epoch), tau: tau)
    }

    static let all: [GoldenCase] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: Fixtures.path("masks/cases.json")))
        return try! JSONDecoder().decode([GoldenCase].self, from: data)
    }()
}

@Suite struct MaskTests {
    @Test(arguments: GoldenCase.all.map(\.case))
    func reproducesTheOriginalImplementation(_ name: String) throws {
        let golden = GoldenCase.all.first { $0.case == name }!
        let weights = try SafetensorsFile.read(path: Fixtures.path("masks/\(name).weights.safetensors"))
        let masks = try SafetensorsFile.read(path: Fixtures.path("masks/\(name).masks.safetensors"))
        var generator = RandomGenerator(seed: 0)
        for (layer, w) in weights.tensors {
            let expected = try masks.tensor(layer)
            let mask = try Masks.compute(w, golden.settings, name: layer, generator: &generator)
            for e in 0..<w.count {
                let (ours, theirs) = (mask[flat: e], expected[flat: e])
                #expect((ours == 0) == (theirs == 0), "\(layer)[\(e)]: zero pattern differs")
                #expect(abs(ours - theirs) <= 1e-6, "\(layer)[\(e)]: \(ours) vs \(theirs), |w| = \(abs(w[flat: e]))")
            }
        }
    }

    /// The registration of methods under the original's names: Hard* multiply the gradient by the
    /// mask, MaxQ* follow the incremental schedule, Dense has none.
    @Test func everyConvBNTypeNamesItsMethod() {
        for type in ConvBNType.allCases {
            let name = type.rawValue
            guard let method = type.method else {
                #expect(name == "DenseConv2dBN")
                continue
            }
            #expect(method.straightThrough == !name.hasPrefix("Hard"), "\(name)")
            #expect(method.followsSchedule == name.contains("MaxQ"), "\(name)")
        }
    }

    @Test(arguments: [(2, 4, 0.0), (2, 4, 0.4), (1, 4, 0.0), (1, 16, 0.25), (4, 8, 0.9), (2, 8, 0.0)])
    func selectionKernelsMatchTheReferenceDevice(_ n: Int, _ m: Int, _ rate: Double) throws {
        var generator = RandomGenerator(seed: UInt64(n * 100 + m))
        for (shape, quantized) in [([8, 16, 3, 3], false), ([16, 32, 1, 1], false), ([8, 16, 3, 3], true)] {
            var w = Tensor(normal: shape, std: 0.05, generator: &generator)
            if quantized {  // many exact ties, like the golden weights
                w.withUnsafeMutableBufferPointer { v in for j in v.indices { v[j] = (v[j] * 64).rounded() / 64 } }
            }
            for type in ConvBNType.allCases where type.hasMask {
                let settings = MaskSettings(type: type, pattern: try NMPattern(n: n, m: m), preserveRate: rate)
                var (first, second) = (generator, generator)  // the random variant draws the same groups
                let fast = try Masks.compute(w, settings, generator: &first)
                let naive = try Masks.compute(w.on(.reference), settings, generator: &second)
                #expect(naive.device == .reference)
                #expect(toleranceFailure(fast, naive, rtol: 0, atol: 1e-6) == nil, "\(type) \(shape)")
            }
        }
    }

    @Test(arguments: [(2, 4), (1, 4), (1, 16), (4, 8)])
    func withPreserveRateZeroEveryGroupHasExactlyN(_ n: Int, _ m: Int) throws {
        var generator = RandomGenerator(seed: 5)
        let w = Tensor(normal: [8, 32, 3, 3], generator: &generator)
        for type in ConvBNType.allCases where type.hasMask {
            let mask = try Masks.compute(
                w, MaskSettings(type: type, pattern: try NMPattern(n: n, m: m)), generator: &generator)
            for o in 0..<8 {
                for p in 0..<9 {
                    for c in 0..<(32 / m) {
                        let kept = (0..<m).filter { mask[flat: (o * 32 + c * m + $0) * 9 + p] != 0 }.count
                        #expect(kept == n, "\(type) group (\(o), \(p), \(c))")
                    }
                }
            }
            // [1, 3) in exact arithmetic; in float32 sigmoid(x) rounds to 1 for x > 16.6, as in
            // the reference, so a weight far above both thresholds gets exactly 3.
            #expect(mask.scalars.allSatisfy { $0 == 0 || ($0 >= 1 && $0 <= 3) }, "\(type)")
            if [.softSRSTE, .hardSRSTE].contains(type) { #expect(mask.scalars.allSatisfy { $0 == 0 || $0 == 1 }) }
        }
    }

    @Test(arguments: [ConvBNType.softMaxQ, .softMaxQInverse, .softMaxQRandom])
    func denseGroupCountIsFloorOfRateTimesGroups(_ type: ConvBNType) throws {
        var generator = RandomGenerator(seed: 6)
        let w = Tensor(normal: [6, 8, 3, 3], generator: &generator)
        let groups = 6 * 9 * 2
        let rate = 0.37
        let mask = try Masks.compute(
            w, MaskSettings(type: type, pattern: try NMPattern(n: 2, m: 4), preserveRate: rate), generator: &generator)
        var denseNorms: [Float] = [], sparseNorms: [Float] = []
        for o in 0..<6 {
            for p in 0..<9 {
                for c in 0..<2 {
                    let members = (0..<4).map { (o * 8 + c * 4 + $0) * 9 + p }
                    let norm = members.map { abs(w[flat: $0]) }.reduce(0, +)
                    if members.allSatisfy({ mask[flat: $0] != 0 }) {
                        denseNorms.append(norm)
                    } else {
                        sparseNorms.append(norm)
                    }
                }
            }
        }
        #expect(denseNorms.count == Int(rate * Double(groups)))
        if type == .softMaxQ { #expect(denseNorms.max()! <= sparseNorms.min()!) }
        if type == .softMaxQInverse { #expect(denseNorms.min()! >= sparseNorms.max()!) }
    }

    @Test func randomVariantIsSeeded() throws {
        var generator = RandomGenerator(seed: 1)
        let w = Tensor(normal: [4, 8, 3, 3], generator: &generator)
        let settings = MaskSettings(type: .softMaxQRandom, pattern: try NMPattern(n: 2, m: 4), preserveRate: 0.5)
        var a = RandomGenerator(seed: 9), b = RandomGenerator(seed: 9), c = RandomGenerator(seed: 10)
        let first = try Masks.compute(w, settings, generator: &a)
        #expect(first.scalars == (try Masks.compute(w, settings, generator: &b)).scalars)
        #expect(first.scalars != (try Masks.compute(w, settings, generator: &c)).scalars)
    }

    @Test func invalidSettingsAreRefused() throws {
        #expect(throws: SparsityError.invalidPattern(n: 5, m: 4)) { try NMPattern(n: 5, m: 4) }
        #expect(throws: SparsityError.invalidPattern(n: 0, m: 4)) { try NMPattern(n: 0, m: 4) }
        var generator = RandomGenerator(seed: 0)
        #expect(throws: SparsityError.notNMCompatible(name: "layer3", shape: [8, 6, 3, 3], m: 4)) {
            try Masks.compute(
                Tensor(zeros: [8, 6, 3, 3]), MaskSettings(type: .softMaxQ, pattern: try NMPattern(n: 2, m: 4)),
                name: "layer3", generator: &generator)
        }
    }
}
