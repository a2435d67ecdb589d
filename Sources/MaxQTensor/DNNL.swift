// A thin Swift layer over oneDNN's C API: the engine and stream, memory descriptors from
// shapes, primitive execution, and reorders between our plain layouts and oneDNN's blocked ones.
import CDNNL
import Foundation

final class DNNL: @unchecked Sendable {
    static let shared = DNNL()

    let engine: dnnl_engine_t
    let stream: dnnl_stream_t
    /// oneDNN's default scratchpad is shared by all primitives, so executions must not overlap
    /// (its own OpenMP threads already use every core).
    private let executionLock = NSLock()

    private init() {
        var engine: dnnl_engine_t?
        var stream: dnnl_stream_t?
        guard dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success, let engine,
            dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue) == dnnl_success, let stream
        else { fatalError("oneDNN: could not create the CPU engine") }
        self.engine = engine
        self.stream = stream
    }

    static var version: String {
        let v = dnnl_version().pointee
        return "\(v.major).\(v.minor).\(v.patch)"
    }

    static func check(_ status: dnnl_status_t, _ op: String) throws(TensorError) {
        guard status == dnnl_success else { throw .backend(op: op, message: statusName(status)) }
    }

    static func statusName(_ status: dnnl_status_t) -> String {
        switch status {
        case dnnl_out_of_memory: "out of memory"
        case dnnl_invalid_arguments: "invalid arguments"
        case dnnl_unimplemented: "no implementation for these shapes"
        default: "status \(status.rawValue)"
        }
    }

    /// A memory descriptor for data of `dims` in the plain (or `any`) layout `tag`, float32 unless
    /// `type` says otherwise.
    static func memoryDesc(_ dims: [Int], _ tag: dnnl_format_tag_t, _ type: dnnl_data_type_t = dnnl_f32)
        throws(TensorError) -> dnnl_memory_desc_t
    {
        var md = dnnl_memory_desc_t()
        var d = dimsTuple(dims)
        let status = withUnsafePointer(to: &d) {
            $0.withMemoryRebound(to: dnnl_dim_t.self, capacity: 12) {
                dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), $0, type, tag)
            }
        }
        try check(status, "memory descriptor \(dims)")
        return md
    }

    static func dimsTuple(_ values: [Int]) -> dnnl_dims_t {
        var t: dnnl_dims_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &t) { raw in
            let p = raw.bindMemory(to: dnnl_dim_t.self)
            for (i, v) in values.enumerated() { p[i] = dnnl_dim_t(v) }
        }
        return t
    }

    static func queryMD(_ pd: dnnl_primitive_desc_t, _ what: dnnl_query_t) -> dnnl_memory_desc_t {
        dnnl_primitive_desc_query_md(pd, what, 0)?.pointee ?? dnnl_memory_desc_t()
    }

    /// Attributes every primitive is created with: the scratchpad is ours (`user` mode), given
    /// to each execution, rather than oneDNN's process-wide one, which creating a primitive on
    /// one thread may reallocate while a primitive executes on another (a crash we hit).
    static func makeAttributes(_ op: String) throws(TensorError) -> dnnl_primitive_attr_t {
        var attributes: dnnl_primitive_attr_t?
        try check(dnnl_primitive_attr_create(&attributes), op)
        try check(dnnl_primitive_attr_set_scratchpad_mode(attributes, dnnl_scratchpad_mode_user), op)
        return attributes!
    }

    /// Runs a primitive over the given (argument, pointer, descriptor) triples and waits.
    func execute(
        _ primitive: DNNLPrimitive, _ args: [(Int32, UnsafeMutableRawPointer, dnnl_memory_desc_t)], _ op: String
    ) throws(TensorError) {
        var args = args
        let scratchpad =
            primitive.scratchpadBytes > 0
            ? StagedBuffer(
                BufferPool.shared.allocate(bytes: primitive.scratchpadBytes), pooledBytes: primitive.scratchpadBytes)
            : nil
        if let scratchpad { args.append((DNNL_ARG_SCRATCHPAD, scratchpad.pointer, primitive.scratchpad)) }
        var memories: [dnnl_memory_t] = []
        defer { memories.forEach { dnnl_memory_destroy($0) } }
        var execArgs: [dnnl_exec_arg_t] = []
        for (arg, pointer, descriptor) in args {
            var md = descriptor
            var memory: dnnl_memory_t?
            try DNNL.check(dnnl_memory_create(&memory, &md, engine, pointer), op)
            memories.append(memory!)
            execArgs.append(dnnl_exec_arg_t(arg: arg, memory: memory!))
        }
        executionLock.lock()
        defer { executionLock.unlock() }
        try DNNL.check(dnnl_primitive_execute(primitive.handle, stream, Int32(execArgs.count), execArgs), op)
        try DNNL.check(dnnl_stream_wait(stream), op)
    }
}

/// A primitive and the scratchpad its executions need (created with `DNNL.makeAttributes`).
final class DNNLPrimitive: @unchecked Sendable {
    let handle: dnnl_primitive_t
    let scratchpad: dnnl_memory_desc_t
    let scratchpadBytes: Int

    init(_ pd: dnnl_primitive_desc_t, _ op: String) throws(TensorError) {
        var primitive: dnnl_primitive_t?
        try DNNL.check(dnnl_primitive_create(&primitive, pd), op)
        handle = primitive!
        var scratchpad = DNNL.queryMD(pd, dnnl_query_scratchpad_md)
        scratchpadBytes = dnnl_memory_desc_get_size(&scratchpad)
        self.scratchpad = scratchpad
    }

