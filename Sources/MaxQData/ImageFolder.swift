// Image folders as torchvision's ImageFolder: class sub-folders sorted by name give the class
// indices; .jpg, .jpeg and .png files in any letter case, found recursively in sorted order.
import Foundation
import MaxQTensor

public struct ImageFolderDataset: Dataset {
    public let root: String
    public let classNames: [String]
    public let files: [(path: String, label: Int)]
    public let split: Split
    public let resolution: Int
    public let normalization: Normalization
    public var count: Int { files.count }
    public var sampleShape: [Int] { [3, resolution, resolution] }

    static let extensions: Set<String> = ["jpg", "jpeg", "png"]

    /// Scans `root`; a missing folder, no class folders, or a class without images is an error
    /// naming it, before any training starts.
    public init(root: String, split: Split, resolution: Int = 224, normalization: Normalization = .imageNet) throws(DataError) {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .missing(path: root, what: "image folder")
        }
        let entries = ((try? fm.contentsOfDirectory(atPath: root)) ?? []).sorted()
        let classes = entries.filter { name in
            var dir: ObjCBool = false
            return fm.fileExists(atPath: "\(root)/\(name)", isDirectory: &dir) && dir.boolValue
        }
        guard !classes.isEmpty else { throw .empty(path: root, what: "no class sub-folders (expected one folder of images per class)") }
        var files: [(String, Int)] = []
        for (label, name) in classes.enumerated() {
            let folder = "\(root)/\(name)"
            let images = (fm.enumerator(atPath: folder)?.compactMap { $0 as? String } ?? [])
                .filter { Self.extensions.contains(($0 as NSString).pathExtension.lowercased()) }
                .sorted()
            guard !images.isEmpty else { throw .empty(path: folder, what: "class folder without .jpg, .jpeg or .png images") }
            files += images.map { ("\(folder)/\($0)", label) }
        }
        self.root = root
        self.classNames = classes
        self.files = files
        self.split = split
        self.resolution = resolution
        self.normalization = normalization
    }

    public func label(_ index: Int) -> Int { files[index].label }

    public func load(_ index: Int, into destination: UnsafeMutablePointer<Float>, generator: inout RandomGenerator) throws(DataError) {
        do {
            let image = try EncodedImage(path: files[index].path)
            if resolution > 64 {
                switch split {
                case .train:
                    try TrainTransform.apply(image, size: resolution, normalization: normalization, generator: &generator, into: destination)
                case .validation:
                    try ValidationTransform.apply(
                        image, resize: resolution * 256 / 224, crop: resolution, normalization: normalization, into: destination)
                }
            } else {
                try loadSmall(image.decoded(), into: destination, generator: &generator)
            }
        } catch {
            throw .corrupt(path: files[index].path, reason: error.reason)
        }
    }

    private func loadSmall(_ image: RGBImage, into destination: UnsafeMutablePointer<Float>, generator: inout RandomGenerator) {
        // Small images (CIFAR as JPEG folders): CIFAR's transforms, after a resize if needed.
        let fitted = image.width == resolution && image.height == resolution
            ? image : image.resizedCrop(x: 0, y: 0, width: image.width, height: image.height, outputWidth: resolution, outputHeight: resolution)
        fitted.planes.withUnsafeBufferPointer { planes in
            CIFARTransform.apply(
                planes: planes.baseAddress!, size: resolution, train: split == .train, generator: &generator, into: destination)
        }
    }

    /// The reference's layouts: ImageNet `DATA/train` and `DATA/val`; ImageFolder's
    /// validation folder is `val/`, or else `test/`.
    public static func splits(root: String, resolution: Int = 224, normalization: Normalization = .imageNet) throws(DataError) -> (ImageFolderDataset, ImageFolderDataset) {
        let fm = FileManager.default
        let validation = ["val", "test"].map { "\(root)/\($0)" }.first { fm.fileExists(atPath: $0) }
        guard fm.fileExists(atPath: "\(root)/train") else { throw .missing(path: "\(root)/train", what: "training split") }
        guard let validation else { throw .missing(path: "\(root)/val", what: "validation split (val/ or test/)") }
        return (
            try ImageFolderDataset(root: "\(root)/train", split: .train, resolution: resolution, normalization: normalization),
            try ImageFolderDataset(root: validation, split: .validation, resolution: resolution, normalization: normalization)
        )
    }
}
