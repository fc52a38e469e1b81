import ShipLogFormat
import ShipLogStorage

/// A primary's replication slots: for each follower it has streamed to (by node id), the
/// newest LSN that follower has made durable, as last persisted. A slot holds back log
/// retention so the follower can resume from the log instead of re-seeding (PostgreSQL's
/// physical replication slots), up to `ReplicationOptions.slotRetainedBytesMax`.
///
/// File `replication-slots` in the log directory (docs/FORMAT.md, "Replication slots"):
///
///     shiplog-slots 1\n
///     <lsn> <node id>\n        one line per slot, LSN in decimal
///     crc32c <8 hex digits>\n  CRC-32C of every byte before this line
///
/// It is replaced atomically (temporary file, fdatasync, rename, directory fsync). Positions
/// persisted late only hold back more log than needed, never less: a follower's durable LSN
/// only grows.
final class ReplicationSlots: @unchecked Sendable {
    // @unchecked: `entries` and `dirty` are guarded by `lock`.
    static let fileName = "replication-slots"
    static let magicLine = "shiplog-slots 1"
    /// Slots kept at most (a named bound on a file read at startup).
    static let slotsMax = 4096
    /// Largest slot file read, in bytes.
    static let fileBytesMax = 1 << 20

    private let directory: FilePath
    private let fileSystem: any FileSystem
    private let lock = ConditionLock()
    private var entries: [String: LSN] = [:]
    private var dirty = false

    init(directory: FilePath, fileSystem: any FileSystem) throws(ReplicationError) {
        self.directory = directory
        self.fileSystem = fileSystem
        let path = directory.appending(Self.fileName)
        guard fileSystem.fileExists(at: path) else { return }
        entries = try Self.read(path, fileSystem: fileSystem)
    }

    var positions: [String: LSN] { lock.withLock { entries } }

    /// Moves the slot of `nodeID` forward to `lsn` (persisted later); creates it if missing.
    func record(_ nodeID: String, durableThrough lsn: LSN) {
        let created = lock.withLock { () -> Bool in
            guard let old = entries[nodeID] else {
                guard entries.count < Self.slotsMax else { return false }
                entries[nodeID] = lsn
                return true
            }
            if lsn > old {
                entries[nodeID] = lsn
                dirty = true
            }
            return false
        }
        if created { persist(force: true) }
    }

    /// Creates the slot of `nodeID` at `lsn` (persisted at once) unless it exists.
    func create(_ nodeID: String, at lsn: LSN) {
        let created = lock.withLock { () -> Bool in
            guard entries[nodeID] == nil, entries.count < Self.slotsMax else { return false }
            entries[nodeID] = lsn
            return true
        }
        if created { persist(force: true) }
    }

    /// Drops the slot of `nodeID`.
    func drop(_ nodeID: String) {
        let removed = lock.withLock { entries.removeValue(forKey: nodeID) != nil }
        if removed { persist(force: true) }
    }

    /// Writes the file if anything changed since the last write. Errors are not fatal: the
    /// previous file stays in place and holds back more log, never less.
    func persist(force: Bool = false) {
        let snapshot: [String: LSN]? = lock.withLock {
            guard dirty || force else { return nil }
            dirty = false
            return entries
        }
        guard let snapshot else { return }
        var text = Self.magicLine + "\n"
        for (nodeID, lsn) in snapshot.sorted(by: { $0.key < $1.key }) { text += "\(lsn) \(nodeID)\n" }
        let body = Array(text.utf8)
        let crc = CRC32C.checksum(body)
        let file = body + Array("crc32c \(Self.hex8(crc))\n".utf8)
        let temporary = directory.appending(Self.fileName + ".tmp")
        do throws(FileSystemError) {
            if fileSystem.fileExists(at: temporary) { try fileSystem.removeFile(at: temporary) }
            let handle = try fileSystem.openFile(at: temporary, options: [.read, .write, .createNew])
            defer { handle.close() }
            try handle.write(file, toAbsoluteOffset: 0)
            try handle.synchronizeData()
            try fileSystem.rename(from: temporary, to: directory.appending(Self.fileName))
            try fileSystem.syncDirectory(at: directory)
        } catch {
            lock.withLock { dirty = true }
        }
    }

    static func hex8(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// Parses a slot file, refusing anything that is not exactly the format above.
    static func read(_ path: FilePath, fileSystem: any FileSystem) throws(ReplicationError) -> [String: LSN] {
        func bad(_ reason: String) -> ReplicationError {
            .log(.corruption(file: path.string, offset: 0, lsnRange: "-", reason: "replication slot file: \(reason)"))
        }
        let bytes: [UInt8]
        do {
            let handle = try fileSystem.openFile(at: path, options: [.read])
            defer { handle.close() }
            let size = try handle.size()
            guard size <= Int64(fileBytesMax) else { throw bad("\(size) bytes, more than \(fileBytesMax)") }
            bytes = try handle.read(count: Int(size), fromAbsoluteOffset: 0)
        } catch let error as ReplicationError {
            throw error
        } catch {
            throw .log(.failed(underlying: "reading \(path): \(error)"))
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw bad("not UTF-8") }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.last == "" else { throw bad("does not end with a newline") }
        lines.removeLast()
        guard lines.first.map(String.init) == magicLine else { throw bad("first line is not \"\(magicLine)\"") }
        guard let crcLine = lines.last, crcLine.hasPrefix("crc32c "), let stored = UInt32(crcLine.dropFirst(7), radix: 16) else {
            throw bad("last line is not \"crc32c <hex>\"")
        }
        let covered = bytes.count - crcLine.utf8.count - 1
        let computed = CRC32C.checksum(Array(bytes[..<covered]))
        guard computed == stored else { throw bad("CRC mismatch (stored \(hex8(stored)), computed \(hex8(computed)))") }
        var entries: [String: LSN] = [:]
        for line in lines.dropFirst().dropLast() {
            guard let space = line.firstIndex(of: " "), let lsn = UInt64(line[..<space]) else { throw bad("malformed line \"\(line)\"") }
            let nodeID = String(line[line.index(after: space)...])
            guard !nodeID.isEmpty, nodeID.utf8.count <= 64, entries.count < slotsMax else { throw bad("bad node id in \"\(line)\"") }
            entries[nodeID] = LSN(lsn)
        }
        return entries
    }
}
