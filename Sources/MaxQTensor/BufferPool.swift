// Reuse of large aligned buffers. A training step allocates the same sizes every iteration;
// handing a freed buffer back instead of returning it to the kernel avoids the page faults of
// touching fresh memory, which would otherwise cost as much as a point-wise kernel.
import Foundation

final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()

    /// Buffers below this size come from malloc directly (its own free lists serve them well).
    private let minimumPooledBytes = 1 << 20
    /// Upper bound on bytes held idle in the pool.
    private let capacityBytes = 4 << 30
    private var idle: [Int: [UnsafeMutableRawPointer]] = [:]
    private var idleBytes = 0
    private let lock = NSLock()

    /// Rounds a request up to its size class (64 KiB granularity for pooled buffers).
    private func sizeClass(_ bytes: Int) -> Int {
        bytes < minimumPooledBytes ? max(bytes, 64) : (bytes + 0xFFFF) & ~0xFFFF
    }

    func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        let size = sizeClass(bytes)
        if size >= minimumPooledBytes {
            lock.lock()
            let reused = idle[size]?.popLast()
            if reused != nil { idleBytes -= size }
            lock.unlock()
            if let reused { return reused }
        }
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, size) == 0, let raw else { fatalError("out of memory allocating \(size) bytes") }
        return raw
    }

    func release(_ pointer: UnsafeMutableRawPointer, bytes: Int) {
        let size = sizeClass(bytes)
        if size >= minimumPooledBytes {
            lock.lock()
            if idleBytes + size <= capacityBytes {
                idle[size, default: []].append(pointer)
                idleBytes += size
                lock.unlock()
                return
            }
            lock.unlock()
        }
        free(pointer)
    }
}
