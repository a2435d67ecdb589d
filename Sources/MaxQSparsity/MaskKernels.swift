// The seam between what a mask method computes and where: a `MaskMethod` says which mask
// (hard N:M, or MaxQ with its dense groups and soft terms); the `MaskKernels` of the device the
// weight lives on computes it. A new backend adds a conformer and its `Device` case here.
import MaxQTensor

public protocol MaskKernels: Sendable {
    /// The hard N:M mask of weight (O, I, kh, kw) (the N largest magnitudes of every group kept);
    /// with `maxQ`, also the schedule's dense groups chosen as it says and the MaxQ filter and
    /// kernel-position terms (docs/algorithm.md 2-4). The result lives on the weight's device.
    func selectionMask(
        of weight: Tensor, _ settings: MaskSettings, maxQ: MaxQMethod.DenseGroups?, generator: inout RandomGenerator
    ) -> Tensor
}

extension Device {
    /// The mask kernels for tensors on this device.
    public var maskKernels: any MaskKernels {
        switch self {
        case .cpu: SelectionMaskKernels()
        case .reference: ReferenceMaskKernels()
        }
    }
}

/// The CPU's kernels: radix selection, one pass per axis, the soft terms in CKernels (`Masks`).
struct SelectionMaskKernels: MaskKernels {
    func selectionMask(
        of weight: Tensor, _ settings: MaskSettings, maxQ: MaxQMethod.DenseGroups?, generator: inout RandomGenerator
    ) -> Tensor {
        Masks.selectionMask(weight, settings, maxQ: maxQ, generator: &generator)
    }
}

/// The reference device's kernels: the definition read literally, with full sorts (`ReferenceMasks`).
struct ReferenceMaskKernels: MaskKernels {
    func selectionMask(
        of weight: Tensor, _ settings: MaskSettings, maxQ: MaxQMethod.DenseGroups?, generator: inout RandomGenerator
    ) -> Tensor {
        ReferenceMasks.selectionMask(weight, settings, maxQ: maxQ, generator: &generator).on(.reference)
    }
}
