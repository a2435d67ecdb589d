// The hard N:M mask (SR-STE) and the MaxQ soft mask (ALGORITHM.md 2-3), computed with
// selection rather than sorting, one pass per axis, no per-step allocations beyond scratch.
import Foundation
import MaxQTensor

/// Everything a mask depends on besides the weight.
public struct MaskSettings: Sendable {
    public var type: ConvBNType
    public var pattern: NMPattern
    /// Fraction of groups kept dense this epoch (incremental schedule), MaxQ types only.
    public var preserveRate: Double
    public var tau: Float

    public init(type: ConvBNType, pattern: NMPattern, preserveRate: Double = 0, tau: Float = 0.01) {
        self.type = type
        self.pattern = pattern
        self.preserveRate = preserveRate
        self.tau = tau
    }
}

public enum Masks {
    /// The mask of weight `w` (O, I, kh, kw). `generator` drives the Random variant's choice of
    /// dense groups. Throws when I is not a multiple of M.
    public static func compute(
        _ w: Tensor, _ settings: MaskSettings, name: String = "weight", generator: inout RandomGenerator
    ) throws(SparsityError) -> Tensor {
        guard settings.pattern.fits(weightShape: w.shape) else {
            throw .notNMCompatible(name: name, shape: w.shape, m: settings.pattern.m)
        }
        var mask = Tensor(zeros: w.shape)
        if settings.pattern.isDense || !settings.type.hasMask {
            return Tensor(shape: w.shape, repeating: 1)
        }
        let layout = WeightLayout(w.shape, settings.pattern)
        w.withUnsafeBufferPointer { weights in
            mask.withUnsafeMutableBufferPointer { out in
                let l1 = UnsafeMutableBufferPointer<Float>.allocate(capacity: layout.groups)
                defer { l1.deallocate() }
                localMask(weights, out, l1, layout)
                guard settings.type.isMaxQ else { return }
                let dense = Int((settings.preserveRate * Double(layout.groups)).rounded(.down))
                if dense > 0 { makeGroupsDense(out, l1, count: dense, settings.type.denseGroupSelection, layout, &generator) }
                softTerms(weights, out, layout, settings.tau)
            }
        }
        return mask
    }

    /// Shape bookkeeping: O filters of I inputs and K = kh*kw positions; groups ordered as the
    /// reference orders them, (o, position, input chunk).
    struct WeightLayout {
        let outputs: Int, inputs: Int, positions: Int
        let n: Int, m: Int
        var chunks: Int { inputs / m }
        var groups: Int { outputs * positions * chunks }
        var count: Int { outputs * inputs * positions }

        init(_ shape: [Int], _ pattern: NMPattern) {
            (outputs, inputs, positions) = (shape[0], shape[1], shape[2] * shape[3])
            (n, m) = (pattern.n, pattern.m)
        }

        /// Flat index of member j of group (o, p, c).
        @inline(__always) func index(_ o: Int, _ p: Int, _ c: Int, _ j: Int) -> Int {
            ((o * inputs + c * m + j) * positions) + p
        }
    }

    /// Hard N:M: in each group the M-N smallest magnitudes (lower input channel first among
    /// equals) get 0, the others 1. Also records each group's L1 norm.
    static func localMask(
        _ w: UnsafeBufferPointer<Float>, _ out: UnsafeMutableBufferPointer<Float>, _ l1: UnsafeMutableBufferPointer<Float>,
        _ layout: WeightLayout
    ) {
        let (m, prunedPerGroup) = (layout.m, layout.m - layout.n)
        var magnitudes = [Float](repeating: 0, count: m)
        for o in 0..<layout.outputs {
            for p in 0..<layout.positions {
                for c in 0..<layout.chunks {
                    var sum: Float = 0
                    for j in 0..<m {
                        magnitudes[j] = abs(w[layout.index(o, p, c, j)])
                        sum += magnitudes[j]
                    }
                    l1[(o * layout.positions + p) * layout.chunks + c] = sum
                    for j in 0..<m {
                        // Rank of member j: how many members come before it in (magnitude, channel) order.
                        var rank = 0
                        for i in 0..<m where magnitudes[i] < magnitudes[j] || (magnitudes[i] == magnitudes[j] && i < j) {
                            rank += 1
                        }
                        out[layout.index(o, p, c, j)] = rank < prunedPerGroup ? 0 : 1
                    }
                }
            }
        }
    }

