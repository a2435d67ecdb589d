// 2-D convolution (forward, gradient to input, gradient to weight) through oneDNN primitives.
// oneDNN picks its own blocked layouts (format `any`); our NCHW/OIHW tensors are reordered in
// and out, as PyTorch does. Primitives are built once per shape and precision and reused. In
// bf16 the primitives read bfloat16 inputs and write float32 outputs: the reorders into their
// layouts round our float32 tensors on the way, so bf16 costs no pass of its own. Activations
// may also be channel-blocked (ChannelBlocks.swift), the layout oneDNN computes in on AVX-512:
// then they go in and out without reorders, and in bf16 a tensor's bfloat16 copy, where the kernel
// that wrote it made one (BFloat16Copies.swift), stands in for the rounding.
import CDNNL
import Foundation

struct ConvolutionKey: Hashable {
    var input: [Int]  // (N, C, H, W)
    var weight: [Int]  // (O, C/groups, k, k)
    var geometry: Conv2dGeometry
    /// Inference with a bias and this activation fused in (oneDNN post-op); no backward.
    var inference: InferenceEpilogue?
    var precision: Precision
    /// How the input (and its gradient) and the output (and its gradient) are stored.
    var inputLayout = TensorLayout.nchw
    var outputLayout = TensorLayout.nchw

    /// oneDNN's type for what the primitives read (outputs are always float32).
    var inputType: dnnl_data_type_t { precision == .bf16 ? dnnl_bf16 : dnnl_f32 }

    var output: [Int] {
        let k = weight[2]
        let h = (input[2] + 2 * geometry.padding - k) / geometry.stride + 1
        let w = (input[3] + 2 * geometry.padding - weight[3]) / geometry.stride + 1
        return [input[0], weight[0], h, w]
    }

    /// oneDNN's weight dims: 5-D (G, O/G, I/G, kh, kw) for grouped convolutions.
    var dnnlWeight: [Int] {
        geometry.groups == 1 ? weight : [geometry.groups, weight[0] / geometry.groups] + weight[1...]
    }
}

final class ConvolutionPlan: @unchecked Sendable {
    private let key: ConvolutionKey
    private let forwardPD: dnnl_primitive_desc_t
    private let forward: DNNLPrimitive
    private let source, weights, destination: LayoutBridge
    private let bias: dnnl_memory_desc_t?
    private var backward: Backward?
    private let backwardLock = NSLock()

    /// Backward primitives, built on first use (evaluation never needs them).
    private struct Backward {
        var data, weight: DNNLPrimitive
        var pds: [dnnl_primitive_desc_t]
        var dataDiffDst, dataWeights, dataDiffSrc: LayoutBridge
        var weightSrc, weightDiffDst, weightDiffWeights: LayoutBridge

        /// Both primitives read dy in the same layout: one staged copy serves both.
        var sharesDiffDst: Bool { dataDiffDst.wants(as: weightDiffDst) }
    }

    init(_ key: ConvolutionKey) throws(TensorError) {
        self.key = key
        let op = "conv2d \(key.input) * \(key.weight)"
        let plain = try Self.plainDescs(key)
        var src = try DNNL.memoryDesc(key.input, dnnl_format_tag_any, key.inputType)
        var wei = try DNNL.memoryDesc(key.dnnlWeight, dnnl_format_tag_any, key.inputType)
        var dst = try DNNL.memoryDesc(key.output, dnnl_format_tag_any)
        var desc = dnnl_convolution_desc_t()
        var biasMD = key.inference == nil ? nil : try DNNL.memoryDesc([key.weight[0]], dnnl_a)
        try Self.withGeometry(key.geometry) { (s, p) throws(TensorError) in
            let status =
                biasMD == nil
                ? dnnl_convolution_forward_desc_init(
                    &desc, dnnl_forward_training, dnnl_convolution_direct, &src, &wei, nil, &dst, s, p, p)
                : dnnl_convolution_forward_desc_init(
                    &desc, dnnl_forward_training, dnnl_convolution_direct, &src, &wei, &biasMD!, &dst, s, p, p)
            try DNNL.check(status, op)
        }
        let attributes = try DNNL.makeAttributes(op)
        defer { dnnl_primitive_attr_destroy(attributes) }
        try key.inference?.addPostOps(to: attributes, op)
        var pd: dnnl_primitive_desc_t?
        try DNNL.check(dnnl_primitive_desc_create(&pd, &desc, attributes, DNNL.shared.engine, nil), op)
        forwardPD = pd!
        forward = try DNNLPrimitive(forwardPD, op)
        source = try LayoutBridge(plain: plain.src, wanted: DNNL.queryMD(forwardPD, dnnl_query_src_md), op)
        weights = try LayoutBridge(plain: plain.wei, wanted: DNNL.queryMD(forwardPD, dnnl_query_weights_md), op)
        destination = try LayoutBridge(plain: plain.dst, wanted: DNNL.queryMD(forwardPD, dnnl_query_dst_md), op)
        bias = biasMD  // given in the plain layout `a`, which oneDNN keeps for biases
    }

