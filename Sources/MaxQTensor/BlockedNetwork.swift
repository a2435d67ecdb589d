// A network of inference operations run as oneDNN primitives whose values stay in the blocked
// layouts the primitives choose (and, in bf16, in bfloat16) from one operation to the next: the
// image is reordered once on the way in and the result once on the way out, weights once when the
// primitives are built. Layer by layer, every convolution reorders its input from and its output
// back to our NCHW float32 tensors, and a residual addition is a pass of its own; here the addition
// and the activation after it are the convolution's post-operations.
import CDNNL
import Foundation

public final class BlockedNetwork: @unchecked Sendable {
    /// Value 0 is the network's input; operation i produces value i + 1.
    public enum Operation: Sendable {
        /// activation(conv(input) + bias (+ value `adding`)); activation nil, relu or relu6.
        case convolution(
            input: Int, weight: Tensor, bias: Tensor, geometry: Conv2dGeometry, adding: Int?, activation: Activation?)
        case maxPool(input: Int, kernel: Int, stride: Int, padding: Int)
        case globalAveragePool(input: Int)

        var inputs: [Int] {
            switch self {
            case .convolution(let input, _, _, _, let adding, _): [input] + (adding.map { [$0] } ?? [])
            case .maxPool(let input, _, _, _), .globalAveragePool(let input): [input]
            }
        }
    }

    public let operations: [Operation]
    public let precision: Precision
    private let lock = NSLock()
    /// The steps for one input shape, and the reorder of the last value into NCHW float32.
    private var compiled: (shape: [Int], steps: [Step], output: LayoutBridge)?

    /// Throws when an operation reads a value not produced before it, or a convolution's activation
    /// has no fused form.
    public init(_ operations: [Operation], precision: Precision) throws(TensorError) {
        for (index, operation) in operations.enumerated() {
            guard operation.inputs.allSatisfy({ $0 <= index }) else {
                throw .invalidArgument(op: "blocked network", reason: "operation \(index) reads a later value")
            }
            if case .convolution(_, _, _, _, _, let activation?) = operation,
                InferenceEpilogue(fusing: activation) == nil
            {
                throw .invalidArgument(op: "blocked network", reason: "\(activation) is not fused into convolutions")
            }
        }
        (self.operations, self.precision) = (operations, precision)
    }

    /// The last operation's value for `images` (N, C, H, W), as an NCHW float32 tensor.
    public func callAsFunction(_ images: Tensor) throws(TensorError) -> Tensor {
        guard images.rank == 4, !operations.isEmpty else {
            throw .invalidShape(op: "blocked network", shape: images.shape, reason: "input must be (N, C, H, W)")
        }
        let images = images.inNCHW()
        let (steps, output) = try plan(for: images.shape)
        var values: [StagedBuffer?] = Array(repeating: nil, count: operations.count + 1)
        values[0] = StagedBuffer(UnsafeMutableRawPointer(mutating: images.pointer), pooledBytes: nil)
        for (index, step) in steps.enumerated() {
            values[index + 1] = try step.run(values)
            for released in step.releases { values[released] = nil }
        }
        withExtendedLifetime(images) {}  // the first step read a converted `images` through a pointer
        // Back to NCHW float32: a reorder into the result (or a copy where the layout is that already).
        let result = Tensor(uninitializedShape: Self.dims(output.wanted))
        try output.reorder(
            from: values[operations.count]!.pointer, into: UnsafeMutableRawPointer(result.mutablePointer), "output")
        return result
    }

    private func plan(for shape: [Int]) throws(TensorError) -> ([Step], LayoutBridge) {
        lock.lock()
        defer { lock.unlock() }
        if let compiled, compiled.shape == shape { return (compiled.steps, compiled.output) }
        var descs = [try DNNL.memoryDesc(shape, dnnl_nchw)]
        var steps: [Step] = []
        let lastUse = Self.lastUses(operations)
        for (index, operation) in operations.enumerated() {
            let step = try Step(operation, values: descs, type: precision == .bf16 ? dnnl_bf16 : dnnl_f32)
            // Values read for the last time here (never the input, which the caller owns).
            step.releases = operation.inputs.filter { $0 > 0 && lastUse[$0] == index }
            // (never the convolution's own input, which it reads while it writes)
            step.consumesAddend = step.addend.map { $0 > 0 && $0 != step.input && lastUse[$0] == index } ?? false
            descs.append(step.output)
            steps.append(step)
        }
        let last = descs.last!
        let output = try LayoutBridge(
            plain: last, wanted: try DNNL.memoryDesc(Self.dims(last), dnnl_nchw), "blocked network output")
        compiled = (shape, steps, output)
        return (steps, output)
    }

