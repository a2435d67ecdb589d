// How a conv-bn unit gets its mask: the extension point for new methods. A method is a
// conformer of `MaskMethod`, and a `ConvBNType` case (the `--conv-bn-type` name) registers it in
// `ConvBNType.method`; units, training, `maxq mask` and checkpoints need nothing else. Methods
// run on the weight's device through its `MaskKernels`.
import MaxQTensor

public protocol MaskMethod: Sendable {
    /// Soft methods pass the gradient straight through the mask; hard ones multiply it by the
    /// mask (docs/algorithm.md 5).
    var straightThrough: Bool { get }
    /// Whether the incremental schedule keeps some groups dense early on (docs/algorithm.md 4);
    /// a method that ignores it is N:M from the first step.
    var followsSchedule: Bool { get }
    /// The mask of weight (O, I, kh, kw) whose input channels fit the pattern and whose values
    /// are finite (`Masks.compute` checks both first).
    func mask(of weight: Tensor, _ settings: MaskSettings, generator: inout RandomGenerator) -> Tensor
}

/// SR-STE's hard N:M mask: the N largest magnitudes of every group (docs/algorithm.md 2).
public struct HardNMMethod: MaskMethod {
    public let straightThrough: Bool
    public var followsSchedule: Bool { false }

    public func mask(of weight: Tensor, _ settings: MaskSettings, generator: inout RandomGenerator) -> Tensor {
        weight.device.maskKernels.selectionMask(of: weight, settings, maxQ: nil, generator: &generator)
    }
}

/// MaxQ's soft mask: the hard mask, the schedule's dense groups, then the filter and kernel axis
/// terms (docs/algorithm.md 3). The variants differ in which groups stay dense.
public struct MaxQMethod: MaskMethod {
    public enum DenseGroups: Sendable {
        case smallestL1, largestL1, random
    }

    public let straightThrough: Bool
    public let denseGroups: DenseGroups
    public var followsSchedule: Bool { true }

    public func mask(of weight: Tensor, _ settings: MaskSettings, generator: inout RandomGenerator) -> Tensor {
        weight.device.maskKernels.selectionMask(of: weight, settings, maxQ: denseGroups, generator: &generator)
    }
}

extension ConvBNType {
    /// The registration: nil for dense units.
    public var method: (any MaskMethod)? {
        switch self {
        case .dense: nil
        case .softSRSTE: HardNMMethod(straightThrough: true)
        case .hardSRSTE: HardNMMethod(straightThrough: false)
        case .softMaxQ: MaxQMethod(straightThrough: true, denseGroups: .smallestL1)
        case .hardMaxQ: MaxQMethod(straightThrough: false, denseGroups: .smallestL1)
        case .softMaxQInverse: MaxQMethod(straightThrough: true, denseGroups: .largestL1)
        case .softMaxQRandom: MaxQMethod(straightThrough: true, denseGroups: .random)
        }
    }

    public var hasMask: Bool { method != nil }
}
