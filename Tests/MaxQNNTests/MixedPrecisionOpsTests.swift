// Operations recorded inside `Precision.run(.bf16)`: they run backward in the scope's precisions
// wherever backward is called (input gradients float32 unless asked for in bf16 too), the
// classifier's bf16 arithmetic against PyTorch's CPU autocast, and the scope ends with its body,
// even when the body throws.
import MaxQFormats
import MaxQNN
import MaxQTensor
import MaxQTestSupport
import Testing

@Suite struct MixedPrecisionOpsTests {
    @Test(.enabled(if: Precision.cpuHasBFloat16, "oneDNN's bf16 kernels need AVX512_BF16"))
    func aConvolutionRecordedInBFloat16RunsItsBackwardInTheScopesPrecisions() throws {
        let f = try Fixtures.op("autocast_conv_3x3")
        let (xValue, wValue, dy) = (try f.tensor("x"), try f.tensor("w"), try f.tensor("dy"))
        let geometry = Conv2dGeometry(stride: 1, padding: 1)
        let backend = CPUBackend.shared
        let scopes: [(Precision, inputGradients: Precision)] = [(.fp32, .fp32), (.bf16, .fp32), (.bf16, .bf16)]
        for (precision, inputGradients) in scopes {
            let (x, w) = (Variable(xValue, requiresGrad: true), Variable(wValue, requiresGrad: true))
            let y = try Precision.run(precision, inputGradients: inputGradients) { () throws(TensorError) in
                try x.conv2d(w, geometry)
            }
            #expect(Precision.current == .fp32 && Precision.currentInputGradients == .fp32)
            try y.backward(seed: dy)  // outside the scope
            let expectedY = try backend.conv2d(xValue, wValue, geometry, precision: precision)
            let dx = try backend.conv2dBackwardInput(
                dy, wValue, inputShape: xValue.shape, geometry, precision: inputGradients)
            let dw = try backend.conv2dBackwardWeight(
                dy, xValue, weightShape: wValue.shape, geometry, precision: precision)
            #expect(y.value.scalars == expectedY.scalars, "\(precision)")
            #expect(x.grad?.scalars == dx.scalars, "\(precision), input gradients \(inputGradients)")
            #expect(w.grad?.scalars == dw.scalars, "\(precision)")
        }
        for gradient in ["input", "weight"] {
            let (fp32, bf16) = try [Precision.fp32, .bf16].map { (precision) throws(TensorError) in
                gradient == "input"
                    ? try backend.conv2dBackwardInput(
                        dy, wValue, inputShape: xValue.shape, geometry, precision: precision)
                    : try backend.conv2dBackwardWeight(
                        dy, xValue, weightShape: wValue.shape, geometry, precision: precision)
            }.pair
            #expect(fp32.scalars != bf16.scalars, "\(gradient)")
        }
    }

    /// y = x w^T + b with x, w (and dy for the gradients) rounded to bf16 and float32 sums, against
    /// autocast's bf16 result within twice one rounding of the inputs plus its output's rounding.
    @Test func theClassifierInBFloat16MatchesPyTorchAutocast() throws {
        let f = try Fixtures.op("autocast_linear")
        let (xValue, wValue, bValue, dy) = (try f.tensor("x"), try f.tensor("w"), try f.tensor("b"), try f.tensor("dy"))
        let (x, w, b) = (
            Variable(xValue, requiresGrad: true), Variable(wValue, requiresGrad: true),
            Variable(bValue, requiresGrad: true)
        )
        let y = try Precision.run(.bf16, inputGradients: .bf16) { () throws(TensorError) in try x.linear(w, b) }
        try y.backward(seed: dy)
        let backend = CPUBackend.shared
        let u = bf16Roundoff, factor = 2 * (2 * u + u * u) + 1e-5
        let magnitudeY = try backend.linear(absolute(xValue), absolute(wValue), absolute(bValue))
        let torchY = try f.tensor("y")
        #expect(boundFailure(y.value, torchY, bound: combine(magnitudeY, factor, absolute(torchY), u)) == nil)
        let (magnitudeX, magnitudeW, magnitudeB) = backend.linearBackward(
            absolute(dy), absolute(xValue), absolute(wValue))
        #expect(boundFailure(x.grad!, try f.tensor("dx"), bound: combine(magnitudeX, factor)) == nil)
        #expect(boundFailure(w.grad!, try f.tensor("dw"), bound: combine(magnitudeW, factor)) == nil)
        // Autocast rounds dy (and its bias gradient) to bf16; ours sums dy in float32.
        #expect(boundFailure(b.grad!, try f.tensor("db"), bound: combine(magnitudeB, 2 * u + 1e-5)) == nil)
        // Exactly the float32 product of the rounded inputs.
        let rounded = try backend.linear(xValue.roundedToBFloat16(), wValue.roundedToBFloat16(), bValue)
        #expect(y.value.scalars == rounded.scalars)
        // With float32 input gradients (bf16's default) the input gradient is float32's, the rest as above.
        let (x32, w32) = (Variable(xValue, requiresGrad: true), Variable(wValue, requiresGrad: true))
        try Precision.run(.bf16) { () throws(TensorError) in try x32.linear(w32, nil) }.backward(seed: dy)
        #expect(x32.grad?.scalars == backend.linearBackward(dy, xValue, wValue).0.scalars)
        #expect(w32.grad?.scalars == w.grad?.scalars)
    }

    @Test func theScopeEndsWithItsBodyEvenWhenItThrows() {
        #expect(throws: TensorError.self) {
            try Precision.run(.bf16) { () throws(TensorError) in
                #expect(Precision.current == .bf16 && Precision.currentInputGradients == .fp32)
                Precision.run(.bf16, inputGradients: .bf16) { #expect(Precision.currentInputGradients == .bf16) }
                Precision.run(.fp32, inputGradients: .bf16) { #expect(Precision.currentInputGradients == .fp32) }
                throw TensorError.invalidArgument(op: "test", reason: "thrown inside the scope")
            }
        }
        #expect(Precision.current == .fp32)
    }
}

extension Array {
    /// The two elements of a two-element array.
    fileprivate var pair: (Element, Element) { (self[0], self[1]) }
}