    private static func lastUses(_ operations: [Operation]) -> [Int: Int] {
        var last: [Int: Int] = [:]
        for (index, operation) in operations.enumerated() {
            for input in operation.inputs { last[input] = index }
        }
        return last
    }

    static func dims(_ md: dnnl_memory_desc_t) -> [Int] {
        withUnsafeBytes(of: md.dims) { raw in
            Array(raw.bindMemory(to: dnnl_dim_t.self).prefix(Int(md.ndims)).map { Int($0) })
        }
    }
}

/// One operation's primitive, its input reorder where the value's layout is not the one the
/// primitive wants, and its weights in the primitive's layout.
private final class Step {
    let primitive: DNNLPrimitive
    let input: Int, addend: Int?
    let source: LayoutBridge
    /// The addend reordered into the output's layout (when it is not in it already).
    let addendBridge: LayoutBridge?
    let output: dnnl_memory_desc_t
    let outputBytes: Int
    let weights: (buffer: StagedBuffer, desc: dnnl_memory_desc_t)?
    let bias: (tensor: Tensor, desc: dnnl_memory_desc_t)?
    var releases: [Int] = []
    /// Whether the addend's buffer may become the output (its last use).
    var consumesAddend = false

    init(_ operation: BlockedNetwork.Operation, values: [dnnl_memory_desc_t], type: dnnl_data_type_t)
        throws(TensorError)
    {
        let op = "blocked network \(operation)".prefix(80).description
        let attributes = try DNNL.makeAttributes(op)
        defer { dnnl_primitive_attr_destroy(attributes) }
        let pd: dnnl_primitive_desc_t
        var convolutionKey: ConvolutionKey?  // convolutions only
        switch operation {
        case .convolution(let input, let weight, _, let geometry, let adding, let activation):
            let key = try CPUBackend.convolutionKey(BlockedNetwork.dims(values[input]), weight.shape, geometry)
            convolutionKey = key
            let epilogue = activation.flatMap { InferenceEpilogue(fusing: $0, sum: adding != nil) }
            try (epilogue ?? InferenceEpilogue(activation: nil, sum: adding != nil)).addPostOps(to: attributes, op)
            pd = try Self.convolution(key, type: type, attributes, op)
        case .maxPool(let input, let kernel, let stride, let padding):
            pd = try Self.pooling(
                dnnl_pooling_max, values[input], kernel: kernel, stride: stride, padding: padding, attributes, op)
        case .globalAveragePool(let input):
            let dims = BlockedNetwork.dims(values[input])
            guard dims[2] == dims[3] else {
                throw .invalidShape(op: "blocked network", shape: dims, reason: "global pooling of a non-square plane")
            }
            pd = try Self.pooling(
                dnnl_pooling_avg_exclude_padding, values[input], kernel: dims[2], stride: 1, padding: 0, attributes, op)
        }
        defer { dnnl_primitive_desc_destroy(pd) }
        input = operation.inputs[0]
        primitive = try DNNLPrimitive(pd, op)
        source = try LayoutBridge(plain: values[input], wanted: DNNL.queryMD(pd, dnnl_query_src_md), op)
        var outputMD = DNNL.queryMD(pd, dnnl_query_dst_md)
        (output, outputBytes) = (outputMD, dnnl_memory_desc_get_size(&outputMD))
        guard case .convolution(_, let weight, let bias, let geometry, let adding, _) = operation,
            let key = convolutionKey
        else {
            (addend, addendBridge, weights, self.bias) = (nil, nil, nil, nil)
            return
        }
        addend = adding
        addendBridge = try adding.map { (value) throws(TensorError) in
            try LayoutBridge(plain: values[value], wanted: outputMD, op)
        }
        // The weights in the primitive's layout and type, once.
        let weightBridge = try LayoutBridge(
            plain: try DNNL.memoryDesc(key.dnnlWeight, geometry.groups == 1 ? dnnl_oihw : dnnl_goihw),
            wanted: DNNL.queryMD(pd, dnnl_query_weights_md), op)
        weights = (try weightBridge.copied(from: UnsafeRawPointer(weight.pointer), op), weightBridge.wanted)
        self.bias = (bias, try DNNL.memoryDesc([weight.shape[0]], dnnl_a))
    }

