// Parallel loops for our own kernels: a range split into one contiguous chunk per core.
import Foundation

public enum Threading {
    /// Worker count for our kernels, oneDNN (OpenMP) and OpenBLAS alike.
    public static let count = max(1, ProcessInfo.processInfo.activeProcessorCount)
}

/// Runs `body` on disjoint sub-ranges of `0..<total`, in parallel when the work is large enough.
/// `grain` is the smallest range worth a thread of its own.
@inline(__always)
func parallelRanges(_ total: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
    let chunks = min(Threading.count, max(1, total / max(grain, 1)))
    if chunks <= 1 {
        if total > 0 { body(0..<total) }
        return
    }
    withoutActuallyEscaping(body) { body in
        let work = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let start = total * chunk / chunks
            let end = total * (chunk + 1) / chunks
            if start < end { work.value(start..<end) }
        }
    }
}

/// Our kernels write disjoint ranges through raw pointers; the compiler cannot see that.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
