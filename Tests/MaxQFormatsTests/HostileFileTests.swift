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

    /// The depth limit keeps files shallow; releasing values never recurses anyway, so a structure
    /// deeper than any stack (built here directly) goes without a crash, and a container still
    /// referred to from outside keeps its contents.
    @Test func releasingDeeplyNestedValuesDoesNotRecurse() {
        let kept = PickleList([.int(7), .string("kept")])
        do {
            var top = PickleValue.list(PickleList())
            for level in 0..<200_000 {
                switch level % 3 {
                case 0: top = .tuple(PickleTuple([top, .int(level)]))
                case 1:
                    top = .dict(PickleDict([(.string("child"), top), (.int(level), level == 5 ? .list(kept) : .none)]))
                default: top = .list(PickleList([top]))
                }
            }
            var levels = 1, inner = top
            while let child = Self.firstChild(of: inner) { (levels, inner) = (levels + 1, child) }
            #expect(levels == 200_001)
        }
        #expect(kept.items.count == 2 && kept.items[1].string == "kept")
    }

    private static func firstChild(of value: PickleValue) -> PickleValue? {
        switch value {
        case .tuple(let t): t.items.first
        case .list(let l): l.items.first
        case .dict(let d): d.items.first?.value
        default: nil
        }
    }
}