    /// Inference with a bias, every layout left to oneDNN (`any`), inputs and output of `type`.
    private static func convolution(
        _ key: ConvolutionKey, type: dnnl_data_type_t, _ attributes: dnnl_primitive_attr_t, _ op: String
    ) throws(TensorError) -> dnnl_primitive_desc_t {
        var src = try DNNL.memoryDesc(key.input, dnnl_format_tag_any, type)
        var wei = try DNNL.memoryDesc(key.dnnlWeight, dnnl_format_tag_any, type)
        var dst = try DNNL.memoryDesc(key.output, dnnl_format_tag_any, type)
        var bias = try DNNL.memoryDesc([key.weight[0]], dnnl_a)
        var desc = dnnl_convolution_desc_t()
        try ConvolutionPlan.withGeometry(key.geometry) { (s, p) throws(TensorError) in
            try DNNL.check(
                dnnl_convolution_forward_desc_init(
                    &desc, dnnl_forward_inference, dnnl_convolution_direct, &src, &wei, &bias, &dst, s, p, p), op)
        }
        var pd: dnnl_primitive_desc_t?
        try DNNL.check(dnnl_primitive_desc_create(&pd, &desc, attributes, DNNL.shared.engine, nil), op)
        return pd!
    }

    private static func pooling(
        _ kind: dnnl_alg_kind_t, _ source: dnnl_memory_desc_t, kernel: Int, stride: Int, padding: Int,
        _ attributes: dnnl_primitive_attr_t, _ op: String
    ) throws(TensorError) -> dnnl_primitive_desc_t {
        var src = source
        let dims = BlockedNetwork.dims(source)
        let out = dims[2...].map { ($0 + 2 * padding - kernel) / stride + 1 }
        var dst = try DNNL.memoryDesc(Array(dims[0..<2]) + out, dnnl_format_tag_any, source.data_type)
        var desc = dnnl_pooling_v2_desc_t()
        let tuples = [[stride, stride], [kernel, kernel], [0, 0], [padding, padding]].map(DNNL.dimsTuple)
        let status = withUnsafeBytes(of: tuples[0]) { s in
            withUnsafeBytes(of: tuples[1]) { k in
                withUnsafeBytes(of: tuples[2]) { d in
                    withUnsafeBytes(of: tuples[3]) { p in
                        let pointer = { (raw: UnsafeRawBufferPointer) in
                            raw.bindMemory(to: dnnl_dim_t.self).baseAddress!
                        }
                        return dnnl_pooling_v2_forward_desc_init(
                            &desc, dnnl_forward_inference, kind, &src, &dst, pointer(s), pointer(k), pointer(d),
                            pointer(p), pointer(p))
                    }
                }
            }
        }
        try DNNL.check(status, op)
        var pd: dnnl_primitive_desc_t?
        try DNNL.check(dnnl_primitive_desc_create(&pd, &desc, attributes, DNNL.shared.engine, nil), op)
        return pd!
    }

    /// Runs the step on `values`; returns the new value's buffer.
    func run(_ values: [StagedBuffer?]) throws(TensorError) -> StagedBuffer {
        let op = "blocked network"
        let staged = try source.staged(from: values[input]!.pointer, op)
        let destination: StagedBuffer
        if let addend, let addendBridge {
            destination =
                addendBridge.isIdentity && consumesAddend
                ? values[addend]!  // written in place: the sum post-op reads it first
                : try addendBridge.copied(from: values[addend]!.pointer, op)
        } else {
            destination = StagedBuffer(BufferPool.shared.allocate(bytes: outputBytes), pooledBytes: outputBytes)
        }
        var args: [(Int32, UnsafeMutableRawPointer, dnnl_memory_desc_t)] = [
            (DNNL_ARG_SRC, staged.pointer, source.wanted), (DNNL_ARG_DST, destination.pointer, output),
        ]
        if let weights { args.append((DNNL_ARG_WEIGHTS, weights.buffer.pointer, weights.desc)) }
        if let bias {
            args.append((DNNL_ARG_BIAS, UnsafeMutableRawPointer(mutating: bias.tensor.pointer), bias.desc))
        }
        // The staged input must outlive the execution: Swift may end a local's lifetime at its last
        // use (taking its pointer above), and its buffer would go back to the pool, where the
        // execution's scratchpad could take it.
        try withExtendedLifetime(staged) { () throws(TensorError) in try DNNL.shared.execute(primitive, args, op) }
        return destination
    }
}
