// One optimisation step as the reference's training loop takes it: masks for this step,
// forward, label-smoothed loss, backward, SR-STE decay, SGD; in a data-parallel run, with the
// gradients averaged over all processes before SR-STE decay and SGD.
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

public struct StepResult: Sendable {
    /// Mean loss over the step's images (of all processes in a data-parallel run).
    public var loss: Float
    /// Top-1 and top-k accuracy in percent, over the same images.
    public var top1: Float
    public var topK: Float
    public var images: Int
    public var logits: Tensor
}

public enum TrainStep {
    /// SGD with the reference's parameter groups: no weight decay on 1-D parameters (BatchNorm
    /// weight and bias, biases) when `noBNDecay`.
    public static func optimizer(
        for model: any Model, learningRate: Float, momentum: Float, weightDecay: Float, nesterov: Bool, noBNDecay: Bool
    ) -> SGD {
        let parameters = model.parameters
        guard noBNDecay else {
            return SGD(
                groups: [.init(parameters: parameters, weightDecay: weightDecay)], learningRate: learningRate,
                momentum: momentum, nesterov: nesterov)
        }
        return SGD(
            groups: [
                .init(parameters: parameters.filter { $0.shape.count > 1 }, weightDecay: weightDecay),
                .init(parameters: parameters.filter { $0.shape.count <= 1 }, weightDecay: 0),
            ], learningRate: learningRate, momentum: momentum, nesterov: nesterov)
    }

    /// `topK`: the second accuracy reported (5, or the class count when smaller). With `exchange`,
    /// a non-finite loss on any process makes every process's result non-finite, before backward.
    public static func run(
        _ model: any Model, _ optimizer: SGD, images: Tensor, labels: [Int], labelSmoothing: Float, srsteDecay: Float,
        topK: Int = 5, exchange: GradientExchange? = nil
    ) throws(TensorError) -> StepResult {
        model.zeroGrad()
        // All masks at once, in parallel across layers; each unit then uses its fresh mask.
        try model.recomputeMasks()
        // Activations channel-blocked between operations: no reorders around each convolution.
        let logits = try TensorLayout.run(.channelBlocked) { () throws(TensorError) in try model(Variable(images)) }
        let loss = try logits.crossEntropy(labels: labels, labelSmoothing: labelSmoothing)
        let accuracy = try logits.value.topKAccuracy(labels: labels, ks: [1, min(topK, logits.shape[1])])
        var result = StepResult(
            loss: loss.value.scalarValue, top1: accuracy[0], topK: accuracy[1], images: labels.count,
            logits: logits.value)
        if let exchange { result = try exchange.agree(on: result) }
        guard result.loss.isFinite else { return result }
        exchange?.begin()
        try loss.backward(observer: exchange)
        try exchange?.finish()
        if srsteDecay != 0 {
            for (_, unit) in model.units { try unit.applySRSTEDecay(srsteDecay) }
        }
        try optimizer.step()
        return result
    }
}
