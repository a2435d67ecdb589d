// The processes of a data-parallel run as layers and the trainer see them: collective sums and
// broadcasts, which every process calls in the same order. MaxQDistributed implements it on MPI.
import MaxQTensor

public protocol ProcessGroup: AnyObject {
    /// This process's index, 0..<size; rank 0 writes the run's files.
    var rank: Int { get }
    var size: Int { get }
    /// Element-wise sums over all processes, in place; every process receives the same values.
    func sum(_ values: inout [Double]) throws(TensorError)
    /// Starts summing `buffer` in place across processes; the buffer stays untouched and alive
    /// until `waitForSums` returns.
    func startSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws(TensorError)
    /// Lets started sums advance; backward calls it between operations.
    func progress() throws(TensorError)
    /// Returns when every started sum is complete.
    func waitForSums() throws(TensorError)
    /// Rank 0's values of `buffer` in every process.
    func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>) throws(TensorError)
}
