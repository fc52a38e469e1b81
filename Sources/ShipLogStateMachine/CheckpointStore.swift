public import ShipLogFormat
public import ShipLogStorage

/// The `checkpoints/` directory of a log: one file per checkpoint, named by the LSN it covers
/// (`%020llu.ckpt`), written under a temporary name, synced, renamed, directory synced.
public struct CheckpointStore: Sendable {
    public static let directoryName = "checkpoints"
    public static let fileExtension = "ckpt"
    public static let temporarySuffix = ".tmp"

    public let directory: FilePath
    let fileSystem: any FileSystem

    public init(logDirectory: FilePath, fileSystem: any FileSystem) {
        self.directory = logDirectory.appending(Self.directoryName)
        self.fileSystem = fileSystem
    }

    public static func fileName(lsn: LSN) -> String {
        let digits = String(lsn.rawValue)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + "." + fileExtension
    }

    /// Checkpoint files present, newest (highest LSN) first. Leftover temporary files are removed.
    public func list() throws(LogError) -> [(lsn: LSN, path: FilePath)] {
        try files(removingTemporaries: true)
    }

    /// Every checkpoint file present, newest first, without checking them and without removing
    /// anything (unlike ``list()``).
    public func newestFirst() throws(LogError) -> [(lsn: LSN, path: FilePath)] {
        try files(removingTemporaries: false)
    }

    /// The newest checkpoint file present (by name), without checking it; `nil` when there is
    /// none. Unlike ``list()`` it changes nothing, so it is safe while a checkpoint is written.
    public func newest() throws(LogError) -> (lsn: LSN, path: FilePath)? {
        try files(removingTemporaries: false).first
    }

    private func files(removingTemporaries: Bool) throws(LogError) -> [(lsn: LSN, path: FilePath)] {
        guard fileSystem.fileExists(at: directory) else { return [] }
        let names: [String]
        do { names = try fileSystem.contentsOfDirectory(at: directory) } catch { throw .io(error) }
        var found: [(LSN, FilePath)] = []
        for name in names {
            if name.hasSuffix(Self.temporarySuffix) {
                if removingTemporaries {
                    do { try fileSystem.removeFile(at: directory.appending(name)) } catch { throw .io(error) }
                }
                continue
            }
            let parts = name.split(separator: ".")
            guard parts.count == 2, parts[1] == Self.fileExtension, parts[0].count == 20, let value = UInt64(parts[0])
            else { continue }
            found.append((LSN(value), directory.appending(name)))
        }
        return found.sorted { $0.0 > $1.0 }.map { (lsn: $0.0, path: $0.1) }
    }

    // MARK: - Checkpoints received from elsewhere (re-seeding a follower)

    /// Suffix of a checkpoint file being received (``incomingFile(lsn:)``). ``list()`` leaves
    /// such files alone; ``removeIncomingFiles()`` clears leftovers of an interrupted transfer.
    public static let incomingSuffix = ".incoming"

    /// Where to write a checkpoint received from another node before ``install(temporaryFile:lsn:)``:
    /// `checkpoints/<lsn>.ckpt.incoming`, on the same file system as its final name. Creates
    /// `checkpoints/` (durably) when missing.
    public func incomingFile(lsn: LSN) throws(LogError) -> FilePath {
        try createDirectoryIfMissing()
        return directory.appending(Self.fileName(lsn: lsn) + Self.incomingSuffix)
    }

    /// Removes files left by interrupted transfers (``incomingFile(lsn:)``); call it only when
    /// no transfer is running. Returns their names.
    @discardableResult
    public func removeIncomingFiles() throws(LogError) -> [String] {
        guard fileSystem.fileExists(at: directory) else { return [] }
        do {
            let names = try fileSystem.contentsOfDirectory(at: directory).filter { $0.hasSuffix(Self.incomingSuffix) }
            for name in names { try fileSystem.removeFile(at: directory.appending(name)) }
            if !names.isEmpty { try fileSystem.syncDirectory(at: directory) }
            return names.sorted()
        } catch { throw .io(error) }
    }

    /// Checks a checkpoint file end to end without restoring it: size, header (magic, CRC,
    /// version, flags), `kind`, trailer, and the checkpoint CRC over every byte.
    /// - Returns: its header; the caller compares `lsn` with what it expects.
    public func verify(file path: FilePath, kind: String) throws(StateMachineError) -> CheckpointHeader {
        var (header, reader) = try open(path, kind: kind)
        try reader.skipToEnd()
        try finish(reader)
        return header
    }

    /// Makes a fully written checkpoint file (fdatasynced by the caller, e.g. one received in
    /// a re-seed and checked with ``verify(file:kind:)``) the checkpoint of `lsn`: renames it to
    /// `checkpoints/<lsn>.ckpt` (replacing one of that name) and fsyncs the directory. The
    /// file must be on the same file system; ``incomingFile(lsn:)`` names a good place.
    /// - Returns: the checkpoint's path.
    @discardableResult
    public func install(temporaryFile: FilePath, lsn: LSN) throws(LogError) -> FilePath {
        try createDirectoryIfMissing()
        let path = directory.appending(Self.fileName(lsn: lsn))
        do {
            // Cheap insurance: the rename must never publish bytes still only in the cache.
            let handle = try fileSystem.openFile(at: temporaryFile, options: [.read, .write])
            defer { handle.close() }
            do { try handle.synchronizeData() } catch { throw LogError.syncFailed(error) }
            try fileSystem.rename(from: temporaryFile, to: path)
            try fileSystem.syncDirectory(at: directory)
            if temporaryFile.parent != directory { try fileSystem.syncDirectory(at: temporaryFile.parent) }
        } catch let error as LogError {
            throw error
        } catch let error as FileSystemError {
            throw .io(error)
        } catch {
            throw .failed(underlying: "installing checkpoint \(temporaryFile): \(error)")
        }
        return path
    }

