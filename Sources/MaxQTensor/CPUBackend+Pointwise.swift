// Point-wise kernels: activations and their derivatives, broadcasting add/multiply and the
// sums that reverse broadcasting. Element-wise results keep their first operand's layout
// (ChannelBlocks.swift); broadcasting works in NCHW.
import Foundation

/// How `b` broadcasts over `a`: `b` has `a`'s shape with leading dims [0, p) and trailing dims
/// [q, rank) set to 1 (same shape; (N, C, 1, 1) for squeeze-excitation; (1, C, 1, 1) for a
/// per-channel term). Then a's flat index is (outer * middle + m) * inner + i and b's is m.
struct BroadcastPattern {
    let outer: Int, middle: Int, inner: Int

    init(_ a: [Int], _ b: [Int], op: String) throws(TensorError) {
        guard a.count == b.count else { throw .shapeMismatch(op: op, a, b) }
        var p = 0
        while p < a.count, b[p] == 1, a[p] != 1 { p += 1 }
        var q = p
        while q < a.count, b[q] == a[q] { q += 1 }
        guard b[q...].allSatisfy({ $0 == 1 }) else { throw .shapeMismatch(op: op, a, b) }
        outer = a[..<p].reduce(1, *)
        middle = a[p..<q].reduce(1, *)
        inner = a[q...].reduce(1, *)
    }
}

/// Element-wise functions as types, so that generic kernels specialise and inline them (a
/// closure called per element through a parallel loop would not vectorise).
protocol UnaryFunction { static func apply(_ x: Float) -> Float }
protocol BinaryFunction { static func apply(_ a: Float, _ b: Float) -> Float }

enum ReLU: UnaryFunction { @inline(__always) static func apply(_ x: Float) -> Float { max(x, 0) } }
enum ReLU6: UnaryFunction { @inline(__always) static func apply(_ x: Float) -> Float { min(max(x, 0), 6) } }
enum Hardswish: UnaryFunction {
    @inline(__always) static func apply(_ x: Float) -> Float { x * min(max(x + 3, 0), 6) / 6 }
}
enum Hardsigmoid: UnaryFunction {
    @inline(__always) static func apply(_ x: Float) -> Float { min(max(x + 3, 0), 6) / 6 }
}
enum Sigmoid: UnaryFunction {
    @inline(__always) static func apply(_ x: Float) -> Float { 1 / (1 + Foundation.exp(-x)) }
}

/// Derivatives with PyTorch's choices at the kinks: relu'(0) = 0, relu6 and hardsigmoid flat
/// at their end points, hardswish'(-3) = 0 and hardswish'(3) = 1. Arguments: (dy, x).
enum ReLUGrad: BinaryFunction { @inline(__always) static func apply(_ g: Float, _ v: Float) -> Float { v > 0 ? g : 0 } }
enum ReLU6Grad: BinaryFunction {
    @inline(__always) static func apply(_ g: Float, _ v: Float) -> Float { v > 0 && v < 6 ? g : 0 }
}
enum HardswishGrad: BinaryFunction {
    @inline(__always) static func apply(_ g: Float, _ v: Float) -> Float {
        v <= -3 ? 0 : (v < 3 ? g * (v / 3 + 0.5) : g)
    }
}
enum HardsigmoidGrad: BinaryFunction {
    @inline(__always) static func apply(_ g: Float, _ v: Float) -> Float { v > -3 && v < 3 ? g / 6 : 0 }
}
/// Arguments (dy, y): sigmoid' from its output.
enum SigmoidGrad: BinaryFunction {
    @inline(__always) static func apply(_ g: Float, _ s: Float) -> Float { g * s * (1 - s) }
}
enum Plus: BinaryFunction { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a + b } }
enum PlusReLU: BinaryFunction {
    @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { max(a + b, 0) }
}
enum Times: BinaryFunction { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a * b } }

extension CPUBackend {
    /// `roundedCopy`: the output is a convolution's input; write its bfloat16 copy in a bf16 scope
    /// (BFloat16Copies.swift).
    func map<F: UnaryFunction>(_ x: Tensor, _: F.Type, roundedCopy: Bool = false) -> Tensor {
        let y = Tensor(uninitializedShape: x.shape, layout: x.layout)
        let (xp, yp) = (x.pointer, y.mutablePointer)
        let rounded = roundedCopy ? BFloat16CopyWriter(for: y) : nil
        parallelRanges(x.count, grain: 1 << 15) { r in
            for i in r { yp[i] = F.apply(xp[i]) }
            rounded?.round(r)
        }
        return y
    }

