// The tensor type: a shape and contiguous float32 storage (NCHW for images, OIHW for
// convolution weights; a deployed model's channel-major activations are rank 5), with
// copy-on-write value semantics.
import CKernels
import Foundation

/// Where a tensor's storage lives, which decides the backend its kernels run on. `reference`
/// is host memory computed by `ReferenceBackend`'s plain loops (the twin every fast kernel is
/// checked against); a GPU backend adds a case here and a `Backend` conformer (docs/backends.md).
public enum Device: String, Sendable, Equatable {
    case cpu, reference
}

/// 64-byte aligned float32 storage shared by tensors until one of them writes, optionally with
/// its values rounded to bfloat16 beside it (`BFloat16Copies.swift`). A kernel whose output only
/// bf16 convolutions read may write the copy alone (`deferFloat32Values`); the float32 values are
/// then the copy's, widened on first use.
final class TensorStorage: @unchecked Sendable {
    private let floats: UnsafeMutablePointer<Float>
    let count: Int
    /// The values rounded to bfloat16 in the same order, written by the kernel that wrote the values.
    private(set) var bfloat16Copy: UnsafeMutablePointer<UInt16>?
    /// Whether the float32 values are still to be widened from the bfloat16 copy.
    private var floatsDeferred = false
    /// Serialises the widening (rare: only where something other than a convolution reads).
    private static let wideningLock = NSLock()

    init(count: Int) {
        self.count = count
        floats = BufferPool.shared.allocate(bytes: max(count, 1) * MemoryLayout<Float>.stride)
            .bindMemory(to: Float.self, capacity: max(count, 1))
    }

    deinit {
        BufferPool.shared.release(floats, bytes: max(count, 1) * MemoryLayout<Float>.stride)
        releaseBFloat16Copy()
    }

    /// Whether the float32 values are the bfloat16 copy's, not widened yet.
    var float32ValuesDeferred: Bool { floatsDeferred }

    /// The float32 values.
    var pointer: UnsafeMutablePointer<Float> {
        if floatsDeferred { widenDeferredValues() }
        return floats
    }

    private func widenDeferredValues() {
        Self.wideningLock.lock()
        defer { Self.wideningLock.unlock() }
        guard floatsDeferred, let copy = bfloat16Copy else { return }
        maxq_widen_bf16(copy, floats, Int64(count))
        floatsDeferred = false
    }

    private var bfloat16CopyBytes: Int { max(count, 1) * MemoryLayout<UInt16>.stride }

    /// Room for the bfloat16 copy, which the caller fills before anyone reads the storage. With
    /// `deferFloat32Values` the caller writes the copy alone, and the float32 values are the copy's.
    func makeBFloat16Copy(deferFloat32Values: Bool = false) -> UnsafeMutablePointer<UInt16> {
        discardBFloat16Copy()
        let copy = BufferPool.shared.allocate(bytes: bfloat16CopyBytes).bindMemory(
            to: UInt16.self, capacity: max(count, 1))
        bfloat16Copy = copy
        floatsDeferred = deferFloat32Values
        return copy
    }

    /// Drops the bfloat16 copy (the values are about to change), widening it first where it is all
    /// there is.
    func discardBFloat16Copy() {
        if floatsDeferred { widenDeferredValues() }
        releaseBFloat16Copy()
    }

    private func releaseBFloat16Copy() {
        guard let copy = bfloat16Copy else { return }
        BufferPool.shared.release(copy, bytes: bfloat16CopyBytes)
        bfloat16Copy = nil
    }

    func copy() -> TensorStorage {
        let other = TensorStorage(count: count)
        other.floats.update(from: pointer, count: count)
        return other
    }
}

public struct Tensor: @unchecked Sendable {
    public private(set) var shape: [Int]
    public internal(set) var device: Device = .cpu
    /// How the storage orders the values (ChannelBlocks.swift); the public accessors below give
    /// them in NCHW order whatever the layout.
    public internal(set) var layout: TensorLayout = .nchw
    var storage: TensorStorage

    public var count: Int { storage.count }
    public var rank: Int { shape.count }

    /// A tensor whose contents are undefined (storage reused from the buffer pool): for
    /// kernels that write every element before reading any.
    public init(uninitializedShape shape: [Int]) {
        self.init(uninitializedShape: shape, layout: .nchw)
    }

