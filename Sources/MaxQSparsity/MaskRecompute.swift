// Recomputing the masks of many units at once, spread over the cores layer by layer (the
// largest layers first, so that the last one to finish is small).
import MaxQTensor

extension ConvBNUnit {
    /// Recomputes every unit's stored mask from its current weight, in parallel across units.
    /// A unit in training mode then uses this mask for its next forward pass instead of
    /// computing it again.
    public static func recomputeMasks(of units: [ConvBNUnit]) {
        let masked = units.filter { $0.mask != nil }.sorted { $0.conv.weight.value.count > $1.conv.weight.value.count }
        parallelForEach(masked.count) { i in
            masked[i].recomputeMask()
            masked[i].maskIsFresh = true
        }
    }
}