    /// `roundedCopy` as for `map`.
    func zip<F: BinaryFunction>(_ a: Tensor, _ b: Tensor, _: F.Type, roundedCopy: Bool = false) -> Tensor {
        let b = b.inLayout(a.layout)
        let y = Tensor(uninitializedShape: a.shape, layout: a.layout)
        let (ap, bp, yp) = (a.pointer, b.pointer, y.mutablePointer)
        let rounded = roundedCopy ? BFloat16CopyWriter(for: y) : nil
        parallelRanges(a.count, grain: 1 << 15) { r in
            for i in r { yp[i] = F.apply(ap[i], bp[i]) }
            rounded?.round(r)
        }
        withExtendedLifetime(b) {}  // a converted `b` lives until the loop has read it
        return y
    }

    public func activation(_ kind: Activation, _ x: Tensor) -> Tensor {
        switch kind {
        case .relu: map(x, ReLU.self, roundedCopy: true)
        case .relu6: map(x, ReLU6.self, roundedCopy: true)
        case .hardswish: map(x, Hardswish.self, roundedCopy: true)
        case .hardsigmoid: map(x, Hardsigmoid.self)
        case .sigmoid: map(x, Sigmoid.self)
        }
    }

    public func activationBackward(_ kind: Activation, _ dy: Tensor, x: Tensor, y: Tensor) -> Tensor {
        switch kind {
        case .relu: zip(dy, x, ReLUGrad.self)
        case .relu6: zip(dy, x, ReLU6Grad.self)
        case .hardswish: zip(dy, x, HardswishGrad.self)
        case .hardsigmoid: zip(dy, x, HardsigmoidGrad.self)
        case .sigmoid: zip(dy, y, SigmoidGrad.self)
        }
    }

    func broadcast<F: BinaryFunction>(_ a: Tensor, _ b: Tensor, op: String, _: F.Type) throws(TensorError) -> Tensor {
        let pattern = try BroadcastPattern(a.shape, b.shape, op: op)
        if pattern.outer == 1, pattern.inner == 1 { return zip(a, b, F.self) }
        let (a, b) = (a.inNCHW(), b.inNCHW())
        let y = Tensor(uninitializedShape: a.shape)
        let (ap, bp, yp) = (a.pointer, b.pointer, y.mutablePointer)
        let (middle, inner) = (pattern.middle, pattern.inner)
        parallelRanges(pattern.outer * middle, grain: max(1, 4096 / inner)) { rows in
            for row in rows {
                let v = bp[row % middle]
                let base = row * inner
                for i in 0..<inner { yp[base + i] = F.apply(ap[base + i], v) }
            }
        }
        withExtendedLifetime((a, b)) {}  // converted operands live until the loop has read them
        return y
    }

    public func add(_ a: Tensor, _ b: Tensor) throws(TensorError) -> Tensor {
        try broadcast(a, b, op: "add", Plus.self)
    }

    public func addReLU(_ a: Tensor, _ b: Tensor) throws(TensorError) -> Tensor {
        guard a.shape == b.shape else { throw .shapeMismatch(op: "add_relu", a.shape, b.shape) }
        return zip(a, b, PlusReLU.self, roundedCopy: true)
    }

    public func multiply(_ a: Tensor, _ b: Tensor) throws(TensorError) -> Tensor {
        try broadcast(a, b, op: "multiply", Times.self)
    }

    public func sum(_ t: Tensor, toShape shape: [Int]) throws(TensorError) -> Tensor {
        let pattern = try BroadcastPattern(t.shape, shape, op: "sum")
        if pattern.outer == 1, pattern.inner == 1 { return t }
        let t = t.inNCHW()
        let y = Tensor(shape: shape, repeating: 0)
        let (tp, yp) = (t.pointer, y.mutablePointer)
        let (outer, middle, inner) = (pattern.outer, pattern.middle, pattern.inner)
        parallelRanges(middle) { ms in
            for m in ms {
                var s: Double = 0
                for o in 0..<outer {
                    let base = (o * middle + m) * inner
                    var partial: Float = 0
                    for i in 0..<inner { partial += tp[base + i] }
                    s += Double(partial)
                }
                yp[m] = Float(s)
            }
        }
        withExtendedLifetime(t) {}  // a converted `t` lives until the loop has read it
        return y
    }

    public func scale(_ t: Tensor, by factor: Float) -> Tensor {
        let y = Tensor(uninitializedShape: t.shape, layout: t.layout)
        let (tp, yp) = (t.pointer, y.mutablePointer)
        parallelRanges(t.count, grain: 1 << 15) { r in
            for i in r { yp[i] = tp[i] * factor }
        }
        return y
    }
}
