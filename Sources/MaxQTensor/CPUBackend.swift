// The CPU backend: oneDNN for convolution, OpenBLAS for matrix products, our own parallel
// loops for normalisation, pooling, point-wise and loss kernels (see the CPUBackend+*.swift files).
import COpenBLAS
import Foundation

public final class CPUBackend: Backend, @unchecked Sendable {
    public static let shared = CPUBackend()
    public let name = "cpu"

    private let lock = NSLock()
    private var convolutionPlans: [ConvolutionKey: ConvolutionPlan] = [:]

    private init() {
        openblas_set_num_threads(Int32(Threading.count))
    }

    func convolutionPlan(_ key: ConvolutionKey) throws(TensorError) -> ConvolutionPlan {
        lock.lock()
        defer { lock.unlock() }
        if let plan = convolutionPlans[key] { return plan }
        let plan = try ConvolutionPlan(key)
        convolutionPlans[key] = plan
        return plan
    }

    public static var openBLASVersion: String {
        String(cString: openblas_get_config())
    }
}

extension CPUBackend {
    public static var oneDNNVersion: String { DNNL.version }
}