    deinit { dnnl_primitive_destroy(handle) }
}

/// A buffer in the layout a primitive wants, and the reorder that fills it from (or drains it
/// into) our plain layout. When the layouts agree no buffer or reorder exists.
final class LayoutBridge: @unchecked Sendable {
    let plain: dnnl_memory_desc_t
    let wanted: dnnl_memory_desc_t
    private let toWanted: DNNLPrimitive?
    private let toPlain: DNNLPrimitive?
    let bytes: Int
    /// Whether the wanted layout is the plain one in bfloat16: staging only rounds, so a tensor's
    /// bfloat16 copy (BFloat16Copies.swift) can stand in for the staged buffer.
    let onlyRounds: Bool

    init(plain: dnnl_memory_desc_t, wanted: dnnl_memory_desc_t, _ op: String) throws(TensorError) {
        var plain = plain
        var wanted = wanted
        self.plain = plain
        self.wanted = wanted
        bytes = dnnl_memory_desc_get_size(&wanted)
        var rounded = plain
        rounded.data_type = dnnl_bf16
        onlyRounds = plain.data_type == dnnl_f32 && dnnl_memory_desc_equal(&rounded, &wanted) != 0
        if dnnl_memory_desc_equal(&plain, &wanted) != 0 {
            toWanted = nil
            toPlain = nil
            return
        }
        let engine = DNNL.shared.engine
        let attributes = try DNNL.makeAttributes(op)
        defer { dnnl_primitive_attr_destroy(attributes) }
        var pd: dnnl_primitive_desc_t?
        try DNNL.check(dnnl_reorder_primitive_desc_create(&pd, &plain, engine, &wanted, engine, attributes), op)
        defer { dnnl_primitive_desc_destroy(pd) }
        toWanted = try DNNLPrimitive(pd!, op)
        var back: dnnl_primitive_desc_t?
        try DNNL.check(dnnl_reorder_primitive_desc_create(&back, &wanted, engine, &plain, engine, attributes), op)
        defer { dnnl_primitive_desc_destroy(back) }
        toPlain = try DNNLPrimitive(back!, op)
    }

    var isIdentity: Bool { toWanted == nil }

    /// Whether `other` stages data in the same layout, so that one staged copy serves both.
    func wants(as other: LayoutBridge) -> Bool {
        var (a, b) = (wanted, other.wanted)
        return dnnl_memory_desc_equal(&a, &b) != 0
    }

    /// The data of `source` in the wanted layout: `source` itself, or a reordered copy.
    func staged(from source: UnsafeRawPointer, _ op: String) throws(TensorError) -> StagedBuffer {
        guard toWanted != nil else { return StagedBuffer(UnsafeMutableRawPointer(mutating: source), pooledBytes: nil) }
        return try copied(from: source, op)
    }

    /// `tensor`'s values in the wanted layout: its bfloat16 copy where staging would only round.
    func staged(_ tensor: Tensor, _ op: String) throws(TensorError) -> StagedBuffer {
        if onlyRounds, let copy = tensor.bfloat16Copy {
            return StagedBuffer(UnsafeMutableRawPointer(mutating: copy), pooledBytes: nil)
        }
        return try staged(from: tensor.pointer, op)
    }

    /// A new buffer holding the data of `source` in the wanted layout (a copy when the layouts agree).
    func copied(from source: UnsafeRawPointer, _ op: String) throws(TensorError) -> StagedBuffer {
        let buffer = StagedBuffer(BufferPool.shared.allocate(bytes: bytes), pooledBytes: bytes)
        try reorder(from: source, into: buffer.pointer, op)
        return buffer
    }

    /// Writes the data of `source` in the wanted layout to `destination` (`bytes` of room).
    func reorder(from source: UnsafeRawPointer, into destination: UnsafeMutableRawPointer, _ op: String)
        throws(TensorError)
    {
        guard let toWanted else {
            destination.copyMemory(from: source, byteCount: bytes)
            return
        }
        try DNNL.shared.execute(
            toWanted,
            [(DNNL_ARG_FROM, UnsafeMutableRawPointer(mutating: source), plain), (DNNL_ARG_TO, destination, wanted)],
            op)
    }

    /// Where a primitive writes output destined for `destination`: it, or a buffer to drain.
    func stagedOutput(_ destination: UnsafeMutableRawPointer) -> StagedBuffer {
        toPlain == nil
            ? StagedBuffer(destination, pooledBytes: nil)
            : StagedBuffer(BufferPool.shared.allocate(bytes: bytes), pooledBytes: bytes)
    }

    /// Reorders a staged output into our plain layout at `destination` (nothing when identical).
    func drain(_ staged: StagedBuffer, into destination: UnsafeMutableRawPointer, _ op: String) throws(TensorError) {
        guard let toPlain else { return }
        try DNNL.shared.execute(
            toPlain, [(DNNL_ARG_FROM, staged.pointer, wanted), (DNNL_ARG_TO, destination, plain)], op)
    }

}

/// Data in a primitive's layout; a temporary buffer goes back to the pool when released.
final class StagedBuffer {
    let pointer: UnsafeMutableRawPointer
    private let pooledBytes: Int?

    init(_ pointer: UnsafeMutableRawPointer, pooledBytes: Int?) {
        self.pointer = pointer
        self.pooledBytes = pooledBytes
    }

    deinit {
        if let pooledBytes { BufferPool.shared.release(pointer, bytes: pooledBytes) }
    }
}
