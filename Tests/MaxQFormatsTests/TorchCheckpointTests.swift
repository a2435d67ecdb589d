// PyTorch checkpoints: what torch.save writes loads exactly; code in a pickle is refused;
// what we write reads back.
import Foundation
import MaxQFormats
import MaxQTensor
import MaxQTestSupport
import Testing

@Suite struct TorchCheckpointTests {
    @Test func readsWhatTorchSaveWrites() throws {
        let checkpoint = try TorchCheckpoint.read(path: Fixtures.path("checkpoints/torch_saved.pth.tar"))
        #expect(checkpoint.epoch == 3 && checkpoint.arch == "tiny" && checkpoint.bestAcc1 == 12.5)
        let expected = try SafetensorsFile.read(path: Fixtures.path("checkpoints/torch_saved_expected.safetensors"))
        let state = try CheckpointFile.readStateDict(path: Fixtures.path("checkpoints/torch_saved.pth.tar"))
        #expect(state.map(\.name) == expected.tensors.map(\.name))
        for (name, tensor) in state {
            #expect(tensor.shape == expected[name]?.shape && tensor.scalars == expected[name]?.scalars, "\(name)")
        }
        // The optimizer's nested lists, None and booleans came through as data.
        #expect(checkpoint.root?["optimizer"]?["param_groups"] != nil)
    }

    @Test func refusesAPickleThatWouldRunCode() {
        #expect {
            try TorchCheckpoint.read(path: Fixtures.path("checkpoints/evil.pth"))
        } throws: { error in
            "\(error)".contains("refusing to load") && "\(error)".contains("system")
        }
    }

    @Test func writtenCheckpointsReadBack() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("maxq-\(UUID()).pth.tar").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let state = [
            ("layer.weight", try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])), ("scalar", Tensor(scalar: 7)),
        ]
        try TorchCheckpoint(stateDict: state, epoch: 5, arch: "resnet18", bestAcc1: 70.5).write(
            path: path,
            optimizer: SGDState(
                momentumBuffers: [Tensor(zeros: [2, 3]), nil], learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4,
                nesterov: true))
        let back = try TorchCheckpoint.read(path: path)
        #expect(back.epoch == 5 && back.arch == "resnet18" && back.bestAcc1 == 70.5)
        #expect(back.stateDict.map(\.name) == ["layer.weight", "scalar"])
        #expect(back.stateDict[0].tensor.scalars == [1, 2, 3, 4, 5, 6] && back.stateDict[1].tensor.shape == [])
    }

    @Test func damagedArchivesGiveClearErrors() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("checkpoints/torch_saved.pth.tar")))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("maxq-\(UUID()).pth").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
        #expect { try TorchCheckpoint.read(path: path) } throws: { "\($0)".contains(path) }
        #expect(throws: (any Error).self) { try CheckpointFile.readStateDict(path: "/nonexistent.pth") }
    }
}
