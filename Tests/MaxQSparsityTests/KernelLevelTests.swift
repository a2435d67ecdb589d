// The C kernels at every instruction-set level this CPU has: same bits as each other, and the
// soft terms' exponential within its stated error.
import CKernels
import Foundation
import MaxQSparsity
import MaxQTensor
import Testing

struct KernelLevelTests {
    @Test func softMasksAreBitIdenticalAtEveryLevel() throws {
        let levels = KernelLevel.allCases.filter { $0 <= KernelLevel.supported }
        defer { KernelLevel.use(.supported) }
        var generator = RandomGenerator(seed: 21)
        // 3x3 and 1x1 (no position axis), row lengths that leave vector remainders, exact ties.
        for shape in [[16, 24, 3, 3], [24, 40, 1, 1], [8, 12, 5, 5]] {
            var w = Tensor(normal: shape, std: 0.05, generator: &generator)
            w.withUnsafeMutableBufferPointer { v in for j in stride(from: 0, to: v.count, by: 7) { v[j] = 0.03125 } }
            for type in [ConvBNType.softMaxQ, .softMaxQInverse] {
                let settings = MaskSettings(type: type, pattern: try NMPattern(n: 2, m: 4), preserveRate: 0.25)
                var masks: [[Float]] = []
                for level in levels {
                    KernelLevel.use(level)
                    #expect(KernelLevel.active == level)
                    var seeded = RandomGenerator(seed: 3)
                    masks.append(try Masks.compute(w, settings, generator: &seeded).scalars)
                }
                for (level, mask) in zip(levels, masks) {
                    #expect(mask.map(\.bitPattern) == masks[0].map(\.bitPattern), "\(type) \(shape) at \(level)")
                }
                #expect(masks[0].contains { $0 > 1 }, "soft terms present")
            }
        }
    }

    @Test func fastExpIsWithinTwoUlps() {
        var worst = 0.0
        for step in 0...175_000 {
            let x = Float(-87.3 + Double(step) * 0.001)
            let exact = Foundation.exp(Double(x))
            let ulp = Double(Float(exact).ulp)
            worst = max(worst, abs(Double(maxq_fast_exp(x)) - exact) / ulp)
        }
        #expect(worst <= 2, "worst error \(worst) ulp")
        #expect(maxq_fast_exp(-1000) == maxq_fast_exp(-87.3) && maxq_fast_exp(1000) == maxq_fast_exp(88.7))
    }
}
