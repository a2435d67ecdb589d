// PyTorch checkpoints (`torch.save`'s zip archive of a pickle and raw storages): reading the
// reference layout `{"state_dict": ..., "epoch": ...}` or a bare state dict, and writing the
// reference layout so that `torch.load` (weights_only, PyTorch's default) reads it.
import Foundation
import MaxQTensor

public struct TorchCheckpoint {
    /// Tensors of the state dict, in file order, names as stored.
    public var stateDict: [(name: String, tensor: Tensor)]
    public var epoch: Int?
    public var arch: String?
    public var bestAcc1: Double?
    /// The whole unpickled object, for anything else a caller wants.
    public var root: PickleValue?

    public init(
        stateDict: [(name: String, tensor: Tensor)], epoch: Int? = nil, arch: String? = nil, bestAcc1: Double? = nil
    ) {
        self.stateDict = stateDict
        self.epoch = epoch
        self.arch = arch
        self.bestAcc1 = bestAcc1
    }

    public static func read(path: String) throws -> TorchCheckpoint {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe) } catch {
            throw SafetensorsError.unreadable(path: path, reason: FileProblem.describe(path, error))
        }
        return try decode(data, path: path)
    }

    /// The checkpoint in `data` (a file's bytes; `path` names it in errors).
    public static func decode(_ data: Data, path: String = "<memory>") throws -> TorchCheckpoint {
        if data.prefix(2) == Data([0x80, 0x02]) || data.prefix(1) == Data([0x80]) {
            throw ZipError.malformed(
                path: path, reason: "legacy (pre-1.6) PyTorch format; re-save it with a current torch.save")
        }
        let archive = try ZipArchive(data: data, path: path)
        guard let pickleName = archive.entries.keys.first(where: { $0.hasSuffix("/data.pkl") || $0 == "data.pkl" })
        else {
            throw ZipError.malformed(path: path, reason: "no data.pkl entry")
        }
        let prefix = String(pickleName.dropLast("data.pkl".count))
        var unpickler = Unpickler(archive.contents(pickleName)!) { key in
            guard let storage = archive.contents("\(prefix)data/\(key)") else {
                throw ZipError.malformed(path: path, reason: "storage '\(key)' is missing")
            }
            return storage
        }
        let root: PickleValue
        do { root = try unpickler.load() } catch let error as PickleError {
            throw ZipError.malformed(path: path, reason: error.description)
        }
        let stateValue = root["state_dict"] ?? root["model"] ?? root
        guard case .dict(let dict) = stateValue else {
            throw ZipError.malformed(path: path, reason: "holds no state dict (a dict of tensors)")
        }
        var checkpoint = TorchCheckpoint(
            stateDict: dict.items.compactMap { item in
                guard let name = item.key.string, case .tensor(let t) = item.value else { return nil }
                return (name, t)
            },
            epoch: root["epoch"]?.int, arch: root["arch"]?.string, bestAcc1: root["best_acc1"]?.double)
        checkpoint.root = root
        return checkpoint
    }

    /// The reference layout: {"epoch", "arch", "state_dict", "best_acc1", "optimizer"}, where
    /// `optimizer` is an SGD state dict when momentum buffers are given (in parameter order).
    public func write(path: String, optimizer: SGDState? = nil) throws {
        var pickle = PickleWriter()
        var storages: [(String, Data)] = []
        pickle.op(0x80, 2)
        pickle.op(0x7D)
        pickle.op(0x28)
        pickle.string("epoch"); pickle.int(epoch ?? 0)
        pickle.string("arch"); pickle.string(arch ?? "")
        pickle.string("state_dict")
        pickle.orderedDict(stateDict, storages: &storages)
        pickle.string("best_acc1"); pickle.float(bestAcc1 ?? 0)
        if let optimizer {
            pickle.string("optimizer")
            optimizer.pickle(&pickle, storages: &storages)
        }
        pickle.op(0x75)
        pickle.op(0x2E)
        try Self.archive(pickle.data, storages, to: path)
    }

    /// A bare state dict, as `torch.save(model.state_dict())` writes it (what torchvision's
    /// `load_state_dict(torch.load(path))` takes).
    public func writeStateDict(path: String) throws {
        var pickle = PickleWriter()
        var storages: [(String, Data)] = []
        pickle.op(0x80, 2)
        pickle.orderedDict(stateDict, storages: &storages)
        pickle.op(0x2E)
        try Self.archive(pickle.data, storages, to: path)
    }

    /// torch.save's zip layout: the pickle, its storages, byte order and version under one folder.
    private static func archive(_ pickle: Data, _ storages: [(String, Data)], to path: String) throws {
        let root = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent.replacingOccurrences(
            of: ".", with: "_")
        var zip = ZipWriter()
        zip.add("\(root)/data.pkl", pickle)
        zip.add("\(root)/byteorder", Data("little".utf8))
        for (key, bytes) in storages { zip.add("\(root)/data/\(key)", bytes) }
        zip.add("\(root)/version", Data("3\n".utf8))
        try AtomicWrite.write(zip.finished(), to: path)
    }
}

