// What the sparse kernel reads for one input layout: the kept weights of every quad of output
// channels, per chunk of input channels, listed by which channels of the quad keep them.

/// Output channels go in quads (the last one may be short). For each quad and chunk of input
/// channels, every (input channel, kernel position) that any channel of the quad keeps is one
/// entry: where its input run starts in the laid-out image, and one weight per keeping channel.
/// Entries are grouped by that subset of the quad (bit j: channel j keeps it), subsets 1...15 in
/// order, ascending input channel and position within a subset. Lists are stored chunk by chunk
/// (list = chunk * quads + quad), the order in which a task, its quads going through one chunk
/// before the next, reads them: quad by quad, a task read as many streams of lists as it had quads,
/// more than the hardware prefetchers follow.
struct QuadLists {
    static let quad = 4, subsets = 15
    let chunks: Int, quads: Int
    /// Per entry: its run's start in the laid-out image.
    let offsets: [Int32]
    /// Per entry, its keeping channels' weights in ascending channel order.
    let weights: [Float]
    /// Per (chunk, quad, subset 1...15): the number of entries.
    let counts: [Int32]
    /// Per (chunk, quad): the index of its first entry and of its first weight.
    let starts: [Int64]

    /// `values`, `channels` and `positions`: every output channel's kept weights (`kept` each),
    /// ascending input channel then kernel position; `offset(channel, position)` places a run.
    init(
        values: [Float], channels: [Int], positions: [Int], outputs: Int, kept: Int, inputs: Int,
        kernelPositions: Int, chunkChannels: Int, offset: (_ channel: Int, _ position: Int) -> Int
    ) {
        let quad = Self.quad
        chunks = (inputs + chunkChannels - 1) / chunkChannels
        quads = (outputs + quad - 1) / quad
        var offsets: [Int32] = [], weights: [Float] = [], counts: [Int32] = [], starts: [Int64] = []
        weights.reserveCapacity(values.count)
        counts.reserveCapacity(quads * chunks * Self.subsets)
        starts.reserveCapacity(quads * chunks * 2)
        // Per key (channel in the chunk, position): which channels keep it, with their weights.
        let keys = chunkChannels * kernelPositions
        var keepers = [UInt8](repeating: 0, count: keys)
        var kept4 = [Float](repeating: 0, count: keys * quad)
        var bySubset = [[Int]](repeating: [], count: Self.subsets + 1)
        // Each output channel's next kept weight (its kept weights run through the chunks in order).
        var cursors = (0..<outputs).map { $0 * kept }
        for chunk in 0..<chunks {
            let firstChannel = chunk * chunkChannels
            let endChannel = min(inputs, firstChannel + chunkChannels)
            for q in 0..<quads {
                for j in 0..<min(quad, outputs - q * quad) {
                    let o = q * quad + j
                    while cursors[o] < (o + 1) * kept && channels[cursors[o]] < endChannel {
                        let k = cursors[o]
                        let key = (channels[k] - firstChannel) * kernelPositions + positions[k]
                        keepers[key] |= UInt8(1 << j)
                        kept4[key * quad + j] = values[k]
                        cursors[o] += 1
                    }
                }
                for subset in bySubset.indices { bySubset[subset].removeAll(keepingCapacity: true) }
                for key in 0..<keys where keepers[key] != 0 { bySubset[Int(keepers[key])].append(key) }
                starts += [Int64(offsets.count), Int64(weights.count)]
                for subset in 1...Self.subsets {
                    counts.append(Int32(bySubset[subset].count))
                    for key in bySubset[subset] {
                        offsets.append(Int32(offset(firstChannel + key / kernelPositions, key % kernelPositions)))
                        for j in 0..<quad where subset >> j & 1 == 1 { weights.append(kept4[key * quad + j]) }
                        keepers[key] = 0
                    }
                }
            }
        }
        (self.offsets, self.weights, self.counts, self.starts) = (offsets, weights, counts, starts)
    }
}

extension QuadLists {
    /// `body` with the base addresses of the four arrays.
    func withPointers<R>(
        _ body: (
            UnsafePointer<Int32>, UnsafePointer<Float>, UnsafePointer<Int32>, UnsafePointer<Int64>
        ) -> R
    ) -> R {
        offsets.withUnsafeBufferPointer { o in
            weights.withUnsafeBufferPointer { w in
                counts.withUnsafeBufferPointer { c in
                    starts.withUnsafeBufferPointer { s in
                        body(o.baseAddress!, w.baseAddress!, c.baseAddress!, s.baseAddress!)
                    }
                }
            }
        }
    }
}
