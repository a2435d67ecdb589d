// N:M weights stored compressed: of every group of M consecutive input channels only the N kept
// values, and their positions inside the group packed in ceil(log2 M) bits.
import MaxQTensor

public struct NMWeights: Sendable, Equatable {
    /// (O, I, kh, kw) of the dense weight.
    public let shape: [Int]
    public let n: Int, m: Int
    /// The kept values in the order the kernels read them: output channel, kernel position
    /// (row-major), input chunk, then the N members in ascending input channel.
    public let values: [Float]
    /// Each value's position in its group (0..<M), `bitsPerIndex` bits each, least significant
    /// bits first, in the order of `values`.
    public let packedIndices: [UInt8]

    public var outputs: Int { shape[0] }
    public var inputs: Int { shape[1] }
    public var positions: Int { shape[2] * shape[3] }
    public var groups: Int { outputs * positions * (inputs / m) }
    /// ceil(log2 M): 2 bits for M = 4, 3 for M = 8, 4 for M = 16.
    public var bitsPerIndex: Int { Self.bits(m) }

    static func bits(_ m: Int) -> Int { max(1, Int.bitWidth - (m - 1).leadingZeroBitCount) }

    /// Compresses `weight`, which must have at most N non-zeros in every group; a group with
    /// fewer keeps zeros at its first unused positions.
    public init(packing weight: Tensor, n: Int, m: Int, layer: String) throws(DeploymentError) {
        let shape = weight.shape
        guard shape.count == 4, m >= 1, n >= 1, n <= m, shape[1] % m == 0 else {
            throw .unsupportedShape(layer: layer, shape: shape, m: m)
        }
        let (outputs, inputs, positions) = (shape[0], shape[1], shape[2] * shape[3])
        let overfull = Self.overfullGroups(weight, n: n, m: m)
        guard overfull == 0 else {
            throw .notNM(layer: layer, overfull: overfull, groups: outputs * positions * inputs / m, n: n, m: m)
        }
        var values: [Float] = [], indices: [Int] = []
        values.reserveCapacity(weight.count / m * n)
        indices.reserveCapacity(weight.count / m * n)
        weight.withUnsafeBufferPointer { w in
            for o in 0..<outputs {
                for p in 0..<positions {
                    for chunk in 0..<(inputs / m) {
                        // The non-zeros and, if there are fewer than N, the first zeros, in ascending order.
                        let first = (o * inputs + chunk * m) * positions + p
                        var zerosToKeep = n - (0..<m).filter { w[first + $0 * positions] != 0 }.count
                        for j in 0..<m {
                            let value = w[first + j * positions]
                            if value == 0 {
                                guard zerosToKeep > 0 else { continue }
                                zerosToKeep -= 1
                            }
                            values.append(value)
                            indices.append(j)
                        }
                    }
                }
            }
        }
        self.shape = shape
        (self.n, self.m) = (n, m)
        self.values = values
        packedIndices = Self.pack(indices, bits: Self.bits(m))
    }

    /// The groups of an (O, I, kh, kw) `weight` (M consecutive input channels at one output
    /// channel and kernel position; M divides I) that hold more than N non-zeros.
    public static func overfullGroups(_ weight: Tensor, n: Int, m: Int) -> Int {
        let (outputs, inputs, positions) = (weight.shape[0], weight.shape[1], weight.shape[2] * weight.shape[3])
        var overfull = 0
        weight.withUnsafeBufferPointer { w in
            for o in 0..<outputs {
                for chunk in 0..<(inputs / m) {
                    let first = (o * inputs + chunk * m) * positions
                    for p in 0..<positions {
                        var nonZeros = 0
                        for j in 0..<m where w[first + j * positions + p] != 0 { nonZeros += 1 }
                        if nonZeros > n { overfull += 1 }
                    }
                }
            }
        }
        return overfull
    }

    /// Compressed weights as a file holds them, checked: counts that match the shape, N <= M with
    /// M dividing the input channels, positions inside their group and strictly ascending, finite values.
    public init(shape: [Int], n: Int, m: Int, values: [Float], packedIndices: [UInt8], layer: String)
        throws(DeploymentError)
    {
        func fail(_ reason: String) -> DeploymentError { .malformedWeights(layer: layer, reason: reason) }
        guard n >= 1, m >= 2, n <= m else { throw fail("N:M \(n):\(m) is not a pattern with 1 <= N <= M, M >= 2") }
        guard shape.count == 4, shape.allSatisfy({ $0 >= 1 }), let count = Tensor.elementCount(shape) else {
            throw fail("shape \(shape) is not (O, I, kh, kw)")
        }
        guard shape[1] % m == 0 else { throw fail("\(shape[1]) input channels are not a multiple of M = \(m)") }
        guard values.count == count / m * n else {
            throw fail("\(values.count) values where \(n):\(m) of shape \(shape) keeps \(count / m * n)")
        }
        let bits = Self.bits(m)
        guard packedIndices.count == (values.count * bits + 7) / 8 else {
            let needed = (values.count * bits + 7) / 8
            throw fail("\(packedIndices.count) bytes of indices where \(values.count) values need \(needed)")
        }
        if let bad = values.firstIndex(where: { !$0.isFinite }) { throw fail("value \(bad) is \(values[bad])") }
        (self.shape, self.n, self.m, self.values, self.packedIndices) = (shape, n, m, values, packedIndices)
        let unpacked = indices
        for (k, index) in unpacked.enumerated() {
            guard index < m else { throw fail("index \(index) of value \(k) is outside its group of \(m)") }
            guard k % n == 0 || index > unpacked[k - 1] else {
                throw fail("indices of group \(k / n) are not strictly ascending")
            }
        }
    }

    /// Positions of every value in its group, unpacked.
    public var indices: [Int] {
        let bits = bitsPerIndex
        return (0..<values.count).map { k in
            var value = 0
            for b in 0..<bits where packedIndices[(k * bits + b) / 8] & (1 << ((k * bits + b) % 8)) != 0 {
                value |= 1 << b
            }
            return value
        }
    }

    /// The dense (O, I, kh, kw) weight again.
    public var dense: Tensor {
        var w = [Float](repeating: 0, count: shape.reduce(1, *))
        let (inputs, positions, chunks) = (self.inputs, self.positions, self.inputs / m)
        for (k, j) in indices.enumerated() {
            let group = k / n
            let (o, p, chunk) = (group / (positions * chunks), group / chunks % positions, group % chunks)
            w[(o * inputs + chunk * m + j) * positions + p] = values[k]
        }
        return try! Tensor(shape: shape, scalars: w)
    }

    static func pack(_ indices: [Int], bits: Int) -> [UInt8] {
        var packed = [UInt8](repeating: 0, count: (indices.count * bits + 7) / 8)
        for (k, index) in indices.enumerated() {
            for b in 0..<bits where index & (1 << b) != 0 { packed[(k * bits + b) / 8] |= 1 << ((k * bits + b) % 8) }
        }
        return packed
    }
}
