// The dense layer a deployed model runs instead of a conv-bn unit without a sparse kernel: a
// convolution with batch norm folded in, the activation or a residual addition fused; depthwise
// 3x3 convolutions in float32 on our kernel (`DepthwiseConvolution`, NCHW or channel-major), the
// others on oneDNN (in NCHW).
import MaxQNN
import MaxQTensor

/// A dense convolution with batch norm (and any mask) folded into weight and bias, the activation fused.
public final class FoldedConvolution: ResidualFusing {
    public let weight: Tensor, bias: Tensor
    public let geometry: Conv2dGeometry
    public let activation: Activation?

    public init(weight: Tensor, bias: Tensor, geometry: Conv2dGeometry, activation: Activation?) {
        (self.weight, self.bias, self.geometry, self.activation) = (weight, bias, geometry, activation)
    }

    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        Variable(try convolved(x.value, activation: activation))
    }

    /// conv(x) + bias with `activation`, in the layout of x: our depthwise kernel reads both layouts;
    /// otherwise a channel-major x (`Tensor.channelMajor`) is convolved by oneDNN in NCHW, there and back.
    private func convolved(_ x: Tensor, activation: Activation?) throws(TensorError) -> Tensor {
        if Precision.current == .fp32, x.device == .cpu,
            DepthwiseConvolution.runs(weight: weight.shape, geometry, input: x.shape)
        {
            let (lower, upper, after) = activation.fusedClamp
            let y = DepthwiseConvolution.conv2d(
                x, weight: weight, bias: bias, stride: geometry.stride, lower: lower, upper: upper)
            return after.map { y.backend.activation($0, y) } ?? y
        }
        guard x.isChannelMajor else {
            return try x.backend.conv2dInference(
                x, weight, bias: bias, geometry, activation: activation, precision: .current)
        }
        return try convolved(x.channelMajorToNCHW(), activation: activation).channelMajor()
    }

    public func fusedOutput(_ x: Variable, adding residual: Variable, relu: Bool) throws(TensorError) -> Variable {
        guard activation == nil else { return try unfusedOutput(x, adding: residual, relu: relu) }
        var y = try convolved(x.value, activation: nil)
        guard y.shape == residual.value.shape else {
            throw .shapeMismatch(op: "residual", y.shape, residual.value.shape)
        }
        let r = residual.value
        r.withUnsafeBufferPointer { rs in
            y.withUnsafeMutableBufferPointer { ys in
                let (from, to, lower) = (rs.baseAddress!, ys.baseAddress!, relu ? Float(0) : -.infinity)
                parallelRanges(ys.count, grain: 1 << 14) { range in
                    for i in range { to[i] = max(to[i] + from[i], lower) }
                }
            }
        }
        return Variable(y)
    }

    public func namedParameters(prefix: String) -> [(String, Variable)] { [] }
}

extension FoldedConvolution: GraphDescribing {
    public func describe(_ input: String, name: String, in graph: inout OperatorGraph) throws(TensorError) -> String {
        graph.convolution(input, weight: weight, bias: bias, geometry: geometry, activation: activation, name: name)
    }
}
