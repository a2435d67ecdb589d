// Turning a trained model into an inference model: every conv-bn unit replaced, in place, by its
// folded form (batch norm and mask in the weights), N:M units whose kernel exists by the sparse
// layer. A unit that trained N:M but is not exactly N:M after folding runs dense and is reported.
// Given a sample input, each N:M unit keeps whichever of the two runs faster on its input shape.
import Dispatch
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

public struct DeploymentReport: Sendable {
    /// Why a unit runs dense.
    public enum Cause: Sendable {
        /// Dense by design (no mask, or a dense pattern).
        case denseUnit
        /// No sparse kernel for its kernel size or stride.
        case noKernel
        /// Trained N:M, but its weights are not N:M (yet): the reason says how many groups.
        case notNM
        /// Timed both ways on its input shape, dense was faster.
        case measuredFaster
    }

    /// A unit running dense: its name, why, and the reason in words.
    public struct DenseUnit: Sendable {
        public let name: String
        public let cause: Cause
        public let reason: String
    }

    /// Units now running on the sparse kernel.
    public var sparse: [String] = []
    /// Units running dense.
    public var dense: [DenseUnit] = []
}

public enum Deployment {
    /// Replaces the units of `model` (in evaluation mode from then on); the model cannot train
    /// afterwards. With `sample` (an input batch of the size to be run), every N:M unit is timed
    /// sparse and dense on its own input shape and keeps the faster.
    public static func deploy(_ model: any Model, tunedOn sample: Tensor? = nil) throws(DeploymentError)
        -> DeploymentReport
    {
        model.setTraining(false)
        var report = DeploymentReport()
        do throws(TensorError) {
            let shapes = try sample.map { (x) throws(TensorError) in
                try InputShapeRecorder.inputShapes(of: model, for: x)
            }
            for (name, unit) in model.units {
                let (weight, bias) = try unit.foldedWeights()
                let layer = try inferenceLayer(name, unit, weight, bias, tuning: shapes?[name], &report)
                try model.replace(at: name, with: layer)
            }
        } catch {
            throw .tensor(error)
        }
        return report
    }

    private static func inferenceLayer(
        _ name: String, _ unit: ConvBNUnit, _ weight: Tensor, _ bias: Tensor, tuning shape: [Int]?,
        _ report: inout DeploymentReport
    ) throws(TensorError) -> any UnaryLayer {
        let dense = FoldedConvolution(
            weight: weight, bias: bias, geometry: unit.conv.geometry, activation: unit.activation)
        let pattern = unit.config.pattern
        guard unit.mask != nil, !pattern.isDense else {
            report.dense.append(.init(name: name, cause: .denseUnit, reason: "dense unit"))
            return dense
        }
        guard NMConvolution.runs(weight.shape, unit.conv.geometry) else {
            let (shape, geometry) = (weight.shape, unit.conv.geometry)
            let reason = "no sparse kernel for \(shape[2])x\(shape[3]) stride \(geometry.stride)"
            report.dense.append(.init(name: name, cause: .noKernel, reason: reason))
            return dense
        }
        let packed: NMWeights
        do {
            packed = try NMWeights(packing: weight, n: pattern.n, m: pattern.m, layer: name)
        } catch {
            report.dense.append(.init(name: name, cause: .notNM, reason: "\(error)"))
            return dense
        }
        let sparse = NMConvolution(
            weights: packed, bias: bias, geometry: unit.conv.geometry, activation: unit.activation)
        if let shape {
            var generator = RandomGenerator(seed: 0)
            let x = Variable(Tensor(normal: shape, generator: &generator))
            let (sparseMilliseconds, denseMilliseconds) = (try fastest(sparse, x), try fastest(dense, x))
            if denseMilliseconds < sparseMilliseconds {
                let times =
                    "\(milliseconds(denseMilliseconds)) ms against \(milliseconds(sparseMilliseconds)) ms sparse"
                report.dense.append(
                    .init(name: name, cause: .measuredFaster, reason: "measured faster dense: \(times)"))
                return dense
            }
        }
        report.sparse.append(name)
        return sparse
    }

    /// The fastest of three runs after one warm-up, in milliseconds.
    private static func fastest(_ layer: any UnaryLayer, _ x: Variable) throws(TensorError) -> Double {
        _ = try layer(x)
        var best = Double.infinity
        for _ in 0..<3 {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try layer(x)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        return best
    }

    private static func milliseconds(_ value: Double) -> String {
        String(Double(Int(value * 100)) / 100)
    }
}

/// Passes its input to the wrapped layer and remembers the input's shape.
public final class InputShapeRecorder: UnaryLayer {
    public let inner: any UnaryLayer
    public private(set) var shape: [Int] = []

    public init(_ inner: any UnaryLayer) { self.inner = inner }

    public func callAsFunction(_ x: Variable) throws(TensorError) -> Variable {
        shape = x.value.shape
        return try inner(x)
    }

    public func namedParameters(prefix: String) -> [(String, Variable)] { inner.namedParameters(prefix: prefix) }

    /// The input shape of every conv-bn unit of `model` when it runs on `x` (one forward pass
    /// without gradients; the units are put back).
    public static func inputShapes(of model: any Model, for x: Tensor) throws(TensorError) -> [String: [Int]] {
        let recorders = try model.units.map { (name, unit) throws(TensorError) in
            let recorder = InputShapeRecorder(unit)
            try model.replace(at: name, with: recorder)
            return (name, unit, recorder)
        }
        do {
            _ = try GradientMode.withoutGradients { try model(Variable(x)) }
        } catch let error as TensorError {
            throw error
        } catch {
            preconditionFailure("a forward pass throws only TensorError: \(error)")
        }
        var shapes: [String: [Int]] = [:]
        for (name, unit, recorder) in recorders {
            try model.replace(at: name, with: unit)
            shapes[name] = recorder.shape
        }
        return shapes
    }
}