    private static func plainDescs(_ key: ConvolutionKey) throws(TensorError) -> (
        src: dnnl_memory_desc_t, wei: dnnl_memory_desc_t, dst: dnnl_memory_desc_t
    ) {
        (
            try DNNL.memoryDesc(key.input, key.inputLayout.dnnlTag),
            try DNNL.memoryDesc(key.dnnlWeight, key.geometry.groups == 1 ? dnnl_oihw : dnnl_goihw),
            try DNNL.memoryDesc(key.output, key.outputLayout.dnnlTag)
        )
    }

    /// `body` with the geometry's strides and padding as oneDNN's (height, width) arrays.
    static func withGeometry(
        _ g: Conv2dGeometry,
        _ body: (UnsafePointer<dnnl_dim_t>, UnsafePointer<dnnl_dim_t>) throws(TensorError) -> Void
    ) throws(TensorError) {
        let strides: [dnnl_dim_t] = [dnnl_dim_t(g.stride), dnnl_dim_t(g.stride)]
        let padding: [dnnl_dim_t] = [dnnl_dim_t(g.padding), dnnl_dim_t(g.padding)]
        var failure: TensorError?
        strides.withUnsafeBufferPointer { s in
            padding.withUnsafeBufferPointer { p in
                do throws(TensorError) { try body(s.baseAddress!, p.baseAddress!) } catch { failure = error }
            }
        }
        if let failure { throw failure }
    }

    private func makeBackward() throws(TensorError) -> Backward {
        backwardLock.lock()
        defer { backwardLock.unlock() }
        if let backward { return backward }
        let op = "conv2d backward \(key.input) * \(key.weight)"
        let plain = try Self.plainDescs(key)
        // Gradients are written in float32; what they are computed from is read in the key's type.
        var src = try DNNL.memoryDesc(key.input, dnnl_format_tag_any, key.inputType)
        var diffSrc = try DNNL.memoryDesc(key.input, dnnl_format_tag_any)
        var wei = try DNNL.memoryDesc(key.dnnlWeight, dnnl_format_tag_any, key.inputType)
        var diffWei = try DNNL.memoryDesc(key.dnnlWeight, dnnl_format_tag_any)
        var diffDst = try DNNL.memoryDesc(key.output, dnnl_format_tag_any, key.inputType)
        var dataDesc = dnnl_convolution_desc_t()
        var weightDesc = dnnl_convolution_desc_t()
        try Self.withGeometry(key.geometry) { (s, p) throws(TensorError) in
            try DNNL.check(
                dnnl_convolution_backward_data_desc_init(
                    &dataDesc, dnnl_convolution_direct, &diffSrc, &wei, &diffDst, s, p, p), op)
            try DNNL.check(
                dnnl_convolution_backward_weights_desc_init(
                    &weightDesc, dnnl_convolution_direct, &src, &diffWei, nil, &diffDst, s, p, p), op)
        }
        var dataPD: dnnl_primitive_desc_t?
        var weightPD: dnnl_primitive_desc_t?
        let attributes = try DNNL.makeAttributes(op)
        defer { dnnl_primitive_attr_destroy(attributes) }
        try DNNL.check(dnnl_primitive_desc_create(&dataPD, &dataDesc, attributes, DNNL.shared.engine, forwardPD), op)
        try DNNL.check(
            dnnl_primitive_desc_create(&weightPD, &weightDesc, attributes, DNNL.shared.engine, forwardPD), op)
        let made = Backward(
            data: try DNNLPrimitive(dataPD!, op),
            weight: try DNNLPrimitive(weightPD!, op),
            pds: [dataPD!, weightPD!],
            dataDiffDst: try LayoutBridge(plain: plain.dst, wanted: DNNL.queryMD(dataPD!, dnnl_query_diff_dst_md), op),
            dataWeights: try LayoutBridge(plain: plain.wei, wanted: DNNL.queryMD(dataPD!, dnnl_query_weights_md), op),
            dataDiffSrc: try LayoutBridge(plain: plain.src, wanted: DNNL.queryMD(dataPD!, dnnl_query_diff_src_md), op),
            weightSrc: try LayoutBridge(plain: plain.src, wanted: DNNL.queryMD(weightPD!, dnnl_query_src_md), op),
            weightDiffDst: try LayoutBridge(
                plain: plain.dst, wanted: DNNL.queryMD(weightPD!, dnnl_query_diff_dst_md), op),
            weightDiffWeights: try LayoutBridge(
                plain: plain.wei, wanted: DNNL.queryMD(weightPD!, dnnl_query_diff_weights_md), op))
        backward = made
        return made
    }

