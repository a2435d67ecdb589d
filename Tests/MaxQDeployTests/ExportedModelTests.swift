// The exported model file: export -> file -> read gives the same folded weights and the same
// logits; every damaged or tampered part is an error naming the field or layer.
import Foundation
import MaxQDeploy
import MaxQFormats
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor
import MaxQTestSupport
import Testing

/// `arch` with random batch norm, exported at n:m, and its dense evaluation's logits on `x`.
private func exported(_ arch: Architecture, n: Int, m: Int, x: Tensor) throws -> (ExportedModel, Tensor, Data) {
    let model = try maskedModel(arch, n: n, m: m, seed: 7)
    var generator = RandomGenerator(seed: 8)
    randomizeBatchNorm(model, generator: &generator)
    model.setTraining(false)
    let logits = try GradientMode.withoutGradients { try model(Variable(x)) }.value
    let (exported, report) = try ExportedModel.export(
        model, architecture: arch, classes: 10, sparsity: try softMaxQ(n: n, m: m))
    #expect(!report.dense.contains { $0.cause == .notNM }, "\(report.dense)")
    return (exported, logits, try exported.file.encoded())
}

private func input(_ arch: Architecture) -> Tensor {
    var generator = RandomGenerator(seed: 3)
    let side = arch.resolution == 32 ? 32 : 64
    return Tensor(normal: [2, 3, side, side], generator: &generator)
}

struct ExportedModelTests {
    @Test(arguments: [(Architecture.mobilenetV3Small, 2, 4), (.cResnet18, 1, 16)])
    func exportThenReadGivesTheSameFoldedWeightsAndLogits(_ arch: Architecture, _ n: Int, _ m: Int) throws {
        let x = input(arch)
        let (original, logits, data) = try exported(arch, n: n, m: m, x: x)
        let back = try ExportedModel(try SafetensorsFile.decode(data), path: "model.nm.safetensors")
        let pattern = try NMPattern(n: n, m: m)
        #expect(back.architecture == arch && back.classes == 10 && back.pattern == pattern)
        #expect(back.units.map(\.name) == original.units.map(\.name))
        var compressed = 0
        for (a, b) in zip(original.units, back.units) {
            #expect(a.bias.scalars == b.bias.scalars && a.geometry == b.geometry && a.activation == b.activation)
            switch (a.weights, b.weights) {
            case (.nm(let p), .nm(let q)):
                #expect(p == q, "\(a.name)")
                compressed += 1
            case (.dense(let v), .dense(let w)): #expect(v.shape == w.shape && v.scalars == w.scalars, "\(a.name)")
            default: Issue.record("\(a.name) changed kind")
            }
        }
        #expect(compressed > 10)
        #expect(back.rest.map(\.name) == original.rest.map(\.name))
        #expect(zip(back.rest, original.rest).allSatisfy { $0.tensor.scalars == $1.tensor.scalars })
        #expect(data.count < original.denseBytes)
        for sparse in [true, false] {
            let (model, report) = try back.model(sparse: sparse, path: "model.nm.safetensors")
            #expect(report.sparse.count == (sparse ? compressed : 0))
            let y = try GradientMode.withoutGradients { try model(Variable(x)) }.value
            #expect(toleranceFailure(y, logits, rtol: 1e-4, atol: 1e-4) == nil, "sparse \(sparse)")
        }
    }

