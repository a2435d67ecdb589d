// The blocked network's operations against the backend's layer-by-layer kernels.
import MaxQTensor
import MaxQTestSupport
import Testing

@Suite struct BlockedNetworkTests {
    /// conv + ReLU; conv + the network's input (an addend read again later: copied into the output's
    /// layout, not overwritten) + ReLU6; a depthwise conv; max pooling; conv + the first conv's output
    /// (read for the last time: summed in place); global average pooling. Both precisions, the layer-by-layer
    /// kernels as reference (bf16: within 2 %).
    @Test(arguments: [Precision.fp32, .bf16])
    func operationsMatchTheBackendsKernels(_ precision: Precision) throws {
        guard precision == .fp32 || Precision.cpuHasBFloat16 else { return }
        var generator = RandomGenerator(seed: 11)
        let x = Tensor(normal: [2, 16, 9, 9], generator: &generator)
        let weights = [[16, 16, 3, 3], [16, 16, 1, 1], [16, 1, 3, 3], [16, 16, 3, 3]].map {
            Tensor(normal: $0, std: 0.2, generator: &generator)
        }
        let biases = (0..<4).map { _ in Tensor(normal: [16], std: 0.1, generator: &generator) }
        let plain = Conv2dGeometry(stride: 1, padding: 1, groups: 1)
        let geometries = [
            plain, Conv2dGeometry(stride: 1, padding: 0, groups: 1),
            Conv2dGeometry(stride: 1, padding: 1, groups: 16), Conv2dGeometry(stride: 2, padding: 1, groups: 1),
        ]
        let network = try BlockedNetwork(
            [
                .convolution(
                    input: 0, weight: weights[0], bias: biases[0], geometry: geometries[0], adding: nil,
                    activation: .relu),
                .convolution(
                    input: 1, weight: weights[1], bias: biases[1], geometry: geometries[1], adding: 0,
                    activation: .relu6),
                .convolution(
                    input: 2, weight: weights[2], bias: biases[2], geometry: geometries[2], adding: nil,
                    activation: nil),
                .maxPool(input: 3, kernel: 3, stride: 2, padding: 1),
                .convolution(
                    input: 0, weight: weights[3], bias: biases[3], geometry: geometries[3], adding: 4,
                    activation: .relu),
                .globalAveragePool(input: 5),
            ], precision: precision)
        let cpu = CPUBackend.shared
        let conv = { (i: Int, input: Tensor, activation: Activation?) throws in
            try cpu.conv2dInference(
                input, weights[i], bias: biases[i], geometries[i], activation: activation,
                precision: .fp32)
        }
        let v1 = try conv(0, x, .relu)
        let v2 = cpu.activation(.relu6, try cpu.add(try conv(1, v1, nil), x))
        let v3 = try conv(2, v2, nil)
        let v4 = try cpu.maxPool2dValues(v3, kernel: 3, stride: 2, padding: 1)
        let v5 = cpu.activation(.relu, try cpu.add(try conv(3, x, nil), v4))
        let expected = try cpu.globalAveragePool(v5)
        let result = try network(x)
        #expect(result.shape == [2, 16, 1, 1])
        let error = relativeL2(result, expected)
        #expect(precision == .fp32 ? error < 1e-6 : error < 2e-2 && error > 0, "\(precision): \(error)")
    }

    @Test func anOperationReadingALaterValueIsRefused() throws {
        #expect(throws: TensorError.self) {
            _ = try BlockedNetwork([.globalAveragePool(input: 1)], precision: .fp32)
        }
    }
}
