// Element-wise error bounds for reduced-precision results: a bound per element (from the
// magnitudes of the summed products) rather than one tolerance for all.
import MaxQTensor

/// bfloat16's unit roundoff: 8 significant bits.
public let bf16Roundoff: Float = 1.0 / 256

/// Where |actual - expected| exceeds `bound` (element-wise), a message naming the worst element.
public func boundFailure(_ actual: Tensor, _ expected: Tensor, bound: Tensor) -> String? {
    guard actual.shape == expected.shape, bound.shape == actual.shape else {
        return "shapes \(actual.shape), \(expected.shape), bound \(bound.shape)"
    }
    var worst: (index: Int, excess: Float)?
    for i in 0..<actual.count {
        let error = abs(actual[flat: i] - expected[flat: i])
        let excess = error.isNaN ? .infinity : error - bound[flat: i]
        if excess > 0, excess > (worst?.excess ?? 0) { worst = (i, excess) }
    }
    guard let worst else { return nil }
    return "element \(worst.index): \(actual[flat: worst.index]) vs \(expected[flat: worst.index]), "
        + "bound \(bound[flat: worst.index])"
}

public func absolute(_ t: Tensor) -> Tensor { try! Tensor(shape: t.shape, scalars: t.scalars.map { abs($0) }) }

/// a * scale + b * other element-wise.
public func combine(_ a: Tensor, _ scale: Float, _ b: Tensor? = nil, _ other: Float = 0) -> Tensor {
    try! Tensor(shape: a.shape, scalars: a.scalars.indices.map { a[flat: $0] * scale + (b?[flat: $0] ?? 0) * other })
}

/// Relative L2 distance.
public func relativeL2(_ a: Tensor, _ b: Tensor) -> Float {
    let difference = zip(a.scalars, b.scalars).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
    return (difference / b.scalars.map { $0 * $0 }.reduce(0, +)).squareRoot()
}
