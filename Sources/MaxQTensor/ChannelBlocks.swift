// The channel-blocked layout of activations in training: an (N, C, H, W) tensor stored as
// (N, C/16, H, W, 16), sixteen channels of a pixel side by side (oneDNN's nChw16c, the layout its
// convolutions compute in on AVX-512). Kept from one operation to the next, it spares every
// convolution the reorders of its input and output to and from NCHW; batch norm, pooling and the
// element-wise kernels read it with a channel per vector lane (docs/performance.md).
// A tensor's shape stays (N, C, H, W) in either layout: only kernels that know the layout see
// its storage, and every other way into a tensor's values gives them in NCHW order.
import CDNNL

public enum TensorLayout: String, Sendable {
    case nchw
    /// (N, C/16, H, W, 16); only for rank-4 tensors whose channels are a multiple of 16.
    case channelBlocked

    /// Channels per block.
    public static let blockWidth = 16

    /// The layout convolutions recorded now write their outputs in, where the channels allow
    /// (`run`): NCHW unless a training step asks for blocks.
    @TaskLocal public static var preferred: TensorLayout = .nchw

    /// Runs `body` with convolutions writing channel-blocked outputs where they can; everything
    /// computed from them keeps the layout, and gradients follow their values' layout.
    public static func run<R, E: Error>(_ layout: TensorLayout, _ body: () throws(E) -> R) throws(E) -> R {
        let result: Result<R, E> = $preferred.withValue(layout) {
            do throws(E) { return .success(try body()) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// The layout a convolution's output of `shape` takes now: blocked when preferred and possible.
    static func forOutput(_ shape: [Int]) -> TensorLayout {
        preferred == .channelBlocked && canBlock(shape) ? .channelBlocked : .nchw
    }

    /// oneDNN's name for the layout of a rank-4 tensor.
    var dnnlTag: dnnl_format_tag_t { self == .nchw ? dnnl_nchw : dnnl_nChw16c }

    /// Whether a tensor of `shape` can be stored channel-blocked.
    public static func canBlock(_ shape: [Int]) -> Bool {
        shape.count == 4 && shape[1] > 0 && shape[1] % blockWidth == 0
    }
}

extension Tensor {
    /// This tensor in NCHW order (itself when it is already).
    public func inNCHW() -> Tensor { inLayout(.nchw) }

    /// This tensor in `layout` (itself when it is already, or when it cannot be blocked).
    public func inLayout(_ target: TensorLayout) -> Tensor {
        guard target != layout, target == .nchw || TensorLayout.canBlock(shape) else { return self }
        var result = Tensor(uninitializedShape: shape, layout: target)
        result.device = device
        let (n, blocks, plane) = (shape[0], shape[1] / TensorLayout.blockWidth, shape[2] * shape[3])
        let toBlocks = target == .channelBlocked
        let (source, destination) = (pointer, result.mutablePointer)
        parallelRanges(n * blocks, grain: max(1, 4096 / max(plane, 1))) { range in
            for block in range {
                // One block: sixteen channel planes of `plane` values <-> `plane` pixels of 16.
                let base = block * plane * TensorLayout.blockWidth
                for lane in 0..<TensorLayout.blockWidth {
                    let channelPlane = base + lane * plane
                    if toBlocks {
                        for j in 0..<plane {
                            destination[base + j * TensorLayout.blockWidth + lane] = source[channelPlane + j]
                        }
                    } else {
                        for j in 0..<plane {
                            destination[channelPlane + j] = source[base + j * TensorLayout.blockWidth + lane]
                        }
                    }
                }
            }
        }
        return result
    }

    /// The values in the order the layout stores them.
    public var storedScalars: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    /// Where the value at `index` in NCHW order is stored.
    func storageIndex(ofNCHW index: Int) -> Int {
        guard layout == .channelBlocked else { return index }
        let (c, plane, width) = (shape[1], shape[2] * shape[3], TensorLayout.blockWidth)
        let (image, channel, pixel) = (index / (c * plane), index / plane % c, index % plane)
        return ((image * (c / width) + channel / width) * plane + pixel) * width + channel % width
    }

    /// The first value of each channel (the first image's top-left pixel), in either layout.
    public func firstValuePerChannel() -> [Float] {
        precondition(rank == 4, "first values of a tensor of rank \(rank)")
        let (c, plane) = (shape[1], shape[2] * shape[3])
        guard count > 0 else { return [] }
        return (0..<c).map { pointer[storageIndex(ofNCHW: $0 * plane)] }
    }
}
