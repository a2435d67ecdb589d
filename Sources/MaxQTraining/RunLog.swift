// The run's log: every line stamped `[YYYY-MM-DD HH:MM:SS] ` to stdout and to
// `<save_dir>/<arch>.<prefix>.log`, and a live progress line when stdout is a terminal.
import Foundation

public final class RunLog: @unchecked Sendable {
    private let file: FileHandle?
    /// Whether lines go to stdout (all but the first process of a data-parallel run).
    private let echo: Bool
    public let isTerminal: Bool
    private var progressShown = false
    private let formatter = RunLog.makeFormatter()

    private static func makeFormatter() -> DateFormatter {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        f.locale = Locale(identifier: "en_US_POSIX")
        return f
    }

    /// Appends to `path` (a resumed run continues its log), creating it if needed; `echo` false
    /// keeps stdout silent.
    public init(path: String?, echo: Bool = true) throws(TrainingError) {
        self.echo = echo
        isTerminal = echo && isatty(STDOUT_FILENO) != 0
        guard let path else {
            file = nil
            return
        }
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw .invalid("cannot write the log \(path): \(String(cString: strerror(errno)))")
        }
        handle.seekToEndOfFile()
        file = handle
    }

    public func stamp(_ date: Date = Date()) -> String { formatter.string(from: date) }

    /// `stamp()` without a log.
    public static func timestamp() -> String { makeFormatter().string(from: Date()) }

    public func line(_ text: String) {
        clearProgress()
        let stamped = "[\(stamp())] \(text)\n"
        if echo { FileHandle.standardOutput.write(Data(stamped.utf8)) }
        file?.write(Data(stamped.utf8))
    }

    /// Overwrites the terminal's last line (nothing when not a terminal).
    public func progress(_ text: String) {
        guard isTerminal else { return }
        FileHandle.standardOutput.write(Data("\r\u{1B}[K\(text)".utf8))
        progressShown = true
    }

    private func clearProgress() {
        guard progressShown else { return }
        FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8))
        progressShown = false
    }

    /// hh:mm:ss for a number of seconds.
    public static func duration(_ seconds: Double) -> String {
        let s = max(0, Int(seconds.rounded()))
        return String(format: "%02d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
    }
}

/// A running average, as the reference's `AverageMeter`.
public struct AverageMeter: Sendable {
    public private(set) var value: Double = 0
    public private(set) var sum: Double = 0
    public private(set) var count: Double = 0
    public var average: Double { count > 0 ? sum / count : 0 }

    public init() {}

    public mutating func update(_ v: Double, weight: Double = 1) {
        value = v
        sum += v * weight
        count += weight
    }
}
