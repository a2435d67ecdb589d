// One optimisation step as the reference's training loop takes it: masks for this step,
// forward, label-smoothed loss, backward, SR-STE decay, SGD.
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

public struct StepResult: Sendable {
    public var loss: Float
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

    public static func run(
        _ model: any Model, _ optimizer: SGD, images: Tensor, labels: [Int], labelSmoothing: Float, srsteDecay: Float
    ) throws(TensorError) -> StepResult {
        model.zeroGrad()
        // All masks at once, in parallel across layers; each unit then uses its fresh mask.
        try model.recomputeMasks()
        let logits = try model(Variable(images))
        let loss = try logits.crossEntropy(labels: labels, labelSmoothing: labelSmoothing)
        let value = loss.value.scalarValue
        guard value.isFinite else { return StepResult(loss: value, logits: logits.value) }
        try loss.backward()
        if srsteDecay != 0 {
            for (_, unit) in model.units { try unit.applySRSTEDecay(srsteDecay) }
        }
        try optimizer.step()
        return StepResult(loss: value, logits: logits.value)
    }
}
