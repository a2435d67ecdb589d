// A safe unpickler for exactly what PyTorch state dicts contain (protocol 2-5 opcodes for
// dicts, OrderedDict, lists, tuples, numbers, strings, booleans, None and tensors rebuilt by
// `torch._utils._rebuild_tensor_v2`). Globals are looked up in a fixed allow-list and never
// called: anything else is refused with the name of what was asked for.
import Foundation
import MaxQTensor

/// Containers know how deeply they nest, so that the unpickler can refuse deep structures as
/// it builds them. A list or dict is sealed once it is placed inside another container: changing
/// it afterwards (which PyTorch's pickles never do) could deepen its parents behind their backs,
/// so it is refused. Releasing a container never recurses (see `releaseChildren`), whatever the depth.
public final class PickleList: PickleContainer {
    public internal(set) var items: [PickleValue]
    var depth = 1
    var sealed = false

    public init(_ items: [PickleValue] = []) { self.items = items }

    func moveChildren(into pending: inout [PickleValue]) {
        pending += items
        items = []
    }

    deinit { releaseChildren(of: self) }
}

public final class PickleDict: PickleContainer {
    public internal(set) var items: [(key: PickleValue, value: PickleValue)]
    var depth = 1
    var sealed = false

    public init(_ items: [(key: PickleValue, value: PickleValue)] = []) { self.items = items }

    func moveChildren(into pending: inout [PickleValue]) {
        for (key, value) in items { pending += [key, value] }
        items = []
    }

    deinit { releaseChildren(of: self) }
}

public final class PickleTuple: PickleContainer {
    public private(set) var items: [PickleValue]
    let depth: Int

    public init(_ items: [PickleValue]) {
        self.items = items
        depth = 1 + (items.map(\.depth).max() ?? 0)
    }

    func moveChildren(into pending: inout [PickleValue]) {
        pending += items
        items = []
    }

    deinit { releaseChildren(of: self) }
}

protocol PickleContainer: AnyObject {
    /// Moves the children to the end of `pending`, leaving the container empty.
    func moveChildren(into pending: inout [PickleValue])
}

/// Releases the children of a container that is going, with a work list instead of recursion: a
/// container that nothing else refers to gives up its children to the list before it goes, so its
/// own release finds nothing nested. (Plain release of 100,000 levels would overflow the stack.)
/// Every reference is moved, never copied: a copy left behind (a returned array, an optional
/// bound by `guard var`) would make each child look shared under Swift 6's lifetimes.
private func releaseChildren(of going: PickleContainer) {
    var pending: [PickleValue] = []
    going.moveChildren(into: &pending)
    while var value = pending.popLast() {
        var container = value.takeContainer()
        if isKnownUniquelyReferenced(&container), let owned = container as? PickleContainer {
            owned.moveChildren(into: &pending)
        }
    }
}

public enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes(Data)
    case tuple(PickleTuple)
    case list(PickleList)
    case dict(PickleDict)
    case tensor(Tensor)
    /// An allow-listed global (constructor or storage type) before it is applied.
    case global(String)
    /// A storage reference from the archive: dtype from its type, key of its data file.
    case storage(type: String, key: String)
    /// The BUILD marker of an object whose state is ignored (OrderedDict's `_metadata`).
    case mark

    /// Levels of containers: 0 for a scalar, 1 for a container of scalars.
    var depth: Int {
        switch self {
        case .tuple(let t): t.depth
        case .list(let l): l.depth
        case .dict(let d): d.depth
        default: 0
        }
    }

    /// The list, dict or tuple this value holds, leaving `.none` in its place.
    fileprivate mutating func takeContainer() -> AnyObject? {
        let container: AnyObject? =
            switch self {
            case .tuple(let t): t
            case .list(let l): l
            case .dict(let d): d
            default: nil
            }
        if container != nil { self = .none }
        return container
    }

    /// Marks a list or dict as placed inside another container (see `PickleList`).
    func seal() {
        switch self {
        case .list(let l): l.sealed = true
        case .dict(let d): d.sealed = true
        default: break
        }
    }

    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var int: Int? { if case .int(let i) = self { i } else { nil } }
    public var double: Double? {
        switch self {
        case .float(let d): d
        case .int(let i): Double(i)
        default: nil
        }
    }

    /// Dictionary lookup by string key.
    public subscript(key: String) -> PickleValue? {
        guard case .dict(let d) = self else { return nil }
        return d.items.first { $0.key.string == key }?.value
    }
}

