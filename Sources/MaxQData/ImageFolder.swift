// Image folders as torchvision's ImageFolder: class sub-folders sorted by name give the class
// indices; .jpg, .jpeg and .png files in any letter case, found recursively in sorted order.
import Foundation
import MaxQTensor

public struct ImageFolderDataset: Dataset {
    public let root: String
    public let classNames: [String]
    public let files: [(path: String, label: Int)]
    public let split: Split
    public let recipe: ImageRecipe
    public var count: Int { files.count }
    public var sampleShape: [Int] { [3, recipe.resolution, recipe.resolution] }

    static let extensions: Set<String> = ["jpg", "jpeg", "png"]

    /// Scans `root`; a missing folder, no class folders, or a class without images is an error
    /// naming it, before any training starts. With `flatIsOneClass`, a folder of images without
    /// class sub-folders is read as one class (what a benchmark of decoding needs).
    public init(root: String, split: Split, resolution: Int = 224, flatIsOneClass: Bool = false) throws(DataError) {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .missing(path: root, what: "image folder")
        }
        let entries = ((try? fm.contentsOfDirectory(atPath: root)) ?? []).sorted()
        var classes = entries.filter { name in
            var dir: ObjCBool = false
            return fm.fileExists(atPath: "\(root)/\(name)", isDirectory: &dir) && dir.boolValue
        }
        if classes.isEmpty && flatIsOneClass { classes = ["."] }
        guard !classes.isEmpty else {
            throw .empty(path: root, what: "no class sub-folders (expected one folder of images per class)")
        }
        var files: [(String, Int)] = []
        for (label, name) in classes.enumerated() {
            let folder = "\(root)/\(name)"
            let images = (fm.enumerator(atPath: folder)?.compactMap { $0 as? String } ?? [])
                .filter { Self.extensions.contains(($0 as NSString).pathExtension.lowercased()) }
                .sorted()
            guard !images.isEmpty else {
                throw .empty(path: folder, what: "class folder without .jpg, .jpeg or .png images")
            }
            files += images.map { ("\(folder)/\($0)", label) }
        }
        self.root = root
        self.classNames = classes
        self.files = files
        self.split = split
        self.recipe = ImageRecipe(resolution: resolution)
    }

    public func label(_ index: Int) -> Int { files[index].label }

    public func load(_ index: Int, into destination: UnsafeMutablePointer<Float>, generator: inout RandomGenerator)
        throws(DataError)
    {
        do {
            let image = try EncodedImage(path: files[index].path)
            switch split {
            case .train: try recipe.train(image, generator: &generator, into: destination)
            case .validation: try recipe.validation(image, into: destination)
            }
        } catch {
            throw .corrupt(path: files[index].path, reason: error.reason)
        }
    }

    /// The reference's layouts: ImageNet `DATA/train` and `DATA/val`; ImageFolder's
    /// validation folder is `val/`, or else `test/`.
    public static func splits(root: String, resolution: Int = 224) throws(DataError) -> (
        ImageFolderDataset, ImageFolderDataset
    ) {
        let fm = FileManager.default
        let validation = ["val", "test"].map { "\(root)/\($0)" }.first { fm.fileExists(atPath: $0) }
        guard fm.fileExists(atPath: "\(root)/train") else {
            throw .missing(path: "\(root)/train", what: "training split")
        }
        guard let validation else { throw .missing(path: "\(root)/val", what: "validation split (val/ or test/)") }
        return (
            try ImageFolderDataset(root: "\(root)/train", split: .train, resolution: resolution),
            try ImageFolderDataset(root: validation, split: .validation, resolution: resolution)
        )
    }
}