    func runForward(_ x: Tensor, _ w: Tensor, bias b: Tensor? = nil) throws(TensorError) -> Tensor {
        let (x, w) = (x.inLayout(key.inputLayout), w.inNCHW())
        let y = Tensor(uninitializedShape: key.output, layout: key.outputLayout)
        var extra: [(Int32, UnsafeMutableRawPointer, dnnl_memory_desc_t)] = []
        if let b, let bias { extra.append((DNNL_ARG_BIAS, UnsafeMutableRawPointer(mutating: b.pointer), bias)) }
        try run(
            forward, "conv2d \(key.input) * \(key.weight)",
            [(DNNL_ARG_SRC, source, try stage(x, source)), (DNNL_ARG_WEIGHTS, weights, try stage(w, weights))],
            (DNNL_ARG_DST, destination, y), extra: extra)
        // Staging may hand oneDNN pointers into `x` and `w` (their values or bfloat16 copies): they live
        // until the primitive has run, converted or not.
        withExtendedLifetime((x, w, b)) {}
        return y
    }

    /// The gradient to the input (given the weights `w`) and to the weights (given the input `x`);
    /// dy is staged once for both when the two primitives read it in the same layout.
    func runBackward(_ dy: Tensor, weights w: Tensor?, input x: Tensor?) throws(TensorError) -> (
        input: Tensor?, weight: Tensor?
    ) {
        let b = try makeBackward()
        let op = "conv2d backward \(key.input) * \(key.weight)"
        let (dy, w, x) = (dy.inLayout(key.outputLayout), w?.inNCHW(), x?.inLayout(key.inputLayout))
        var stagedDy: StagedBuffer?
        var dx: Tensor?, dw: Tensor?
        if let w {
            let staged = try b.dataDiffDst.staged(dy, op)
            dx = Tensor(uninitializedShape: key.input, layout: key.inputLayout)
            try run(
                b.data, op,
                [
                    (DNNL_ARG_DIFF_DST, b.dataDiffDst, staged),
                    (DNNL_ARG_WEIGHTS, b.dataWeights, try stage(w, b.dataWeights)),
                ],
                (DNNL_ARG_DIFF_SRC, b.dataDiffSrc, dx!))
            stagedDy = staged
        }
        if let x {
            let staged: StagedBuffer
            if let stagedDy, b.sharesDiffDst {
                staged = stagedDy
            } else {
                staged = try b.weightDiffDst.staged(dy, op)
            }
            dw = Tensor(uninitializedShape: key.weight)
            try run(
                b.weight, op,
                [(DNNL_ARG_DIFF_DST, b.weightDiffDst, staged), (DNNL_ARG_SRC, b.weightSrc, try stage(x, b.weightSrc))],
                (DNNL_ARG_DIFF_WEIGHTS, b.weightDiffWeights, dw!))
        }
        withExtendedLifetime((dy, w, x)) {}  // staged pointers into them were read until here
        return (dx, dw)
    }

