// The torchvision state dict: exactly torchvision's names and shapes (Scripts/make_torchvision_keys.py
// wrote them from torchvision), no masks, masks folded into the weights on request, and a file
// that reads back as a bare state dict.
import Foundation
import MaxQFormats
import MaxQInterchange
import MaxQModels
import MaxQNN
import MaxQTensor
import MaxQTestSupport
import Testing

struct TorchvisionExportTests {
    @Test(arguments: TorchvisionExport.architectures)
    func namesAndShapesAreTorchvisions(_ arch: Architecture) throws {
        let model = try maskedModel(arch, n: 2, m: 4, seed: 3)
        let fixture = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("torchvision/\(arch.rawValue).json")))
        let expected = try #require(try JSONSerialization.jsonObject(with: fixture) as? [[Any]])
        let state = try TorchvisionExport.stateDict(model, architecture: arch, foldMask: true)
        #expect(state.count == expected.count)
        let shapes = Dictionary(uniqueKeysWithValues: state.map { ($0.name, $0.tensor.shape) })
        for entry in expected {
            let (name, shape) = (entry[0] as! String, entry[1] as! [Int])
            #expect(shapes[name] == shape, "\(arch) \(name)")
        }
    }

    @Test func masksAreFoldedOnlyWhenAskedAndTheFileReadsBack() throws {
        let model = try maskedModel(.resnet18, n: 2, m: 4, seed: 3)
        let (unitName, unit) = try #require(model.units.first { $0.1.mask != nil })
        let key = ResNet.torchvisionName("\(unitName).conv.weight")
        let raw = try TorchvisionExport.stateDict(model, architecture: .resnet18, foldMask: false)
        let folded = try TorchvisionExport.stateDict(model, architecture: .resnet18, foldMask: true)
        #expect(raw.first { $0.name == key }?.tensor.scalars == unit.conv.weight.value.scalars)
        let product = try unit.conv.weight.value.backend.multiply(unit.conv.weight.value, unit.mask!.value)
        #expect(folded.first { $0.name == key }?.tensor.scalars == product.scalars)
        #expect(!folded.contains { $0.name.hasSuffix("mask") })

        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tv-\(UUID().uuidString).pth").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try TorchCheckpoint(stateDict: folded).writeStateDict(path: path)
        let read = try TorchCheckpoint.read(path: path)
        #expect(read.stateDict.map(\.name) == folded.map(\.name))
        #expect(read.stateDict.first { $0.name == key }?.tensor.scalars == product.scalars)
    }

    @Test func architecturesTorchvisionLacksAreRefused() throws {
        let model = try maskedModel(.mobilenetV1, n: 2, m: 4, seed: 3)
        #expect { try TorchvisionExport.stateDict(model, architecture: .mobilenetV1, foldMask: false) } throws: {
            "\($0)".hasPrefix("torchvision has no mobilenet_v1")
        }
    }
}
