// The naive twin of `Masks`: docs/algorithm.md read literally, with full stable sorts. It is the
// reference device's mask kernel, and tests check the selection-based kernels against it.
import Foundation
import MaxQTensor

enum ReferenceMasks {
    /// Same contract as `MaskKernels.selectionMask`.
    static func selectionMask(
        _ w: Tensor, _ s: MaskSettings, maxQ: MaxQMethod.DenseGroups?, generator: inout RandomGenerator
    ) -> Tensor {
        let (o, i, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
        let (n, m, k) = (s.pattern.n, s.pattern.m, kh * kw)
        if s.pattern.isDense { return Tensor(shape: w.shape, repeating: 1) }
        let a = w.scalars.map(abs)
        let index = { (oo: Int, ii: Int, p: Int) in (oo * i + ii) * k + p }
        // Groups in (o, position, input chunk) order.
        var groups: [[Int]] = []
        for oo in 0..<o {
            for p in 0..<k { for c in 0..<(i / m) { groups.append((0..<m).map { index(oo, c * m + $0, p) }) } }
        }
        var local = [Float](repeating: 1, count: w.count)
        for g in groups {
            let order = g.indices.sorted { (a[g[$0]], $0) < (a[g[$1]], $1) }
            for j in order.prefix(m - n) { local[g[j]] = 0 }
        }
        guard let maxQ else { return try! Tensor(shape: w.shape, scalars: local) }
        let dense = min(Int((s.preserveRate * Double(groups.count)).rounded(.down)), groups.count)
        let norms = groups.map { $0.map { a[$0] }.reduce(0, +) }
        var chosen: [Int]
        switch maxQ {
        case _ where dense == groups.count: chosen = Array(groups.indices)
        case .smallestL1: chosen = Array(groups.indices.sorted { (norms[$0], $0) < (norms[$1], $1) }.prefix(dense))
        case .largestL1: chosen = Array(groups.indices.sorted { (-norms[$0], $0) < (-norms[$1], $1) }.prefix(dense))
        case .random:
            // The first `dense` entries of a random permutation (Fisher-Yates, drawn front to back).
            chosen = Array(groups.indices)
            for j in 0..<dense { chosen.swapAt(j, j + generator.integer(below: groups.count - j)) }
            chosen = Array(chosen.prefix(dense))
        }
        for g in chosen { for e in groups[g] { local[e] = 1 } }
        func axisTerm(_ members: [Int]) -> [Int: Float] {
            let order = members.indices.sorted { (a[members[$0]], $0) < (a[members[$1]], $1) }
            let pruned = s.pattern.prunedCount(of: members.count)
            let theta = (a[members[order[pruned - 1]]] + a[members[order[pruned]]]) / 2
            var term: [Int: Float] = [:]
            for (rank, j) in order.enumerated() {
                term[members[j]] = rank < pruned ? 0 : 1 / (1 + Foundation.exp(-(a[members[j]] - theta) / s.tau))
            }
            return term
        }
        var result = local
        var filter: [Int: Float] = [:], position: [Int: Float] = [:]
        for oo in 0..<o { filter.merge(axisTerm((0..<(i * k)).map { oo * i * k + $0 })) { $1 } }
        if k > 1 { for p in 0..<k { position.merge(axisTerm((0..<(o * i)).map { $0 * k + p })) { $1 } } }
        for e in 0..<w.count { result[e] = local[e] * (1 + filter[e]! + (position[e] ?? 0)) }
        return try! Tensor(shape: w.shape, scalars: result)
    }
}
