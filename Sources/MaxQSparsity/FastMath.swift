// Branch-free arithmetic for the mask kernels: a single-precision exponential (Cephes' expf
// polynomial, within 2 ulp), so that the mask's sigmoids vectorise; libm's expf is called per
// element and dominates otherwise.

@inline(__always)
func fastExp(_ value: Float) -> Float {
    let x = min(max(value, -87.3), 88.7)
    let n = (x * 1.442_695_04 + 0.5).rounded(.down)
    let r = x - n * 0.693_359_375 + n * 2.121_944_4e-4
    var p: Float = 1.987_569_15e-4
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    p = p * r * r + r + 1
    return p * Float(bitPattern: UInt32(bitPattern: Int32(n) + 127) << 23)
}

@inline(__always)
func fastSigmoid(_ x: Float) -> Float {
    1 / (1 + fastExp(-x))
}

/// 1 for true, 0 for false, as arithmetic: keeps comparisons out of branches so loops over
/// random data neither mispredict nor stop vectorising.
@inline(__always)
func bit(_ condition: Bool) -> Int32 {
    Int32(unsafeBitCast(condition, to: UInt8.self))
}
