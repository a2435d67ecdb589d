// Autograd semantics, layers, the optimizer, and a whole small network against PyTorch.
import MaxQFormats
import MaxQNN
import MaxQTensor
import MaxQTestSupport
import Testing

/// The network of the `tiny_network` fixture (Scripts/make_fixtures.py), as plain forward code.
final class TinyNetwork: Layer {
    let conv1, conv2, conv3: Conv2d
    let bn1 = BatchNorm2d(8), bn2 = BatchNorm2d(8), bn3 = BatchNorm2d(8)
    let fc: Linear

    init() throws {
        var generator = RandomGenerator(seed: 0)
        conv1 = try Conv2d(3, 8, kernelSize: 3, padding: 1, generator: &generator)
        conv2 = try Conv2d(8, 8, kernelSize: 3, padding: 1, generator: &generator)
        conv3 = try Conv2d(8, 8, kernelSize: 3, stride: 2, padding: 1, groups: 8, generator: &generator)
        fc = Linear(8, 5, generator: &generator)
    }

    func callAsFunction(_ x: Variable) throws -> Variable {
        var h = try bn1(conv1(x)).relu().maxPool2d()
        h = try (bn2(conv2(h)) + h).relu()
        h = try bn3(conv3(h)).activation(.hardswish)
        return try fc(h.globalAveragePool())
    }

    private var children: [(String, any Layer)] {
        [("conv1", conv1), ("bn1", bn1), ("conv2", conv2), ("bn2", bn2), ("conv3", conv3), ("bn3", bn3), ("fc", fc)]
    }

    func namedParameters(prefix: String) -> [(String, Variable)] {
        children.flatMap { $0.1.namedParameters(prefix: prefix.isEmpty ? $0.0 : "\(prefix).\($0.0)") }
    }

    func namedBuffers(prefix: String) -> [(String, Buffer)] {
        children.flatMap { $0.1.namedBuffers(prefix: prefix.isEmpty ? $0.0 : "\(prefix).\($0.0)") }
    }

    func setTraining(_ training: Bool) { children.forEach { $0.1.setTraining(training) } }
}

