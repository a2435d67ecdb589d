// A built-in, procedurally generated image-classification dataset: no download, deterministic
// for a seed, learnable. Class k is an oriented colour grating (orientation and hue set by k)
// with a random phase, frequency, brightness and position, plus pixel noise.
import Foundation
import MaxQTensor

public struct SyntheticDataset: Dataset {
    public let classNames: [String]
    public let count: Int
    public let resolution: Int
    public let seed: UInt64
    public var sampleShape: [Int] { [3, resolution, resolution] }

    public init(classes: Int = 10, images: Int, resolution: Int = 32, seed: UInt64) throws(DataError) {
        guard classes >= 2, images >= 1, resolution >= 8 else {
            throw .empty(path: "Synthetic", what: "needs at least 2 classes, 1 image and 8x8 pixels")
        }
        classNames = (0..<classes).map { "grating \($0)" }
        count = images
        self.resolution = resolution
        self.seed = seed
    }

    public func label(_ index: Int) -> Int { index % classNames.count }

    public func load(_ index: Int, into destination: UnsafeMutablePointer<Float>, generator: inout RandomGenerator)
        throws(DataError)
    {
        let k = label(index)
        // The image itself depends on (seed, index) only; `generator` adds a random flip.
        var shape = RandomGenerator(seed: seed &* 0x9E37_79B9 &+ UInt64(index))
        let classes = Double(classNames.count)
        let angle = Double.pi * Double(k) / classes + Double(shape.normal(mean: 0, std: 0.05))
        let hue = 2 * Double.pi * Double(k) / classes
        let color = (0..<3).map { c in Float(0.5 + 0.45 * Foundation.cos(hue + 2 * Double.pi * Double(c) / 3)) }
        let frequency = 2 + 2 * shape.uniformDouble()
        let phase = 2 * Double.pi * shape.uniformDouble()
        let brightness = Float(0.8 + 0.4 * shape.uniformDouble())
        let (cx, cy) = (shape.uniformDouble() - 0.5, shape.uniformDouble() - 0.5)
        let flip = generator.uniform() < 0.5
        let n = Double(resolution)
        for y in 0..<resolution {
            for x in 0..<resolution {
                let u = (Double(flip ? resolution - 1 - x : x) / n - 0.5 - cx), v = (Double(y) / n - 0.5 - cy)
                let wave = Float(
                    0.5 + 0.5
                        * Foundation.sin(
                            2 * Double.pi * frequency * (u * Foundation.cos(angle) + v * Foundation.sin(angle)) + phase)
                )
                for c in 0..<3 {
                    let value =
                        brightness * (wave * color[c] + (1 - wave) * (1 - color[c]) * 0.3)
                        + shape.normal(mean: 0, std: 0.08)
                    destination[(c * resolution + y) * resolution + x] = (value - 0.45) / 0.25
                }
            }
        }
    }
}
