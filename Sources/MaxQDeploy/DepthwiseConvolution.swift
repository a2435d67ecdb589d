// The depthwise 3x3 convolutions of a deployed model, read and written in NCHW or channel-major
// (the layouts the sparse pointwise layers around them use) by the CKernels kernel, all cores over
// the planes.
import CKernels
import MaxQTensor

public enum DepthwiseConvolution {
    /// Whether the kernel computes this convolution: 3x3, one input channel per group (as many
    /// groups as channels and outputs), padding 1, stride 1 or 2, on an NCHW or channel-major batch.
    public static func runs(weight shape: [Int], _ geometry: Conv2dGeometry, input: [Int]) -> Bool {
        let channels = input.count == 4 || (input.count == 5 && input[0] == 1) ? input[1] : -1
        return shape.count == 4 && shape[1] == 1 && shape[2] == 3 && shape[3] == 3 && channels == shape[0]
            && geometry.groups == shape[0] && geometry.padding == 1 && (1...2).contains(geometry.stride)
    }

    /// clamp(depthwise conv(x, weight) + bias, lower, upper) for x (B, C, H, W) or channel-major
    /// (1, C, B, H, W), in the same layout, and weight (C, 1, 3, 3).
    public static func conv2d(
        _ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, lower: Float, upper: Float
    ) -> Tensor {
        let major = x.isChannelMajor
        let dims = major ? Array(x.shape.dropFirst()) : x.shape
        let (channels, height, width) = (dims[major ? 0 : 1], dims[2], dims[3])
        let (batch, run) = major ? (dims[1], dims[1]) : (dims[0], 1)
        let (rows, columns) = ((height - 1) / stride + 1, (width - 1) / stride + 1)
        var y = Tensor(
            uninitializedShape: major ? [1, channels, batch, rows, columns] : [batch, channels, rows, columns])
        let zeros = [Float](repeating: 0, count: width)
        x.withUnsafeBufferPointer { xs in
            weight.withUnsafeBufferPointer { ws in
                bias.withUnsafeBufferPointer { bs in
                    y.withUnsafeMutableBufferPointer { ys in
                        zeros.withUnsafeBufferPointer { zs in
                            let (input, weights, biases) = (xs.baseAddress!, ws.baseAddress!, bs.baseAddress!)
                            let (output, padding) = (ys.baseAddress!, zs.baseAddress!)
                            // A plane is at least a few hundred pixels in the layers that matter.
                            parallelRanges(batch * channels, grain: max(1, 4096 / max(1, rows * columns))) { planes in
                                maxq_depthwise3x3(
                                    input, Int64(channels), Int64(run), Int64(height), Int64(width), Int64(stride),
                                    weights, biases, lower, upper, Int64(planes.lowerBound), Int64(planes.upperBound),
                                    output, padding)
                            }
                        }
                    }
                }
            }
        }
        return y
    }
}

/// The naive twin of the depthwise kernel: plain loops, for the tests.
public enum ReferenceDepthwiseConvolution {
    /// clamp(depthwise conv(x, weight) + bias, lower, upper), padding 1, for x (B, C, H, W).
    public static func conv2d(
        _ x: Tensor, weight: Tensor, bias: Tensor, stride: Int, lower: Float, upper: Float
    ) -> Tensor {
        let (batch, channels, height, width) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (rows, columns) = ((height - 1) / stride + 1, (width - 1) / stride + 1)
        let (input, weights, biases) = (x.scalars, weight.scalars, bias.scalars)
        var y = [Float](repeating: 0, count: batch * channels * rows * columns)
        for plane in 0..<(batch * channels) {
            let channel = plane % channels
            for oy in 0..<rows {
                for ox in 0..<columns {
                    var sum = biases[channel]
                    for ky in 0..<3 {
                        for kx in 0..<3 {
                            let (iy, ix) = (oy * stride - 1 + ky, ox * stride - 1 + kx)
                            guard iy >= 0, iy < height, ix >= 0, ix < width else { continue }
                            sum += weights[channel * 9 + ky * 3 + kx] * input[(plane * height + iy) * width + ix]
                        }
                    }
                    y[(plane * rows + oy) * columns + ox] = min(max(sum, lower), upper)
                }
            }
        }
        return try! Tensor(shape: [batch, channels, rows, columns], scalars: y)
    }
}
