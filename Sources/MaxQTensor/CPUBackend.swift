// The CPU backend: oneDNN for convolution, OpenBLAS for matrix products, our own parallel
// loops for normalisation, pooling, point-wise and loss kernels (see the CPUBackend+*.swift files).
import COpenBLAS
import Foundation

public final class CPUBackend: Backend, @unchecked Sendable {
    public static let shared = CPUBackend()
    public let name = "cpu"

    private let lock = NSLock()
    private var convolutionPlans: [ConvolutionKey: ConvolutionPlan] = [:]

    /// OpenBLAS runs in the calling thread; our matrix products split their columns across OpenMP's pool
    /// instead (`gemmSplittingColumns`). With OpenBLAS's own pool, its idle worker went on calling
    /// sched_yield for a while after every product, holding one of this 2-core machine's cores from the
    /// OpenMP workers of the convolutions that followed (mobilenet_v1's evaluation at batch 16 ran
    /// 1.04-1.06x faster without it, passes alternated in one process; resnet50's 1.00-1.02x).
    private init() {
        openblas_set_num_threads(1)
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
