// The instruction-set level our C kernels (CKernels) run at: the best this CPU has, chosen at run
// time, so that one build runs on every x86-64 CPU and uses AVX2 or AVX-512 where present.
import CKernels

public enum KernelLevel: Int, Comparable, CaseIterable, Sendable, CustomStringConvertible {
    case baseline = 0, avx2, avx512

    /// The best level this CPU supports.
    public static var supported: KernelLevel { KernelLevel(rawValue: Int(maxq_supported_kernel_level().rawValue))! }

    /// The level the kernels run at now.
    public static var active: KernelLevel { KernelLevel(rawValue: Int(maxq_active_kernel_level().rawValue))! }

    /// Runs the kernels at `level` (or the supported level, if lower) from now on; every level
    /// computes the same bits, so this changes speed only.
    public static func use(_ level: KernelLevel) {
        maxq_use_kernel_level(maxq_kernel_level(rawValue: UInt32(level.rawValue)))
    }

    public var description: String {
        switch self {
        case .baseline: "baseline (SSE2)"
        case .avx2: "AVX2+FMA"
        case .avx512: "AVX-512"
        }
    }

    public static func < (a: KernelLevel, b: KernelLevel) -> Bool { a.rawValue < b.rawValue }
}
