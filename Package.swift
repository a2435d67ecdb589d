// swift-tools-version:6.0
// MaxQ for Swift: N:M sparse training and deployment of convolutional networks.
import PackageDescription

let package = Package(
    name: "MaxQ",
    products: [
        .executable(name: "maxq", targets: ["maxq"]),
        .library(
            name: "MaxQ",
            targets: [
                "MaxQTensor", "MaxQNN", "MaxQSparsity", "MaxQModels", "MaxQData", "MaxQTraining", "MaxQFormats",
                "MaxQDeploy", "MaxQInterchange", "MaxQDistributed",
            ]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // System libraries from Debian packages (Scripts/setup.sh installs them).
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(
            name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        // JPEG regions with libjpeg-turbo's libjpeg API (libjpeg62-turbo-dev; C: errors arrive by longjmp).
        .target(name: "CJPEG", linkerSettings: [.linkedLibrary("jpeg")]),
        // Parallel loops on libgomp, the OpenMP runtime oneDNN uses (C: Swift cannot call it generically).
        .target(name: "CParallel", linkerSettings: [.linkedLibrary("gomp")]),
        // Hot loops compiled for each x86-64 level, run at the CPU's best (C: Swift has no per-function target).
        .target(name: "CKernels"),
        // Layer 1: tensors, random streams and the CPU kernels behind the backend interface.
        .target(name: "MaxQTensor", dependencies: ["CDNNL", "COpenBLAS", "CParallel", "CKernels"]),
        // Layer 2: reverse-mode automatic differentiation and the network layers.
        .target(name: "MaxQNN", dependencies: ["MaxQTensor"]),
        // Layer 3: N:M masks (hard, MaxQ), schedules and the masked conv-bn units.
        .target(name: "MaxQSparsity", dependencies: ["MaxQTensor", "MaxQNN", "CKernels"]),
        // Layer 4: the model zoo (ResNets, MobileNets) built from conv-bn units; checkpoints into models.
        .target(name: "MaxQModels", dependencies: ["MaxQTensor", "MaxQNN", "MaxQSparsity", "MaxQFormats"]),
        // Layer 5: image decoding, torchvision-equivalent transforms, datasets and loading.
        .target(name: "MaxQData", dependencies: ["MaxQTensor", "CJPEG", "CPNG", "CKernels"]),
        // Layer 6: training and evaluation loops, schedules, logs, checkpoints of runs.
        .target(
            name: "MaxQTraining",
            dependencies: ["MaxQTensor", "MaxQNN", "MaxQSparsity", "MaxQModels", "MaxQData", "MaxQFormats"]),
        // Layer 7: inference models: batch norm and masks folded, N:M weights compressed, sparse kernels,
        // the exported model file.
        .target(
            name: "MaxQDeploy",
            dependencies: ["MaxQTensor", "MaxQNN", "MaxQSparsity", "MaxQModels", "MaxQFormats", "CKernels"]),
        // Layer 8: other frameworks' model files and the original's reports: ONNX export (swift-protobuf;
        // the code generated from ONNX's onnx.proto is committed, Scripts/generate_onnx_proto.sh), a reader
        // that runs ONNX files, torchvision state dicts, FLOPs and parameter counts.
        .target(
            name: "MaxQInterchange",
            dependencies: [
                "MaxQTensor", "MaxQNN", "MaxQSparsity", "MaxQModels", "MaxQDeploy",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        // Beside layer 6: the processes of a data-parallel run on MPI (Open MPI, `mpirun -np K maxq train`).
        .target(name: "MaxQDistributed", dependencies: ["MaxQTensor", "MaxQNN", "CMPI"]),
        // I/O formats: safetensors, PyTorch zip checkpoints. Parsers of untrusted files rely on
        // Swift's overflow and bounds checks (no target uses -Ounchecked or any unsafe flag).
        .target(name: "MaxQFormats", dependencies: ["MaxQTensor"]),
        // The command line.
        .executableTarget(
            name: "maxq",
            dependencies: [
                "MaxQTensor", "MaxQNN", "MaxQSparsity", "MaxQModels", "MaxQData", "MaxQTraining", "MaxQFormats",
                "MaxQDeploy", "MaxQInterchange", "MaxQDistributed",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // Fuzz targets of the file readers (Scripts/fuzz.sh); built normally, a corpus replayer.
        .executableTarget(name: "maxq-fuzz", dependencies: ["MaxQFormats", "MaxQData", "MaxQDeploy"]),
        // Fixture loading, tolerance checks and masked models shared by the test targets.
        .target(
            name: "MaxQTestSupport",
            dependencies: ["MaxQTensor", "MaxQFormats", "MaxQNN", "MaxQSparsity", "MaxQModels"],
            path: "Tests/TestSupport"),
        .testTarget(
            name: "MaxQInterchangeTests",
            dependencies: ["MaxQInterchange", "MaxQModels", "MaxQSparsity", "MaxQNN", "MaxQDeploy", "MaxQTestSupport"]),
        .testTarget(name: "MaxQTensorTests", dependencies: ["MaxQTensor", "MaxQFormats", "MaxQTestSupport"]),
        .testTarget(
            name: "MaxQDeployTests",
            dependencies: ["MaxQDeploy", "MaxQModels", "MaxQSparsity", "MaxQNN", "MaxQTestSupport"]),
        .testTarget(name: "MaxQFormatsTests", dependencies: ["MaxQFormats", "MaxQTestSupport"]),
        .testTarget(name: "MaxQDataTests", dependencies: ["MaxQData", "MaxQFormats", "MaxQTestSupport"]),
        .testTarget(name: "MaxQNNTests", dependencies: ["MaxQNN", "MaxQFormats", "MaxQTestSupport"]),
        .testTarget(name: "MaxQModelsTests", dependencies: ["MaxQModels", "MaxQFormats", "MaxQTestSupport"]),
        .testTarget(
            name: "MaxQTrainingTests",
            dependencies: ["MaxQTraining", "MaxQModels", "MaxQSparsity", "MaxQData", "MaxQFormats", "MaxQTestSupport"]),
        .testTarget(
            name: "MaxqCLITests",
            dependencies: ["maxq", "maxq-fuzz", "MaxQFormats", "MaxQData", "MaxQInterchange", "MaxQTestSupport"]),
        .testTarget(
            name: "MaxQSparsityTests",
            dependencies: ["MaxQSparsity", "MaxQNN", "MaxQFormats", "MaxQTestSupport", "CKernels"]),
    ]
)
