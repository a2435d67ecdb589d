// Parallel loops for our own kernels, run on OpenMP's pool (CParallel) so that they share the
// cores with oneDNN's threads instead of fighting their spin-waits.
import CParallel
import Foundation

public enum Threading {
    /// Worker count for our kernels, oneDNN (OpenMP) and OpenBLAS alike.
    public static let count = max(1, Int(maxq_max_threads()))

    /// Sets the worker count; only before `count` is first read (a process's first kernel),
    /// which then reports it. Data-parallel ranks sharing a machine divide its cores this way.
    public static func limit(to threads: Int) {
        maxq_set_threads(Int32(max(1, threads)))
    }
}

/// Runs `body` on disjoint sub-ranges of `0..<total`, in parallel when the work is large enough.
/// `grain` is the smallest range worth a thread of its own.
@inline(__always)
public func parallelRanges(_ total: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
    let chunks = min(Threading.count, max(1, total / max(grain, 1)))
    if chunks <= 1 {
        if total > 0 { body(0..<total) }
        return
    }
    run(total, chunks: chunks, dynamic: false, body)
}

/// Runs `body(i)` for every i in 0..<count on all cores, each worker taking the next index
/// when it finishes one (for tasks of uneven size; put the largest first).
public func parallelForEach(_ count: Int, _ body: (Int) -> Void) {
    run(count, chunks: count, dynamic: true) { range in range.forEach(body) }
}

private func run(_ total: Int, chunks: Int, dynamic: Bool, _ body: (Range<Int>) -> Void) {
    withoutActuallyEscaping(body) { body in
        var box = body
        withUnsafeMutablePointer(to: &box) { context in
            let trampoline: maxq_range_body = { context, start, end in
                context!.assumingMemoryBound(to: ((Range<Int>) -> Void).self).pointee(Int(start)..<Int(end))
            }
            if dynamic {
                maxq_parallel_dynamic(total, context, trampoline)
            } else {
                maxq_parallel_ranges(total, chunks, context, trampoline)
            }
        }
    }
}
