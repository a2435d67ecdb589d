// Which sparse kernel a layer runs for one input layout, with what it reads, and the one call
// shape both kernels are driven through.
import CKernels

/// One kernel call: output channels (or quads of them) `units` of one image, pixels `pixels`.
struct KernelCall {
    let image: UnsafePointer<Float>, bias: UnsafePointer<Float>
    let units: Range<Int>
    let outputs: Int
    let pixels: Range<Int>
    let length: Int
    let residual: UnsafePointer<Float>?
    let lower: Float, upper: Float
    let output: UnsafeMutablePointer<Float>
    /// Whether the output is final (no later pass of the layer reads it): the per-channel kernel
    /// then writes it past the caches (see `NMConvolution.run`).
    let streamsOutput: Bool
}

struct KernelPlan {
    enum Kernel {
        /// The per-channel kernel: every output channel's `kept` values with their inputs'
        /// offsets, summed `chunk` values at a time, stored chunk by chunk (`chunkMajor`).
        case channels(values: [Float], offsets: [Int32], kept: Int, chunk: Int)
        /// The quad kernel (AVX-512; see `NMConvolution.usesQuads`).
        case quads(QuadLists)
    }

    let kernel: Kernel
    /// Where the input runs the kernel reads start, each rounded down to a 16-float boundary,
    /// without repeats: the kernels prefetch their next 64 pixels.
    let runStarts: [Int32]

    var isQuads: Bool {
        if case .quads = kernel { true } else { false }
    }

    /// Pixels the kernel computes per pass over its kept weights (kernels.h): 80 for quads, 64 per channel.
    static func blockPixels(quads: Bool) -> Int {
        quads ? MAXQ_QUAD_BLOCK_PIXELS : MAXQ_CHANNEL_BLOCK_PIXELS
    }
    var blockPixels: Int { Self.blockPixels(quads: isQuads) }

    /// What tasks split: output channels or quads.
    var units: Int {
        switch kernel {
        case .channels(let values, _, let kept, _): values.count / kept
        case .quads(let lists): lists.quads
        }
    }

    /// Every output channel's `kept` weights (channel by channel) stored chunk by chunk of `chunk`,
    /// channel by channel within a chunk: the order in which the per-channel kernel, every output
    /// channel of a task going through one chunk before the next, reads them (channel by channel,
    /// a task read one stream per output channel, more than the hardware prefetchers follow).
    static func chunkMajor<T>(_ lists: [T], outputs: Int, kept: Int, chunk: Int) -> [T] {
        var result: [T] = []
        result.reserveCapacity(lists.count)
        for first in stride(from: 0, to: kept, by: chunk) {
            let end = min(kept, first + chunk)
            for o in 0..<outputs { result += lists[o * kept + first..<o * kept + end] }
        }
        return result
    }

    /// `body` with a function that runs the kernel for one call.
    func withKernel<R>(_ body: ((KernelCall) -> Void) -> R) -> R {
        runStarts.withUnsafeBufferPointer { rs in
            let (runs, runCount) = (rs.baseAddress, Int64(rs.count))
            switch kernel {
            case .channels(let values, let offsets, let kept, let chunk):
                return values.withUnsafeBufferPointer { vs in
                    offsets.withUnsafeBufferPointer { cs in
                        let (vp, cp) = (vs.baseAddress!, cs.baseAddress!)
                        return body { c in
                            maxq_nm_conv_lines(
                                c.image, cp, vp, Int64(kept), Int64(chunk), Int64(c.outputs), c.bias,
                                Int64(c.units.lowerBound),
                                Int64(c.units.upperBound), Int64(c.pixels.lowerBound), Int64(c.pixels.upperBound),
                                Int64(c.length), c.residual, c.lower, c.upper, c.output, runs, runCount,
                                c.streamsOutput ? 1 : 0)
                        }
                    }
                }
            case .quads(let lists):
                return lists.withPointers { offsets, weights, counts, starts in
                    body { c in
                        maxq_nm_conv_quads(
                            c.image, offsets, weights, counts, starts, Int64(lists.chunks), c.bias,
                            Int64(c.units.lowerBound), Int64(c.units.upperBound), Int64(c.outputs),
                            Int64(c.pixels.lowerBound), Int64(c.pixels.upperBound), Int64(c.length), c.residual,
                            c.lower, c.upper, c.output, runs, runCount)
                    }
                }
            }
        }
    }
}
