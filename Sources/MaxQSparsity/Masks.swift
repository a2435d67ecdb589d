// The hard N:M mask (SR-STE) and the MaxQ soft mask (docs/algorithm.md 2-3), computed with
// selection rather than sorting, one pass per axis, no per-step allocations beyond scratch.
import CKernels
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
        // Selection orders bit patterns, which NaN does not have a place in.
        guard w.isAllFinite else { throw .nonFinite(name: name) }
        guard !settings.pattern.isDense, let method = settings.type.method else {
            return Tensor(shape: w.shape, repeating: 1).on(w.device)
        }
        return method.mask(of: w, settings, generator: &generator)
    }

    /// The selection kernels: the hard mask, and with `maxQ` the schedule's dense groups and the
    /// soft axis terms.
    static func selectionMask(
        _ w: Tensor, _ settings: MaskSettings, maxQ: MaxQMethod.DenseGroups?, generator: inout RandomGenerator
    ) -> Tensor {
        let layout = WeightLayout(w.shape, settings.pattern)
        // Work in the reference's (O, kh*kw, I) order: groups, filter rows and position rows
        // all become contiguous runs.
        var magnitudes = Tensor(uninitializedShape: [layout.count])
        var mask = Tensor(uninitializedShape: w.shape)
        // 1x1 kernels: the working order is the weight's own, so the mask is built in place.
        var working = layout.positions == 1 ? nil : Tensor(uninitializedShape: [layout.count])
        w.withUnsafeBufferPointer { weights in
            magnitudes.withUnsafeMutableBufferPointer { a in
                mask.withUnsafeMutableBufferPointer { out in
                    transposedMagnitudes(weights, a, layout)
                    func build(_ loc: UnsafeMutableBufferPointer<Float>) {
                        let l1 = UnsafeMutableBufferPointer<Float>.allocate(capacity: layout.groups)
                        defer { l1.deallocate() }
                        localMask(UnsafeBufferPointer(a), loc, l1, layout)
                        guard let maxQ else { return }
                        let dense = Int((settings.preserveRate * Double(layout.groups)).rounded(.down))
                        if dense > 0 {
                            makeGroupsDense(
                                loc, l1, count: dense, maxQ, layout, &generator)
                        }
                        softTerms(weights, UnsafeBufferPointer(a), loc, layout, settings.tau)
                    }
                    if working == nil {
                        build(out)
                    } else {
                        working!.withUnsafeMutableBufferPointer { loc in
                            build(loc)
                            transposeBack(UnsafeBufferPointer(loc), out, layout)
                        }
                    }
                }
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

        /// Index in the (O, K, I) working order of member j of group g (groups are (o, p, chunk)).
        @inline(__always) func index(group g: Int, _ j: Int) -> Int { g * m + j }
    }

    /// |W| from (O, I, K) into the (O, K, I) working order.
    static func transposedMagnitudes(
        _ w: UnsafeBufferPointer<Float>, _ a: UnsafeMutableBufferPointer<Float>, _ layout: WeightLayout
    ) {
        let (inputs, positions) = (layout.inputs, layout.positions)
        for o in 0..<layout.outputs {
            let source = o * inputs * positions
            for p in 0..<positions {
                let row = source + p * inputs
                for i in 0..<inputs { a[row + i] = abs(w[source + i * positions + p]) }
            }
        }
    }

    /// The mask from the (O, K, I) working order back to the weight's (O, I, K).
    static func transposeBack(
        _ t: UnsafeBufferPointer<Float>, _ out: UnsafeMutableBufferPointer<Float>, _ layout: WeightLayout
    ) {
        let (inputs, positions) = (layout.inputs, layout.positions)
        for o in 0..<layout.outputs {
            let base = o * inputs * positions
            for i in 0..<inputs {
                for p in 0..<positions { out[base + i * positions + p] = t[base + p * inputs + i] }
            }
        }
    }

    /// Hard N:M: in each group the M-N smallest magnitudes (lower input channel first among
    /// equals) get 0, the others 1. Also records each group's L1 norm.
    static func localMask(
        _ a: UnsafeBufferPointer<Float>, _ loc: UnsafeMutableBufferPointer<Float>,
        _ l1: UnsafeMutableBufferPointer<Float>,
        _ layout: WeightLayout
    ) {
        if layout.m == 4 {
            localMask4(a, loc, l1, groups: layout.groups, pruned: 4 - layout.n)
            return
        }
        let (m, pruned) = (layout.m, layout.m - layout.n)
        for g in 0..<layout.groups {
            let base = g * m
            var sum: Float = 0
            for j in 0..<m {
                let v = a[base + j]
                sum += v
                // Rank: members before this one in (magnitude, channel) order.
                var rank = 0
                for i in 0..<m {
                    let u = a[base + i]
                    rank += (u < v || (u == v && i < j)) ? 1 : 0
                }
                loc[base + j] = rank < pruned ? 0 : 1
            }
            l1[g] = sum
        }
    }

    /// M = 4 written out (the common 1:4 and 2:4 patterns), so that it vectorises across groups.
    static func localMask4(
        _ a: UnsafeBufferPointer<Float>, _ loc: UnsafeMutableBufferPointer<Float>,
        _ l1: UnsafeMutableBufferPointer<Float>,
        groups: Int, pruned: Int
    ) {
        let threshold = Int32(pruned)
        for g in 0..<groups {
            let (a0, a1, a2, a3) = (a[4 * g], a[4 * g + 1], a[4 * g + 2], a[4 * g + 3])
            let r0 = bit(a1 < a0) + bit(a2 < a0) + bit(a3 < a0)
            let r1 = bit(a0 <= a1) + bit(a2 < a1) + bit(a3 < a1)
            let r2 = bit(a0 <= a2) + bit(a1 <= a2) + bit(a3 < a2)
            let r3 = bit(a0 <= a3) + bit(a1 <= a3) + bit(a2 <= a3)
            loc[4 * g] = Float(bit(r0 >= threshold))
            loc[4 * g + 1] = Float(bit(r1 >= threshold))
            loc[4 * g + 2] = Float(bit(r2 >= threshold))
            loc[4 * g + 3] = Float(bit(r3 >= threshold))
            l1[g] = (a0 + a1) + (a2 + a3)
        }
    }

    /// Incremental sparsity: `count` groups get all M entries set to 1.
    static func makeGroupsDense(
        _ loc: UnsafeMutableBufferPointer<Float>, _ l1: UnsafeMutableBufferPointer<Float>, count: Int,
        _ selection: MaxQMethod.DenseGroups, _ layout: WeightLayout, _ generator: inout RandomGenerator
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
        case .smallestL1:
            let scratch = SelectionScratch(capacity: groups)
            let norms = Segments(base: UnsafePointer(l1.baseAddress!), count: 1, length: groups, stride: groups)
            let cut = AxisThreshold(norms, pruned: count, scratch: scratch) { l1[$0] }
            for g in 0..<groups where cut.isPruned(l1[g], g) { chosen[g] = true }
        case .largestL1:
            // The largest `count` are the complement of the smallest `groups - count`, where
            // among equal norms the higher index counts as smaller so that the lower is chosen.
            let scratch = SelectionScratch(capacity: groups)
            let norms = Segments(base: UnsafePointer(l1.baseAddress!), count: 1, length: groups, stride: groups)
            let cut = AxisThreshold(norms, pruned: groups - count, scratch: scratch) { l1[groups - 1 - $0] }
            for g in 0..<groups where !cut.isPruned(l1[g], groups - 1 - g) { chosen[g] = true }
        }
        for g in 0..<groups where chosen[g] {
            for j in 0..<layout.m { loc[layout.index(group: g, j)] = 1 }
        }
    }

    /// mask = local * (1 + filter + position): sigmoid terms of each magnitude's distance to
    /// its filter's and its kernel position's thresholds, zero for the k smallest of each axis.
    /// Tie order on each axis is the weight's own index order: (i, p) within a filter, (o, i)
    /// within a position.
    static func softTerms(
        _ w: UnsafeBufferPointer<Float>, _ a: UnsafeBufferPointer<Float>, _ loc: UnsafeMutableBufferPointer<Float>,
        _ layout: WeightLayout, _ tau: Float
    ) {
        let (outputs, inputs, positions) = (layout.outputs, layout.inputs, layout.positions)
        let filterLength = inputs * positions, positionLength = outputs * inputs
        let pattern = try! NMPattern(n: layout.n, m: layout.m)
        let scratch = SelectionScratch(capacity: max(filterLength, positionLength))
        let base = a.baseAddress!
        let filters = (0..<outputs).map { o in
            AxisThreshold(
                Segments(base: base + o * filterLength, count: 1, length: filterLength, stride: filterLength),
                pruned: pattern.prunedCount(of: filterLength), scratch: scratch
            ) { abs(w[o * filterLength + $0]) }
        }
        // 1x1 kernels have no position axis (its term is 0).
        let positionAxes =
            positions == 1
            ? []
            : (0..<positions).map { p in
                AxisThreshold(
                    Segments(base: base + p * inputs, count: outputs, length: inputs, stride: filterLength),
                    pruned: pattern.prunedCount(of: positionLength), scratch: scratch
                ) { a[($0 / inputs) * filterLength + p * inputs + $0 % inputs] }
            }
        let lanes = loc.baseAddress!
        for o in 0..<outputs {
            let f = filters[o].cut
            for p in 0..<positions {
                let row = (o * positions + p) * inputs
                // Filter order is (i, p): entry i of this row has index i * positions + p there;
                // position order is (o, i): index o * inputs + i.
                if positions == 1 {
                    maxq_soft_terms_row(lanes + row, base + row, Int64(inputs), f, 0, 1, nil, 0, tau)
                } else {
                    var q = positionAxes[p].cut
                    maxq_soft_terms_row(
                        lanes + row, base + row, Int64(inputs), f, Int64(p), Int64(positions), &q,
                        Int64(o * inputs), tau)
                }
            }
        }
    }
}