    private func stage(_ tensor: Tensor, _ bridge: LayoutBridge) throws(TensorError) -> StagedBuffer {
        try bridge.staged(tensor, "conv2d \(key.input) * \(key.weight)")
    }

    /// Runs a primitive on inputs already in its layouts and drains the output into `output`'s tensor.
    private func run(
        _ primitive: DNNLPrimitive, _ op: String, _ inputs: [(Int32, LayoutBridge, StagedBuffer)],
        _ output: (Int32, LayoutBridge, Tensor), extra: [(Int32, UnsafeMutableRawPointer, dnnl_memory_desc_t)] = []
    ) throws(TensorError) {
        let out = output.1.stagedOutput(output.2.mutablePointer)
        var args = inputs.map { ($0.0, $0.2.pointer, $0.1.wanted) }
        args.append((output.0, out.pointer, output.1.wanted))
        try DNNL.shared.execute(primitive, args + extra, op)
        try output.1.drain(out, into: output.2.mutablePointer, op)
    }

    deinit {
        dnnl_primitive_desc_destroy(forwardPD)
        backward?.pds.forEach { dnnl_primitive_desc_destroy($0) }
    }
}

extension CPUBackend {
    /// Validates shapes and returns the plan's key; every error names both shapes.
    static func convolutionKey(
        _ input: [Int], _ weight: [Int], _ g: Conv2dGeometry, inference: InferenceEpilogue? = nil,
        precision: Precision = .fp32
    ) throws(TensorError) -> ConvolutionKey {
        guard input.count == 4 else {
            throw .invalidShape(op: "conv2d", shape: input, reason: "input must be (N, C, H, W)")
        }
        guard weight.count == 4, weight[2] > 0, weight[3] > 0 else {
            throw .invalidShape(op: "conv2d", shape: weight, reason: "weight must be (O, C/groups, kh, kw)")
        }
        guard g.stride >= 1, g.padding >= 0, g.groups >= 1 else {
            throw .invalidArgument(op: "conv2d", reason: "stride \(g.stride), padding \(g.padding), groups \(g.groups)")
        }
        guard input[1] == weight[1] * g.groups, weight[0] % g.groups == 0 else {
            throw .shapeMismatch(op: "conv2d (groups \(g.groups))", input, weight)
        }
        let key = ConvolutionKey(input: input, weight: weight, geometry: g, inference: inference, precision: precision)
        guard key.output[2] > 0, key.output[3] > 0 else {
            throw .shapeMismatch(op: "conv2d: kernel larger than padded input", input, weight)
        }
        return key
    }

    public func conv2d(_ x: Tensor, _ w: Tensor, _ geometry: Conv2dGeometry, precision: Precision)
        throws(TensorError) -> Tensor
    {
        var key = try Self.convolutionKey(x.shape, w.shape, geometry, precision: precision)
        (key.inputLayout, key.outputLayout) = (x.layout, TensorLayout.forOutput(key.output))
        return try convolutionPlan(key).runForward(x, w)
    }

    public func conv2dInference(
        _ x: Tensor, _ w: Tensor, bias: Tensor, _ geometry: Conv2dGeometry, activation: Activation?,
        precision: Precision
    ) throws(TensorError) -> Tensor {
        let fused = activation.flatMap { InferenceEpilogue(fusing: $0) }
        var key = try Self.convolutionKey(
            x.shape, w.shape, geometry, inference: fused ?? InferenceEpilogue(activation: nil), precision: precision)
        (key.inputLayout, key.outputLayout) = (x.layout, TensorLayout.forOutput(key.output))
        guard bias.shape == [w.shape[0]] else { throw .shapeMismatch(op: "conv2d bias", w.shape, bias.shape) }
        let y = try convolutionPlan(key).runForward(x, w, bias: bias)
        // Activations oneDNN cannot fuse here run as a separate pass.
        guard let activation, fused == nil else { return y }
        return self.activation(activation, y)
    }

