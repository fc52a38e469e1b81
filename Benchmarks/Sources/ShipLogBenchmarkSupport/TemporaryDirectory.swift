import Foundation

/// A directory under the system's temporary directory, removed with everything in it by
/// ``remove()``. The logs of the storage and key-value benchmarks live in one.
public struct TemporaryDirectory: Sendable {
    /// The directory's absolute path.
    public let path: String

    /// Creates `shiplog-bench-<label>-XXXXXX` (mkdtemp) under `TMPDIR` or `/tmp`.
    public init(label: String) {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/shiplog-bench-\(label)-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard created != nil else {
            fatalError("cannot create a temporary directory under \(base): errno \(errno)")
        }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Removes the directory and its contents.
    public func remove() {
        do { try FileManager.default.removeItem(atPath: path) } catch {
            print("warning: could not remove \(path): \(error)")
        }
    }
}
