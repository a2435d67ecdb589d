// Naive twins of the fast kernels: direct loops that are obviously right, used by tests to
// check the oneDNN and vectorised paths.

public enum ReferenceKernels {
    public static func conv2d(_ x: Tensor, _ w: Tensor, _ g: Conv2dGeometry) throws(TensorError) -> Tensor {
        let key = try CPUBackend.convolutionKey(x.shape, w.shape, g)
        let (x, y) = (x.inNCHW(), Tensor(zeros: key.output))
        try forEachTap(key) { xi, wi, yi in y.mutablePointer[yi] += x.pointer[xi] * w.pointer[wi] }
        return y
    }

    public static func conv2dBackwardInput(_ dy: Tensor, _ w: Tensor, inputShape: [Int], _ g: Conv2dGeometry)
        throws(TensorError) -> Tensor
    {
        let key = try CPUBackend.convolutionKey(inputShape, w.shape, g)
        let (dy, dx) = (dy.inNCHW(), Tensor(zeros: inputShape))
        try forEachTap(key) { xi, wi, yi in dx.mutablePointer[xi] += dy.pointer[yi] * w.pointer[wi] }
        return dx
    }

    public static func conv2dBackwardWeight(_ dy: Tensor, _ x: Tensor, weightShape: [Int], _ g: Conv2dGeometry)
        throws(TensorError) -> Tensor
    {
        let key = try CPUBackend.convolutionKey(x.shape, weightShape, g)
        let (dy, x, dw) = (dy.inNCHW(), x.inNCHW(), Tensor(zeros: weightShape))
        try forEachTap(key) { xi, wi, yi in dw.mutablePointer[wi] += dy.pointer[yi] * x.pointer[xi] }
        return dw
    }

    /// Calls `tap(inputIndex, weightIndex, outputIndex)` for every multiply-add of the convolution.
    static func forEachTap(_ key: ConvolutionKey, _ tap: (Int, Int, Int) -> Void) throws(TensorError) {
        let (n, c, h, w) = (key.input[0], key.input[1], key.input[2], key.input[3])
        let (o, cg, kh, kw) = (key.weight[0], key.weight[1], key.weight[2], key.weight[3])
        let (oh, ow) = (key.output[2], key.output[3])
        let g = key.geometry
        let outPerGroup = o / g.groups
        for b in 0..<n {
            for oc in 0..<o {
                let group = oc / outPerGroup
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        let yi = ((b * o + oc) * oh + oy) * ow + ox
                        for ic in 0..<cg {
                            let channel = group * cg + ic
                            for ky in 0..<kh {
                                let iy = oy * g.stride - g.padding + ky
                                if iy < 0 || iy >= h { continue }
                                for kx in 0..<kw {
                                    let ix = ox * g.stride - g.padding + kx
                                    if ix < 0 || ix >= w { continue }
                                    tap(((b * c + channel) * h + iy) * w + ix, ((oc * cg + ic) * kh + ky) * kw + kx, yi)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
