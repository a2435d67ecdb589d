// Turning a trained model into an inference model: every conv-bn unit folded (batch norm and
// mask in the weights, N:M weights compressed) and replaced, in place, by its inference layer,
// the sparse one where its kernel exists. A unit that trained N:M but is not exactly N:M after
// folding runs dense and is reported. Given a sample input, each N:M unit keeps whichever of the
// two runs faster on the input the deployed model hands it. A model that can pass its units
// channel-major activations (`Model.deployChannelMajor`) does so where `Layout.prefersChannelMajor`
// says it pays.
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
    /// sparse and dense on the input the deployed model hands it and keeps the faster.
    public static func deploy(_ model: any Model, tunedOn sample: Tensor? = nil) throws(DeploymentError)
        -> DeploymentReport
    {
        var (units, report) = try fold(model)
        try install(units, into: model, tunedOn: sample, &report)
        return report
    }

    /// Every unit of `model` in its inference form, N:M units compressed; the report names the
    /// units that stay dense and why. The model is not changed.
    public static func fold(_ model: any Model) throws(DeploymentError) -> ([FoldedUnit], DeploymentReport) {
        var report = DeploymentReport()
        var folded: [FoldedUnit] = []
        for (name, unit) in model.units {
            let (weight, bias): (Tensor, Tensor)
            do { (weight, bias) = try unit.foldedWeights() } catch { throw .tensor(error) }
            var weights = FoldedUnit.Weights.dense(weight)
            let pattern = unit.config.pattern
            if unit.mask == nil || pattern.isDense {
                report.dense.append(.init(name: name, cause: .denseUnit, reason: "dense unit"))
            } else {
                do {
                    weights = .nm(try NMWeights(packing: weight, n: pattern.n, m: pattern.m, layer: name))
                } catch {
                    report.dense.append(.init(name: name, cause: .notNM, reason: "\(error)"))
                }
            }
            folded.append(
                FoldedUnit(
                    name: name, weights: weights, bias: bias, geometry: unit.conv.geometry,
                    activation: unit.activation))
        }
        return (folded, report)
    }

    /// Replaces each unit of `model` named in `units` by its inference layer: the sparse kernel
    /// for compressed weights where it exists (and, with `sample`, where it measured faster).
    public static func install(
        _ units: [FoldedUnit], into model: any Model, tunedOn sample: Tensor? = nil, _ report: inout DeploymentReport
    ) throws(DeploymentError) {
        model.setTraining(false)
        do throws(TensorError) {
            var sparse: [(FoldedUnit, NMConvolution)] = []
            for unit in units {
                let layer = inferenceLayer(unit, &report)
                if let layer = layer as? NMConvolution { sparse.append((unit, layer)) }
                try model.replace(at: unit.name, with: layer)
            }
            model.deployStem()
            if !sparse.isEmpty { model.deployChannelMajor(when: Layout.prefersChannelMajor) }
            var measuredDense: Set<String> = []
            if let sample { measuredDense = try keepFaster(sparse, in: model, tunedOn: sample, &report) }
            report.sparse += sparse.map(\.0.name).filter { !measuredDense.contains($0) }
        } catch {
            throw .tensor(error)
        }
    }

    /// The sparse layer where its kernel runs the unit's N:M weights, else the dense one.
    private static func inferenceLayer(_ unit: FoldedUnit, _ report: inout DeploymentReport) -> any UnaryLayer {
        guard case .nm(let packed) = unit.weights else { return unit.denseLayer }
        guard NMConvolution.runs(packed.shape, unit.geometry) else {
            let reason = "no sparse kernel for \(packed.shape[2])x\(packed.shape[3]) stride \(unit.geometry.stride)"
            report.dense.append(.init(name: unit.name, cause: .noKernel, reason: reason))
            return unit.denseLayer
        }
        return NMConvolution(weights: packed, bias: unit.bias, geometry: unit.geometry, activation: unit.activation)
    }

    /// Times each sparse layer of the deployed `model` against its dense twin on the input the model
    /// hands it for `sample` (its shape and layout: a dense layer given channel-major activations
    /// converts them there and back, as it would in the model), and puts the dense one in where it
    /// was faster; returns the names of those. Tuned on NCHW inputs before the model passed
    /// channel-major ones, the choice could be wrong for the layers that get channel-major: resnet50's
    /// stage-3 1x1 layers at 2:4 measure 0.77-0.97x dense on NCHW and 1.56-1.76x channel-major
    /// (docs/deployment.md, "Measuring").
    private static func keepFaster(
        _ sparse: [(FoldedUnit, NMConvolution)], in model: any Model, tunedOn sample: Tensor,
        _ report: inout DeploymentReport
    ) throws(TensorError) -> Set<String> {
        let shapes = try InputShapeRecorder.inputShapes(
            of: model, at: sparse.map { ($0.0.name, $0.1 as any UnaryLayer) }, for: sample)
        var generator = RandomGenerator(seed: 0)
        var replaced: Set<String> = []
        for (unit, layer) in sparse {
            guard let shape = shapes[unit.name] else { continue }
            let dense = unit.denseLayer
            let x = Variable(Tensor(normal: shape, generator: &generator))
            let (sparseMilliseconds, denseMilliseconds) = (try fastest(layer, x), try fastest(dense, x))
            guard denseMilliseconds < sparseMilliseconds else { continue }
            try model.replace(at: unit.name, with: dense)
            replaced.insert(unit.name)
            let times = "\(milliseconds(denseMilliseconds)) ms against \(milliseconds(sparseMilliseconds)) ms sparse"
            report.dense.append(
                .init(name: unit.name, cause: .measuredFaster, reason: "measured faster dense: \(times)"))
        }
        return replaced
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

/// A conv-bn unit in its inference form: batch norm and mask folded into the weight (compressed
/// where it is N:M) and a bias, with the convolution's geometry and the fused activation.
public struct FoldedUnit: Sendable {
    public enum Weights: Sendable {
        case nm(NMWeights)
        case dense(Tensor)
    }

    public let name: String
    public let weights: Weights
    public let bias: Tensor
    public let geometry: Conv2dGeometry
    public let activation: Activation?

    public init(name: String, weights: Weights, bias: Tensor, geometry: Conv2dGeometry, activation: Activation?) {
        (self.name, self.weights, self.bias, self.geometry, self.activation) = (
            name, weights, bias, geometry, activation
        )
    }

    /// The dense (O, I / groups, kh, kw) weight.
    public var denseWeight: Tensor {
        switch weights {
        case .nm(let packed): packed.dense
        case .dense(let weight): weight
        }
    }

    /// The same unit with its weight dense.
    public var densified: FoldedUnit {
        FoldedUnit(name: name, weights: .dense(denseWeight), bias: bias, geometry: geometry, activation: activation)
    }

    var denseLayer: FoldedConvolution {
        FoldedConvolution(weight: denseWeight, bias: bias, geometry: geometry, activation: activation)
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
        try inputShapes(of: model, at: model.units.map { ($0, $1 as any UnaryLayer) }, for: x)
    }

    /// The same for the named layers of `model` (a deployed model's inference layers: channel-major
    /// inputs have their 5-dimensional shape, `Tensor.channelMajor`).
    public static func inputShapes(of model: any Model, at layers: [(String, any UnaryLayer)], for x: Tensor)
        throws(TensorError) -> [String: [Int]]
    {
        let recorders = try layers.map { (name, unit) throws(TensorError) in
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
