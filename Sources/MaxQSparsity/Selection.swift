// Order statistics without sorting: the k-th smallest of a buffer by quickselect, and the
// tie rule every axis uses (among equal magnitudes the lower index counts as smaller).

/// Rearranges `values` so that `values[k]` is the k-th smallest (0-based), smaller or equal
/// ones before it and larger or equal after it (Hoare partition, median-of-three pivots).
func quickselect(_ values: UnsafeMutableBufferPointer<Float>, _ k: Int) -> Float {
    var low = 0, high = values.count - 1
    while high > low {
        let middle = low + (high - low) / 2
        // Median of three as pivot, moved to `middle`.
        if values[middle] < values[low] { values.swapAt(middle, low) }
        if values[high] < values[low] { values.swapAt(high, low) }
        if values[high] < values[middle] { values.swapAt(high, middle) }
        let pivot = values[middle]
        var i = low, j = high
        while i <= j {
            while values[i] < pivot { i += 1 }
            while values[j] > pivot { j -= 1 }
            if i <= j {
                values.swapAt(i, j)
                i += 1
                j -= 1
            }
        }
        if k <= j { high = j } else if k >= i { low = i } else { return values[k] }
    }
    return values[k]
}

/// The threshold of one axis row (ALGORITHM.md 3): theta = (s_k + s_{k+1}) / 2 over the sorted
/// magnitudes, and which entries are "the k smallest": all below s_k, plus entries equal to
/// s_k up to `lastTiedIndex` in index order.
struct AxisThreshold {
    var theta: Float
    var kth: Float
    var lastTiedIndex: Int

    /// Entry `index` with magnitude `a` is among the k smallest.
    @inline(__always)
    func isPruned(_ a: Float, _ index: Int) -> Bool {
        a < kth || (a == kth && index <= lastTiedIndex)
    }

    /// `row(j)` gives the magnitudes in index order; `scratch` holds at least `length` floats.
    init(length: Int, pruned k: Int, scratch: UnsafeMutableBufferPointer<Float>, _ row: (Int) -> Float) {
        precondition(k > 0 && k < length, "an axis of \(length) entries cannot prune \(k)")
        let work = UnsafeMutableBufferPointer(rebasing: scratch[0..<length])
        for j in 0..<length { work[j] = row(j) }
        kth = quickselect(work, k - 1)
        var next = Float.infinity
        for j in k..<length { next = min(next, work[j]) }
        theta = (kth + next) / 2
        // How many of the entries equal to s_k are pruned: k minus those strictly below.
        var below = 0
        for j in 0..<k where work[j] < kth { below += 1 }
        var quota = k - below
        lastTiedIndex = -1
        var j = 0
        while quota > 0 && j < length {
            if row(j) == kth {
                quota -= 1
                lastTiedIndex = j
            }
            j += 1
        }
    }
}
