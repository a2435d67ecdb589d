// The compressed N:M weights: exact round trips, the index width, and refusing what is not N:M.
import MaxQDeploy
import MaxQTensor
import Testing

/// A random (O, I, kh, kw) weight with exactly N non-zeros in every group of M input channels.
func randomNMWeight(_ shape: [Int], n: Int, m: Int, generator: inout RandomGenerator) -> Tensor {
    var w = Tensor(normal: shape, std: 0.1, generator: &generator)
    let (inputs, positions) = (shape[1], shape[2] * shape[3])
    w.withUnsafeMutableBufferPointer { v in
        for o in 0..<shape[0] {
            for p in 0..<positions {
                for chunk in 0..<(inputs / m) {
                    var members = Array(0..<m)
                    for j in 0..<(m - n) { members.swapAt(j, j + generator.integer(below: m - j)) }
                    for j in members.prefix(m - n) { v[(o * inputs + chunk * m + j) * positions + p] = 0 }
                }
            }
        }
    }
    return w
}

struct NMWeightsTests {
    @Test(arguments: [(2, 4, 2), (1, 4, 2), (2, 8, 3), (4, 8, 3), (1, 16, 4)])
    func packingRoundTripsExactly(_ n: Int, _ m: Int, _ bits: Int) throws {
        var generator = RandomGenerator(seed: UInt64(n * 31 + m))
        for shape in [[8, 32, 3, 3], [5, 48, 1, 1], [3, 16, 5, 5]] {
            let w = randomNMWeight(shape, n: n, m: m, generator: &generator)
            let packed = try NMWeights(packing: w, n: n, m: m, layer: "conv")
            #expect(packed.bitsPerIndex == bits)
            #expect(packed.values.count == w.count / m * n)
            #expect(packed.packedIndices.count == (packed.values.count * bits + 7) / 8)
            #expect(packed.indices.allSatisfy { $0 < m })
            #expect(packed.dense.shape == shape && packed.dense.scalars == w.scalars, "\(shape)")
        }
    }

    @Test func aGroupWithFewerThanNNonZerosKeepsZeros() throws {
        var w = [Float](repeating: 0, count: 2 * 8)
        w[1] = 3  // output 0: one non-zero in its first group, none in its second
        w[8 + 4] = 1
        w[8 + 7] = 2
        let packed = try NMWeights(packing: try Tensor(shape: [2, 8, 1, 1], scalars: w), n: 2, m: 4, layer: "conv")
        #expect(packed.values == [0, 3, 0, 0, 0, 0, 1, 2])
        #expect(packed.dense.scalars == w)
    }

    @Test func moreThanNNonZerosIsRefusedNamingTheLayerAndCount() throws {
        var generator = RandomGenerator(seed: 4)
        var w = randomNMWeight([4, 8, 3, 3], n: 2, m: 4, generator: &generator)
        w.withUnsafeMutableBufferPointer { v in
            v[0] = 1; v[9] = 1; v[18] = 1  // output 0, position 0, first group: inputs 0, 1, 2
        }
        #expect(throws: DeploymentError.notNM(layer: "layer1.0.conv", overfull: 1, groups: 72, n: 2, m: 4)) {
            try NMWeights(packing: w, n: 2, m: 4, layer: "layer1.0.conv")
        }
        #expect(throws: DeploymentError.unsupportedShape(layer: "fc", shape: [4, 6, 1, 1], m: 4)) {
            try NMWeights(packing: Tensor(zeros: [4, 6, 1, 1]), n: 2, m: 4, layer: "fc")
        }
    }
}
