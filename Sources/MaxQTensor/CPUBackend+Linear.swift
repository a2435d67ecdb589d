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
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(outFeatures), Int32(inFeatures),
            1, x.pointer, Int32(inFeatures), w.pointer, Int32(inFeatures), 1, y.mutablePointer, Int32(outFeatures))
        return y
    }

    public func linearBackward(_ dy: Tensor, _ x: Tensor, _ w: Tensor) -> (Tensor, Tensor, Tensor) {
        let (n, inFeatures, outFeatures) = (x.shape[0], x.shape[1], w.shape[0])
        let dx = Tensor(uninitializedShape: x.shape)
        let dw = Tensor(uninitializedShape: w.shape)
        // dx (N, in) = dy (N, out) w (out, in); dw (out, in) = dy^T x
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(inFeatures), Int32(outFeatures),
            1, dy.pointer, Int32(outFeatures), w.pointer, Int32(inFeatures), 0, dx.mutablePointer, Int32(inFeatures))
        cblas_sgemm(
            CblasRowMajor, CblasTrans, CblasNoTrans, Int32(outFeatures), Int32(inFeatures), Int32(n),
            1, dy.pointer, Int32(outFeatures), x.pointer, Int32(inFeatures), 0, dw.mutablePointer, Int32(inFeatures))
        let dBias = Tensor(shape: [outFeatures], repeating: 0)
        for i in 0..<n {
            for o in 0..<outFeatures { dBias.mutablePointer[o] += dy.pointer[i * outFeatures + o] }
        }
        return (dx, dw, dBias)
    }
}
