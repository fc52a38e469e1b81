import CShipLogSupport
import ShipLogFormat
import ShipLogStorage

/// `quarantine/` beside the log: where recovery puts every byte it cuts, so that nothing is
/// ever deleted. A file there is never read by the log again; operators inspect or restore it.
struct Quarantine {
    static let directoryName = "quarantine"
    /// Bytes copied per read while saving a tail.
    static let copyChunkBytes = 1 << 20

    let directory: FilePath
    let fileSystem: any FileSystem
    /// A directory inside `quarantine/` that keeps one operation's files together (a
    /// re-seed's whole old log), or `nil` for `quarantine/` itself.
    var subdirectory: String?

    init(directory: FilePath, fileSystem: any FileSystem, subdirectory: String? = nil) {
        self.directory = directory
        self.fileSystem = fileSystem
        self.subdirectory = subdirectory
    }

    /// `quarantine/`, the top directory.
    var topPath: FilePath { directory.appending(Self.directoryName) }
    /// Where files go: `quarantine/` or `quarantine/<subdirectory>/`.
    var path: FilePath { subdirectory.map { topPath.appending($0) } ?? topPath }

    /// A file's name as reports show it, relative to the log directory.
    private func relativeName(_ name: String) -> String {
        ([Self.directoryName] + (subdirectory.map { [$0] } ?? []) + [name]).joined(separator: "/")
    }

    /// Creates `quarantine/` (and the subdirectory) when missing, each durable in its parent.
    func prepare() throws(LogError) {
        do {
            if !fileSystem.fileExists(at: topPath) {
                try fileSystem.createDirectory(at: topPath)
                try fileSystem.syncDirectory(at: directory)
            }
            if subdirectory != nil, !fileSystem.fileExists(at: path) {
                try fileSystem.createDirectory(at: path)
                try fileSystem.syncDirectory(at: topPath)
            }
        } catch { throw .io(error) }
    }

    /// Saves the bytes of `file` from `offset` up to its last non-zero byte as
    /// `quarantine/<segment>@<offset>`; `nil` when there is nothing but zeros to save.
    func saveTail(of file: SegmentFile, from offset: Int64, reason: String) throws(LogError) -> RecoveryReport.Quarantined? {
        do {
            let size = try file.handle.size()
            var end = offset
            var position = offset
            while position < size {
                let chunk = try file.handle.read(count: Int(min(Int64(Self.copyChunkBytes), size - position)), fromAbsoluteOffset: position)
                if chunk.isEmpty { break }
                let used = chunk.withUnsafeBytes { shiplog_end_of_nonzero($0.baseAddress, $0.count) }
                if used > 0 { end = position + Int64(used) }
                position += Int64(chunk.count)
            }
            guard end > offset else { return nil }
            try prepare()
            let name = "\(file.fileName)@\(offset)"
            let target = path.appending(name)
            if fileSystem.fileExists(at: target) { try fileSystem.removeFile(at: target) }
            let out = try fileSystem.openFile(at: target, options: [.write, .createNew])
            defer { out.close() }
            do {
                position = offset
                while position < end {
                    let chunk = try file.handle.read(
                        count: Int(min(Int64(Self.copyChunkBytes), end - position)), fromAbsoluteOffset: position)
                    try out.write(chunk, toAbsoluteOffset: position - offset)
                    position += Int64(chunk.count)
                }
                try out.synchronizeData()
            } catch {
                try? fileSystem.removeFile(at: target)  // no partial copies left behind
                throw error
            }
            try fileSystem.syncDirectory(at: path)
            return RecoveryReport.Quarantined(
                name: relativeName(name), from: file.fileName, offset: offset, bytes: end - offset,
                reason: reason)
        } catch let error as FileSystemError {
            throw .io(error)
        } catch let error as LogError {
            throw error
        } catch {
            throw .failed(underlying: "\(error)")
        }
    }

    /// Moves a whole segment file (or a leftover temporary one) into quarantine, durably:
    /// both directories are synced before it returns.
    func moveSegment(named name: String, reason: String) throws(LogError) -> RecoveryReport.Quarantined {
        try prepare()
        let source = directory.appending(name)
        var target = path.appending(name)
        var attempt = 1
        while fileSystem.fileExists(at: target) {
            attempt += 1
            target = path.appending("\(name).\(attempt)")
        }
        do {
            let size = try fileSystem.openFile(at: source, options: [.read]).size()
            try fileSystem.rename(from: source, to: target)
            try fileSystem.syncDirectory(at: path)
            try fileSystem.syncDirectory(at: directory)
            return RecoveryReport.Quarantined(
                name: relativeName(target.lastComponent), from: name, offset: 0, bytes: size, reason: reason)
        } catch { throw .io(error) }
    }
}
