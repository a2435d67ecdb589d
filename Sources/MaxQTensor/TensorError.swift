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
    /// A named tensor holds NaN or an infinity where only finite values make sense (weights).
    case nonFinite(name: String)
    /// The processes of a data-parallel run could not exchange data (the MPI library's message).
    case communication(op: String, message: String)

    public var description: String {
        switch self {
        case let .shapeMismatch(op, a, b): "\(op): shapes \(a) and \(b) do not match"
        case let .invalidShape(op, shape, reason): "\(op): shape \(shape) is invalid: \(reason)"
        case let .elementCount(shape, count):
            if let needed = Tensor.elementCount(shape) {
                "shape \(shape) needs \(needed) elements, got \(count)"
            } else {
                "shape \(shape) is invalid (a negative dimension, or more elements than an Int can count)"
            }
        case let .invalidArgument(op, reason): "\(op): \(reason)"
        case let .backend(op, message): "\(op): oneDNN failed: \(message)"
        case let .nonFinite(name): "'\(name)' holds NaN or infinite values"
        case let .communication(op, message): "\(op) across processes failed: \(message)"
        }
    }
}
