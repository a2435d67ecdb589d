// `--engine sparse` for predict and evaluation: deploy the model tuned on a sample batch, and say
// which N:M layers run dense because their weights are not N:M.
import ArgumentParser
import MaxQDeploy
import MaxQModels
import MaxQTensor

enum Engine: String, ExpressibleByArgument, CaseIterable {
    case sparse, dense
}

/// Deploys `model` for inputs of `batch` images of `resolution`; `say` gets one line per layer
/// that is not N:M. Returns the report.
func deploySparse(_ model: any Model, batch: Int, resolution: Int, say: (String) -> Void) throws -> DeploymentReport {
    let report = try Deployment.deploy(model, tunedOn: Tensor(zeros: [batch, 3, resolution, resolution]))
    for unit in report.dense where unit.cause == .notNM { say("\(unit.name) runs dense: \(unit.reason)") }
    return report
}