    @Test func damagedOrTamperedFilesAreErrorsNamingTheFieldOrLayer() throws {
        let arch = Architecture.mobilenetV3Small
        let (original, _, data) = try exported(arch, n: 2, m: 4, x: input(arch))
        let good = try SafetensorsFile.decode(data)
        let layer = try #require(original.units.first { if case .nm = $0.weights { true } else { false } }).name
        func expectError(_ fragment: String, building: Bool = false, _ tamper: (inout SafetensorsFile) throws -> Void)
            throws
        {
            var file = good
            try tamper(&file)
            do {
                let model = try ExportedModel(file, path: "m.nm.safetensors")
                if building { _ = try model.model(sparse: true, path: "m.nm.safetensors") }
                Issue.record("no error for '\(fragment)'")
            } catch {
                #expect("\(error)".hasPrefix("m.nm.safetensors: ") && "\(error)".contains(fragment), "\(error)")
            }
        }
        func editLayers(_ file: inout SafetensorsFile, _ edit: (inout [[String: Any]]) -> Void) throws {
            var layers = try #require(
                try JSONSerialization.jsonObject(with: Data(file.metadata["layers"]!.utf8)) as? [[String: Any]])
            edit(&layers)
            file.metadata["layers"] = String(
                decoding: try JSONSerialization.data(withJSONObject: layers), as: UTF8.self)
        }
        func editTensor(_ file: inout SafetensorsFile, _ name: String, _ edit: (inout [Float]) -> Void) throws {
            let index = try #require(file.tensors.firstIndex { $0.name == name })
            var scalars = file.tensors[index].tensor.scalars
            edit(&scalars)
            file.tensors[index].tensor = try Tensor(shape: [scalars.count], scalars: scalars)
        }
        try expectError("not a model written by maxq export") { $0.metadata["format"] = nil }
        try expectError("format version 9") { $0.metadata["version"] = "9" }
        try expectError("metadata 'arch' is 'resnet99'") { $0.metadata["arch"] = "resnet99" }
        try expectError("metadata 'layers'") { $0.metadata["layers"] = "[{" }
        try expectError("layer \(layer): its N:M differs from the model's 1:4") { $0.metadata["N"] = "1" }
        try expectError("\(layer): 127 values where 2:4") { try editTensor(&$0, "\(layer).values") { $0.removeLast() } }
        try expectError("\(layer): value 3 is nan") { try editTensor(&$0, "\(layer).values") { $0[3] = .nan } }
        try expectError("no tensor \(layer).bias") { $0.tensors.removeAll { $0.name == "\(layer).bias" } }
        try expectError("\(layer): indices of group 0 are not strictly ascending") {
            let index = try #require($0.byteTensors.firstIndex { $0.name == "\(layer).indices" })
            $0.byteTensors[index].bytes[0] = 0b0101_0101  // positions 1, 1 in the first two groups
        }
        try expectError("\(layer): 1 bytes of indices") {
            let index = try #require($0.byteTensors.firstIndex { $0.name == "\(layer).indices" })
            $0.byteTensors[index].bytes = [0]
        }
        try expectError("unknown kind 'csr'") { try editLayers(&$0) { $0[1]["kind"] = "csr" } }
        try expectError("layer \(layer): shape", building: true) {
            try editLayers(&$0) { layers in
                let i = layers.firstIndex { $0["name"] as? String == layer }!
                layers[i]["stride"] = 2
            }
        }
        try expectError("its layers are not those of mobilenet_v3_small", building: true) {
            try editLayers(&$0) { $0.removeLast() }
        }
        try expectError("unexpected: [\"extra\"]", building: true) { $0.tensors.append(("extra", Tensor(zeros: [1]))) }
    }

    /// The fuzzing seed (Scripts/make_nm_seed.py) decodes: one 2:4 layer, one dense, one other tensor.
    @Test func theFuzzSeedDecodes() throws {
        let path = Fixtures.path("models/tiny.nm.safetensors")
        let model = try ExportedModel(try SafetensorsFile.read(path: path), path: path)
        #expect(model.units.map(\.name) == ["layer1.0.convbn1", "layer1.0.convbn2"])
        guard case .nm(let packed) = model.units[0].weights else {
            Issue.record("the first layer is not compressed")
            return
        }
        #expect(packed.shape == [4, 8, 3, 3] && Array(packed.indices.prefix(8)) == [0, 2, 1, 3, 0, 1, 2, 3])
        #expect(model.rest.map(\.name) == ["fc.bias"])
    }

    @Test func anIndexOutsideItsGroupIsRefused() {
        #expect(
            throws: DeploymentError.malformedWeights(layer: "c", reason: "index 7 of value 0 is outside its group of 6")
        ) {
            try NMWeights(shape: [1, 6, 1, 1], n: 1, m: 6, values: [1], packedIndices: [7], layer: "c")
        }
    }

    @Test func aCheckpointReaderRefusesAnExportedModel() throws {
        let arch = Architecture.mobilenetV3Small
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("refused.nm.safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try exported(arch, n: 2, m: 4, x: input(arch)).0.file.write(path: path)
        #expect(
            throws: SafetensorsError.malformed(
                path: path, reason: "an exported inference model (maxq export), not a checkpoint: give it to predict")
        ) {
            try CheckpointFile.readStateDict(path: path)
        }
    }
}
