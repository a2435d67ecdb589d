// Data-parallel training's exchanges, as PyTorch's DistributedDataParallel makes them: gradients
// averaged over all processes in buckets (about 25 MB; the first, 1 MB, starts early) that go out
// as soon as backward has completed every gradient in them and travel while backward goes on;
// the step's loss and accuracy summed, so that every process sees the same (and stops together
// on a NaN); the model's state sent from rank 0.
import Foundation
import MaxQModels
import MaxQNN
import MaxQTensor

public final class GradientExchange: BackwardObserver {
    public let group: any ProcessGroup
    private let buckets: [Bucket]
    /// Where each parameter's gradient goes: (bucket, offset in it).
    private let slots: [ObjectIdentifier: (bucket: Int, offset: Int)]
    private var missing: [Int] = []
    private var hadGradient: Set<ObjectIdentifier> = []
    private var nextToStart = 0
    /// Seconds this process waited for gradient sums after backward had finished (communication
    /// that backward did not hide), and the steps they cover.
    public private(set) var exposedSeconds = 0.0
    public private(set) var steps = 0

    static let firstBucketBytes = 1 << 20
    static let bucketBytes = 25 << 20

    /// Buckets over `parameters` in reverse order (backward completes the last layers first).
    public init(parameters: [Variable], group: any ProcessGroup) {
        self.group = group
        var buckets: [Bucket] = []
        var members: [Variable] = []
        var floats = 0
        var slots: [ObjectIdentifier: (Int, Int)] = [:]
        for parameter in parameters.reversed() {
            slots[ObjectIdentifier(parameter)] = (buckets.count, floats)
            members.append(parameter)
            floats += parameter.value.count
            let cap = (buckets.isEmpty ? Self.firstBucketBytes : Self.bucketBytes) / MemoryLayout<Float>.stride
            if floats >= cap {
                buckets.append(Bucket(members, floats: floats))
                (members, floats) = ([], 0)
            }
        }
        if !members.isEmpty { buckets.append(Bucket(members, floats: floats)) }
        self.buckets = buckets
        self.slots = slots
    }

    /// The mean exposed seconds per step since the last call.
    public func takeExposedSecondsPerStep() -> Double {
        defer { (exposedSeconds, steps) = (0, 0) }
        return exposedSeconds / Double(max(steps, 1))
    }

    /// Bytes each process sends into the sums of one step.
    public var bytesPerStep: Int { buckets.reduce(0) { $0 + $1.buffer.count } * MemoryLayout<Float>.stride }

    /// Before backward: every gradient outstanding.
    public func begin() {
        missing = buckets.map(\.parameters.count)
        hadGradient = []
        nextToStart = 0
    }

    public func gradientCompleted(_ leaf: Variable) throws(TensorError) {
        guard let (index, offset) = slots[ObjectIdentifier(leaf)] else { return }
        let bucket = buckets[index]
        if let grad = leaf.grad {
            hadGradient.insert(ObjectIdentifier(leaf))
            grad.withUnsafeBufferPointer { source in
                (bucket.buffer.baseAddress! + offset).update(from: source.baseAddress!, count: source.count)
            }
        } else {
            (bucket.buffer.baseAddress! + offset).update(repeating: 0, count: leaf.value.count)
        }
        missing[index] -= 1
        try startCompletedBuckets()
    }

    public func operationFinished() throws(TensorError) {
        if nextToStart > 0 { try group.progress() }
    }

    /// Buckets start in order, so that every process starts the same sums in the same order.
    private func startCompletedBuckets() throws(TensorError) {
        while nextToStart < buckets.count, missing[nextToStart] == 0 {
            try group.startSum(buckets[nextToStart].buffer)
            nextToStart += 1
        }
    }

    /// After backward: parameters that backward never reached count as zero gradients in the sums
    /// (and keep no gradient); waits for every sum and leaves each gradient the processes' mean.
    public func finish() throws(TensorError) {
        let started = Date()
        for index in nextToStart..<buckets.count {
            let bucket = buckets[index]
            for (parameter, offset) in zip(bucket.parameters, bucket.offsets)
            where !hadGradient.contains(ObjectIdentifier(parameter)) {
                (bucket.buffer.baseAddress! + offset).update(repeating: 0, count: parameter.value.count)
            }
            missing[index] = 0
        }
        try startCompletedBuckets()
        try group.waitForSums()
        exposedSeconds += Date().timeIntervalSince(started)
        steps += 1
        let scale = 1 / Float(group.size)
        for bucket in buckets {
            for (parameter, offset) in zip(bucket.parameters, bucket.offsets)
            where hadGradient.contains(ObjectIdentifier(parameter)) {
                var grad = parameter.grad!
                parameter.grad = nil  // unique storage: overwritten in place
                grad.withUnsafeMutableBufferPointer { target in
                    let source = bucket.buffer.baseAddress! + offset
                    for i in 0..<target.count { target[i] = source[i] * scale }
                }
                parameter.grad = grad
            }
        }
    }

    /// Sums (loss x images, top-1 x images, top-k x images, images, processes with a non-finite
    /// loss) over all processes; returns `step` with the means over all their images, the loss
    /// NaN when any process's was not finite.
    func agree(on step: StepResult) throws(TensorError) -> StepResult {
        let n = Double(step.images)
        let finite = step.loss.isFinite
        var sums = [
            finite ? Double(step.loss) * n : 0, Double(step.top1) * n, Double(step.topK) * n, n, finite ? 0 : 1,
        ]
        try group.sum(&sums)
        let images = max(sums[3], 1)
        var result = step
        (result.loss, result.top1, result.topK, result.images) = (
            sums[4] > 0 ? .nan : Float(sums[0] / images), Float(sums[1] / images), Float(sums[2] / images),
            Int(sums[3])
        )
        return result
    }

    /// A buffer of one bucket's gradients, allocated once for the run.
    private final class Bucket {
        let parameters: [Variable]
        let offsets: [Int]
        let buffer: UnsafeMutableBufferPointer<Float>

        init(_ parameters: [Variable], floats: Int) {
            self.parameters = parameters
            var offsets: [Int] = []
            var offset = 0
            for parameter in parameters {
                offsets.append(offset)
                offset += parameter.value.count
            }
            self.offsets = offsets
            buffer = .allocate(capacity: max(floats, 1))
            buffer.initialize(repeating: 0)
        }

        deinit { buffer.deallocate() }
    }
}

extension ProcessGroup {
    /// Every process takes rank 0's parameters and buffers (running statistics, masks): at the
    /// start, so that all begin from the same weights, and before validation, so that all
    /// validate with rank 0's running statistics (PyTorch DDP broadcasts them likewise).
    public func broadcastState(of model: any Model, parameters: Bool) throws(TensorError) {
        for (_, buffer) in model.namedBuffers(prefix: "") { try broadcast(&buffer.value) }
        guard parameters else { return }
        for (_, variable) in model.namedParameters(prefix: "") { try broadcast(&variable.value) }
    }

    /// Rank 0's values of `tensor` in every process, written in place.
    func broadcast(_ tensor: inout Tensor) throws(TensorError) {
        var failure: TensorError?
        tensor.withUnsafeMutableBufferPointer { buffer in
            do throws(TensorError) { try broadcast(buffer) } catch { failure = error }
        }
        if let failure { throw failure }
    }
}