    /// Removes every checkpoint covering an LSN after `lsn`. A follower re-seeded from the
    /// checkpoint of `lsn` calls it: a newer checkpoint it still has describes the history it
    /// is leaving and would otherwise be restored first.
    /// - Returns: the paths removed.
    @discardableResult
    public func removeCheckpoints(after lsn: LSN) throws(LogError) -> [FilePath] {
        let newer = try files(removingTemporaries: false).filter { $0.lsn > lsn }.map(\.path)
        guard !newer.isEmpty else { return [] }
        do {
            for path in newer { try fileSystem.removeFile(at: path) }
            try fileSystem.syncDirectory(at: directory)
        } catch { throw .io(error) }
        return newer
    }

    private func createDirectoryIfMissing() throws(LogError) {
        do {
            if !fileSystem.fileExists(at: directory) {
                try fileSystem.createDirectory(at: directory)
                try fileSystem.syncDirectory(at: directory.parent)
            }
        } catch { throw .io(error) }
    }

    /// Writes a checkpoint durably and returns its path.
    func save(
        header: CheckpointHeader, body: (inout CheckpointWriter) throws(LogError) -> Void
    ) throws(LogError) -> (path: FilePath, bytes: Int64) {
        try createDirectoryIfMissing()
        let name = Self.fileName(lsn: header.lsn)
        let path = directory.appending(name)
        let temporary = directory.appending(name + Self.temporarySuffix)
        let handle: any FileHandle
        do {
            if fileSystem.fileExists(at: temporary) { try fileSystem.removeFile(at: temporary) }
            handle = try fileSystem.openFile(at: temporary, options: [.read, .write, .createNew])
        } catch { throw .io(error) }
        defer { handle.close() }
        var fileBytes: Int64 = 0
        do throws(LogError) {
            let headerBytes = header.encoded()
            do { try handle.write(headerBytes, toAbsoluteOffset: 0) } catch { throw LogError.writeFailed(error) }
            var writer = CheckpointWriter(handle: handle, header: headerBytes)
            try body(&writer)
            try writer.finish()
            fileBytes = writer.offset
            do { try handle.synchronizeData() } catch { throw LogError.syncFailed(error) }
            do {
                try fileSystem.rename(from: temporary, to: path)
                try fileSystem.syncDirectory(at: directory)
            } catch { throw LogError.io(error) }
        } catch {
            try? fileSystem.removeFile(at: temporary)
            throw error
        }
        return (path, fileBytes)
    }

    /// Opens a checkpoint and checks its header and trailer; the body's CRC is checked by
    /// ``CheckpointStore/finish(_:)`` once a restore has read it.
    func open(_ path: FilePath, kind: String) throws(StateMachineError) -> (CheckpointHeader, CheckpointReader) {
        do {
            let handle = try fileSystem.openFile(at: path, options: [.read])
            let size = try handle.size()
            let minimum = Int64(CheckpointHeader.byteCount + CheckpointHeader.trailerByteCount)
            guard size >= minimum else { throw StateMachineError("checkpoint \(path) is \(size) bytes, too short") }
            let headerBytes = try handle.read(count: CheckpointHeader.byteCount, fromAbsoluteOffset: 0)
            guard let header = CheckpointHeader.decode(headerBytes) else {
                throw StateMachineError("checkpoint \(path): bad header (magic, CRC or version)")
            }
            guard header.kind == kind else {
                throw StateMachineError("checkpoint \(path) holds a '\(header.kind)' state, not '\(kind)'")
            }
            let trailer = try handle.read(
                count: CheckpointHeader.trailerByteCount, fromAbsoluteOffset: size - Int64(CheckpointHeader.trailerByteCount))
            let (magic, bodyLength) = trailer.withUnsafeBytes {
                (UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)),
                 UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
            }
            guard magic == CheckpointHeader.trailerMagic, bodyLength == UInt64(size - minimum) else {
                throw StateMachineError("checkpoint \(path): bad trailer (incomplete write?)")
            }
            return (header, CheckpointReader(handle: handle, path: path, header: headerBytes, bodyLength: Int64(bodyLength)))
        } catch let error as StateMachineError {
            throw error
        } catch {
            throw StateMachineError("checkpoint \(path): \(error)")
        }
    }

    /// Checks the whole-file CRC after a restore consumed the body.
    func finish(_ reader: CheckpointReader) throws(StateMachineError) {
        guard reader.isAtEnd else { throw StateMachineError("checkpoint \(reader.path): body not fully consumed") }
        let trailer: [UInt8]
        do {
            trailer = try reader.handle.read(count: CheckpointHeader.trailerByteCount, fromAbsoluteOffset: reader.bodyEnd)
        } catch { throw StateMachineError("checkpoint \(reader.path): \(error)") }
        let stored = trailer.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) }
        let computed = CRC32C.checksum(trailer[8..<16], continuing: reader.finalCRC)
        guard stored == computed else {
            throw StateMachineError(
                "checkpoint \(reader.path): CRC mismatch (stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16)))")
        }
    }

    /// Removes all but the newest `keep` checkpoints; returns how many remain and the LSN of
    /// the oldest of them.
    func prune(keeping keep: Int) throws(LogError) -> (count: Int, oldest: LSN)? {
        let all = try list()
        for old in all.dropFirst(keep) {
            do { try fileSystem.removeFile(at: old.path) } catch { throw .io(error) }
        }
        if all.count > keep { do { try fileSystem.syncDirectory(at: directory) } catch { throw .io(error) } }
        let kept = all.prefix(keep)
        return kept.last.map { (kept.count, $0.lsn) }
    }
}
