// What can stop a model from being deployed, each naming the layer it concerns.
import MaxQTensor

public enum DeploymentError: Error, Equatable, CustomStringConvertible {
    /// More than N non-zeros in `overfull` of the layer's `groups` groups.
    case notNM(layer: String, overfull: Int, groups: Int, n: Int, m: Int)
    /// A weight that is not (O, I, kh, kw) with I a multiple of M.
    case unsupportedShape(layer: String, shape: [Int], m: Int)
    /// Compressed weights whose parts do not fit together (a damaged or tampered file).
    case malformedWeights(layer: String, reason: String)
    /// An exported model file that cannot be read: where, and what is wrong.
    case invalidModelFile(path: String, reason: String)
    case tensor(TensorError)

    public var description: String {
        switch self {
        case .notNM(let layer, let overfull, let groups, let n, let m):
            "\(layer): \(overfull) of \(groups) groups have more than \(n) non-zeros, not \(n):\(m)"
        case .unsupportedShape(let layer, let shape, let m):
            "\(layer): weight of shape \(shape) has no \(m)-wide groups along its input channels"
        case .malformedWeights(let layer, let reason): "\(layer): \(reason)"
        case .invalidModelFile(let path, let reason): "\(path): \(reason)"
        case .tensor(let error): "\(error)"
        }
    }
}