/// An SGD optimizer's state as PyTorch's `optimizer.state_dict()` lays it out.
public struct SGDState {
    public var momentumBuffers: [Tensor?]
    public var learningRate: Double, momentum: Double, weightDecay: Double, nesterov: Bool

    public init(momentumBuffers: [Tensor?], learningRate: Double, momentum: Double, weightDecay: Double, nesterov: Bool)
    {
        self.momentumBuffers = momentumBuffers
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.nesterov = nesterov
    }

    func pickle(_ p: inout PickleWriter, storages: inout [(String, Data)]) {
        p.op(0x7D); p.op(0x28)
        p.string("state"); p.op(0x7D); p.op(0x28)
        for (i, buffer) in momentumBuffers.enumerated() {
            guard let buffer else { continue }
            p.int(i); p.op(0x7D); p.string("momentum_buffer"); p.tensor(buffer, storages: &storages); p.op(0x73)
        }
        p.op(0x75)
        p.string("param_groups"); p.op(0x5D); p.op(0x7D); p.op(0x28)
        p.string("lr"); p.float(learningRate)
        p.string("momentum"); p.float(momentum)
        p.string("dampening"); p.int(0)
        p.string("weight_decay"); p.float(weightDecay)
        p.string("nesterov"); p.op(nesterov ? 0x88 : 0x89)
        p.string("maximize"); p.op(0x89)
        p.string("foreach"); p.op(0x4E)
        p.string("differentiable"); p.op(0x89)
        p.string("fused"); p.op(0x4E)
        p.string("params"); p.op(0x5D); p.op(0x28)
        for i in momentumBuffers.indices { p.int(i) }
        p.op(0x65)
        p.op(0x75); p.op(0x61)
        p.op(0x75)
    }
}

/// Emits protocol-2 pickle opcodes.
struct PickleWriter {
    private(set) var data = Data()

    mutating func op(_ codes: UInt8...) { data.append(contentsOf: codes) }

    mutating func string(_ s: String) {
        let bytes = Data(s.utf8)
        op(0x58); data.append32(UInt32(bytes.count)); data.append(bytes)
    }

    mutating func int(_ v: Int) {
        if v >= 0 && v < 256 {
            op(0x4B, UInt8(v))
        } else if v >= Int(Int32.min) && v <= Int(Int32.max) {
            op(0x4A); data.append32(UInt32(bitPattern: Int32(v)))
        } else {
            op(0x8A, 8); Swift.withUnsafeBytes(of: Int64(v).littleEndian) { data.append(contentsOf: $0) }
        }
    }

    mutating func float(_ v: Double) {
        op(0x47); Swift.withUnsafeBytes(of: v.bitPattern.bigEndian) { data.append(contentsOf: $0) }
    }

    mutating func global(_ module: String, _ name: String) {
        op(0x63); data.append(Data("\(module)\n\(name)\n".utf8))
    }

    /// An OrderedDict of named tensors (a state dict).
    mutating func orderedDict(_ items: [(name: String, tensor: Tensor)], storages: inout [(String, Data)]) {
        global("collections", "OrderedDict"); op(0x29, 0x52)
        op(0x28)
        for (name, t) in items {
            string(name)
            tensor(t, storages: &storages)
        }
        op(0x75)
    }

    /// A float32 tensor: `_rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())`.
    mutating func tensor(_ t: Tensor, storages: inout [(String, Data)]) {
        let key = "\(storages.count)"
        storages.append((key, t.withUnsafeBufferPointer { Data(buffer: $0) }))
        global("torch._utils", "_rebuild_tensor_v2")
        op(0x28)
        op(0x28); string("storage"); global("torch", "FloatStorage"); string(key); string("cpu"); int(t.count); op(0x74)
        op(0x51)
        int(0)
        op(0x28); t.shape.forEach { int($0) }; op(0x74)
        var strides = [Int](repeating: 1, count: t.rank)
        for d in stride(from: t.rank - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * t.shape[d + 1] }
        op(0x28); strides.forEach { int($0) }; op(0x74)
        op(0x89)
        global("collections", "OrderedDict"); op(0x29, 0x52)
        op(0x74)
        op(0x52)
    }
}
