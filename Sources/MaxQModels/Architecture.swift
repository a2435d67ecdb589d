// The architectures by name (`--arch`), as the reference code's command line spells them.
import MaxQSparsity
import MaxQTensor

public enum Architecture: String, CaseIterable, Codable, Sendable {
    case resnet18, resnet34, resnet50
    case mobilenetV1 = "mobilenet_v1", mobilenetV2 = "mobilenet_v2"
    case mobilenetV3Small = "mobilenet_v3_small", mobilenetV3Large = "mobilenet_v3_large"
    case cResnet18 = "c_resnet18", cResnet34 = "c_resnet34", cResnet50 = "c_resnet50"

    /// Input resolution the architecture is built for.
    public var resolution: Int {
        switch self {
        case .cResnet18, .cResnet34, .cResnet50: 32
        default: 224
        }
    }

    /// The state-dict key of the classifier's weight, whose first dimension is the class count.
    public var classifierWeight: String {
        switch self {
        case .mobilenetV2: "classifier.1.weight"
        case .mobilenetV3Small, .mobilenetV3Large: "classifier.3.weight"
        default: "fc.weight"
        }
    }

    public func build(classes: Int, sparsity: SparsityConfig, seed: UInt64 = 0) throws(TensorError) -> any Model {
        switch self {
        case .resnet18: try ResNet(.resnet18, classes: classes, sparsity: sparsity, seed: seed)
        case .resnet34: try ResNet(.resnet34, classes: classes, sparsity: sparsity, seed: seed)
        case .resnet50: try ResNet(.resnet50, classes: classes, sparsity: sparsity, seed: seed)
        case .cResnet18: try ResNet(ResNetSpec.resnet18.forCIFAR, classes: classes, sparsity: sparsity, seed: seed)
        case .cResnet34: try ResNet(ResNetSpec.resnet34.forCIFAR, classes: classes, sparsity: sparsity, seed: seed)
        case .cResnet50: try ResNet(ResNetSpec.resnet50.forCIFAR, classes: classes, sparsity: sparsity, seed: seed)
        case .mobilenetV1: try MobileNet.v1(classes: classes, sparsity: sparsity, seed: seed)
        case .mobilenetV2: try MobileNet.v2(classes: classes, sparsity: sparsity, seed: seed)
        case .mobilenetV3Small: try MobileNet.v3(large: false, classes: classes, sparsity: sparsity, seed: seed)
        case .mobilenetV3Large: try MobileNet.v3(large: true, classes: classes, sparsity: sparsity, seed: seed)
        }
    }
}
