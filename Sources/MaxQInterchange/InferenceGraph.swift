// A trained model as the operator graph of its inference form: every conv-bn unit described by
// the deployment's folding (batch norm and mask in the weight), with the deployment's report of
// which units are exactly N:M. ONNX export writes it; the FLOPs count walks the graph.
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
    /// Units that train N:M (a mask and a sparse pattern).
    public let nmUnits: [String]

    /// `model` is not changed.
    public init(_ model: any Model) throws(InterchangeError) {
        nmUnits = model.units.filter { _, unit in unit.mask != nil && !unit.config.pattern.isDense }.map(\.0)
        do { (_, report) = try Deployment.fold(model) } catch { throw .deployment(error) }
        (graph, output) = try Self.describe(model)
    }

    /// `model`'s operator graph and the value holding its logits.
    static func describe(_ model: any Model) throws(InterchangeError) -> (OperatorGraph, String) {
        var graph = OperatorGraph()
        do {
            let output = try model.described(OperatorGraph.input, name: "", in: &graph)
            return (graph, output)
        } catch {
            throw .deployment(.tensor(error))
        }
    }
}
