// Activations rounded to bfloat16 once, by the kernel that writes them. In a bf16 scope
// (`Precision.run`) a convolution reads its input twice (forward and weight gradient) and its
// output gradient once or twice, and oneDNN rounds each to bfloat16 with a reorder: one more pass
// over float32 values for every read (7 % of a resnet50 step). The CPU kernels whose outputs
// convolutions read (batch norm with its ReLU and its input gradient, the residual addition with
// its ReLU, activations, max pooling) write the rounded values beside the float32 ones while those
// are still in cache, and a convolution that would round a tensor in its own layout reads that
// copy instead: the same bits, since both round with the same instruction (bf16_round.c). Only
// channel-blocked tensors get copies, the layout oneDNN's bf16 convolutions read on AVX-512. Where
// input gradients are bf16 too, batch norm's input gradient is written as its copy alone: the float32
// values are deferred (TensorStorage), widened from the copy if anything ever reads them.
import CKernels

extension Tensor {
    /// The values rounded to bfloat16 in storage order, where the kernel that wrote them made them.
    var bfloat16Copy: UnsafePointer<UInt16>? { storage.bfloat16Copy.map { UnsafePointer($0) } }
}

/// Writes the bfloat16 copy of a kernel's fresh output, chunk by chunk right after the kernel
/// writes each chunk.
struct BFloat16CopyWriter: @unchecked Sendable {
    /// The output's float32 values; nil where the kernel writes the copy alone.
    private let source: UnsafePointer<Float>?
    private let target: UnsafeMutablePointer<UInt16>

    /// Nil (no copy) outside a bf16 scope and for tensors convolutions would not read in their own
    /// layout.
    init?(for output: Tensor) {
        guard Precision.current == .bf16, output.layout == .channelBlocked else { return nil }
        (source, target) = (output.pointer, output.storage.makeBFloat16Copy())
    }

    /// For a convolution's output gradient: where input gradients are bf16 too (PyTorch's autocast
    /// arithmetic), both of the convolution's gradients read it in bfloat16 only, so the kernel
    /// writes the copy alone and the float32 values are the copy's, widened if anything reads them
    /// (`TensorStorage.pointer`), which spares a write of four bytes per value.
    init?(forOutputGradient output: Tensor) {
        guard Precision.current == .bf16, output.layout == .channelBlocked else { return nil }
        let deferred = Precision.currentInputGradients == .bf16
        (source, target) = (
            deferred ? nil : output.pointer, output.storage.makeBFloat16Copy(deferFloat32Values: deferred)
        )
    }

    /// Whether the kernel hands its values over in chunks (`round(_:count:at:)`) instead of
    /// writing them to the output.
    var defersFloat32Values: Bool { source == nil }

    /// Rounds the elements at storage positions `range`, which the kernel has written.
    func round(_ range: Range<Int>) {
        maxq_round_to_bf16(source! + range.lowerBound, target + range.lowerBound, Int64(range.count))
    }

    /// Rounds `count` values the kernel computed into `values` (the output itself, or where the float32
    /// values are deferred a buffer of its own), the output's at storage position `offset`.
    func round(_ values: UnsafePointer<Float>, count: Int, at offset: Int) {
        maxq_round_to_bf16(values, target + offset, Int64(count))
    }
}