    /// Incremental sparsity: `count` groups get all M entries set to 1.
    static func makeGroupsDense(
        _ out: UnsafeMutableBufferPointer<Float>, _ l1: UnsafeMutableBufferPointer<Float>, count: Int,
        _ selection: DenseGroupSelection, _ layout: WeightLayout, _ generator: inout RandomGenerator
    ) {
        let groups = layout.groups
        var chosen = [Bool](repeating: count >= groups, count: groups)
        switch selection {
        case _ where count >= groups:
            break
        case .random:
            // Partial Fisher-Yates: the first `count` entries of a random permutation.
            var order = Array(0..<groups)
            for i in 0..<count {
                order.swapAt(i, i + generator.integer(below: groups - i))
                chosen[order[i]] = true
            }
        case .smallestL1, .largestL1:
            // Largest-first is smallest-first of the negated norms.
            let sign: Float = selection == .smallestL1 ? 1 : -1
            let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: groups)
            defer { scratch.deallocate() }
            let cut = AxisThreshold(length: groups, pruned: count, scratch: scratch) { sign * l1[$0] }
            for g in 0..<groups where cut.isPruned(sign * l1[g], g) { chosen[g] = true }
        }
        for o in 0..<layout.outputs {
            for p in 0..<layout.positions {
                for c in 0..<layout.chunks where chosen[(o * layout.positions + p) * layout.chunks + c] {
                    for j in 0..<layout.m { out[layout.index(o, p, c, j)] = 1 }
                }
            }
        }
    }

    /// mask = local * (1 + filter + position): sigmoid terms of each magnitude's distance to
    /// its filter's and its kernel position's thresholds, zero for the k smallest of each axis.
    static func softTerms(
        _ w: UnsafeBufferPointer<Float>, _ out: UnsafeMutableBufferPointer<Float>, _ layout: WeightLayout, _ tau: Float
    ) {
        let (outputs, inputs, positions) = (layout.outputs, layout.inputs, layout.positions)
        let filterLength = inputs * positions, positionLength = outputs * inputs
        let pattern = try! NMPattern(n: layout.n, m: layout.m)
        let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(filterLength, positionLength))
        defer { scratch.deallocate() }
        let filters = (0..<outputs).map { o in
            AxisThreshold(length: filterLength, pruned: pattern.prunedCount(of: filterLength), scratch: scratch) {
                abs(w[o * filterLength + $0])
            }
        }
        // 1x1 kernels have no position axis (its term is 0).
        let positionAxes = positions == 1 ? [] : (0..<positions).map { p in
            AxisThreshold(length: positionLength, pruned: pattern.prunedCount(of: positionLength), scratch: scratch) {
                abs(w[$0 * positions + p])
            }
        }
        for o in 0..<outputs {
            let filter = filters[o]
            for i in 0..<inputs {
                for p in 0..<positions {
                    let e = (o * inputs + i) * positions + p
                    guard out[e] != 0 else { continue }
                    let a = abs(w[e])
                    var value: Float = 1
                    if !filter.isPruned(a, i * positions + p) { value += fastSigmoid((a - filter.theta) / tau) }
                    if positions > 1 {
                        let axis = positionAxes[p]
                        if !axis.isPruned(a, o * inputs + i) { value += fastSigmoid((a - axis.theta) / tau) }
                    }
                    out[e] = value
                }
            }
        }
    }
}
