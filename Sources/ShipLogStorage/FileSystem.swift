/// The file operations the storage layer performs, behind a protocol so that tests can
/// inject faults (EIO, ENOSPC, torn writes, power loss) at every call site.
///
/// Every method is blocking and runs on a thread the engine owns, never on Swift's
/// cooperative pool. Errors are ``FileSystemError`` values naming the operation and path.
public protocol FileSystem: Sendable {
    /// Opens (and with `.create`, creates) a regular file.
    func openFile(at path: FilePath, options: FileOpenOptions) throws(FileSystemError) -> any FileHandle
    /// Names of the entries in a directory, unsorted, without "." and "..".
    func contentsOfDirectory(at path: FilePath) throws(FileSystemError) -> [String]
    /// Creates a directory (and its parents); succeeds if it exists.
    func createDirectory(at path: FilePath) throws(FileSystemError)
    /// Atomically renames; durable only after ``syncDirectory(at:)`` of the parent.
    func rename(from source: FilePath, to destination: FilePath) throws(FileSystemError)
    /// Removes a file; durable only after ``syncDirectory(at:)`` of the parent.
    func removeFile(at path: FilePath) throws(FileSystemError)
    /// fsync of a directory: makes creates, renames and removes in it durable.
    func syncDirectory(at path: FilePath) throws(FileSystemError)
    /// Whether a file or directory exists at `path`.
    func fileExists(at path: FilePath) -> Bool
}

/// An open file. Not thread-safe for concurrent writes; positional reads may run concurrently.
public protocol FileHandle: AnyObject, Sendable {
    var path: FilePath { get }
    /// Reads up to `buffer.count` bytes at `offset`; returns fewer only at end of file.
    func read(into buffer: UnsafeMutableRawBufferPointer, fromAbsoluteOffset offset: Int64) throws(FileSystemError) -> Int
    /// Writes all of `bytes` at `offset` (retrying short writes).
    func write(_ bytes: UnsafeRawBufferPointer, toAbsoluteOffset offset: Int64) throws(FileSystemError)
    /// fdatasync: data and the metadata needed to read it back are durable when it returns.
    /// A failure is final for the file: see docs/RECOVERY.md on fsyncgate.
    func synchronizeData() throws(FileSystemError)
    /// Reserves `length` bytes from `offset` (fallocate); extends the size. May throw `.unsupported`.
    func preallocate(fromAbsoluteOffset offset: Int64, length: Int64) throws(FileSystemError)
    /// Sets the file size.
    func truncate(toSize size: Int64) throws(FileSystemError)
    /// The current file size in bytes.
    func size() throws(FileSystemError) -> Int64
    /// Closes the descriptor; further calls fail. Also done on deinit.
    func close()
    /// Reads what the device holds, bypassing the page cache (O_DIRECT). After a failed
    /// fdatasync the cache can hold bytes that never reached the disk (fsyncgate); recovery
    /// uses this to find and rewrite them. Throws `.unsupported`-style errors (EINVAL) where
    /// the file system cannot bypass its cache.
    func readBypassingCache(into buffer: UnsafeMutableRawBufferPointer, fromAbsoluteOffset offset: Int64) throws(FileSystemError) -> Int
}

/// How to open a file.
public struct FileOpenOptions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let read = FileOpenOptions(rawValue: 1 << 0)
    public static let write = FileOpenOptions(rawValue: 1 << 1)
    /// Create the file; fail if it already exists.
    public static let createNew = FileOpenOptions(rawValue: 1 << 2)
}

/// A path on the file system, as a string. Joins with `appending(_:)`.
public struct FilePath: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public var string: String

    public init(_ string: String) { self.string = string }
    public init(stringLiteral value: String) { self.string = value }

    public func appending(_ component: String) -> FilePath {
        FilePath(string.hasSuffix("/") ? string + component : string + "/" + component)
    }

    /// The last path component.
    public var lastComponent: String {
        string.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? string
    }

    /// The directory containing this path.
    public var parent: FilePath {
        guard let slash = string.lastIndex(of: "/") else { return FilePath(".") }
        if slash == string.startIndex { return FilePath("/") }
        return FilePath(String(string[..<slash]))
    }

    public var description: String { string }
}

/// A failed file operation: which one, on which path, and the errno it returned.
public struct FileSystemError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Operation: String, Sendable, Hashable {
        case open, read, write, sync, preallocate, truncate, stat, close, lock
        case listDirectory = "list directory"
        case createDirectory = "create directory"
        case rename, remove
        case syncDirectory = "sync directory"
    }

    public var operation: Operation
    public var path: FilePath
    /// The errno value (e.g. EIO, ENOSPC).
    public var errno: Int32

    public init(operation: Operation, path: FilePath, errno: Int32) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    /// True for ENOSPC and EDQUOT: the disk (or quota) is full.
    public var isOutOfSpace: Bool { errno == ENOSPC_VALUE || errno == EDQUOT_VALUE }
    /// True when the operation is not supported by the file system (e.g. fallocate on some).
    public var isUnsupported: Bool { errno == EOPNOTSUPP_VALUE || errno == ENOSYS_VALUE }

    public var description: String {
        "\(operation.rawValue) \(path): \(errorName(errno))"
    }
}

extension FileHandle {
    /// For file systems without a page cache of their own (in-memory ones): a plain read.
    public func readBypassingCache(
        into buffer: UnsafeMutableRawBufferPointer, fromAbsoluteOffset offset: Int64
    ) throws(FileSystemError) -> Int {
        try read(into: buffer, fromAbsoluteOffset: offset)
    }

    /// Reads up to `count` bytes at `offset` into a new array (shorter only at end of file).
    public func read(count: Int, fromAbsoluteOffset offset: Int64) throws(FileSystemError) -> [UInt8] {
        var error: FileSystemError?
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            do throws(FileSystemError) {
                initialized = try read(into: UnsafeMutableRawBufferPointer(buffer), fromAbsoluteOffset: offset)
            } catch let e {
                error = e
                initialized = 0
            }
        }
        if let error { throw error }
        return bytes
    }

    /// Writes all of `bytes` at `offset`.
    public func write(_ bytes: [UInt8], toAbsoluteOffset offset: Int64) throws(FileSystemError) {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(FileSystemError) in try write(raw, toAbsoluteOffset: offset) }
        }
        try result.get()
    }
}

/// An exclusive lock held on a file while the object lives (the writer's `LOCK` file).
public protocol FileLock: AnyObject, Sendable {}

extension FileSystem {
    /// Takes an exclusive, non-blocking lock on `path` (creating it), held until the returned
    /// object is released; `nil` where the file system has no locks (in-memory simulations).
    /// Throws EWOULDBLOCK when another process holds it.
    public func lockFile(at path: FilePath) throws(FileSystemError) -> (any FileLock)? {
        guard let posix = self as? PosixFileSystem else { return nil }
        return try posix.exclusiveLock(at: path)
    }
}
