#if canImport(Glibc)
import Glibc
#endif
internal import CShipLogSupport

/// The real file system, through POSIX calls. Retries EINTR and short writes.
public struct PosixFileSystem: FileSystem {
    public init() {}

    public func openFile(at path: FilePath, options: FileOpenOptions) throws(FileSystemError) -> any FileHandle {
        var flags: Int32 = O_CLOEXEC
        if options.contains(.write) { flags |= options.contains(.read) ? O_RDWR : O_WRONLY } else { flags |= O_RDONLY }
        if options.contains(.createNew) { flags |= O_CREAT | O_EXCL }
        let fd = retryingEINTR { open(path.string, flags, 0o644) }
        guard fd >= 0 else { throw FileSystemError(operation: .open, path: path, errno: errno) }
        return PosixFileHandle(descriptor: fd, path: path)
    }

    public func contentsOfDirectory(at path: FilePath) throws(FileSystemError) -> [String] {
        guard let directory = opendir(path.string) else {
            throw FileSystemError(operation: .listDirectory, path: path, errno: errno)
        }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public func createDirectory(at path: FilePath) throws(FileSystemError) {
        var prefix = path.string.hasPrefix("/") ? "/" : ""
        for component in path.string.split(separator: "/") {
            prefix += component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw FileSystemError(operation: .createDirectory, path: FilePath(prefix), errno: errno)
            }
            prefix += "/"
        }
    }

    public func rename(from source: FilePath, to destination: FilePath) throws(FileSystemError) {
        guard Glibc.rename(source.string, destination.string) == 0 else {
            throw FileSystemError(operation: .rename, path: source, errno: errno)
        }
    }

    public func removeFile(at path: FilePath) throws(FileSystemError) {
        guard unlink(path.string) == 0 else { throw FileSystemError(operation: .remove, path: path, errno: errno) }
    }

    public func syncDirectory(at path: FilePath) throws(FileSystemError) {
        let fd = retryingEINTR { open(path.string, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard fd >= 0 else { throw FileSystemError(operation: .syncDirectory, path: path, errno: errno) }
        defer { Glibc.close(fd) }
        guard fsync(fd) == 0 else { throw FileSystemError(operation: .syncDirectory, path: path, errno: errno) }
    }

    public func fileExists(at path: FilePath) -> Bool {
        access(path.string, F_OK) == 0
    }
}

/// An open POSIX file descriptor.
public final class PosixFileHandle: FileHandle, @unchecked Sendable {
    // @unchecked: `descriptor` is written once by close(); the engine closes a handle only
    // after every user of it is done (segments are reference-counted).
    private var descriptor: Int32
    public let path: FilePath

    init(descriptor: Int32, path: FilePath) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit { close() }

    public func read(into buffer: UnsafeMutableRawBufferPointer, fromAbsoluteOffset offset: Int64) throws(FileSystemError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileSystemError(operation: .read, path: path, errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    public func write(_ bytes: UnsafeRawBufferPointer, toAbsoluteOffset offset: Int64) throws(FileSystemError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileSystemError(operation: .write, path: path, errno: errno)
            }
            done += n
        }
    }

    public func synchronizeData() throws(FileSystemError) {
        // No EINTR retry: a failed fdatasync is final (fsyncgate).
        guard fdatasync(descriptor) == 0 else { throw FileSystemError(operation: .sync, path: path, errno: errno) }
    }

    public func preallocate(fromAbsoluteOffset offset: Int64, length: Int64) throws(FileSystemError) {
        let result = shiplog_fallocate(descriptor, offset, length)
        guard result == 0 else { throw FileSystemError(operation: .preallocate, path: path, errno: result) }
    }

    public func truncate(toSize size: Int64) throws(FileSystemError) {
        guard retryingEINTR({ ftruncate(descriptor, off_t(size)) }) == 0 else {
            throw FileSystemError(operation: .truncate, path: path, errno: errno)
        }
    }

    public func size() throws(FileSystemError) -> Int64 {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw FileSystemError(operation: .stat, path: path, errno: errno) }
        return Int64(info.st_size)
    }

    /// O_DIRECT reads need block-aligned offsets, lengths and memory.
    static let directAlignment = 4096

    public func readBypassingCache(
        into buffer: UnsafeMutableRawBufferPointer, fromAbsoluteOffset offset: Int64
    ) throws(FileSystemError) -> Int {
        let fd = shiplog_open_direct(path.string, O_RDONLY | O_CLOEXEC, 0)
        guard fd >= 0 else { throw FileSystemError(operation: .read, path: path, errno: errno) }
        defer { Glibc.close(fd) }
        let alignment = Self.directAlignment
        let start = offset - offset % Int64(alignment)
        let end = offset + Int64(buffer.count)
        let length = Int((end - start + Int64(alignment) - 1) / Int64(alignment)) * alignment
        guard let aligned = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: alignment) as UnsafeMutableRawPointer?
        else { throw FileSystemError(operation: .read, path: path, errno: ENOMEM) }
        defer { aligned.deallocate() }
        var done = 0
        while done < length {
            let n = pread(fd, aligned + done, length - done, off_t(start) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileSystemError(operation: .read, path: path, errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        let skip = Int(offset - start)
        let available = max(0, min(buffer.count, done - skip))
        if available > 0 { buffer.baseAddress!.copyMemory(from: aligned + skip, byteCount: available) }
        return available
    }

    public func close() {
        if descriptor >= 0 {
            _ = Glibc.close(descriptor)
            descriptor = -1
        }
    }
}

@inline(__always)
func retryingEINTR(_ call: () -> Int32) -> Int32 {
    while true {
        let result = call()
        if result >= 0 || errno != EINTR { return result }
    }
}

extension PosixFileSystem {
    /// flock(LOCK_EX | LOCK_NB) on `path`, created if missing.
    func exclusiveLock(at path: FilePath) throws(FileSystemError) -> any FileLock {
        let fd = retryingEINTR { open(path.string, O_RDWR | O_CREAT | O_CLOEXEC, 0o644) }
        guard fd >= 0 else { throw FileSystemError(operation: .open, path: path, errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw FileSystemError(operation: .lock, path: path, errno: code)
        }
        return PosixFileLock(descriptor: fd)
    }
}

final class PosixFileLock: FileLock {
    let descriptor: Int32
    init(descriptor: Int32) { self.descriptor = descriptor }
    deinit { Glibc.close(descriptor) }
}
