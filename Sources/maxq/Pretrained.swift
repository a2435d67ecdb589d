// Loading `--pretrained` weights for `predict` and `train`: a checkpoint none of whose tensors
// belongs to the model (another architecture, or names from another code base) is refused,
// rather than running with untrained weights.
import ArgumentParser
import MaxQFormats
import MaxQModels
import MaxQNN

func loadPretrained(_ path: String, into model: any Model, arch: String) throws -> LoadReport {
    let entries = try CheckpointFile.readStateDict(path: path)
    let report = try model.load(entries)
    // Batch counters and masks are not required (masks are computed when absent).
    func required(_ name: String) -> Bool { !name.hasSuffix("num_batches_tracked") && !name.hasSuffix("mask") }
    let expected = model.stateDict().map(\.0).filter(required).count
    guard report.missing.filter(required).count < expected else {
        let sample = entries.prefix(3).map(\.name).joined(separator: ", ")
        throw ValidationError(
            "\(path): none of its \(entries.count) tensors belongs to \(arch) (its first: \(sample)); "
                + "is it a checkpoint of another architecture, or for other --conv-bn-type/--num-classes settings?")
    }
    return report
}
