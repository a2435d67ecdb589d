// Branch-free arithmetic for the mask kernels (the soft terms' exponential is in CKernels).

/// 1 for true, 0 for false, as arithmetic: keeps comparisons out of branches so loops over
/// random data neither mispredict nor stop vectorising.
@inline(__always)
func bit(_ condition: Bool) -> Int32 {
    Int32(unsafeBitCast(condition, to: UInt8.self))
}
