// Fully connected layers through OpenBLAS's SGEMM: y = x w^T + b.
import COpenBLAS

extension CPUBackend {
    public func linear(_ x: Tensor, _ w: Tensor, _ bias: Tensor?) throws(TensorError) -> Tensor {
        guard x.rank == 2, w.rank == 2, x.shape[1] == w.shape[1] else {
            throw .shapeMismatch(op: "linear", x.shape, w.shape)
        }
        if let bias, bias.shape != [w.shape[0]] { throw .shapeMismatch(op: "linear bias", w.shape, bias.shape) }
        let (n, inFeatures, outFeatures) = (x.shape[0], x.shape[1], w.shape[0])
        let y = Tensor(uninitializedShape: [n, outFeatures])
        for i in 0..<n {
            for o in 0..<outFeatures { y.mutablePointer[i * outFeatures + o] = bias?.pointer[o] ?? 0 }
        }
        gemmSplittingColumns(
            transposingB: true, m: n, n: outFeatures, k: inFeatures, a: x.pointer, b: w.pointer, beta: 1,
            c: y.mutablePointer)
        return y
    }

    public func linearBackward(_ dy: Tensor, _ x: Tensor, _ w: Tensor) -> (Tensor, Tensor, Tensor) {
        let (n, inFeatures, outFeatures) = (x.shape[0], x.shape[1], w.shape[0])
        let dx = Tensor(uninitializedShape: x.shape)
        let dw = Tensor(uninitializedShape: w.shape)
        // dx (N, in) = dy (N, out) w (out, in); dw (out, in) = dy^T x
        gemmSplittingColumns(
            m: n, n: inFeatures, k: outFeatures, a: dy.pointer, b: w.pointer, beta: 0, c: dx.mutablePointer)
        gemmSplittingColumns(
            transposingA: true, m: outFeatures, n: inFeatures, k: n, a: dy.pointer, b: x.pointer, beta: 0,
            c: dw.mutablePointer)
        let dBias = Tensor(shape: [outFeatures], repeating: 0)
        for i in 0..<n {
            for o in 0..<outFeatures { dBias.mutablePointer[o] += dy.pointer[i * outFeatures + o] }
        }
        return (dx, dw, dBias)
    }

    /// C (m x n) = op(A) op(B) + beta C, all row-major and unpadded: op(A) m x k (A stored k x m when
    /// transposed), op(B) k x n (B stored n x k when transposed). C's columns are split into one range
    /// of 64-column blocks per thread, each a single-threaded SGEMM (see `CPUBackend.init`). The last
    /// bits depend on the split, as they did on OpenBLAS's own thread count: the same for a given count.
    func gemmSplittingColumns(
        transposingA: Bool = false, transposingB: Bool = false, m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, b: UnsafePointer<Float>, beta: Float, c: UnsafeMutablePointer<Float>
    ) {
        let (lda, ldb) = (transposingA ? m : k, transposingB ? k : n)
        parallelRanges((n + 63) / 64) { blocks in
            let columns = blocks.lowerBound * 64..<min(n, blocks.upperBound * 64)
            cblas_sgemm(
                CblasRowMajor, transposingA ? CblasTrans : CblasNoTrans, transposingB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(columns.count), Int32(k), 1, a, Int32(lda),
                b + (transposingB ? columns.lowerBound * ldb : columns.lowerBound), Int32(ldb), beta,
                c + columns.lowerBound, Int32(n))
        }
    }
}
