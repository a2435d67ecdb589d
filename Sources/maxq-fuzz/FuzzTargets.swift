// Fuzz targets for the readers of untrusted files: the unpickler, PyTorch zip checkpoints,
// safetensors, JPEG (libjpeg-turbo's header and pixels, our progressive entropy decoder, region
// decoding), PNG and the exported N:M model format. `Scripts/fuzz.sh` builds this with libFuzzer and AddressSanitizer
// (`-DFUZZING`) and runs one target per process (MAXQ_FUZZ_TARGET). Built normally, it replays
// files through the same targets: `maxq-fuzz TARGET FILE...` (a regression run of a corpus).
import Foundation
import MaxQData
import MaxQDeploy
import MaxQFormats

enum FuzzTarget: String, CaseIterable {
    case pickle, zip, safetensors, jpeg, png, nm

    /// Feeds one input to the reader; errors are the expected outcome of most inputs.
    func run(_ data: Data) {
        switch self {
        case .pickle:
            _ = try? unpickle(data) { _ in Data(count: 64) }
        case .zip:
            _ = try? TorchCheckpoint.decode(data)
        case .safetensors:
            _ = try? SafetensorsFile.decode(data)
        case .nm:
            guard let file = try? SafetensorsFile.decode(data) else { return }
            _ = try? ExportedModel(file, path: "<fuzz>")
        case .jpeg, .png:
            guard let image = try? EncodedImage(data, path: "<fuzz>") else { return }
            for decoder in [EncodedImage.EntropyDecoder.fast, .portable, .libjpeg] {
                _ = try? image.decode(columns: 0..<image.width, rows: 0..<image.height, entropy: decoder)
            }
            // A region in the middle, as the training transforms read it.
            let (w, h) = (image.width, image.height)
            _ = try? image.decode(columns: w / 4..<max(w / 4 + 1, 3 * w / 4), rows: h / 3..<max(h / 3 + 1, 2 * h / 3))
        }
    }
}

#if FUZZING
    nonisolated(unsafe) private var selected: FuzzTarget?

    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOneInput(_ bytes: UnsafePointer<UInt8>, _ size: Int) -> CInt {
        if selected == nil {
            let name = ProcessInfo.processInfo.environment["MAXQ_FUZZ_TARGET"] ?? ""
            guard let target = FuzzTarget(rawValue: name) else {
                fatalError("set MAXQ_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue))")
            }
            selected = target
        }
        selected!.run(Data(bytes: bytes, count: size))
        return 0
    }
#else
    @main
    struct ReplayCorpus {
        static func main() {
            let arguments = CommandLine.arguments.dropFirst()
            guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else {
                print("usage: maxq-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) FILE...")
                exit(2)
            }
            for path in arguments.dropFirst() {
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                target.run(data)
            }
            print("\(target.rawValue): \(arguments.count - 1) inputs replayed without a crash")
        }
    }
#endif