@Suite struct AutogradAndLayerTests {
    @Test func tinyNetworkMatchesPyTorchLogitsGradientsAndTraining() throws {
        let f = try Fixtures.op("tiny_network")
        let model = try TinyNetwork()
        let report = try model.loadStateDict(f.group("initial"))
        #expect(
            report
                == LoadReport(
                    missing: ["bn1.num_batches_tracked", "bn2.num_batches_tracked", "bn3.num_batches_tracked"],
                    unexpected: []))
        let parameters = model.parameters
        let optimizer = SGD(
            groups: [.init(parameters: parameters, weightDecay: 1e-4)], learningRate: 0.1, momentum: 0.9)
        let x = Variable(try f.tensor("x"))
        let labels = try f.tensor("labels").labels
        for step in 0..<3 {
            model.zeroGrad()
            let logits = try model(x)
            let loss = try logits.crossEntropy(labels: labels, labelSmoothing: 0.1)
            try loss.backward()
            if step == 0 {
                #expect(toleranceFailure(logits.value, try f.tensor("logits0")) == nil)
                for (name, parameter) in model.namedParameters(prefix: "") {
                    #expect(
                        toleranceFailure(parameter.grad!, try f.tensor("grad0.\(name)"), rtol: 1e-3, atol: 1e-5) == nil,
                        "\(name)")
                }
            }
            #expect(abs(loss.value.scalarValue - (try f.tensor("loss\(step)")).scalarValue) < 1e-4, "step \(step)")
            try optimizer.step()
        }
        for (name, tensor) in model.stateDict() where !name.hasSuffix("num_batches_tracked") {
            #expect(toleranceFailure(tensor, try f.tensor("final.\(name)"), rtol: 1e-3, atol: 1e-4) == nil, "\(name)")
        }
    }

    @Test func batchNormLayerUpdatesRunningStatisticsLikePyTorch() throws {
        let f = try Fixtures.op("batchnorm_train")
        let bn = BatchNorm2d(5)
        try bn.loadStateDict([
            "weight": try f.tensor("weight"), "bias": try f.tensor("bias"),
            "running_mean": try f.tensor("running_mean_before"), "running_var": try f.tensor("running_var_before"),
        ])
        let y = try bn(Variable(try f.tensor("x")))
        #expect(toleranceFailure(y.value, try f.tensor("y")) == nil)
        #expect(toleranceFailure(bn.runningMean.value, try f.tensor("running_mean_after")) == nil)
        #expect(toleranceFailure(bn.runningVar.value, try f.tensor("running_var_after")) == nil)
        #expect(bn.numBatchesTracked.value.scalarValue == 1)
        bn.setTraining(false)
        let evaluated = try bn(Variable(try f.tensor("x")))
        let e = try Fixtures.op("batchnorm_eval")
        #expect(toleranceFailure(evaluated.value, try e.tensor("y")) == nil)
        #expect(bn.numBatchesTracked.value.scalarValue == 1)
    }

    @Test(arguments: [false, true])
    func sgdMatchesPyTorch(_ nesterov: Bool) throws {
        let f = try Fixtures.op("sgd")
        let w = Variable(try f.tensor("w0"), requiresGrad: true)
        let optimizer = SGD(
            groups: [.init(parameters: [w], weightDecay: 1e-4)], learningRate: 0.1, momentum: 0.9, nesterov: nesterov)
        for step in 0..<3 {
            w.grad = try f.tensor("grad\(step)")
            try optimizer.step()
        }
        #expect(toleranceFailure(w.value, try f.tensor(nesterov ? "nesterov" : "plain")) == nil)
    }

    @Test func gradientsAccumulateAcrossBackwardCalls() throws {
        let w = Variable(try Tensor(shape: [2], scalars: [1, 2]), requiresGrad: true)
        let x = Variable(try Tensor(shape: [2], scalars: [3, 4]))
        try (w * x).backward()
        try (w * x).backward()
        #expect(w.grad?.scalars == [6, 8])
        w.zeroGrad()
        #expect(w.grad == nil)
        try (w * w).backward()
        #expect(w.grad?.scalars == [2, 4])
    }

    /// A residual block's fused output: the values and gradients of the addition and ReLU apart,
    /// on both backends, with an exact zero among the sums (ReLU's gradient there is 0).
    @Test(arguments: [Device.cpu, .reference])
    func addingReLUIsTheAdditionThenReLU(on device: Device) throws {
        var generator = RandomGenerator(seed: 2)
        var a = Tensor(normal: [2, 16, 3, 3], generator: &generator)
        let b = Tensor(normal: [2, 16, 3, 3], generator: &generator)
        a[flat: 7] = -b[flat: 7]
        let seed = Tensor(normal: [2, 16, 3, 3], generator: &generator).on(device)
        var results: [(value: [Float], gradients: [[Float]])] = []
        for fused in [false, true] {
            let (x, y) = (Variable(a.on(device), requiresGrad: true), Variable(b.on(device), requiresGrad: true))
            let output = fused ? try x.addingReLU(y) : try (x + y).relu()
            try output.backward(seed: seed)
            results.append((output.value.scalars, [x.grad!.scalars, y.grad!.scalars]))
        }
        #expect(results[0].value == results[1].value && results[0].gradients == results[1].gradients)
        #expect(results[1].value[7] == 0 && results[1].gradients[0][7] == 0)
        #expect(throws: TensorError.self) { try Variable(a).addingReLU(Variable(Tensor(zeros: [2, 16, 3, 1]))) }
    }

    @Test func evaluationWithoutGradientsRecordsNothing() throws {
        let model = try TinyNetwork()
        model.setTraining(false)
        let x = Variable(Tensor(zeros: [1, 3, 8, 8]))
        let y = try GradientMode.withoutGradients { try model(x) }
        #expect(!y.requiresGrad)
        try y.backward()
        #expect(model.parameters.allSatisfy { $0.grad == nil })
        #expect(try model(x).requiresGrad)
    }

    @Test func dropoutIsInvertedAndOffInEvaluation() throws {
        let dropout = Dropout(probability: 0.25, seed: 1)
        let x = Variable(Tensor(shape: [10_000], repeating: 1))
        let y = try dropout(x).value.scalars
        let kept = y.filter { $0 != 0 }
        #expect(kept.allSatisfy { abs($0 - 4 / 3) < 1e-6 })
        #expect(abs(Float(kept.count) / 10_000 - 0.75) < 0.02)
        dropout.setTraining(false)
        #expect(try dropout(x).value.scalars == x.value.scalars)
    }

    @Test func loadingRefusesMismatchedShapesAndChangesNothing() throws {
        let model = try TinyNetwork()
        let before = model.conv1.weight.value.scalars
        #expect(throws: TensorError.shapeMismatch(op: "load 'fc.weight'", [5, 8], [5, 9])) {
            try model.loadStateDict(["conv1.weight": Tensor(zeros: [8, 3, 3, 3]), "fc.weight": Tensor(zeros: [5, 9])])
        }
        #expect(model.conv1.weight.value.scalars == before)
        let report = try model.loadStateDict(["extra": Tensor(zeros: [1])])
        #expect(report.unexpected == ["extra"] && report.missing.contains("conv1.weight"))
    }

    @Test func layersRejectInvalidConfigurations() {
        var generator = RandomGenerator(seed: 0)
        #expect(throws: TensorError.self) { try Conv2d(6, 8, kernelSize: 3, groups: 4, generator: &generator) }
        #expect(throws: TensorError.self) {
            try Variable(Tensor(zeros: [2, 2])).dropout(probability: 1, generator: &generator)
        }
    }
}
