// Typed errors of the tensor layer: every message names the operation and the shapes involved.

public enum TensorError: Error, Equatable, CustomStringConvertible {
    /// Two shapes that an operation needs to agree do not.
    case shapeMismatch(op: String, [Int], [Int])
    /// A shape that an operation cannot take at all (wrong rank, non-divisible channels, ...).
    case invalidShape(op: String, shape: [Int], reason: String)
    case elementCount(shape: [Int], count: Int)
    case invalidArgument(op: String, reason: String)
    /// The native library refused or failed an operation.
    case backend(op: String, message: String)

    public var description: String {
        switch self {
        case let .shapeMismatch(op, a, b): "\(op): shapes \(a) and \(b) do not match"
        case let .invalidShape(op, shape, reason): "\(op): shape \(shape) is invalid: \(reason)"
        case let .elementCount(shape, count): "shape \(shape) needs \(shape.reduce(1, *)) elements, got \(count)"
        case let .invalidArgument(op, reason): "\(op): \(reason)"
        case let .backend(op, message): "\(op): oneDNN failed: \(message)"
        }
    }
}
