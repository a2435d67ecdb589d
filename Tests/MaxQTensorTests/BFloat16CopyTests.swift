// Bfloat16 copies written by the kernels whose outputs convolutions read: the copy holds exactly the
// bits oneDNN's reorder would round to (ties, subnormals and signs included), convolutions that read
// it give the same values bit for bit as convolutions that round for themselves, and a tensor
// written after the copy was made never hands a stale copy to a convolution.
import CDNNL
import MaxQTestSupport
import Testing

@testable import MaxQTensor

@Suite(.enabled(if: Precision.cpuHasBFloat16, "this CPU has no AVX512_BF16")) struct BFloat16CopyTests {
    let cpu = CPUBackend.shared

    /// Random values with rounding's hard cases mixed in: halfway cases rounding down and up,
    /// subnormals of either sign, and values whose rounding carries into the exponent.
    func tricky(_ shape: [Int], seed: UInt64) -> Tensor {
        var generator = RandomGenerator(seed: seed)
        var x = Tensor(uniform: shape, low: -2, high: 2, generator: &generator)
        let cases: [UInt32] = [
            0x3F80_8000, 0x3F81_8000, 0xBF80_8000, 0x0001_2345, 0x8000_0F00, 0x3FFF_FFFF, 0x3F80_7FFF,
        ]
        x.withUnsafeMutableBufferPointer { values in
            for i in stride(from: 0, to: values.count, by: 5) { values[i] = Float(bitPattern: cases[i % cases.count]) }
        }
        return x.inLayout(.channelBlocked)
    }

    /// oneDNN's own rounding of `tensor` (a reorder into bfloat16 in the same layout).
    func oneDNNRounding(_ tensor: Tensor) throws -> [UInt16] {
        let plain = try DNNL.memoryDesc(tensor.shape, tensor.layout.dnnlTag)
        let wanted = try DNNL.memoryDesc(tensor.shape, tensor.layout.dnnlTag, dnnl_bf16)
        let bridge = try LayoutBridge(plain: plain, wanted: wanted, "test")
        #expect(bridge.onlyRounds)
        let staged = try bridge.copied(from: tensor.pointer, "test")
        return Array(
            UnsafeBufferPointer(start: staged.pointer.assumingMemoryBound(to: UInt16.self), count: tensor.count))
    }

    func copied(_ tensor: Tensor) -> [UInt16]? {
        tensor.bfloat16Copy.map { Array(UnsafeBufferPointer(start: $0, count: tensor.count)) }
    }

    @Test func kernelsWriteTheBitsOneDNNRoundsTo() throws {
        let (a, b) = (tricky([2, 32, 7, 7], seed: 1), tricky([2, 32, 7, 7], seed: 2))
        let gamma = tricky([32], seed: 3).inNCHW(), beta = tricky([32], seed: 4).inNCHW()
        let outputs = try Precision.run(.bf16) { () throws(TensorError) -> [(String, Tensor)] in
            let (normalized, saved) = try cpu.batchNormTraining(a, weight: gamma, bias: beta, eps: 1e-5, relu: true)
            let (dx, _, _) = try cpu.batchNormBackward(b, a, weight: gamma, saved: saved, reluOutput: normalized)
            return [
                ("add+relu", try cpu.addReLU(a, b)), ("hardswish", cpu.activation(.hardswish, a)),
                ("batch norm+relu", normalized), ("batch norm's input gradient", dx),
                ("max pool", try cpu.maxPool2d(a, kernel: 3, stride: 2, padding: 1).0),
            ]
        }
        for (kernel, output) in outputs {
            let bits = try #require(copied(output), "\(kernel) wrote no copy")
            let same = bits == (try oneDNNRounding(output))  // not printed when different: too long
            #expect(same, "\(kernel)'s copy differs from oneDNN's rounding")
        }
        // The rounding by itself, on the hard cases themselves.
        let sum = try Precision.run(.bf16) { () throws(TensorError) in try cpu.addReLU(a, Tensor(zeros: a.shape)) }
        let same = copied(sum) == (try oneDNNRounding(sum))
        #expect(same, "the hard cases' copy differs from oneDNN's rounding")
        // Outside a bf16 scope, and for NCHW tensors, no copy.
        #expect(copied(try cpu.addReLU(a, b)) == nil)
        #expect(copied(try Precision.run(.bf16) { () throws(TensorError) in try cpu.addReLU(a.inNCHW(), b) }) == nil)
    }

    @Test(arguments: [
        (weight: [32, 32, 3, 3], geometry: Conv2dGeometry(stride: 1, padding: 1)),
        (weight: [64, 32, 1, 1], geometry: Conv2dGeometry(stride: 2)),
    ])
    func convolutionsReadingCopiesGiveTheSameBits(weight: [Int], geometry: Conv2dGeometry) throws {
        let (a, b) = (tricky([2, 32, 9, 9], seed: 5), tricky([2, 32, 9, 9], seed: 6))
        var generator = RandomGenerator(seed: 7)
        let w = Tensor(uniform: weight, low: -1, high: 1, generator: &generator)
        let withCopy = try Precision.run(.bf16) { () throws(TensorError) in try cpu.addReLU(a, b) }
        let without = try cpu.addReLU(a, b)
        #expect(copied(withCopy) != nil && copied(without) == nil)
        try TensorLayout.run(.channelBlocked) { () throws(TensorError) in
            let y = try cpu.conv2d(without, w, geometry, precision: .bf16)
            let forward = try cpu.conv2d(withCopy, w, geometry, precision: .bf16).storedScalars == y.storedScalars
            #expect(forward, "forward")
            let dy = tricky(y.shape, seed: 8)
            let dyWithCopy = Precision.run(.bf16) { cpu.activation(.hardswish, dy) }
            let dyWithout = cpu.activation(.hardswish, dy)
            #expect(copied(dyWithCopy) != nil)
            for inputGradients in [Precision.bf16, .fp32] {
                let expected = try cpu.conv2dBackward(
                    dyWithout, input: without, weight: w, geometry, inputGradient: true, weightGradient: true,
                    precision: .bf16, inputGradientPrecision: inputGradients)
                let got = try cpu.conv2dBackward(
                    dyWithCopy, input: withCopy, weight: w, geometry, inputGradient: true, weightGradient: true,
                    precision: .bf16, inputGradientPrecision: inputGradients)
                let sameDx = got.input!.storedScalars == expected.input!.storedScalars
                let sameDw = got.weight!.storedScalars == expected.weight!.storedScalars
                #expect(sameDx && sameDw, "dx equal: \(sameDx), dw equal: \(sameDw), input gradients \(inputGradients)")
            }
        }
    }

    /// With bf16 input gradients (`--amp bf16`), batch norm's input gradient, which only the
    /// convolution before it reads, is written as its bfloat16 copy alone: the copy has the bits of
    /// the float32 gradient's rounding, the convolution's gradients are the same bit for bit, and
    /// anything reading the float32 values (or writing into them) gets the copy's values widened.
    @Test func anOutputGradientWithBFloat16InputGradientsIsItsCopyAlone() throws {
        let (x, dy) = (tricky([2, 32, 9, 9], seed: 13), tricky([2, 32, 9, 9], seed: 14))
        let gamma = tricky([32], seed: 15).inNCHW(), beta = tricky([32], seed: 16).inNCHW()
        func inputGradient(_ inputGradients: Precision) throws -> Tensor {
            try Precision.run(.bf16, inputGradients: inputGradients) { () throws(TensorError) in
                let (y, saved) = try cpu.batchNormTraining(x, weight: gamma, bias: beta, eps: 1e-5, relu: true)
                return try cpu.batchNormBackward(dy, x, weight: gamma, saved: saved, reluOutput: y).0
            }
        }
        let (deferred, written) = (try inputGradient(.bf16), try inputGradient(.fp32))
        let bits = try #require(copied(deferred))
        #expect(deferred.storage.float32ValuesDeferred && !written.storage.float32ValuesDeferred)
        #expect(bits == (try oneDNNRounding(written)), "the copy is not the float32 gradient's rounding")
        var generator = RandomGenerator(seed: 17)
        let w = Tensor(uniform: [32, 32, 3, 3], low: -1, high: 1, generator: &generator)
        let geometry = Conv2dGeometry(stride: 1, padding: 1)
        let gradients = try [deferred, written].map { (dy) throws(TensorError) in
            try cpu.conv2dBackward(
                dy, input: x, weight: w, geometry, inputGradient: true, weightGradient: true, precision: .bf16,
                inputGradientPrecision: .bf16)
        }
        #expect(gradients[0].input!.storedScalars == gradients[1].input!.storedScalars, "dx")
        #expect(gradients[0].weight!.storedScalars == gradients[1].weight!.storedScalars, "dw")
        #expect(deferred.storage.float32ValuesDeferred, "a convolution widened the values it does not read")
        let widened = bits.map { Float(bitPattern: UInt32($0) << 16) }
        #expect(deferred.storedScalars == widened && !deferred.storage.float32ValuesDeferred)
        var changed = try inputGradient(.bf16)
        changed[flat: 3] = 7
        var expected = deferred.scalars
        expected[3] = 7
        #expect(changed.scalars == expected)
    }

    /// Writing into a tensor drops its copy, so a convolution reads the new values.
    @Test func writingDropsTheCopy() throws {
        var x = try Precision.run(.bf16) { () throws(TensorError) in
            try cpu.addReLU(tricky([1, 16, 4, 4], seed: 9), tricky([1, 16, 4, 4], seed: 10))
        }
        let before = x
        #expect(copied(x) != nil)
        x[flat: 5] = 7
        #expect(copied(x) == nil && copied(before) != nil)
        var unique = try Precision.run(.bf16) { () throws(TensorError) in
            try cpu.addReLU(tricky([1, 16, 4, 4], seed: 11), tricky([1, 16, 4, 4], seed: 12))
        }
        #expect(copied(unique) != nil)
        unique.withUnsafeMutableBufferPointer { $0[0] = 3 }
        #expect(copied(unique) == nil)
    }
}
