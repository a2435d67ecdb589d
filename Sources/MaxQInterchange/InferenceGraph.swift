// A trained model as the operator graph of its inference form: every conv-bn unit folded by the
// deployment (batch norm and mask in the weight) and installed dense, then described. ONNX export
// writes it.
import MaxQDeploy
import MaxQModels
import MaxQNN
import MaxQTensor

public struct InferenceGraph {
    public let graph: OperatorGraph
    /// The value holding the logits.
    public let output: String
    /// Units whose folded weights are not exactly N:M are among `report.dense` (cause `.notNM`).
    public let report: DeploymentReport
    /// Units that train N:M (a mask and a sparse pattern), before folding.
    public let nmUnits: [String]

    /// `model` is changed: its units are replaced by their folded inference layers.
    public init(_ model: any Model) throws(InterchangeError) {
        nmUnits = model.units.filter { _, unit in unit.mask != nil && !unit.config.pattern.isDense }.map(\.0)
        var graph = OperatorGraph()
        do {
            var (units, report) = try Deployment.fold(model)
            try Deployment.install(units.map(\.densified), into: model, &report)
            self.report = report
            output = try model.described(OperatorGraph.input, name: "", in: &graph)
        } catch let error as DeploymentError {
            throw .deployment(error)
        } catch let error as TensorError {
            throw .deployment(.tensor(error))
        } catch {
            preconditionFailure("folding throws DeploymentError or TensorError: \(error)")
        }
        self.graph = graph
    }
}
