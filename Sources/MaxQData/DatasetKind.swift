// The datasets `maxq train --set` knows, with what the original code fixes per dataset.

public enum DatasetKind: String, CaseIterable, Codable, Sendable {
    case imageNet = "ImageNet", imageFolder = "ImageFolder", cifar10 = "CIFAR10", cifar100 = "CIFAR100"
    case synthetic = "Synthetic"

    /// The original trains ImageNet with label smoothing 0.1 and CIFAR without.
    public var defaultLabelSmoothing: Double {
        switch self {
        case .imageNet, .imageFolder: 0.1
        case .cifar10, .cifar100, .synthetic: 0
        }
    }

    /// The original validates ImageNet with a quarter of the training batch.
    public func validationBatchSize(training batchSize: Int) -> Int {
        self == .imageNet ? max(1, batchSize / 4) : batchSize
    }

    /// Whether the set is read from a folder given on the command line.
    public var needsData: Bool { self != .synthetic }
}
