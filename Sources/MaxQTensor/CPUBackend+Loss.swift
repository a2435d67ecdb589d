// Cross-entropy with label smoothing (PyTorch's definition, mean over the batch) and top-k accuracy.
import Foundation

extension CPUBackend {
    /// loss_i = (1 - eps) * -log p[i, y_i] + eps * mean_k(-log p[i, k]); gradient to the logits
    /// (softmax - target) / N with target = (1 - eps) * onehot + eps / K.
    public func crossEntropy(
        _ logits: Tensor, labels: [Int], labelSmoothing: Float
    ) throws(TensorError) -> (loss: Float, gradient: Tensor) {
        guard logits.rank == 2, logits.shape[0] == labels.count else {
            throw .shapeMismatch(op: "cross_entropy (logits vs labels)", logits.shape, [labels.count])
        }
        let (n, k) = (logits.shape[0], logits.shape[1])
        if let bad = labels.first(where: { $0 < 0 || $0 >= k }) {
            throw .invalidArgument(op: "cross_entropy", reason: "label \(bad) outside 0..<\(k)")
        }
        guard labelSmoothing >= 0, labelSmoothing <= 1 else {
            throw .invalidArgument(op: "cross_entropy", reason: "label smoothing \(labelSmoothing) outside [0, 1]")
        }
        let gradient = Tensor(uninitializedShape: logits.shape)
        var total = 0.0
        for i in 0..<n {
            let row = logits.pointer + i * k
            let g = gradient.mutablePointer + i * k
            var peak = -Float.infinity
            for j in 0..<k { peak = max(peak, row[j]) }
            var sumExp = 0.0
            for j in 0..<k { sumExp += Foundation.exp(Double(row[j] - peak)) }
            let logSumExp = Double(peak) + Foundation.log(sumExp)
            var meanNegLogP = 0.0
            for j in 0..<k {
                let logP = Double(row[j]) - logSumExp
                meanNegLogP -= logP / Double(k)
                let target = (j == labels[i] ? 1 - labelSmoothing : 0) + labelSmoothing / Float(k)
                g[j] = (Float(Foundation.exp(logP)) - target) / Float(n)
            }
            let nll = logSumExp - Double(row[labels[i]])
            total += (1 - Double(labelSmoothing)) * nll + Double(labelSmoothing) * meanNegLogP
        }
        return (Float(total / Double(n)), gradient)
    }
}

extension Tensor {
    /// Percentage of rows whose label is among the k largest logits, for each k.
    public func topKAccuracy(labels: [Int], ks: [Int]) throws(TensorError) -> [Float] {
        try backend.topKAccuracy(self, labels: labels, ks: ks)
    }
}