    public func conv2dBackwardInput(
        _ dy: Tensor, _ w: Tensor, inputShape: [Int], _ geometry: Conv2dGeometry, precision: Precision
    ) throws(TensorError) -> Tensor {
        var key = try Self.convolutionKey(inputShape, w.shape, geometry, precision: precision)
        guard dy.shape == key.output else { throw .shapeMismatch(op: "conv2d backward", dy.shape, key.output) }
        key.outputLayout = dy.layout
        return try convolutionPlan(key).runBackward(dy, weights: w, input: nil).input!
    }

    public func conv2dBackwardWeight(
        _ dy: Tensor, _ x: Tensor, weightShape: [Int], _ geometry: Conv2dGeometry, precision: Precision
    ) throws(TensorError) -> Tensor {
        var key = try Self.convolutionKey(x.shape, weightShape, geometry, precision: precision)
        guard dy.shape == key.output else { throw .shapeMismatch(op: "conv2d backward", dy.shape, key.output) }
        (key.inputLayout, key.outputLayout) = (x.layout, dy.layout)
        return try convolutionPlan(key).runBackward(dy, weights: nil, input: x).weight!
    }
}

extension CPUBackend {
    /// The input's gradient in the input's layout.
    public func conv2dBackward(
        _ dy: Tensor, input x: Tensor, weight w: Tensor, _ geometry: Conv2dGeometry, inputGradient: Bool,
        weightGradient: Bool, precision: Precision, inputGradientPrecision: Precision
    ) throws(TensorError) -> (input: Tensor?, weight: Tensor?) {
        var key = try Self.convolutionKey(x.shape, w.shape, geometry, precision: precision)
        guard dy.shape == key.output else { throw .shapeMismatch(op: "conv2d backward", dy.shape, key.output) }
        (key.inputLayout, key.outputLayout) = (x.layout, dy.layout)
        guard inputGradient, inputGradientPrecision != precision else {
            guard inputGradient || weightGradient else { return (nil, nil) }
            return try convolutionPlan(key).runBackward(
                dy, weights: inputGradient ? w : nil, input: weightGradient ? x : nil)
        }
        var inputKey = key
        inputKey.precision = inputGradientPrecision
        return (
            try convolutionPlan(inputKey).runBackward(dy, weights: w, input: nil).input,
            weightGradient ? try convolutionPlan(key).runBackward(dy, weights: nil, input: x).weight : nil
        )
    }
}

/// What an inference convolution applies after the bias: optionally the sum with what the output
/// buffer holds (oneDNN's `sum` post-op, for a residual addition), then nothing, ReLU or ReLU6
/// (the `relu` and `clip(0, 6)` post-ops).
struct InferenceEpilogue: Hashable {
    var activation: Activation?
    var sum = false

    init(activation: Activation?, sum: Bool = false) { (self.activation, self.sum) = (activation, sum) }

    /// Nil when the activation has no fused form.
    init?(fusing activation: Activation, sum: Bool = false) {
        guard activation == .relu || activation == .relu6 else { return nil }
        (self.activation, self.sum) = (activation, sum)
    }

    func addPostOps(to attributes: dnnl_primitive_attr_t, _ op: String) throws(TensorError) {
        guard sum || activation != nil else { return }
        var postOps: dnnl_post_ops_t?
        try DNNL.check(dnnl_post_ops_create(&postOps), op)
        defer { dnnl_post_ops_destroy(postOps) }
        if sum { try DNNL.check(dnnl_post_ops_append_sum(postOps, 1), op) }
        if let activation {
            let (kind, alpha, beta): (dnnl_alg_kind_t, Float, Float) =
                activation == .relu ? (dnnl_eltwise_relu, 0, 0) : (dnnl_eltwise_clip, 0, 6)
            try DNNL.check(dnnl_post_ops_append_eltwise(postOps, 1, kind, alpha, beta), op)
        }
        try DNNL.check(dnnl_primitive_attr_set_post_ops(attributes, postOps), op)
    }
}
