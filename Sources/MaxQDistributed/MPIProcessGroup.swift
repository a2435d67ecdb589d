// Data-parallel processes on MPI (Open MPI from Debian, through the CMPI system library): the
// process group that `mpirun -np K maxq train` runs with. Every MPI call returns its error code
// (MPI_ERRORS_RETURN on the communicator), which becomes a typed error naming the call, instead
// of the library's default of aborting in its own words. All calls come from the thread that runs
// the training loop, one at a time (MPI_THREAD_SERIALIZED).
import CMPI
import Foundation
import MaxQNN
import MaxQTensor

public final class MPIProcessGroup: ProcessGroup {
    public let rank: Int
    public let size: Int
    /// Processes on this machine (this one included).
    public let localSize: Int
    private let world = maxq_mpi_comm_world()
    private var requests: [MPI_Request?] = []

    /// Whether a launcher (Open MPI's mpirun, or a PMI-based one such as srun) started this process.
    public static var launched: Bool {
        let environment = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"].contains { environment[$0] != nil }
    }

    /// Joins the processes the launcher started.
    public init() throws(TensorError) {
        var provided: Int32 = 0
        try Self.check(MPI_Init_thread(nil, nil, Int32(MPI_THREAD_SERIALIZED), &provided), "MPI_Init_thread")
        guard provided >= Int32(MPI_THREAD_SERIALIZED) else {
            throw .communication(op: "MPI_Init_thread", message: "the MPI library offers no MPI_THREAD_SERIALIZED")
        }
        try Self.check(MPI_Comm_set_errhandler(world, maxq_mpi_errors_return()), "MPI_Comm_set_errhandler")
        var value: Int32 = 0
        try Self.check(MPI_Comm_rank(world, &value), "MPI_Comm_rank")
        rank = Int(value)
        try Self.check(MPI_Comm_size(world, &value), "MPI_Comm_size")
        size = Int(value)
        var local = maxq_mpi_comm_null()
        try Self.check(
            MPI_Comm_split_type(world, Int32(MPI_COMM_TYPE_SHARED), 0, maxq_mpi_info_null(), &local),
            "MPI_Comm_split_type")
        try Self.check(MPI_Comm_size(local, &value), "MPI_Comm_size")
        localSize = Int(value)
        try Self.check(MPI_Comm_free(&local), "MPI_Comm_free")
    }

    /// The MPI library's own description of itself (first line), e.g. "Open MPI v4.1.4, ...".
    public static var libraryVersion: String {
        var text = [CChar](repeating: 0, count: Int(MPI_MAX_LIBRARY_VERSION_STRING) + 1)
        var length: Int32 = 0
        guard MPI_Get_library_version(&text, &length) == MPI_SUCCESS else { return "unknown MPI library" }
        let version = string(text, length: length)
        return version.split(whereSeparator: \.isNewline).first.map(String.init) ?? version
    }

    public func sum(_ values: inout [Double]) throws(TensorError) {
        let count = values.count
        try values.withUnsafeMutableBufferPointer { (buffer) throws(TensorError) in
            try Self.check(
                MPI_Allreduce(
                    maxq_mpi_in_place(), buffer.baseAddress, Int32(count), maxq_mpi_double(), maxq_mpi_sum(), world),
                "MPI_Allreduce")
        }
    }

    public func startSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws(TensorError) {
        for chunk in Self.chunks(buffer) {
            var request: MPI_Request? = maxq_mpi_request_null()
            try Self.check(
                MPI_Iallreduce(
                    maxq_mpi_in_place(), chunk.baseAddress, Int32(chunk.count), maxq_mpi_float(), maxq_mpi_sum(),
                    world, &request),
                "MPI_Iallreduce")
            requests.append(request)
        }
    }

    public func progress() throws(TensorError) {
        guard !requests.isEmpty else { return }
        var done: Int32 = 0
        try Self.check(
            MPI_Testall(Int32(requests.count), &requests, &done, maxq_mpi_statuses_ignore()), "MPI_Testall")
        if done != 0 { requests = [] }
    }

    public func waitForSums() throws(TensorError) {
        guard !requests.isEmpty else { return }
        try Self.check(MPI_Waitall(Int32(requests.count), &requests, maxq_mpi_statuses_ignore()), "MPI_Waitall")
        requests = []
    }

    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>) throws(TensorError) {
        for chunk in Self.chunks(buffer) {
            try Self.check(MPI_Bcast(chunk.baseAddress, Int32(chunk.count), maxq_mpi_float(), 0, world), "MPI_Bcast")
        }
    }

    /// Median seconds of a sum of `bytes` across all processes, over `repetitions` after one warm-up.
    public func timeSum(bytes: Int, repetitions: Int) throws(TensorError) -> Double {
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, bytes / MemoryLayout<Float>.stride))
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 1)
        var times: [Double] = []
        for _ in 0...repetitions {
            let start = MPI_Wtime()
            try startSum(buffer)
            try waitForSums()
            times.append(MPI_Wtime() - start)
        }
        return times.dropFirst().sorted()[repetitions / 2]
    }

    /// Leaves MPI after a run that every process finished (or stopped at the same point).
    public func finalize() {
        _ = MPI_Finalize()
    }

    /// Ends every process of the run: after an error in this process alone, which the others,
    /// waiting for it in their next exchange, would otherwise wait for forever.
    public func abort(code: Int32) -> Never {
        _ = MPI_Abort(world, code)
        exit(code)
    }

    /// MPI counts are 32-bit: larger buffers go in pieces.
    private static func chunks(_ buffer: UnsafeMutableBufferPointer<Float>) -> [UnsafeMutableBufferPointer<Float>] {
        let limit = Int(Int32.max)
        return stride(from: 0, to: max(buffer.count, 1), by: limit).map { start in
            UnsafeMutableBufferPointer(rebasing: buffer[start..<min(start + limit, buffer.count)])
        }
    }

    private static func check(_ code: Int32, _ call: String) throws(TensorError) {
        guard code != MPI_SUCCESS else { return }
        var text = [CChar](repeating: 0, count: Int(maxq_mpi_max_error_string()) + 1)
        var length: Int32 = 0
        _ = MPI_Error_string(code, &text, &length)
        let message = string(text, length: length)
        throw .communication(op: call, message: message.isEmpty ? "MPI error \(code)" : message)
    }

    /// The first `length` characters MPI wrote into `text`.
    private static func string(_ text: [CChar], length: Int32) -> String {
        String(decoding: text.prefix(max(0, Int(length))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
