// The sparsity flags shared by several commands, with the reference code's names and defaults.
import ArgumentParser
import MaxQSparsity

extension ConvBNType: ExpressibleByArgument {}
extension PruneSchedule: ExpressibleByArgument {}

struct SparsityOptions: ParsableArguments {
    @Option(
        name: .customLong("conv-bn-type"),
        help: "Conv-bn unit type: \(ConvBNType.allCases.map(\.rawValue).joined(separator: ", ")).")
    var convBNType: ConvBNType = .softMaxQ
    @Option(name: .customLong("N"), help: "Weights kept per group.") var n = 2
    @Option(name: .customLong("M"), help: "Group size along input channels.") var m = 4
    @Option(name: .customLong("tau"), parsing: .unconditional, help: "Temperature of MaxQ's soft terms.")
    var tau: Float = 0.01
    @Option(name: .customLong("increase-start"), help: "First epoch of incremental sparsity.") var increaseStart = 0
    @Option(name: .customLong("increase-end"), help: "Epoch from which all groups are N:M.") var increaseEnd = 90
    @Option(name: .customLong("prune-schedule"), help: "linear, cubic, cos or exp.") var pruneSchedule: PruneSchedule =
        .linear

    func validate() throws {
        guard tau.isFinite, tau > 0 else { throw ValidationError("--tau must be a finite number > 0, got \(tau)") }
        do { _ = try config() } catch { throw ValidationError(String(describing: error)) }
    }

    func config() throws -> SparsityConfig {
        SparsityConfig(
            type: convBNType, pattern: try NMPattern(n: n, m: m),
            schedule: try IncrementalSchedule(pruneSchedule, increaseStart: increaseStart, increaseEnd: increaseEnd),
            tau: tau)
    }
}
