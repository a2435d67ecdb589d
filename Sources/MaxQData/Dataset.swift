// Datasets: a count, class names, labels, and a way to write sample i (already transformed)
// into a batch tensor. Augmentation draws come from a generator seeded per sample, so what a
// sample looks like depends on the seed, epoch and index only, never on threads.
import MaxQTensor

public enum DataError: Error, Equatable, CustomStringConvertible {
    case missing(path: String, what: String)
    case empty(path: String, what: String)
    case corrupt(path: String, reason: String)

    public var description: String {
        switch self {
        case let .missing(path, what): "\(path): \(what) not found"
        case let .empty(path, what): "\(path): \(what)"
        case let .corrupt(path, reason): "\(path): \(reason)"
        }
    }
}

public protocol Dataset: Sendable {
    var count: Int { get }
    var classNames: [String] { get }
    /// (channels, height, width) of every sample.
    var sampleShape: [Int] { get }
    func label(_ index: Int) -> Int
    /// Writes sample `index` (3, H, W) to `destination`; throws `DataError.corrupt` naming the file.
    func load(_ index: Int, into destination: UnsafeMutablePointer<Float>, generator: inout RandomGenerator)
        throws(DataError)
}

/// Which transform a dataset applies (docs/training.md).
public enum Split: String, Sendable {
    case train, validation
}
