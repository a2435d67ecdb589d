// `mpirun -np K maxq train ...`: joining the run's processes, dividing the machine's cores among
// those on it, and ending all of them together when one fails.
import Foundation
import MaxQDistributed
import MaxQTensor
import MaxQTraining

enum DataParallel {
    /// The run's processes when a launcher started this one (nil: a run of its own). Before any
    /// kernel runs: each process computes on cores / processes-on-this-machine threads unless
    /// OMP_NUM_THREADS says otherwise.
    static func join() throws -> MPIProcessGroup? {
        guard MPIProcessGroup.launched else { return nil }
        let group = try MPIProcessGroup()
        if ProcessInfo.processInfo.environment["OMP_NUM_THREADS"] == nil {
            Threading.limit(to: max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) / group.localSize)
        }
        return group
    }

    /// Every process must read the same data (the same folder on every machine): their training
    /// and validation sizes and class counts are compared, and a process that differs fails, which
    /// ends them all.
    static func checkSameData(_ group: MPIProcessGroup, sizes: [Int]) throws {
        var sums = sizes.map(Double.init)
        try group.sum(&sums)
        for (name, (own, sum)) in zip(["training images", "validation images", "classes"], zip(sizes, sums))
        where Double(own * group.size) != sum {
            throw Failure(
                "\(own) \(name) here, \(sum / Double(group.size)) on average over the \(group.size) processes: "
                    + "every process must read the same dataset")
        }
    }

    /// Ends this process after `error`. A stop that every process reached at the same step (a NaN
    /// loss or weight, an interrupt: they agree on these) leaves MPI in order and rank 0 reports it;
    /// any other error is this process's alone, so it is reported with its rank and every process
    /// of the run is ended, rather than left waiting for this one.
    static func fail(_ group: MPIProcessGroup, _ error: any Error) throws -> Never {
        switch error as? TrainingError {
        case .nonFiniteLoss, .nonFiniteWeight, .interrupted:
            group.finalize()
            if group.rank == 0 { throw Failure(error) }
            exit(1)
        default:
            FileHandle.standardError.write(Data("Error: rank \(group.rank) of \(group.size): \(error)\n".utf8))
            group.abort(code: 1)
        }
    }
}
