// A seeded random generator whose streams are identical on every machine: xoshiro256**
// seeded through SplitMix64 (Blackman & Vigna), with normal, uniform, integer and permutation
// draws defined in terms of its 64-bit outputs only.
import Foundation

public struct RandomGenerator: RandomNumberGenerator, Sendable, Equatable {
    /// The full state, so that a run can be resumed exactly.
    public private(set) var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var splitmix = seed
        func next() -> UInt64 {
            splitmix &+= 0x9E37_79B9_7F4A_7C15
            var z = splitmix
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (next(), next(), next(), next())
    }

    public init(state: (UInt64, UInt64, UInt64, UInt64)) {
        self.state = state
    }

    public static func == (a: RandomGenerator, b: RandomGenerator) -> Bool {
        a.state == b.state
    }

    public mutating func next() -> UInt64 {
        let result = rotate(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotate(state.3, 45)
        return result
    }

    private func rotate(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 24 bits of precision (every float32 of that grid equally likely).
    public mutating func uniform() -> Float {
        Float(next() >> 40) * 0x1p-24
    }

    public mutating func uniform(_ low: Float, _ high: Float) -> Float {
        low + (high - low) * uniform()
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    public mutating func uniformDouble() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// Standard normal by the Box-Muller transform, one draw per call (no cached second value,
    /// so the state alone determines the stream).
    public mutating func normal(mean: Float = 0, std: Float = 1) -> Float {
        let u1 = 1 - uniformDouble()  // (0, 1]: log is finite
        return Self.boxMuller(u1, uniformDouble(), mean: mean, std: std)
    }

    static func boxMuller(_ u1: Double, _ u2: Double, mean: Float, std: Float) -> Float {
        let z = (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
        return mean + std * Float(z)
    }

    /// Uniform integer in 0..<bound without modulo bias (Lemire's method).
    public mutating func integer(below bound: Int) -> Int {
        precondition(bound > 0, "integer(below:) needs a positive bound")
        let b = UInt64(bound)
        var m = next().multipliedFullWidth(by: b)
        if m.low < b {
            let threshold = (0 &- b) % b
            while m.low < threshold { m = next().multipliedFullWidth(by: b) }
        }
        return Int(m.high)
    }

    /// A uniformly random permutation of 0..<count (Fisher-Yates).
    public mutating func permutation(_ count: Int) -> [Int] {
        var result = Array(0..<count)
        if count < 2 { return result }
        for i in stride(from: count - 1, to: 0, by: -1) {
            result.swapAt(i, integer(below: i + 1))
        }
        return result
    }
}

extension Tensor {
    /// The values `generator.normal` draws one after the other. The draws are sequential; the
    /// logarithm and cosine of each, most of the time, run on all cores, block by block (same
    /// values: each element's arithmetic is unchanged).
    public init(normal shape: [Int], mean: Float = 0, std: Float = 1, generator: inout RandomGenerator) {
        self.init(uninitializedShape: shape)
        let block = 1 << 15
        var draws = [Double](repeating: 0, count: 2 * min(count, block))
        let output = storage.pointer
        for start in stride(from: 0, to: count, by: block) {
            let length = min(block, count - start)
            for i in 0..<length {
                draws[2 * i] = 1 - generator.uniformDouble()
                draws[2 * i + 1] = generator.uniformDouble()
            }
            draws.withUnsafeBufferPointer { d in
                parallelRanges(length, grain: 4096) { range in
                    for i in range {
                        output[start + i] = RandomGenerator.boxMuller(d[2 * i], d[2 * i + 1], mean: mean, std: std)
                    }
                }
            }
        }
    }

    public init(uniform shape: [Int], low: Float, high: Float, generator: inout RandomGenerator) {
        self.init(uninitializedShape: shape)
        for i in 0..<count { storage.pointer[i] = generator.uniform(low, high) }
    }
}
