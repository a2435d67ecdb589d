// classify CHECKPOINT IMAGE...: the top class of each image under a SoftMaxQ 2:4 ResNet-18.
import Foundation
import MaxQData
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.count >= 2 else { fatalError("usage: classify CHECKPOINT IMAGE...") }
let sparsity = SparsityConfig(
    type: .softMaxQ, pattern: try NMPattern(n: 2, m: 4),
    schedule: try IncrementalSchedule(.linear, increaseStart: 0, increaseEnd: 0))
let model = try Architecture.resnet18.build(classes: 10, sparsity: sparsity)
try model.load(checkpoint: arguments[0], architecture: "resnet18")
model.setTraining(false)
let recipe = ImageRecipe(resolution: 224)
for path in arguments.dropFirst() {
    var input = Tensor(uninitializedShape: [1, 3, 224, 224])
    try input.withUnsafeMutableBufferPointer { try recipe.validation(EncodedImage(path: path), into: $0.baseAddress!) }
    let logits = try GradientMode.withoutGradients { try model(Variable(input)) }.value.scalars
    let best = logits.indices.max { logits[$0] < logits[$1] }!
    print("\(path): class \(best) (logit \(logits[best]))")
}
