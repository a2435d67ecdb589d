// The naive twin of the sparse kernels: a convolution read straight off the compressed weights,
// plain loops, any kernel size, stride and padding (one group). Tests check the fast kernels
// against it.
import MaxQTensor

public enum ReferenceNMConvolution {
    /// clamp(conv(x, weights) + bias, lower, upper) for x (B, I, H, W).
    public static func conv2d(
        _ x: Tensor, _ weights: NMWeights, bias: [Float], stride: Int, padding: Int, lower: Float = -.infinity,
        upper: Float = .infinity
    ) -> Tensor {
        let (batch, height, width) = (x.shape[0], x.shape[2], x.shape[3])
        let (kh, kw) = (weights.shape[2], weights.shape[3])
        let oh = (height + 2 * padding - kh) / stride + 1, ow = (width + 2 * padding - kw) / stride + 1
        let (inputs, outputs, chunks, n, m) = (
            weights.inputs, weights.outputs, weights.inputs / weights.m, weights.n, weights.m
        )
        let input = x.scalars, indices = weights.indices
        var y = [Float](repeating: 0, count: batch * outputs * oh * ow)
        for b in 0..<batch {
            for o in 0..<outputs {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var sum = bias[o]
                        for p in 0..<(kh * kw) {
                            let iy = oy * stride - padding + p / kw, ix = ox * stride - padding + p % kw
                            guard iy >= 0, iy < height, ix >= 0, ix < width else { continue }
                            for chunk in 0..<chunks {
                                for member in 0..<n {
                                    let k = ((o * kh * kw + p) * chunks + chunk) * n + member
                                    let i = chunk * m + indices[k]
                                    sum += weights.values[k] * input[((b * inputs + i) * height + iy) * width + ix]
                                }
                            }
                        }
                        y[((b * outputs + o) * oh + oy) * ow + ox] = min(max(sum, lower), upper)
                    }
                }
            }
        }
        return try! Tensor(shape: [batch, outputs, oh, ow], scalars: y)
    }
}
