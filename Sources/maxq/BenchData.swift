// `maxq bench data`: images per second of the input pipeline alone (decode, transform, batch).
import ArgumentParser
import Foundation
import MaxQData

struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Images per second of decoding and transforms over an image folder.")

    enum Transform: String, ExpressibleByArgument { case train, val }

    @Argument(help: "A folder of images, in class sub-folders (ImageFolder's layout) or not.") var directory: String
    @Option(help: "train (RandomResizedCrop, flip, lighting) or val (resize 256, centre crop 224).") var transform:
        Transform = .train
    @Option(name: [.customShort("j"), .long], help: "Decoding threads.") var workers = 2
    @Option(name: [.customShort("b"), .long], help: "Batch size.") var batchSize = 32
    @Option(help: "Epochs over the folder (median epoch reported).") var epochs = 3
    @Option(help: "Input resolution (32 for CIFAR JPEGs).") var resolution = 224

    func validate() throws {
        guard workers >= 1, batchSize >= 1, epochs >= 1, resolution >= 1 else {
            throw ValidationError("--workers, --batch-size, --epochs and --resolution must be at least 1")
        }
    }

    func run() throws {
        do {
            let dataset = try ImageFolderDataset(
                root: directory, split: transform == .train ? .train : .validation, resolution: resolution,
                flatIsOneClass: true)
            let loader = DataLoader(dataset: dataset, batchSize: batchSize, shuffle: true, seed: 0, workers: workers)
            var rates: [Double] = []
            var skipped: [String] = []
            for epoch in 0..<epochs {
                let start = Date()
                var images = 0
                let batches = loader.epoch(epoch)
                while let batch = batches.next() {
                    images += batch.labels.count
                    if epoch == 0 { skipped += batch.skipped }
                }
                rates.append(Double(images) / Date().timeIntervalSince(start))
            }
            // The rate counts decoded images only; say which files were not.
            if let first = skipped.first { note("\(skipped.count) file(s) skipped as undecodable, first: \(first)") }
            print(
                String(
                    format: "%@ transform=%@ workers=%d batch=%d images=%d: %.0f img/s (median of %d epochs)",
                    directory, transform.rawValue, workers, batchSize, dataset.count, rates.sorted()[rates.count / 2],
                    epochs))
        } catch {
            throw Failure(error)
        }
    }
}
