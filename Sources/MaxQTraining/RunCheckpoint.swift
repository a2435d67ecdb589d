// A run's checkpoint: the model state under its state-dict names (masks included), SGD's
// momentum buffers under `optimizer.<parameter name>.momentum_buffer`, and in the metadata the
// epoch, arch, best top-1, the configuration and every random generator's state. Written to a
// temporary file, flushed to disk and renamed, so the previous checkpoint survives any crash.
import Foundation
import MaxQFormats
import MaxQModels
import MaxQNN
import MaxQSparsity
import MaxQTensor

public struct RunState {
    public var epoch: Int
    public var bestAcc1: Double
    public var config: TrainingConfig
}

public enum RunCheckpoint {
    public static func save(
        _ model: any Model, optimizer: SGD, state: RunState, path: String, pthPath: String?
    ) throws {
        let parameters = model.namedParameters(prefix: "")
        var tensors = model.stateDict().map { (name: $0.0, tensor: $0.1) }
        for (name, parameter) in parameters {
            if let buffer = optimizer.momentumBuffers[ObjectIdentifier(parameter)] {
                tensors.append(("optimizer.\(name).momentum_buffer", buffer))
            }
        }
        var metadata = [
            "epoch": "\(state.epoch)", "arch": state.config.arch.rawValue, "best_acc1": "\(state.bestAcc1)",
            "config": state.config.json,
            "format": "maxq run checkpoint 1",
        ]
        for (name, unit) in model.units { metadata["generator.\(name)"] = encode(unit.generator) }
        for (name, dropout) in model.descendants(of: Dropout.self) {
            metadata["generator.\(name)"] = encode(dropout.generator)
        }
        try SafetensorsFile(tensors: tensors, metadata: metadata).write(path: path)
        if let pthPath {
            let buffers = parameters.map { optimizer.momentumBuffers[ObjectIdentifier($0.1)] }
            let sgd = SGDState(
                momentumBuffers: buffers, learningRate: Double(optimizer.learningRate),
                momentum: Double(optimizer.momentum),
                weightDecay: state.config.weightDecay, nesterov: optimizer.nesterov)
            try TorchCheckpoint(
                stateDict: model.stateDict().map { ($0.0, $0.1) }, epoch: state.epoch + 1,
                arch: state.config.arch.rawValue,
                bestAcc1: state.bestAcc1
            ).write(path: pthPath, optimizer: sgd)
        }
    }

    /// Restores model, optimizer and generators; returns the saved run state.
    public static func load(_ path: String, into model: any Model, optimizer: SGD) throws -> RunState {
        if path.hasSuffix(".pth.tar") {
            throw TrainingError.resume(
                "\(path) is the PyTorch copy of a run checkpoint; resume from the .safetensors beside it, "
                    + "which also holds the random generators' states")
        }
        let file = try SafetensorsFile.read(path: path)
        guard file.metadata["format"] == "maxq run checkpoint 1", let epoch = file.metadata["epoch"].flatMap(Int.init),
            let json = file.metadata["config"],
            let config = try? JSONDecoder().decode(TrainingConfig.self, from: Data(json.utf8))
        else { throw TrainingError.resume("\(path) is not a run checkpoint written by maxq train") }
        let modelEntries = file.tensors.filter { !$0.name.hasPrefix("optimizer.") }
        let report = try model.load(modelEntries)
        guard report.missing.isEmpty else {
            throw TrainingError.resume("\(path) lacks \(report.missing.joined(separator: ", "))")
        }
        for (name, parameter) in model.namedParameters(prefix: "") {
            if let buffer = file["optimizer.\(name).momentum_buffer"] {
                optimizer.momentumBuffers[ObjectIdentifier(parameter)] = buffer
            }
        }
        for (name, unit) in model.units {
            if let g = file.metadata["generator.\(name)"].flatMap(decode) { unit.generator = g }
        }
        for (name, dropout) in model.descendants(of: Dropout.self) {
            if let g = file.metadata["generator.\(name)"].flatMap(decode) { dropout.generator = g }
        }
        return RunState(epoch: epoch, bestAcc1: Double(file.metadata["best_acc1"] ?? "0") ?? 0, config: config)
    }

    static func encode(_ g: RandomGenerator) -> String { "\(g.state.0),\(g.state.1),\(g.state.2),\(g.state.3)" }

    static func decode(_ s: String) -> RandomGenerator? {
        let parts = s.split(separator: ",").compactMap { UInt64($0) }
        return parts.count == 4 ? RandomGenerator(state: (parts[0], parts[1], parts[2], parts[3])) : nil
    }
}