    init(uninitializedShape shape: [Int], layout: TensorLayout) {
        self.shape = shape
        self.layout = layout
        self.storage = TensorStorage(count: shape.reduce(1, *))
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, repeating: 0)
    }

    public init(shape: [Int], repeating value: Float) {
        self.init(uninitializedShape: shape)
        storage.pointer.initialize(repeating: value, count: count)
    }

    /// The number of elements of `shape`; nil when a dimension is negative or the product
    /// overflows (shapes read from files are untrusted).
    public static func elementCount(_ shape: [Int]) -> Int? {
        var product = 1
        for dimension in shape {
            guard dimension >= 0 else { return nil }
            let (next, overflow) = product.multipliedReportingOverflow(by: dimension)
            guard !overflow else { return nil }
            product = next
        }
        return product
    }

    public init(shape: [Int], scalars: [Float]) throws(TensorError) {
        guard let expected = Self.elementCount(shape), expected == scalars.count else {
            throw .elementCount(shape: shape, count: scalars.count)
        }
        self.init(uninitializedShape: shape)
        scalars.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: expected) }
    }

    public init(scalar: Float) {
        self.init(shape: [], repeating: scalar)
    }

    /// True when no element is NaN or infinite. x * 0 is 0 for a finite x and NaN otherwise; summed
    /// without a branch per element this runs 8 lanes wide (checking each element and stopping at the
    /// first non-finite one ran one element per cycle: a tenth of the mask computation's time).
    public var isAllFinite: Bool {
        let values = storage.pointer
        var lanes = SIMD8<Float>()
        var i = 0
        while i + 8 <= count {
            lanes += UnsafeRawPointer(values + i).loadUnaligned(as: SIMD8<Float>.self) * 0
            i += 8
        }
        var rest: Float = 0
        while i < count {
            rest += values[i] * 0
            i += 1
        }
        return !(lanes.sum() + rest).isNaN
    }

    /// The values in NCHW order.
    public var scalars: [Float] {
        let plain = inNCHW()
        // `plain` (a conversion, for blocked values) must outlive the copy out of its storage.
        return withExtendedLifetime(plain) { Array(UnsafeBufferPointer(start: plain.storage.pointer, count: count)) }
    }

    /// The single value of a one-element tensor.
    public var scalarValue: Float { storage.pointer[0] }

    /// The value at `index` in NCHW order.
    public subscript(flat index: Int) -> Float {
        get { storage.pointer[storageIndex(ofNCHW: index)] }
        set {
            self = inNCHW()
            makeUnique()
            storage.pointer[index] = newValue
        }
    }

    /// The values in NCHW order.
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        let plain = inNCHW()
        return try withExtendedLifetime(plain) {
            try body(UnsafeBufferPointer(start: plain.storage.pointer, count: count))
        }
    }

    /// The values in NCHW order (the tensor becomes NCHW).
    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        self = inNCHW()
        makeUnique()
        return try body(UnsafeMutableBufferPointer(start: storage.pointer, count: count))
    }

    mutating func makeUnique() {
        if isKnownUniquelyReferenced(&storage) {
            storage.discardBFloat16Copy()
        } else {
            storage = storage.copy()
        }
    }

    /// Read-only pointer for kernels (the tensor must outlive its use).
    var pointer: UnsafePointer<Float> { UnsafePointer(storage.pointer) }

    /// Writable pointer for kernels after `makeUnique()`; used on freshly created outputs.
    var mutablePointer: UnsafeMutablePointer<Float> { storage.pointer }

    /// The same tensor on another device (both devices keep host memory today: no copy, but for
    /// channel-blocked values, which only the CPU backend reads).
    public func on(_ device: Device) -> Tensor {
        var result = device == .cpu ? self : inNCHW()
        result.device = device
        return result
    }

    /// The same elements under another shape with the same element count (no copy).
    public func reshaped(_ newShape: [Int]) throws(TensorError) -> Tensor {
        guard newShape.reduce(1, *) == count else { throw .shapeMismatch(op: "reshape", shape, newShape) }
        var result = newShape == shape ? self : inNCHW()
        result.shape = newShape
        return result
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = scalars.prefix(8).map { String(format: "%.4f", $0) }.joined(separator: ", ")
        return "Tensor(\(shape): [\(preview)\(count > 8 ? ", ..." : "")])"
    }
}

extension Tensor {
    /// The first `count` elements of `source` under `shape` (a copy).
    public init(copying source: Tensor, count: Int, shape: [Int]) {
        self.init(uninitializedShape: shape)
        storage.pointer.update(from: source.inNCHW().storage.pointer, count: count)
    }
}

/// Channel-major activations: a batch of feature maps stored as (C, N, H, W), a channel's pixels of
/// every image in one run (what a deployed model's sparse layers read and write), held as a rank-5
/// tensor (1, C, N, H, W) so that no layer can take one for NCHW: a layer either knows the layout
/// or refuses the rank.
extension Tensor {
    public var isChannelMajor: Bool { rank == 5 && shape[0] == 1 }

    /// NCHW (N, C, H, W) as channel-major (1, C, N, H, W) (copied, but for one image).
    public func channelMajor() -> Tensor {
        precondition(rank == 4, "channel-major from a tensor of rank \(rank)")
        return try! inNCHW().swappingFirstTwoAxes().reshaped([1] + [shape[1], shape[0]] + shape.dropFirst(2))
    }

    /// Channel-major (1, C, N, H, W) back to NCHW (N, C, H, W) (copied, but for one image).
    public func channelMajorToNCHW() -> Tensor {
        precondition(isChannelMajor, "NCHW from a tensor of shape \(shape) that is not channel-major")
        return try! reshaped(Array(shape.dropFirst())).swappingFirstTwoAxes()
    }

    /// (A, B, rest...) as (B, A, rest...): copied, but for A or B of 1 (a batch of one image), where
    /// both orders are the same values.
    func swappingFirstTwoAxes() -> Tensor {
        let (a, b) = (shape[0], shape[1])
        if a == 1 || b == 1 { return try! reshaped([b, a] + shape.dropFirst(2)) }
        let inner = shape.dropFirst(2).reduce(1, *)
        let result = Tensor(uninitializedShape: [b, a] + shape.dropFirst(2))
        let (from, to) = (pointer, result.mutablePointer)
        parallelRanges(a * b, grain: max(1, 16384 / max(inner, 1))) { blocks in
            for block in blocks {
                let (i, j) = (block / b, block % b)
                (to + (j * a + i) * inner).update(from: from + block * inner, count: inner)
            }
        }
        return result
    }
}
