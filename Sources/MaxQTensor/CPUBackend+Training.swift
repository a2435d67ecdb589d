// What a training step changes besides activations, and the per-channel arithmetic around
// batch norm: the SGD update, running statistics, SR-STE decay, batch norm with frozen
// statistics (backward) and folded into a convolution, zero counts and top-k accuracy.
extension CPUBackend {
    public func sgdStep(
        _ weight: inout Tensor, gradient: Tensor, momentumBuffer: inout Tensor?, learningRate lr: Float,
        momentum mu: Float, weightDecay wd: Float, nesterov: Bool
    ) throws(TensorError) {
        guard gradient.shape == weight.shape else { throw .shapeMismatch(op: "sgd", weight.shape, gradient.shape) }
        let first = momentumBuffer == nil
        var buffer = momentumBuffer ?? Tensor(uninitializedShape: weight.shape)
        momentumBuffer = nil  // the buffer's storage stays unique: updated in place, not copied
        weight.withUnsafeMutableBufferPointer { w in
            buffer.withUnsafeMutableBufferPointer { b in
                gradient.withUnsafeBufferPointer { g in
                    for i in w.indices {
                        let d = g[i] + wd * w[i]
                        b[i] = first ? d : mu * b[i] + d
                        w[i] -= lr * (nesterov ? d + mu * b[i] : b[i])
                    }
                }
            }
        }
        momentumBuffer = buffer
    }

    public func updateRunningAverage(
        _ running: inout Tensor, toward batch: Tensor, momentum: Float, scale: Float
    ) throws(TensorError) {
        guard batch.shape == running.shape else {
            throw .shapeMismatch(op: "running average", running.shape, batch.shape)
        }
        running.withUnsafeMutableBufferPointer { r in
            batch.withUnsafeBufferPointer { b in
                for c in r.indices { r[c] = (1 - momentum) * r[c] + momentum * b[c] * scale }
            }
        }
    }

    public func srsteDecay(_ gradient: inout Tensor, weight: Tensor, mask: Tensor, lambda: Float) throws(TensorError) {
        guard weight.shape == gradient.shape, mask.shape == weight.shape else {
            throw .shapeMismatch(op: "SR-STE decay", weight.shape, mask.shape)
        }
        weight.withUnsafeBufferPointer { w in
            mask.withUnsafeBufferPointer { m in
                gradient.withUnsafeMutableBufferPointer { g in
                    for i in g.indices { g[i] += lambda * (1 - min(max(m[i], 0), 1)) * w[i] }
                }
            }
        }
    }

    public func batchNormFolding(
        weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Float
    ) throws(TensorError) -> (factor: Tensor, bias: Tensor) {
        let channels = weight.count
        try Self.checkPerChannel(channels, [bias, runningMean, runningVar])
        var factor = Tensor(uninitializedShape: [channels]), folded = Tensor(uninitializedShape: [channels])
        for c in 0..<channels {
            factor[flat: c] = weight[flat: c] / (runningVar[flat: c] + eps).squareRoot()
            folded[flat: c] = bias[flat: c] - runningMean[flat: c] * factor[flat: c]
        }
        return (factor, folded)
    }

    public func batchNormFrozenBackward(
        _ dy: Tensor, _ x: Tensor, weight: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Float
    ) throws(TensorError) -> (Tensor, Tensor, Tensor) {
        // y = (x - mean) * invStd * gamma + beta with constant statistics.
        let channels = runningVar.count
        try Self.checkPerChannel(channels, [weight, runningMean])
        let shape = [1, channels, 1, 1]
        var invStd = Tensor(uninitializedShape: shape), scale = Tensor(uninitializedShape: shape)
        for c in 0..<channels {
            invStd[flat: c] = 1 / (runningVar[flat: c] + eps).squareRoot()
            scale[flat: c] = weight[flat: c] * invStd[flat: c]
        }
        let dBeta = try sum(dy, toShape: shape)
        let sumDyX = try sum(multiply(dy, x), toShape: shape)
        var dGamma = Tensor(uninitializedShape: [channels])
        for c in 0..<channels {
            dGamma[flat: c] = (sumDyX[flat: c] - runningMean[flat: c] * dBeta[flat: c]) * invStd[flat: c]
        }
        return (try multiply(dy, scale), dGamma, try dBeta.reshaped([channels]))
    }

    public func countZeros(_ t: Tensor) -> Int {
        t.withUnsafeBufferPointer { $0.reduce(0) { $0 + ($1 == 0 ? 1 : 0) } }
    }

    /// Percentage of rows whose label is among the k largest logits, for each k (PyTorch's
    /// `accuracy` helper in the ImageNet example: ties broken towards the lower index).
    public func topKAccuracy(_ logits: Tensor, labels: [Int], ks: [Int]) throws(TensorError) -> [Float] {
        guard logits.rank == 2, logits.shape[0] == labels.count else {
            throw .shapeMismatch(op: "top-k accuracy", logits.shape, [labels.count])
        }
        let (n, classes) = (logits.shape[0], logits.shape[1])
        var correct = [Int](repeating: 0, count: ks.count)
        for i in 0..<n {
            let row = logits.pointer + i * classes
            let target = row[labels[i]]
            // Rank of the label: classes strictly better, or equal with a lower index.
            var rank = 0
            for j in 0..<classes where row[j] > target || (row[j] == target && j < labels[i]) { rank += 1 }
            for (slot, k) in ks.enumerated() where rank < k { correct[slot] += 1 }
        }
        return correct.map { Float($0) * 100 / Float(max(n, 1)) }
    }

    static func checkPerChannel(_ channels: Int, _ tensors: [Tensor]) throws(TensorError) {
        for t in tensors where t.count != channels { throw .shapeMismatch(op: "per-channel", [channels], t.shape) }
    }
}
