// Models for tests: architectures with SoftMaxQ N:M units whose masks are computed, and batch
// norm statistics that make folding matter.
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

/// `arch` with SoftMaxQ n:m units and their masks computed (epoch 0 of a schedule ending at
/// `increaseEnd`: with 0, every group is N:M).
public func maskedModel(_ arch: Architecture, n: Int, m: Int, increaseEnd: Int = 0, seed: UInt64) throws -> any Model {
    let model = try arch.build(classes: 10, sparsity: try softMaxQ(n: n, m: m, increaseEnd: increaseEnd), seed: seed)
    try ConvBNUnit.recomputeMasks(of: model.units, forNextForward: false)
    return model
}

/// Batch norm statistics and scales that make the folding matter: the units' and any other
/// (ResNet's stem).
public func randomizeBatchNorm(_ model: any Model, generator: inout RandomGenerator) {
    for norm in model.batchNorms {
        let c = norm.runningMean.value.count
        norm.runningMean.value = Tensor(normal: [c], std: 0.1, generator: &generator)
        norm.runningVar.value = Tensor(uniform: [c], low: 0.5, high: 1.5, generator: &generator)
        norm.weight.value = Tensor(uniform: [c], low: 0.5, high: 1.5, generator: &generator)
    }
}

public func softMaxQ(n: Int, m: Int, increaseEnd: Int = 0) throws -> SparsityConfig {
    SparsityConfig(
        type: .softMaxQ, pattern: try NMPattern(n: n, m: m),
        schedule: try IncrementalSchedule(.linear, increaseStart: 0, increaseEnd: increaseEnd))
}
