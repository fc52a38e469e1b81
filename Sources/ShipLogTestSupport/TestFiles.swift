#if canImport(Glibc)
import Glibc

/// The few file operations the coordination test servers need, without Foundation.
enum TestFiles {
    /// Bytes read per call.
    static let readChunkBytes = 64 << 10

    /// `TMPDIR`, else /tmp.
    static var temporaryDirectory: String {
        guard let value = getenv("TMPDIR"), value.pointee != 0 else { return "/tmp" }
        return String(cString: value)
    }

    /// Creates `TMPDIR/group/PREFIXxxxxxx`, a new directory only this process uses (0700).
    static func makeUniqueDirectory(in group: String, prefix: String) throws(CoordinationTestServerError) -> String {
        let parent = temporaryDirectory + "/" + group
        guard mkdir(parent, 0o755) == 0 || errno == EEXIST else { throw failure("mkdir", parent) }
        var template = Array((parent + "/" + prefix + "XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in mkdtemp(buffer.baseAddress!).map { String(cString: $0) } }
        guard let made else { throw failure("mkdtemp", parent + "/" + prefix + "XXXXXX") }
        return made
    }

    /// Creates the directory `path` (0700: etcd wants its data directory private).
    static func makeDirectory(_ path: String) throws(CoordinationTestServerError) {
        guard mkdir(path, 0o700) == 0 else { throw failure("mkdir", path) }
    }

    /// Writes `text` to the file at `path`, replacing what it held.
    static func write(_ text: String, to path: String) throws(CoordinationTestServerError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw failure("open", path) }
        defer { close(descriptor) }
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            if written < 0 {
                guard errno == EINTR else { throw failure("write", path) }
                continue
            }
            bytes = bytes.dropFirst(written)
        }
    }

    /// The last `bytesMax` bytes (or fewer) of the file at `path` as text; nil when it cannot be read.
    static func readTail(of path: String, bytesMax: Int) -> String? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { return nil }
        var offset = max(0, Int(status.st_size) - bytesMax)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: readChunkBytes)
        while bytes.count < bytesMax {
            let wanted = min(chunk.count, bytesMax - bytes.count)
            let count = chunk.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, wanted, off_t(offset)) }
            if count < 0 {
                guard errno == EINTR else { return nil }
                continue
            }
            if count == 0 { break }
            bytes += chunk[0..<count]
            offset += count
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Removes `path` and everything below it, without following links; what cannot be
    /// removed stays.
    static func removeTree(at path: String) {
        var status = stat()
        guard lstat(path, &status) == 0 else { return }
        guard status.st_mode & S_IFMT == S_IFDIR else {
            _ = unlink(path)
            return
        }
        for name in entries(of: path) { removeTree(at: path + "/" + name) }
        _ = rmdir(path)
    }

    /// The names in the directory at `path`, without `.` and `..`.
    private static func entries(of path: String) -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    private static func failure(_ call: String, _ path: String) -> CoordinationTestServerError {
        CoordinationTestServerError("\(call) \(path): \(String(cString: strerror(errno)))")
    }
}
#endif
