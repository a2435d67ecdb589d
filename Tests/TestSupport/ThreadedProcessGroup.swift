// Processes of a data-parallel run simulated by threads of one process, for tests without MPI:
// each collective waits until every member has called it, then all receive the result, summed in
// rank order. Sums that `startSum` begins are made at `waitForSums`, in the order begun.
import Foundation
import MaxQNN
import MaxQTensor

public final class ThreadedProcessGroup: ProcessGroup, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    private let meeting: Meeting
    private var started: [UnsafeMutableBufferPointer<Float>] = []

    /// `size` members, one per thread that will use it.
    public static func members(_ size: Int) -> [ThreadedProcessGroup] {
        let meeting = Meeting(size: size)
        return (0..<size).map { ThreadedProcessGroup(rank: $0, size: size, meeting: meeting) }
    }

    private init(rank: Int, size: Int, meeting: Meeting) {
        (self.rank, self.size, self.meeting) = (rank, size, meeting)
    }

    /// Runs `body(member)` for every member on a thread of its own; returns their results in rank order.
    public static func run<R>(_ size: Int, _ body: @escaping @Sendable (ThreadedProcessGroup) throws -> R) throws -> [R]
    {
        let members = members(size)
        let results = Results<R>(count: size)
        let threads = members.map { member in
            Thread {
                results.store(member.rank, Result { try body(member) })
            }
        }
        threads.forEach { $0.stackSize = 8 << 20 }
        threads.forEach { $0.start() }
        return try results.wait().map { try $0.get() }
    }

    public func sum(_ values: inout [Double]) throws(TensorError) {
        let all = meeting.exchange(rank: rank, values)
        values = all.dropFirst().reduce(all[0]) { zip($0, $1).map { $0 + $1 } }
    }

    public func startSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws(TensorError) { started.append(buffer) }

    public func progress() throws(TensorError) {}

    public func waitForSums() throws(TensorError) {
        for buffer in started {
            let all = meeting.exchange(rank: rank, buffer.map { Double($0) })
            for i in buffer.indices { buffer[i] = all.dropFirst().reduce(Float(all[0][i])) { $0 + Float($1[i]) } }
        }
        started = []
    }

    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>) throws(TensorError) {
        let all = meeting.exchange(rank: rank, buffer.map { Double($0) })
        for i in buffer.indices { buffer[i] = Float(all[0][i]) }
    }

    /// One round at a time: every member deposits its values, the last one releases them all.
    private final class Meeting: @unchecked Sendable {
        let size: Int
        let condition = NSCondition()
        var deposits: [[Double]?]
        var round = 0
        var published: [[Double]] = []
        var collected = 0

        init(size: Int) {
            self.size = size
            deposits = Array(repeating: nil, count: size)
        }

        func exchange(rank: Int, _ values: [Double]) -> [[Double]] {
            condition.lock()
            defer { condition.unlock() }
            // Wait until the previous round's results have been read by everyone.
            while collected > 0 { condition.wait() }
            deposits[rank] = values
            let myRound = round
            if deposits.allSatisfy({ $0 != nil }) {
                published = deposits.map { $0! }
                deposits = Array(repeating: nil, count: size)
                round += 1
                collected = size
                condition.broadcast()
            } else {
                while round == myRound { condition.wait() }
            }
            let result = published
            collected -= 1
            if collected == 0 { condition.broadcast() }
            return result
        }
    }

    private final class Results<R>: @unchecked Sendable {
        let condition = NSCondition()
        var values: [Result<R, any Error>?]

        init(count: Int) { values = Array(repeating: nil, count: count) }

        func store(_ index: Int, _ value: Result<R, any Error>) {
            condition.lock()
            values[index] = value
            condition.broadcast()
            condition.unlock()
        }

        func wait() -> [Result<R, any Error>] {
            condition.lock()
            defer { condition.unlock() }
            while values.contains(where: { $0 == nil }) { condition.wait() }
            return values.map { $0! }
        }
    }
}
