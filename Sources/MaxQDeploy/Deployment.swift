// Turning a trained model into an inference model: every conv-bn unit replaced, in place, by its
// folded form (batch norm and mask in the weights), N:M units whose kernel exists by the sparse
// layer. A unit that trained N:M but is not exactly N:M after folding runs dense and is reported.
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

public struct DeploymentReport: Sendable {
    /// Units now running on the sparse kernel.
    public var sparse: [String] = []
    /// Units running dense, and why (dense by design, no sparse kernel for the shape yet, not N:M).
    public var dense: [(name: String, reason: String)] = []
}

public enum Deployment {
    /// Replaces the units of `model` (in evaluation mode from then on); the model cannot train afterwards.
    public static func deploy(_ model: any Model) throws(DeploymentError) -> DeploymentReport {
        model.setTraining(false)
        var report = DeploymentReport()
        for (name, unit) in model.units {
            do throws(TensorError) {
                let (weight, bias) = try unit.foldedWeights()
                let layer = try inferenceLayer(name, unit, weight, bias, &report)
                try model.replace(at: name, with: layer)
            } catch {
                throw .tensor(error)
            }
        }
        return report
    }

    private static func inferenceLayer(
        _ name: String, _ unit: ConvBNUnit, _ weight: Tensor, _ bias: Tensor, _ report: inout DeploymentReport
    ) throws(TensorError) -> any UnaryLayer {
        let dense = FoldedConvolution(
            weight: weight, bias: bias, geometry: unit.conv.geometry, activation: unit.activation)
        let pattern = unit.config.pattern
        guard unit.mask != nil, !pattern.isDense else {
            report.dense.append((name, "dense unit"))
            return dense
        }
        guard NMConvolution.runs(weight.shape, unit.conv.geometry) else {
            let (shape, geometry) = (weight.shape, unit.conv.geometry)
            report.dense.append((name, "no sparse kernel for \(shape[2])x\(shape[3]) stride \(geometry.stride)"))
            return dense
        }
        do {
            let packed = try NMWeights(packing: weight, n: pattern.n, m: pattern.m, layer: name)
            report.sparse.append(name)
            return NMConvolution(weights: packed, bias: bias, geometry: unit.conv.geometry, activation: unit.activation)
        } catch {
            report.dense.append((name, "\(error)"))
            return dense
        }
    }
}
