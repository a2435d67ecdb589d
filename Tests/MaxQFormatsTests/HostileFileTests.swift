// Crafted files (Scripts/make_hostile_fixtures.py) that once crashed the reader, wrote past a
// buffer or overflowed the stack: each is now one clear error naming what is wrong.
import Foundation
import MaxQFormats
import MaxQTensor
import MaxQTestSupport
import Testing

@Suite struct HostileFileTests {
    @Test func aShapeWhoseElementCountWrapsIsRefused() {
        #expect { try SafetensorsFile.read(path: Fixtures.path("hostile/overflow_shape.safetensors")) } throws: {
            "\($0)".contains("invalid shape [4611686018427387905, 4, 1, 1]")
        }
        // The tensor type itself refuses such a shape whatever the reader.
        #expect(Tensor.elementCount([1 << 62 + 1, 4]) == nil && Tensor.elementCount([3, -1]) == nil)
        #expect(throws: TensorError.self) { try Tensor(shape: [1 << 62 + 1, 4], scalars: [1, 2, 3, 4]) }
    }

    @Test(arguments: [
        ("negative_size", "negative or overflowing size"),
        ("overflow_size", "negative or overflowing size"),
        ("stride0_huge", "1099511627776 elements, more than its storage of 1"),
        ("deep_tuples", "nested more than 200 deep"),
        ("deep_lists", "nested more than 200 deep"),
        ("self_list", "a list changed after it was nested"),
        ("zip_name_past_end", "names past the end of the file"),
    ])
    func hostilePicklesAreRefused(_ name: String, _ expected: String) {
        let path = Fixtures.path("hostile/\(name).pth")
        #expect { try TorchCheckpoint.read(path: path) } throws: { error in
            "\(error)".contains(expected) && "\(error)".contains(path)
        }
    }
}
