// What every model of the zoo offers: a forward pass, its state under the reference names,
// and its conv-bn units (the layers that can be N:M).
import MaxQNN
import MaxQSparsity
import MaxQTensor

public protocol Model: Layer {
    /// (N, 3, H, W) images to (N, classes) logits.
    func callAsFunction(_ x: Variable) throws(TensorError) -> Variable
    /// Every conv-bn unit with its state-dict prefix, in definition order.
    var units: [(String, ConvBNUnit)] { get }
    /// Called by a deployment, after which the model only evaluates: the layers before the first
    /// conv-bn unit may then run in a faster inference form (default: as they are).
    func deployStem()
    /// Called by a deployment whose layers read and write channel-major activations too
    /// (`Tensor.channelMajor`). A model whose units only hand activations to each other (and to a
    /// residual addition) may then pass them on channel-major from the first point where
    /// `prefers(nchwShape)` holds for the activation, converting back before its pooling. The
    /// default keeps NCHW throughout.
    func deployChannelMajor(when prefers: @escaping @Sendable ([Int]) -> Bool)
    /// A checkpoint's key under this architecture's own name: where another implementation
    /// names the same tensor differently (torchvision's ResNets), the architecture maps it.
    static func ownName(_ checkpointName: String) -> String
}

/// A model's own activation `h` as its next layers read it, once the model is deployed channel-major
/// from where `prefers` (`Model.deployChannelMajor`) holds: converted the first time it does, as it
/// is before (NCHW) and after (already channel-major).
func channelMajorWhere(_ prefers: (@Sendable ([Int]) -> Bool)?, _ h: Variable) -> Variable {
    guard let prefers, !h.value.isChannelMajor, prefers(h.shape) else { return h }
    return Variable(h.value.channelMajor())
}

/// `h` in NCHW, from either layout (before a model's pooling).
func nchw(_ h: Variable) -> Variable {
    h.value.isChannelMajor ? Variable(h.value.channelMajorToNCHW()) : h
}

extension Model {
    public static func ownName(_ checkpointName: String) -> String { checkpointName }
    public func deployStem() {}
    public func deployChannelMajor(when prefers: @escaping @Sendable ([Int]) -> Bool) {}

    /// Units that were asked to be N:M but whose input channels are not a multiple of M.
    public var denseUnits: [String] { units.filter { $0.1.staysDense }.map(\.0) }

    public func setEpoch(_ epoch: Int) { units.forEach { $0.1.epoch = epoch } }

    /// Every batch norm: the conv-bn units' and any other (ResNet's stem), each once.
    public var batchNorms: [BatchNorm2d] {
        var seen = Set<ObjectIdentifier>()
        return (units.map(\.1.scale) + descendants(of: BatchNorm2d.self).map(\.1)).filter {
            seen.insert(ObjectIdentifier($0)).inserted
        }
    }

    /// Recomputes all masks from the current weights, in parallel across layers.
    public func recomputeMasks() throws(TensorError) { try ConvBNUnit.recomputeMasks(of: units) }
}
