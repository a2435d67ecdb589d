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

/// Runs `body(i)` for every i in 0..<count on all cores, each worker taking the next index
/// when it finishes one (for tasks of uneven size; put the largest first).
public func parallelForEach(_ count: Int, _ body: (Int) -> Void) {
    let next = SharedCounter()
    withoutActuallyEscaping(body) { body in
        let work = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: min(Threading.count, max(count, 1))) { _ in
            while let i = next.take(below: count) { work.value(i) }
        }
    }
}

private final class SharedCounter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()

    func take(below limit: Int) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard value < limit else { return nil }
        value += 1
        return value - 1
    }
}
