// CIFAR-10 and CIFAR-100 in their binary distribution format: records of label byte(s) and
// 3072 bytes of R, G and B planes (32 x 32). CIFAR-100 records carry (coarse, fine) labels;
// the fine label is used.
import Foundation
import MaxQTensor

public struct CIFARDataset: Dataset {
    public let classNames: [String]
    let images: [UInt8]
    let labels: [Int]
    public let train: Bool
    public var count: Int { labels.count }
    public var sampleShape: [Int] { [3, 32, 32] }

    /// `classes` 10 reads data_batch_1..5.bin / test_batch.bin; 100 reads train.bin / test.bin.
    public init(root: String, classes: Int, train: Bool) throws(DataError) {
        let files =
            classes == 10
            ? (train ? (1...5).map { "data_batch_\($0).bin" } : ["test_batch.bin"])
            : [train ? "train.bin" : "test.bin"]
        let labelBytes = classes == 10 ? 1 : 2
        var images: [UInt8] = [], labels: [Int] = []
        for name in files {
            let path = "\(root)/\(name)"
            guard let data = FileManager.default.contents(atPath: path) else {
                throw .missing(path: path, what: "CIFAR-\(classes) batch file")
            }
            let record = labelBytes + 3072
            guard data.count % record == 0, !data.isEmpty else {
                throw .corrupt(
                    path: path, reason: "\(data.count) bytes is not a whole number of \(record)-byte records")
            }
            data.withUnsafeBytes { raw in
                let bytes = raw.bindMemory(to: UInt8.self)
                for r in 0..<(data.count / record) {
                    labels.append(Int(bytes[r * record + labelBytes - 1]))
                    images.append(contentsOf: bytes[(r * record + labelBytes)..<((r + 1) * record)])
                }
            }
        }
        if let bad = labels.first(where: { $0 >= classes }) {
            throw .corrupt(path: root, reason: "label \(bad) outside 0..<\(classes)")
        }
        self.images = images
        self.labels = labels
        self.train = train
        classNames = (0..<classes).map { "class \($0)" }
    }

    public func label(_ index: Int) -> Int { labels[index] }

    public func load(_ index: Int, into destination: UnsafeMutablePointer<Float>, generator: inout RandomGenerator)
        throws(DataError)
    {
        images.withUnsafeBufferPointer { bytes in
            CIFARTransform.apply(
                planes: bytes.baseAddress! + index * 3072, train: train, generator: &generator, into: destination)
        }
    }
}
