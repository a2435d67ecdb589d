// What can go wrong writing or reading another framework's model file.
import MaxQDeploy

public enum InterchangeError: Error, CustomStringConvertible {
    case unsupportedOpset(Int)
    case deployment(DeploymentError)
    case noTorchvisionModel(String)
    /// A file this reader cannot run: what is wrong, where.
    case unreadable(path: String, reason: String)

    public var description: String {
        switch self {
        case .unsupportedOpset(let opset):
            "opset \(opset) is not supported (\(ONNXExport.opsets.lowerBound) to \(ONNXExport.opsets.upperBound))"
        case .deployment(let error): "\(error)"
        case .noTorchvisionModel(let arch):
            "torchvision has no \(arch) (it has "
                + "\(TorchvisionExport.architectures.map(\.rawValue).joined(separator: ", ")))"
        case .unreadable(let path, let reason): "\(path): \(reason)"
        }
    }
}
