// Order statistics without sorting. Magnitudes are non-negative floats, whose bit patterns
// order like the values, so the k-th smallest is found by a three-level radix select
// (11 + 11 + 9 bits): one histogram pass over the data, then passes over the few candidates.
// The per-element loops use wrapping arithmetic (&+, &>>): indices are bounded by construction,
// and overflow checks there would cost a third of the mask time.
import CKernels

/// Rows of magnitudes: `count` runs of `length` contiguous floats, `stride` apart.
struct Segments {
    let base: UnsafePointer<Float>
    let count: Int
    let length: Int
    let stride: Int

    var total: Int { count * length }

    @inline(__always)
    func forEach(_ body: (Float) -> Void) {
        for s in 0..<count {
            let row = base + s &* stride
            for j in 0..<length { body(row[j]) }
        }
    }
}

/// Working memory for selections: a histogram and a candidate list as long as the longest row.
final class SelectionScratch {
    private static let maximumBins = 2048
    let histogram: UnsafeMutablePointer<Int32>
    /// The smallest bit pattern in each bin.
    let minimum: UnsafeMutablePointer<UInt32>
    let candidates: UnsafeMutablePointer<UInt32>
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        histogram = .allocate(capacity: Self.maximumBins)
        minimum = .allocate(capacity: Self.maximumBins)
        candidates = .allocate(capacity: max(capacity, 1))
    }

    deinit {
        histogram.deallocate()
        minimum.deallocate()
        candidates.deallocate()
    }

    /// The k-th smallest (0-based) of non-negative `values`, how many values are smaller and
    /// how many equal, and the smallest value above it (infinity if none): repeatedly
    /// histogram the bit patterns between the current bounds (about eight values per bin, so
    /// short rows cost little) and keep the bin holding rank k, until the bounds meet.
    func select(_ values: Segments, _ k: Int) -> (kth: Float, less: Int, equal: Int, above: Float) {
        precondition(k >= 0 && k < values.total && values.total <= capacity)
        var low = UInt32.max, high: UInt32 = 0
        values.forEach { v in
            low = min(low, v.bitPattern)
            high = max(high, v.bitPattern)
        }
        var rank = k
        var count = values.total
        var first = true
        var above = UInt32.max  // smallest bit pattern seen in a bin above the chosen one
        while low < high {
            let bins = min(Self.maximumBins, max(64, count / 8))
            let binBits = Int.bitWidth - (bins - 1).leadingZeroBitCount  // bins <= 2^binBits
            let spanBits = UInt32.bitWidth - (high - low).leadingZeroBitCount
            let shift = UInt32(max(0, spanBits - binBits))
            let used = Int((high - low) >> shift) + 1
            let histogram = self.histogram, minimum = self.minimum, candidates = self.candidates
            histogram.initialize(repeating: 0, count: used)
            minimum.initialize(repeating: .max, count: used)
            let base = low
            @inline(__always) func tally(_ bits: UInt32) {
                let index = Int((bits &- base) &>> shift)
                histogram[index] &+= 1
                minimum[index] = min(minimum[index], bits)
            }
            if first {
                values.forEach { tally($0.bitPattern) }
            } else {
                for c in 0..<count { tally(candidates[c]) }
            }
            var bin = 0
            while Int(histogram[bin]) <= rank {
                rank -= Int(histogram[bin])
                bin += 1
            }
            // Deeper levels only look inside the chosen bin, so the first non-empty bin above
            // it holds the smallest value above everything that remains.
            if let next = (bin + 1..<used).first(where: { histogram[$0] > 0 }) { above = minimum[next] }
            // Keep the candidates in the chosen bin (branch-free: always write, advance on match).
            var kept = 0
            let chosen = UInt32(bin)
            if first {
                values.forEach { v in
                    let bits = v.bitPattern
                    let index = (bits &- base) &>> shift
                    candidates[kept] = bits
                    kept &+= Int(bit(index == chosen))
                }
                first = false
            } else {
                for c in 0..<count {
                    let bits = candidates[c]
                    let index = (bits &- base) &>> shift
                    candidates[kept] = bits
                    kept &+= Int(bit(index == chosen))
                }
            }
            count = kept
            low = base + (chosen << shift)
            high = min(high, low + ((1 << shift) - 1))
            if shift == 0 { break }
        }
        // All `count` remaining candidates equal the k-th; `rank` of them come before it.
        let less = k - rank
        return (Float(bitPattern: low), less, count, above == .max ? .infinity : Float(bitPattern: above))
    }
}

/// The threshold of one axis row (docs/algorithm.md 3): theta = (s_k + s_{k+1}) / 2 over the sorted
/// magnitudes, and which entries are "the k smallest": all below s_k, plus entries equal to
/// s_k up to `lastTiedIndex` in the row's index order (lower index first, as for the hard mask).
struct AxisThreshold {
    var theta: Float
    var kth: Float
    var lastTiedIndex: Int

    @inline(__always)
    func isPruned(_ a: Float, _ index: Int) -> Bool {
        a < kth || (a == kth && index <= lastTiedIndex)
    }

    /// This threshold for the soft-term kernel (CKernels), which applies `isPruned` per entry.
    var cut: maxq_axis_cut { maxq_axis_cut(theta: theta, kth: kth, last_tied_index: Int64(lastTiedIndex)) }

    /// `k` of `values` are pruned (0 < k < total). `inIndexOrder(j)` gives the magnitude of the
    /// entry with index j, used only when equal magnitudes straddle the cut.
    init(_ values: Segments, pruned k: Int, scratch: SelectionScratch, inIndexOrder: (Int) -> Float) {
        precondition(k > 0 && k < values.total, "an axis of \(values.total) entries cannot prune \(k)")
        let (kth, less, equal, next) = scratch.select(values, k - 1)
        self.kth = kth
        // s_{k+1} is s_k itself when more than k entries are <= s_k.
        theta = (kth + (less + equal > k ? kth : next)) / 2
        lastTiedIndex = Int.max
        guard less + equal > k else { return }
        var quota = k - less
        var j = 0
        while quota > 0 {
            if inIndexOrder(j) == kth {
                quota -= 1
                lastTiedIndex = j
            }
            j += 1
        }
    }
}
