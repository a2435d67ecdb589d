// Checks of the optimisation hyper-parameters that `train` and `replay` share: refused before
// any work when they are not finite or out of range (a NaN weight decay would otherwise reach
// the weights, and the masks computed from them, before the loss shows it).
import ArgumentParser

func checkHyperParameters(
    lr: Double, momentum: Double, weightDecay: Double, decay: Double, labelSmoothing: Double?
) throws {
    guard lr.isFinite, lr > 0 else { throw ValidationError("--lr must be a finite number > 0, got \(lr)") }
    for (flag, value) in [("--momentum", momentum), ("--wd", weightDecay), ("--decay", decay)] {
        guard value.isFinite, value >= 0 else {
            throw ValidationError("\(flag) must be a finite number >= 0, got \(value)")
        }
    }
    if let labelSmoothing, !(labelSmoothing >= 0 && labelSmoothing < 1) {
        throw ValidationError("--label-smoothing must be in [0, 1), got \(labelSmoothing)")
    }
}
