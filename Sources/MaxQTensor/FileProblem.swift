// Why a file could not be opened, in the words a user expects ("no such file", "is a
// directory", "permission denied") rather than Foundation's "NSCocoaErrorDomain error 256".
// Every module that reads files reports through it.
import Foundation

public enum FileProblem {
    /// The reason `path` could not be read; `error` is what the failed call threw.
    public static func describe(_ path: String, _ error: (any Error)? = nil) -> String {
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) { return "no such file" }
        if isDirectory.boolValue { return "is a directory" }
        if !FileManager.default.isReadableFile(atPath: path) { return "permission denied" }
        if let error { return "\(error.localizedDescription) (\((error as NSError).code))" }
        return "unreadable"
    }
}
