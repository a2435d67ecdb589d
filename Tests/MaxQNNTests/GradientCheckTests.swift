// Finite-difference gradient checks for every differentiable operation, through the autograd API.
import MaxQNN
import MaxQTensor
import Testing

/// Compares the autograd gradients of L = sum(f(inputs) * r) with central differences, on up
/// to `samples` elements of each input; records an issue for every disagreeing element.
func gradientCheck(
    _ inputs: [Tensor], samples: Int = 20, step h: Float = 1e-2, rtol: Float = 3e-2, atol: Float = 3e-3,
    sourceLocation: SourceLocation = #_sourceLocation, _ f: ([Variable]) throws -> Variable
) throws {
    let variables = inputs.map { Variable($0, requiresGrad: true) }
    let y = try f(variables)
    var generator = RandomGenerator(seed: 1234)
    let r = Tensor(normal: y.shape, generator: &generator)
    try y.backward(seed: r)
    func loss(_ values: [Tensor]) throws -> Double {
        let out = try GradientMode.withoutGradients { try f(values.map { Variable($0) }) }.value
        return (0..<out.count).reduce(0.0) { $0 + Double(out[flat: $1]) * Double(r[flat: $1]) }
    }
    for (which, input) in inputs.enumerated() {
        let analytic = variables[which].grad ?? Tensor(zeros: input.shape)
        let spacing = max(1, input.count / samples)
        for index in stride(from: 0, to: input.count, by: spacing) {
            var plus = inputs, minus = inputs
            plus[which][flat: index] += h
            minus[which][flat: index] -= h
            let numeric = Float((try loss(plus) - loss(minus)) / Double(2 * h))
            let a = analytic[flat: index]
            if abs(a - numeric) > atol + rtol * abs(numeric) {
                Issue.record(
                    "input \(which) element \(index): autograd \(a), finite difference \(numeric)",
                    sourceLocation: sourceLocation)
            }
        }
    }
}

/// Normal values kept at least `gap` away from every point in `kinks` (so a step of 1e-2
/// never crosses a non-differentiable point).
func smoothInput(_ shape: [Int], seed: UInt64, avoiding kinks: [Float] = [], gap: Float = 0.05) -> Tensor {
    var generator = RandomGenerator(seed: seed)
    var t = Tensor(normal: shape, std: 2, generator: &generator)
    t.withUnsafeMutableBufferPointer { values in
        for i in values.indices {
            for k in kinks where abs(values[i] - k) < gap { values[i] = k + (values[i] < k ? -gap : gap) }
        }
    }
    return t
}

/// Distinct values (a shuffled ramp): max-pool has no near-ties for a finite difference to break.
func distinctInput(_ shape: [Int], seed: UInt64) -> Tensor {
    var generator = RandomGenerator(seed: seed)
    let count = shape.reduce(1, *)
    let order = generator.permutation(count)
    return try! Tensor(shape: shape, scalars: order.map { Float($0) * 0.05 - Float(count) * 0.025 })
}

@Suite struct GradientCheckTests {
    @Test(arguments: [
        (Conv2dGeometry(stride: 1, padding: 1, groups: 1), 4), (Conv2dGeometry(stride: 2, padding: 1, groups: 1), 4),
        (Conv2dGeometry(stride: 1, padding: 0, groups: 2), 4), (Conv2dGeometry(stride: 2, padding: 1, groups: 4), 4),
    ])
    func convolution(_ geometry: Conv2dGeometry, _ outputs: Int) throws {
        let x = smoothInput([2, 4, 6, 6], seed: 1)
        let w = smoothInput([outputs, 4 / geometry.groups, 3, 3], seed: 2)
        try gradientCheck([x, w]) { try $0[0].conv2d($0[1], geometry) }
    }

    @Test func batchNormTraining() throws {
        let inputs = [smoothInput([3, 2, 3, 3], seed: 3), smoothInput([2], seed: 4), smoothInput([2], seed: 5)]
        try gradientCheck(inputs) { try $0[0].batchNormTraining(weight: $0[1], bias: $0[2], eps: 1e-5).0 }
    }

    @Test func batchNormInference() throws {
        let inputs = [smoothInput([2, 3, 2, 2], seed: 6), smoothInput([3], seed: 7), smoothInput([3], seed: 8)]
        let mean = smoothInput([3], seed: 9)
        let variance = Tensor(shape: [3], repeating: 1.7)
        try gradientCheck(inputs) {
            try $0[0].batchNormInference(weight: $0[1], bias: $0[2], runningMean: mean, runningVar: variance, eps: 1e-5)
        }
    }

    @Test(arguments: Activation.allCases)
    func activation(_ kind: Activation) throws {
        let x = smoothInput([2, 3, 4, 4], seed: 10, avoiding: [-3, 0, 3, 6])
        try gradientCheck([x]) { $0[0].activation(kind) }
    }

    @Test func maxPool() throws {
        try gradientCheck([distinctInput([2, 2, 7, 7], seed: 11)]) { try $0[0].maxPool2d() }
        try gradientCheck([distinctInput([1, 2, 6, 6], seed: 12)]) {
            try $0[0].maxPool2d(kernel: 2, stride: 2, padding: 0)
        }
        try gradientCheck([distinctInput([1, 2, 7, 7], seed: 13)]) {
            try $0[0].maxPool2d(kernel: 3, stride: 1, padding: 1)
        }
    }

    @Test func globalAveragePool() throws {
        try gradientCheck([smoothInput([2, 3, 4, 5], seed: 12)]) { try $0[0].globalAveragePool() }
    }

    @Test func linear() throws {
        let inputs = [smoothInput([3, 5], seed: 13), smoothInput([4, 5], seed: 14), smoothInput([4], seed: 15)]
        try gradientCheck(inputs) { try $0[0].linear($0[1], $0[2]) }
    }

    @Test(arguments: [[2, 3, 4, 4], [2, 3, 1, 1], [1, 3, 1, 1]])
    func broadcastingAddAndMultiply(_ bShape: [Int]) throws {
        let inputs = [smoothInput([2, 3, 4, 4], seed: 16), smoothInput(bShape, seed: 17)]
        try gradientCheck(inputs) { try $0[0] + $0[1] }
        try gradientCheck(inputs) { try $0[0] * $0[1] }
    }

    @Test func reshape() throws {
        try gradientCheck([smoothInput([2, 6], seed: 18)]) { try $0[0].reshaped([3, 4]).activation(.sigmoid) }
    }

    @Test func dropoutWithAFixedStream() throws {
        try gradientCheck([smoothInput([4, 8], seed: 19)]) { inputs in
            var generator = RandomGenerator(seed: 5)
            return try inputs[0].dropout(probability: 0.3, generator: &generator)
        }
    }

    @Test(arguments: [Float(0), 0.1])
    func crossEntropy(_ smoothing: Float) throws {
        try gradientCheck([smoothInput([4, 6], seed: 20)], atol: 1e-3) {
            try $0[0].crossEntropy(labels: [0, 5, 2, 2], labelSmoothing: smoothing)
        }
    }

    @Test func composedGraphWithSharedInputs() throws {
        // x feeds two branches that meet again: gradients from both paths must add up.
        let inputs = [smoothInput([2, 2, 5, 5], seed: 21, avoiding: [0]), smoothInput([2, 2, 3, 3], seed: 22)]
        try gradientCheck(inputs) { v in
            try (v[0].conv2d(v[1], Conv2dGeometry(padding: 1)) * v[0]).activation(.sigmoid) + v[0]
        }
    }
}
