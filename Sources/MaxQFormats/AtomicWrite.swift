// Writing a file so that readers see the old one or the new one, never a part: the bytes go to
// `<path>.partial` (a visible name, so that one left by a killed process is seen and replaced
// by the next write), are flushed to disk, and the file is renamed over `path`.
import Foundation

public enum AtomicWriteError: Error, Equatable, CustomStringConvertible {
    case failed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .failed(path, reason): "cannot write \(path): \(reason); any previous file there is kept"
        }
    }
}

public enum AtomicWrite {
    public static func write(_ data: Data, to path: String) throws(AtomicWriteError) {
        let temporary = partialPath(of: path)
        guard FileManager.default.createFile(atPath: temporary, contents: nil),
            let handle = FileHandle(forWritingAtPath: temporary)
        else { throw .failed(path: path, reason: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        do {
            try handle.write(contentsOf: data)
            try handle.synchronize()
            try handle.close()
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: temporary)
            throw .failed(path: path, reason: error.localizedDescription)
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: temporary)
            throw .failed(path: path, reason: "cannot rename \(temporary): \(reason)")
        }
    }

    /// Where `write` stages `path`.
    public static func partialPath(of path: String) -> String { path + ".partial" }

    /// Removes a staging file a killed process left for `path`; true when there was one.
    @discardableResult
    public static func removeStale(for path: String) -> Bool {
        (try? FileManager.default.removeItem(atPath: partialPath(of: path))) != nil
    }
}