public enum PickleError: Error, Equatable, CustomStringConvertible {
    case refused(global: String)
    case malformed(String)

    public var description: String {
        switch self {
        case .refused(let g):
            "refusing to load '\(g)': a checkpoint may hold only state-dict data "
                + "(tensors, dicts, lists, numbers, strings)"
        case .malformed(let m): "malformed pickle: \(m)"
        }
    }
}

/// Unpickles `data` (a checkpoint's `data.pkl`); `storage` returns a storage's bytes by key.
public func unpickle(_ data: Data, storage: @escaping (String) throws -> Data) throws -> PickleValue {
    var unpickler = Unpickler(data, storage: storage)
    return try unpickler.load()
}

struct Unpickler {
    static let allowed: Set<String> = [
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "torch.FloatStorage", "torch.HalfStorage", "torch.BFloat16Storage", "torch.LongStorage",
        "torch.DoubleStorage", "torch.IntStorage",
    ]

    let bytes: [UInt8]
    /// Reads a storage's raw data by key.
    let storage: (String) throws -> Data
    private var position = 0
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]

    init(_ data: Data, storage: @escaping (String) throws -> Data) {
        bytes = [UInt8](data)
        self.storage = storage
    }

    private mutating func read(_ n: Int) throws -> ArraySlice<UInt8> {
        guard position + n <= bytes.count else { throw PickleError.malformed("truncated at byte \(position)") }
        defer { position += n }
        return bytes[position..<position + n]
    }

    private mutating func uint(_ n: Int) throws -> Int {
        try read(n).reversed().reduce(0) { $0 << 8 | Int($1) }
    }

    private mutating func pop() throws -> PickleValue {
        guard let v = stack.popLast() else { throw PickleError.malformed("stack underflow at byte \(position)") }
        return v
    }

    private mutating func popMark() throws -> [PickleValue] {
        guard let mark = marks.popLast(), mark <= stack.count else { throw PickleError.malformed("missing MARK") }
        defer { stack.removeSubrange(mark...) }
        return Array(stack[mark...])
    }

    private mutating func line() throws -> String {
        guard let end = bytes[position...].firstIndex(of: 10) else { throw PickleError.malformed("unterminated line") }
        defer { position = end + 1 }
        return String(decoding: bytes[position..<end], as: UTF8.self)
    }

    mutating func load() throws -> PickleValue {
        while true {
            let op = try read(1).first!
            switch op {
            case 0x80: _ = try read(1)  // PROTO
            case 0x95: _ = try read(8)  // FRAME
            case 0x2E: return try pop()  // STOP
            case 0x7D: stack.append(.dict(PickleDict()))  // EMPTY_DICT
            case 0x5D: stack.append(.list(PickleList()))  // EMPTY_LIST
            case 0x29: stack.append(try tuple([]))  // EMPTY_TUPLE
            case 0x28: marks.append(stack.count)  // MARK
            case 0x74: stack.append(try tuple(try popMark()))  // TUPLE
            case 0x85: stack.append(try tuple([try pop()]))  // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); stack.append(try tuple([a, b]))  // TUPLE2
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(try tuple([a, b, c]))  // TUPLE3
            case 0x4E: stack.append(.none)
            case 0x88: stack.append(.bool(true))
            case 0x89: stack.append(.bool(false))
            case 0x4B: stack.append(.int(try uint(1)))  // BININT1
            case 0x4D: stack.append(.int(try uint(2)))  // BININT2
            case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try uint(4)))))  // BININT
            case 0x8A:  // LONG1
                let n = try uint(1)
                let raw = try read(n)
                guard n <= 8 else { throw PickleError.malformed("integer of \(n) bytes") }
                var value = raw.reversed().reduce(0) { $0 << 8 | Int($1) }
                if n > 0, n < 8, raw.last! & 0x80 != 0 { value -= 1 << (8 * n) }
                stack.append(.int(value))
            case 0x47:  // BINFLOAT, big-endian
                stack.append(.float(Double(bitPattern: try read(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })))
            case 0x58: stack.append(.string(String(decoding: try read(try uint(4)), as: UTF8.self)))  // BINUNICODE
            case 0x8C:  // SHORT_BINUNICODE
                stack.append(.string(String(decoding: try read(try uint(1)), as: UTF8.self)))
            case 0x54: stack.append(.string(String(decoding: try read(try uint(4)), as: UTF8.self)))  // BINSTRING
            case 0x55: stack.append(.string(String(decoding: try read(try uint(1)), as: UTF8.self)))  // SHORT_BINSTRING
            case 0x42: stack.append(.bytes(Data(try read(try uint(4)))))  // BINBYTES
            case 0x43: stack.append(.bytes(Data(try read(try uint(1)))))  // SHORT_BINBYTES
            case 0x71: memo[try uint(1)] = stack.last  // BINPUT
            case 0x72: memo[try uint(4)] = stack.last  // LONG_BINPUT
            case 0x94: memo[memo.count] = stack.last  // MEMOIZE
            case 0x68, 0x6A:  // BINGET, LONG_BINGET
                let key = try uint(op == 0x68 ? 1 : 4)
                guard let v = memo[key] else { throw PickleError.malformed("memo \(key) missing") }
                stack.append(v)
            case 0x63: try pushGlobal("\(try line()).\(try line())")  // GLOBAL
            case 0x93:  // STACK_GLOBAL
                let name = try pop(), module = try pop()
                try pushGlobal("\(module.string ?? "?").\(name.string ?? "?")")
            case 0x51: stack.append(try persistent(try pop()))  // BINPERSID
            case 0x52: let args = try pop(), callable = try pop(); stack.append(try reduce(callable, args))  // REDUCE
            case 0x62: _ = try pop()  // BUILD: object state (OrderedDict `_metadata`) is not needed
            case 0x73:  // SETITEM
                let value = try pop(), key = try pop()
                guard case .dict(let d) = stack.last else { throw PickleError.malformed("SETITEM on a non-dict") }
                try insert([key, value], into: d)
            case 0x75:  // SETITEMS
                let items = try popMark()
                guard case .dict(let d) = stack.last, items.count % 2 == 0 else {
                    throw PickleError.malformed("SETITEMS on a non-dict")
                }
                try insert(items, into: d)
            case 0x61:  // APPEND
                let value = try pop()
                guard case .list(let l) = stack.last else { throw PickleError.malformed("APPEND on a non-list") }
                try insert([value], into: l)
            case 0x65:  // APPENDS
                let items = try popMark()
                guard case .list(let l) = stack.last else { throw PickleError.malformed("APPENDS on a non-list") }
                try insert(items, into: l)
            default:
                throw PickleError.malformed(String(format: "unsupported opcode 0x%02x at byte %d", op, position - 1))
            }
        }
    }

    /// Deepest nesting of containers accepted; PyTorch's checkpoints nest a handful of levels.
    static let maximumDepth = 200
    /// The most elements a tensor view may have beyond those of its storage (stride 0).
    static let maximumExpandedElements = 1 << 24

    private func checkedDepth(of children: [PickleValue]) throws -> Int {
        let depth = 1 + (children.map(\.depth).max() ?? 0)
        guard depth <= Self.maximumDepth else {
            throw PickleError.malformed("containers nested more than \(Self.maximumDepth) deep at byte \(position)")
        }
        children.forEach { $0.seal() }
        return depth
    }

    private func tuple(_ items: [PickleValue]) throws -> PickleValue {
        _ = try checkedDepth(of: items)
        return .tuple(PickleTuple(items))
    }

    /// Sealing the items first also refuses a container inserted into itself (a cycle).
    private func insert(_ items: [PickleValue], into list: PickleList) throws {
        let depth = try checkedDepth(of: items)
        guard !list.sealed else {
            throw PickleError.malformed("a list changed after it was nested, at byte \(position)")
        }
        list.depth = max(list.depth, depth)
        list.items += items
    }

    /// `items` alternate keys and values.
    private func insert(_ items: [PickleValue], into dict: PickleDict) throws {
        let depth = try checkedDepth(of: items)
        guard !dict.sealed else {
            throw PickleError.malformed("a dict changed after it was nested, at byte \(position)")
        }
        dict.depth = max(dict.depth, depth)
        for i in stride(from: 0, to: items.count, by: 2) { dict.items.append((items[i], items[i + 1])) }
    }

    private mutating func pushGlobal(_ name: String) throws {
        guard Self.allowed.contains(name) else { throw PickleError.refused(global: name) }
        stack.append(.global(name))
    }

    private func persistent(_ id: PickleValue) throws -> PickleValue {
        guard case .tuple(let tuple) = id, case let t = tuple.items, t.count >= 5, t[0].string == "storage",
            case .global(let type) = t[1], let key = t[2].string
        else { throw PickleError.malformed("unexpected persistent id") }
        return .storage(type: type, key: key)
    }

    private func reduce(_ callable: PickleValue, _ args: PickleValue) throws -> PickleValue {
        guard case .global(let name) = callable, case .tuple(let tuple) = args else {
            throw PickleError.malformed("REDUCE of a non-global")
        }
        let a = tuple.items
        switch name {
        case "collections.OrderedDict":
            return .dict(PickleDict())
        case "torch._utils._rebuild_parameter":
            guard let first = a.first else { throw PickleError.malformed("_rebuild_parameter without data") }
            return first
        case "torch._utils._rebuild_tensor_v2":
            guard a.count >= 4, case .storage(let type, let key) = a[0], let offset = a[1].int,
                case .tuple(let sizeTuple) = a[2], case .tuple(let strideTuple) = a[3]
            else { throw PickleError.malformed("_rebuild_tensor_v2 arguments") }
            let (sizes, strides) = (sizeTuple.items, strideTuple.items)
            let shape = sizes.compactMap(\.int), steps = strides.compactMap(\.int)
            guard shape.count == sizes.count, steps.count == strides.count else {
                throw PickleError.malformed("_rebuild_tensor_v2 sizes or strides that are not integers")
            }
            return .tensor(
                try rebuildTensor(type: type, data: try storage(key), offset: offset, shape: shape, strides: steps))
        default:
            throw PickleError.refused(global: name)
        }
    }

    /// Gathers the (possibly strided) elements into a contiguous float32 tensor.
    private func rebuildTensor(type: String, data: Data, offset: Int, shape: [Int], strides: [Int]) throws -> Tensor {
        let size = [
            "torch.FloatStorage": 4, "torch.HalfStorage": 2, "torch.BFloat16Storage": 2, "torch.LongStorage": 8,
            "torch.DoubleStorage": 8, "torch.IntStorage": 4,
        ][type]!
        let available = data.count / size
        let view = "tensor view \(shape) / \(strides) at \(offset)"
        guard shape.count == strides.count, offset >= 0, strides.allSatisfy({ $0 >= 0 }),
            let count = Tensor.elementCount(shape)
        else { throw PickleError.malformed("\(view) has a negative or overflowing size, stride or offset") }
        // A view may repeat elements (stride 0), but we materialise it: no more elements than
        // its storage holds, or than maximumExpandedElements, whichever is larger.
        guard count <= max(available, Self.maximumExpandedElements) else {
            throw PickleError.malformed("\(view) has \(count) elements, more than its storage of \(available) can back")
        }
        // The largest element index the view touches must be inside the storage.
        var last = offset
        for (extent, step) in zip(shape, strides) where extent > 0 {
            let (reach, overflow) = (extent - 1).multipliedReportingOverflow(by: step)
            let (sum, overflowSum) = last.addingReportingOverflow(reach)
            guard !overflow, !overflowSum else {
                throw PickleError.malformed("\(view) exceeds its storage of \(available)")
            }
            last = sum
        }
        guard count == 0 || last < available else {
            throw PickleError.malformed("\(view) exceeds its storage of \(available)")
        }
        var out = Tensor(zeros: shape)
        data.withUnsafeBytes { raw in
            func element(_ i: Int) -> Float {
                let at = i * size
                switch type {
                case "torch.FloatStorage":
                    return Float(bitPattern: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian)
                case "torch.HalfStorage":
                    return Float(
                        Float16(bitPattern: raw.loadUnaligned(fromByteOffset: at, as: UInt16.self).littleEndian))
                case "torch.BFloat16Storage":
                    return Float(
                        bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: at, as: UInt16.self).littleEndian) << 16)
                case "torch.LongStorage":
                    return Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: Int64.self)))
                case "torch.DoubleStorage":
                    return Float(
                        Double(bitPattern: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self).littleEndian))
                default: return Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: Int32.self)))
                }
            }
            var contiguous = [Int](repeating: 1, count: shape.count)
            for d in stride(from: shape.count - 2, through: 0, by: -1) {
                contiguous[d] = contiguous[d + 1] * shape[d + 1]
            }
            out.withUnsafeMutableBufferPointer { o in
                if contiguous == strides || count <= 1 {
                    for flat in 0..<count { o[flat] = element(offset + flat) }
                    return
                }
                var index = [Int](repeating: 0, count: shape.count)
                for flat in 0..<count {
                    o[flat] = element(offset + zip(index, strides).map(*).reduce(0, +))
                    var d = shape.count - 1
                    while d >= 0 {
                        index[d] += 1
                        if index[d] < shape[d] { break }
                        index[d] = 0
                        d -= 1
                    }
                }
            }
        }
        return out
    }
}
