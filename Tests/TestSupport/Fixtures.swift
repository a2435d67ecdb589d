// Test helpers: the committed PyTorch fixtures (Scripts/make_fixtures.py) and element-wise
// tolerance checks that report the worst element.
import Foundation
import MaxQFormats
import MaxQTensor

public enum Fixtures {
    /// Tests/Fixtures, found from this source file so tests run from any directory.
    public static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    public static func path(_ relative: String) -> String {
        directory.appendingPathComponent(relative).path
    }

    /// An operation's fixture: `Tests/Fixtures/ops/<name>.safetensors`.
    public static func op(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile.read(path: path("ops/\(name).safetensors"))
    }
}

/// Where `actual` differs from `expected` by more than `atol + rtol * |expected|`, a message
/// naming the worst element; nil when every element is within tolerance.
public func toleranceFailure(_ actual: Tensor, _ expected: Tensor, rtol: Float = 1e-4, atol: Float = 1e-5) -> String? {
    guard actual.shape == expected.shape else { return "shape \(actual.shape) != expected \(expected.shape)" }
    var worst: (index: Int, error: Float)?
    for i in 0..<actual.count {
        let a = actual[flat: i], e = expected[flat: i]
        let error = a.isNaN != e.isNaN ? Float.infinity : abs(a - e)
        if error > atol + rtol * abs(e), error > (worst?.error ?? 0) { worst = (i, error) }
    }
    guard let worst else { return nil }
    return "element \(worst.index): \(actual[flat: worst.index]) vs expected \(expected[flat: worst.index]) "
        + "(rtol \(rtol), atol \(atol))"
}

extension Tensor {
    /// Integer labels stored as a float tensor (I64 in the fixture).
    public var labels: [Int] { scalars.map { Int($0) } }
}

extension SafetensorsFile {
    /// The tensors named `<prefix>.<rest>`, under `<rest>`.
    public func group(_ prefix: String) -> [String: Tensor] {
        Dictionary(
            uniqueKeysWithValues: tensors.filter { $0.name.hasPrefix(prefix + ".") }
                .map { (String($0.name.dropFirst(prefix.count + 1)), $0.tensor) })
    }
}

/// How many elements of two tensors of one shape differ in their bits (NaN equals a NaN of the same
/// bits, and +0 differs from -0); a shape mismatch counts every element.
public func differingBits(_ a: Tensor, _ b: Tensor) -> Int {
    guard a.shape == b.shape else { return max(a.count, b.count) }
    return zip(a.scalars, b.scalars).filter { $0.bitPattern != $1.bitPattern }.count
}
