// Batches from a dataset: order from a seeded shuffle (a function of seed and epoch only),
// one process's share of it in data-parallel runs, samples decoded by `workers` threads while
// the previous batch trains, the last partial batch kept, corrupt files skipped with a warning
// and counted.
import Foundation
import MaxQTensor

public struct Batch {
    public var images: Tensor  // (N, 3, H, W)
    public var labels: [Int]
    /// Files that could not be read, with the reason (already skipped).
    public var skipped: [String]
}

/// One process's share of every epoch in a data-parallel run (PyTorch's DistributedSampler):
/// of the epoch's order, padded by repeating its start to a multiple of `count` when `padded`,
/// the positions `rank`, `rank + count`, `rank + 2 count`, ...
public struct DataShard: Sendable, Equatable {
    public var rank: Int
    public var count: Int
    /// Training pads, so that every process takes the same number of steps; validation does not,
    /// so that every sample is counted once.
    public var padded: Bool

    public init(rank: Int, count: Int, padded: Bool) {
        (self.rank, self.count, self.padded) = (rank, max(1, count), padded)
    }

    public static let whole = DataShard(rank: 0, count: 1, padded: false)

    /// The share's positions of an order of `total` samples.
    func take(_ order: [Int]) -> [Int] {
        guard count > 1, !order.isEmpty else { return order }
        var order = order
        if padded {
            let target = (order.count + count - 1) / count * count
            while order.count < target { order += order.prefix(target - order.count) }
        }
        return Array(stride(from: rank, to: order.count, by: count).map { order[$0] })
    }

    func share(of total: Int) -> Int {
        padded ? (total + count - 1) / count : max(0, (total - rank + count - 1) / count)
    }
}

public final class DataLoader: @unchecked Sendable {
    public let dataset: any Dataset
    public let batchSize: Int
    public let shuffle: Bool
    public let seed: UInt64
    public let workers: Int
    public let shard: DataShard

    public init(
        dataset: any Dataset, batchSize: Int, shuffle: Bool, seed: UInt64, workers: Int, shard: DataShard = .whole
    ) {
        self.dataset = dataset
        self.batchSize = max(1, batchSize)
        self.shuffle = shuffle
        self.seed = seed
        self.workers = max(1, workers)
        self.shard = shard
    }

    public var batchesPerEpoch: Int { (shard.share(of: dataset.count) + batchSize - 1) / batchSize }

    /// This process's sample order of an epoch: its share of one order that all processes compute.
    public func order(epoch: Int) -> [Int] {
        guard shuffle else { return shard.take(Array(0..<dataset.count)) }
        var generator = RandomGenerator(seed: seed &+ 0x5DEE_CE66 &* UInt64(epoch + 1))
        return shard.take(generator.permutation(dataset.count))
    }

    /// The batches of `epoch`, produced one ahead on background threads.
    public func epoch(_ epoch: Int) -> BatchIterator {
        BatchIterator(loader: self, order: order(epoch: epoch), epoch: epoch)
    }

    /// Loads the samples at `indices` into one batch; `epoch` seeds every sample's augmentation.
    func makeBatch(_ indices: [Int], epoch: Int) -> Batch {
        let shape = dataset.sampleShape
        let sampleSize = shape.reduce(1, *)
        var images = Tensor(uninitializedShape: [indices.count] + shape)
        var failures = [String?](repeating: nil, count: indices.count)
        let dataset = self.dataset, seed = self.seed
        images.withUnsafeMutableBufferPointer { buffer in
            let base = UncheckedPointer(buffer.baseAddress!)
            failures.withUnsafeMutableBufferPointer { failed in
                let failedBase = UncheckedOptionalStrings(failed.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: min(workers, indices.count)) { worker in
                    for slot in stride(from: worker, to: indices.count, by: workers) {
                        let index = indices[slot]
                        var generator = RandomGenerator(
                            seed: seed ^ (UInt64(epoch) << 40) ^ UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
                        do {
                            try dataset.load(index, into: base.pointer + slot * sampleSize, generator: &generator)
                        } catch {
                            failedBase.pointer[slot] = "\(error)"
                        }
                    }
                }
            }
        }
        let kept = indices.indices.filter { failures[$0] == nil }
        if kept.count < indices.count {
            // Compact the good samples to the front.
            images.withUnsafeMutableBufferPointer { buffer in
                for (to, from) in kept.enumerated() where to != from {
                    (buffer.baseAddress! + to * sampleSize).update(
                        from: buffer.baseAddress! + from * sampleSize, count: sampleSize)
                }
            }
            images = Tensor(copying: images, count: kept.count * sampleSize, shape: [kept.count] + shape)
        }
        return Batch(
            images: images, labels: kept.map { dataset.label(indices[$0]) }, skipped: failures.compactMap { $0 })
    }
}

/// Pulls batches in order; the next batch is prepared while the caller uses the current one.
public final class BatchIterator: IteratorProtocol, @unchecked Sendable {
    private let loader: DataLoader
    private let order: [Int]
    private let epoch: Int
    private var nextBatch = 0
    private var pending: (DispatchSemaphore, Box)?

    private final class Box: @unchecked Sendable { var batch: Batch? }

    init(loader: DataLoader, order: [Int], epoch: Int) {
        self.loader = loader
        self.order = order
        self.epoch = epoch
        prefetch()
    }

    private func prefetch() {
        guard nextBatch < loader.batchesPerEpoch else {
            pending = nil
            return
        }
        let start = nextBatch * loader.batchSize
        let indices = Array(order[start..<min(start + loader.batchSize, order.count)])
        nextBatch += 1
        let done = DispatchSemaphore(value: 0), box = Box()
        let (loader, epoch) = (self.loader, self.epoch)
        DispatchQueue.global().async {
            box.batch = loader.makeBatch(indices, epoch: epoch)
            done.signal()
        }
        pending = (done, box)
    }

    public func next() -> Batch? {
        guard let (done, box) = pending else { return nil }
        done.wait()
        prefetch()
        return box.batch
    }
}

struct UncheckedPointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    init(_ pointer: UnsafeMutablePointer<Float>) { self.pointer = pointer }
}

struct UncheckedOptionalStrings: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<String?>
    init(_ pointer: UnsafeMutablePointer<String?>) { self.pointer = pointer }
}
