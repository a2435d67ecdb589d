// Recomputing the masks of many units at once, spread over the cores layer by layer (the
// largest layers first, so that the last one to finish is small).
import MaxQTensor

extension ConvBNUnit {
    /// Recomputes every unit's stored mask from its current weight, in parallel across units.
    /// With `forNextForward`, a unit in training mode uses this mask for its next forward pass
    /// instead of computing it again (the weights and epoch must not change in between).
    public static func recomputeMasks(of units: [ConvBNUnit], forNextForward: Bool = true) {
        let masked = units.filter { $0.mask != nil }.sorted { $0.conv.weight.value.count > $1.conv.weight.value.count }
        parallelForEach(masked.count) { i in
            masked[i].recomputeMask()
            masked[i].maskIsFresh = forNextForward
        }
    }
}
