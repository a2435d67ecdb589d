// swift-tools-version:6.0
// An example of MaxQ as a dependency: classify images with a (sparse) ResNet-18 checkpoint.
import PackageDescription

let package = Package(
    name: "Classify",
    dependencies: [.package(name: "MaxQ", path: "../..")],
    targets: [.executableTarget(name: "Classify", dependencies: [.product(name: "MaxQ", package: "MaxQ")])]
)
