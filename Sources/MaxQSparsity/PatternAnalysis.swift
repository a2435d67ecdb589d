// What sparsity a weight really has: zeros, and the tightest N:M pattern its zeros satisfy
// along input channels (the question every user of an N:M tool asks of a checkpoint).
import MaxQTensor

public struct LayerSparsity: Sendable {
    public var zeros: Int
    public var total: Int
    /// The tightest N:M pattern (lowest N/M, then smallest M) every group satisfies, if any
    /// with N < M.
    public var pattern: (n: Int, m: Int)?

    public var fraction: Double { Double(zeros) / Double(max(total, 1)) }

    /// Analyses an effective (O, I, kh, kw) weight; other ranks get zeros only.
    public init(effectiveWeight w: Tensor, candidateM: [Int] = [2, 4, 8, 16, 32]) {
        total = w.count
        zeros = w.withUnsafeBufferPointer { $0.reduce(0) { $0 + ($1 == 0 ? 1 : 0) } }
        pattern = nil
        guard w.rank == 4, zeros > 0 else { return }
        let (o, i, k) = (w.shape[0], w.shape[1], w.shape[2] * w.shape[3])
        var best: (n: Int, m: Int)?
        for m in candidateM where i % m == 0 && m <= i {
            var n = 0
            w.withUnsafeBufferPointer { v in
                for oo in 0..<o {
                    for c in 0..<(i / m) {
                        for p in 0..<k {
                            var nonzero = 0
                            for j in 0..<m where v[(oo * i + c * m + j) * k + p] != 0 { nonzero += 1 }
                            n = max(n, nonzero)
                        }
                    }
                }
            }
            if n < m, best.map({ Double(n) / Double(m) < Double($0.n) / Double($0.m) }) ?? true { best = (n, m) }
        }
        pattern = best
    }
}
