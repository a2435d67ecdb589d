// Datasets and the loader: folder scanning and its errors, CIFAR records, the synthetic set,
// RandomResizedCrop's sampling, and batches that depend on seed and epoch, not on threads.
import Foundation
import MaxQData
import MaxQTensor
import MaxQTestSupport
import Testing

/// A temporary folder tree, removed when the test ends.
final class TemporaryFolder {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("maxq-data-\(UUID().uuidString)").path

    func file(_ relative: String, _ contents: Data) throws {
        let url = URL(fileURLWithPath: "\(path)/\(relative)")
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try contents.write(to: url)
    }

    func folder(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: "\(path)/\(relative)", withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

func fixtureImage(_ name: String) throws -> Data {
    try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/\(name)")))
}

@Suite struct DatasetTests {
    @Test func imageFolderSortsClassesAndFindsImagesInAnyCase() throws {
        let tree = TemporaryFolder()
        try tree.file("b_dog/x.PNG", fixtureImage("wide.png"))
        try tree.file("a_cat/sub/y.jpeg", fixtureImage("photo.jpg"))
        try tree.file("a_cat/z.JPG", fixtureImage("photo.jpg"))
        try tree.file("a_cat/notes.txt", Data("not an image".utf8))
        let dataset = try ImageFolderDataset(root: tree.path, split: .validation, resolution: 16)
        #expect(dataset.classNames == ["a_cat", "b_dog"])
        #expect(dataset.files.map { ($0.path as NSString).lastPathComponent } == ["y.jpeg", "z.JPG", "x.PNG"])
        #expect(dataset.files.map(\.label) == [0, 0, 1])
    }

    /// `maxq bench data` reads a plain folder of images as one class; training still refuses it.
    @Test func aFlatFolderIsOneClassOnlyWhenAsked() throws {
        let tree = TemporaryFolder()
        try tree.file("x.jpg", fixtureImage("photo.jpg"))
        try tree.file("y.png", fixtureImage("wide.png"))
        let dataset = try ImageFolderDataset(root: tree.path, split: .validation, resolution: 16, flatIsOneClass: true)
        #expect(dataset.classNames.count == 1 && dataset.count == 2 && dataset.files.map(\.label) == [0, 0])
        var generator = RandomGenerator(seed: 1)
        var sample = Tensor(zeros: [3, 16, 16])
        try sample.withUnsafeMutableBufferPointer { try dataset.load(1, into: $0.baseAddress!, generator: &generator) }
        #expect(sample.isAllFinite && sample.scalars.contains { $0 != 0 })
        #expect { try ImageFolderDataset(root: tree.path, split: .train) } throws: { "\($0)".contains("no class") }
    }

    @Test func badFoldersAreClearErrorsBeforeTraining() throws {
        let tree = TemporaryFolder()
        #expect { try ImageFolderDataset(root: tree.path + "/nope", split: .train) } throws: {
            "\($0)".contains("/nope")
        }
        try tree.folder("empty_root")
        #expect { try ImageFolderDataset(root: tree.path + "/empty_root", split: .train) } throws: {
            "\($0)".contains("no class")
        }
        try tree.file("data/train/cat/a.png", fixtureImage("wide.png"))
        try tree.folder("data/train/dog")
        #expect { try ImageFolderDataset(root: tree.path + "/data/train", split: .train) } throws: {
            "\($0)".contains("dog")
        }
        #expect { try ImageFolderDataset.splits(root: tree.path + "/data") } throws: { "\($0)".contains("val") }
    }

    @Test func corruptFilesAreSkippedAndNamedAndTheLastPartialBatchIsKept() throws {
        let tree = TemporaryFolder()
        for i in 0..<4 { try tree.file("cat/\(i).png", fixtureImage("wide.png")) }
        try tree.file("cat/broken.jpg", Data([0xFF, 0xD8, 0xFF, 0x00, 0x01]))
        let jpeg = try fixtureImage("jpeg/progressive_420.jpg")
        try tree.file("cat/truncated.jpg", jpeg.prefix(jpeg.count / 2))  // refused, as Pillow refuses it
        let dataset = try ImageFolderDataset(root: tree.path, split: .train, resolution: 16)
        let loader = DataLoader(dataset: dataset, batchSize: 2, shuffle: false, seed: 1, workers: 2)
        var sizes: [Int] = [], skipped: [String] = []
        let batches = loader.epoch(0)
        while let batch = batches.next() {
            sizes.append(batch.labels.count)
            skipped += batch.skipped
            #expect(batch.images.shape == [batch.labels.count, 3, 16, 16])
        }
        #expect(sizes == [2, 2, 0])  // order: 0, 1 | 2, 3 | broken, truncated (both skipped)
        #expect(skipped.count == 2 && skipped[0].contains("broken.jpg"))
        #expect(skipped.count == 2 && skipped[1].contains("truncated.jpg") && skipped[1].contains("truncated:"))
    }

    /// Scripts/make_hostile_fixtures.py: a 1 KB JPEG and a 74-byte PNG claiming 65,500 x 65,500
    /// pixels (16 GB as RGB) are refused from their headers, as Pillow refuses them.
    @Test(arguments: ["bomb.jpg", "bomb.png"])
    func decompressionBombsAreRefusedBeforeDecoding(_ name: String) {
        let path = Fixtures.path("hostile/\(name)")
        #expect(throws: ImageError.tooLarge(path: path, width: 65500, height: 65500)) { try EncodedImage(path: path) }
        let message = ImageError.tooLarge(path: path, width: 65500, height: 65500).description
        #expect(message.contains("limit of 178956970 pixels"))
    }

    @Test func batchesDependOnSeedAndEpochNotOnThreads() throws {
        let dataset = try SyntheticDataset(classes: 4, images: 10, resolution: 8, seed: 3)
        func epoch(_ e: Int, workers: Int, seed: UInt64 = 7) -> [Float] {
            let batches = DataLoader(dataset: dataset, batchSize: 4, shuffle: true, seed: seed, workers: workers).epoch(
                e)
            var all: [Float] = []
            while let b = batches.next() { all += b.images.scalars + b.labels.map(Float.init) }
            return all
        }
        #expect(epoch(0, workers: 1) == epoch(0, workers: 3))
        #expect(epoch(0, workers: 2) != epoch(1, workers: 2))
        #expect(epoch(0, workers: 2) != epoch(0, workers: 2, seed: 8))
        let loader = DataLoader(dataset: dataset, batchSize: 4, shuffle: true, seed: 7, workers: 1)
        #expect(loader.order(epoch: 2).sorted() == Array(0..<10))
    }

    @Test func cifarBinaryRecordsDecode() throws {
        let tree = TemporaryFolder()
        var record = Data([3])
        record.append(contentsOf: (0..<3072).map { UInt8($0 % 256) })
        var batch = Data()
        for _ in 0..<2 { batch.append(record) }
        try tree.file("test_batch.bin", batch)
        let dataset = try CIFARDataset(root: tree.path, classes: 10, train: false)
        #expect(dataset.count == 2 && dataset.label(1) == 3)
        var out = Tensor(zeros: [3, 32, 32])
        var generator = RandomGenerator(seed: 0)
        try out.withUnsafeMutableBufferPointer { try dataset.load(0, into: $0.baseAddress!, generator: &generator) }
        // Pixel (c=1, y=0, x=5) is byte 1024 + 5 = 1029 -> 1029 % 256 = 5.
        #expect(abs(out[flat: 1024 + 5] - (5 / 255 - 0.482) / 0.243) < 1e-5)
        try tree.file("short/test_batch.bin", Data(count: 100))
        #expect(throws: DataError.self) { try CIFARDataset(root: tree.path + "/short", classes: 10, train: false) }
        #expect(throws: DataError.self) { try CIFARDataset(root: tree.path, classes: 10, train: true) }
    }

    @Test func randomResizedCropFollowsTorchvisionSampling() {
        var generator = RandomGenerator(seed: 11)
        var areas: [Double] = [], ratios: [Double] = []
        for _ in 0..<4000 {
            let box = randomResizedCropBox(width: 300, height: 200, generator: &generator)
            #expect(box.x >= 0 && box.y >= 0 && box.x + box.width <= 300 && box.y + box.height <= 200)
            areas.append(Double(box.width * box.height) / 60_000)
            ratios.append(Double(box.width) / Double(box.height))
        }
        #expect(areas.min()! >= 0.07 && areas.max()! <= 1)
        #expect(ratios.allSatisfy { $0 > 0.7 && $0 < 1.4 })
        // torchvision's own sampler on a 300x200 image (20,000 draws): mean area 0.391 of the
        // image, mean width/height ratio 1.046.
        #expect(abs(areas.reduce(0, +) / Double(areas.count) - 0.391) < 0.015)
        #expect(abs(ratios.reduce(0, +) / Double(ratios.count) - 1.046) < 0.02)
        // A very wide image never fits the ratio range: the fallback centre crop.
        let fallback = randomResizedCropBox(width: 1000, height: 10, scale: (0.99, 1), generator: &generator)
        #expect(fallback.height == 10 && fallback.width == 13 && fallback.x == (1000 - 13) / 2)
    }

    @Test func syntheticImagesAreDeterministicAndDifferByClass() throws {
        let dataset = try SyntheticDataset(classes: 3, images: 6, resolution: 16, seed: 5)
        func image(_ i: Int, flipSeed: UInt64 = 1) throws -> [Float] {
            var out = Tensor(zeros: [3, 16, 16])
            var generator = RandomGenerator(seed: flipSeed)
            try out.withUnsafeMutableBufferPointer { try dataset.load(i, into: $0.baseAddress!, generator: &generator) }
            return out.scalars
        }
        #expect(try image(1) == image(1))
        #expect(try image(1) != image(2))
        #expect(dataset.label(4) == 1)
        #expect(throws: DataError.self) { try SyntheticDataset(classes: 1, images: 4, seed: 0) }
    }
}
