// CPU kernels against PyTorch fixtures: forward outputs and every gradient, element-wise.
import MaxQFormats
import MaxQTensor
import MaxQTestSupport
import Testing

let cpu = CPUBackend.shared

@Suite struct KernelParityTests {
    @Test(arguments: ["conv_3x3", "conv_3x3_stride2", "conv_1x1", "conv_7x7_stem", "conv_grouped", "conv_depthwise"])
    func convolution(_ name: String) throws {
        let f = try Fixtures.op(name)
        let (x, w, dy) = (try f.tensor("x"), try f.tensor("w"), try f.tensor("dy"))
        let g = try f.tensor("geometry").labels
        let geometry = Conv2dGeometry(stride: g[0], padding: g[1], groups: g[2])
        #expect(toleranceFailure(try cpu.conv2d(x, w, geometry), try f.tensor("y")) == nil)
        #expect(
            toleranceFailure(try cpu.conv2dBackwardInput(dy, w, inputShape: x.shape, geometry), try f.tensor("dx"))
                == nil)
        #expect(
            toleranceFailure(try cpu.conv2dBackwardWeight(dy, x, weightShape: w.shape, geometry), try f.tensor("dw"))
                == nil)
    }

    @Test func batchNormTraining() throws {
        let f = try Fixtures.op("batchnorm_train")
        let (x, weight, bias, dy) = (
            try f.tensor("x"), try f.tensor("weight"), try f.tensor("bias"), try f.tensor("dy")
        )
        let (y, saved) = try cpu.batchNormTraining(x, weight: weight, bias: bias, eps: 1e-5)
        #expect(toleranceFailure(y, try f.tensor("y")) == nil)
        let (dx, dWeight, dBias) = try cpu.batchNormBackward(dy, x, weight: weight, saved: saved)
        #expect(toleranceFailure(dx, try f.tensor("dx")) == nil)
        #expect(toleranceFailure(dWeight, try f.tensor("dweight")) == nil)
        #expect(toleranceFailure(dBias, try f.tensor("dbias")) == nil)
    }

    @Test func batchNormInference() throws {
        let f = try Fixtures.op("batchnorm_eval")
        let y = try cpu.batchNormInference(
            try f.tensor("x"), weight: try f.tensor("weight"), bias: try f.tensor("bias"),
            runningMean: try f.tensor("running_mean"), runningVar: try f.tensor("running_var"), eps: 1e-5)
        #expect(toleranceFailure(y, try f.tensor("y")) == nil)
    }

    @Test(arguments: Activation.allCases)
    func activation(_ kind: Activation) throws {
        let f = try Fixtures.op("activation_\(kind.rawValue)")
        let x = try f.tensor("x")
        let y = cpu.activation(kind, x)
        #expect(toleranceFailure(y, try f.tensor("y")) == nil)
        #expect(
            toleranceFailure(cpu.activationBackward(kind, try f.tensor("dy"), x: x, y: y), try f.tensor("dx")) == nil)
    }

    @Test(arguments: ["same", "nc11", "1c11"])
    func broadcastingAddAndMultiply(_ pattern: String) throws {
        for op in ["add", "multiply"] {
            let f = try Fixtures.op("\(op)_\(pattern)")
            let (a, b, dy) = (try f.tensor("a"), try f.tensor("b"), try f.tensor("dy"))
            let y = op == "add" ? try cpu.add(a, b) : try cpu.multiply(a, b)
            #expect(toleranceFailure(y, try f.tensor("y")) == nil, "\(op) \(pattern)")
            let da = op == "add" ? dy : try cpu.multiply(dy, b)
            let db = try cpu.sum(op == "add" ? dy : cpu.multiply(dy, a), toShape: b.shape)
            #expect(toleranceFailure(da, try f.tensor("da")) == nil, "\(op) \(pattern)")
            #expect(toleranceFailure(db, try f.tensor("db")) == nil, "\(op) \(pattern)")
        }
    }

    @Test func maxPool() throws {
        let f = try Fixtures.op("max_pool")
        let x = try f.tensor("x")
        let (y, argmax) = try cpu.maxPool2d(x, kernel: 3, stride: 2, padding: 1)
        #expect(toleranceFailure(y, try f.tensor("y")) == nil)
        #expect(
            toleranceFailure(
                cpu.maxPool2dBackward(try f.tensor("dy"), argmax: argmax, inputShape: x.shape), try f.tensor("dx"))
                == nil)
    }

    /// The evaluation path (no argmax) computes exactly `maxPool2d`'s values, on every geometry
    /// and with NaN, infinities and windows of negative values only (the fixture's shape and more).
    @Test(arguments: [[3, 2, 1], [2, 2, 0], [3, 1, 1], [1, 1, 0], [5, 3, 2], [2, 1, 1]])
    func maxPoolValuesWithoutArgmax(_ geometry: [Int]) throws {
        let (kernel, stride, padding) = (geometry[0], geometry[1], geometry[2])
        var generator = RandomGenerator(seed: UInt64(kernel * 100 + stride * 10 + padding))
        for shape in [[2, 3, 9, 11], [1, 2, 5, 5], [3, 1, 8, 17]] {
            var x = Tensor(normal: shape, generator: &generator)
            x.withUnsafeMutableBufferPointer { xs in
                xs[1] = .nan
                xs[7] = -.infinity
                xs[12] = .infinity
                for i in 20..<45 { xs[i] = -abs(xs[i]) - 1 }
            }
            let (y, _) = try cpu.maxPool2d(x, kernel: kernel, stride: stride, padding: padding)
            let values = try cpu.maxPool2dValues(x, kernel: kernel, stride: stride, padding: padding)
            #expect(values.shape == y.shape)
            #expect(
                values.scalars.map(\.bitPattern) == y.scalars.map(\.bitPattern), "\(geometry) \(shape)")
        }
        #expect(throws: TensorError.self) {
            try cpu.maxPool2dValues(Tensor(zeros: [2, 3]), kernel: 3, stride: 2, padding: 1)
        }
    }

    @Test func globalAveragePool() throws {
        let f = try Fixtures.op("global_avg_pool")
        let x = try f.tensor("x")
        #expect(toleranceFailure(try cpu.globalAveragePool(x), try f.tensor("y")) == nil)
        #expect(
            toleranceFailure(cpu.globalAveragePoolBackward(try f.tensor("dy"), inputShape: x.shape), try f.tensor("dx"))
                == nil)
    }

    @Test func linear() throws {
        let f = try Fixtures.op("linear")
        let (x, w, b, dy) = (try f.tensor("x"), try f.tensor("w"), try f.tensor("b"), try f.tensor("dy"))
        #expect(toleranceFailure(try cpu.linear(x, w, b), try f.tensor("y")) == nil)
        let (dx, dw, db) = cpu.linearBackward(dy, x, w)
        #expect(toleranceFailure(dx, try f.tensor("dx")) == nil)
        #expect(toleranceFailure(dw, try f.tensor("dw")) == nil)
        #expect(toleranceFailure(db, try f.tensor("db")) == nil)
    }

    @Test(arguments: [(0, Float(0)), (1, Float(0.1))])
    func crossEntropy(_ file: Int, _ smoothing: Float) throws {
        let f = try Fixtures.op("cross_entropy_\(file)")
        let (loss, gradient) = try cpu.crossEntropy(
            try f.tensor("logits"), labels: try f.tensor("labels").labels, labelSmoothing: smoothing)
        #expect(toleranceFailure(Tensor(shape: [1], repeating: loss), try f.tensor("loss")) == nil)
        #expect(toleranceFailure(gradient, try f.tensor("dlogits")) == nil)
    }

    @Test func topKAccuracy() throws {
        let f = try Fixtures.op("topk")
        let accuracy = try f.tensor("logits").topKAccuracy(labels: try f.tensor("labels").labels, ks: [1, 5])
        #expect(abs(accuracy[0] - (try f.tensor("top1")).scalarValue) < 1e-4)
        #expect(abs(accuracy[1] - (try f.tensor("top5")).scalarValue) < 1e-4)
    }
}
