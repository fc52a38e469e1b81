public import ShipLogFormat
public import ShipLogStorage

extension LogRecovery {
    /// The longest quarantine label, in bytes (UTF-8).
    public static let quarantineLabelBytesMax = 128

    /// Empties a follower's log so that it continues from a checkpoint (PROTOCOL.md
    /// section 7.6): every segment file, any leftover temporary segment file and the epoch
    /// history move into `quarantine/<quarantineLabel>/` (nothing is deleted), then an empty segment whose header
    /// holds `baseLSN`, `previousBatchCRC`, `epoch` and `createdAt` is created durably
    /// (temporary name, header, preallocation, fdatasync, rename, directory fsync).
    ///
    /// Opening the directory afterwards gives a log with `nextLSN == baseLSN`,
    /// `firstLSN == baseLSN`, `lastBatchCRC == previousBatchCRC` that accepts the replicated
    /// batch starting at `baseLSN` and carrying `previousBatchCRC`. Pass as `createdAt` that
    /// batch's timestamp to keep the segment byte-identical to the primary's, and as `options`
    /// the options the log will be opened with (preallocation, auxiliary names).
    ///
    /// No log may have the directory open: its `LOCK` is taken for the duration (in another
    /// process that makes this throw ``LogError/locked(directory:_:)``). Files of layers above
    /// (`checkpoints/`) are left alone: install the checkpoint before calling this.
    ///
    /// A crash at any point leaves a directory that opens in strict mode: the old log, a
    /// prefix of it, an empty log, or the new empty log at `baseLSN` (docs/RECOVERY.md
    /// section 10).
    /// - Returns: the file names moved into quarantine, in the order they were moved.
    @discardableResult
    public static func resetForReseed(
        directory: FilePath, fileSystem: any FileSystem, startingAt baseLSN: LSN, previousBatchCRC: UInt32,
        epoch: Epoch, createdAt: UInt64, quarantineLabel: String, options: LogOptions = LogOptions()
    ) throws(LogError) -> [String] {
        guard baseLSN != .zero else { throw .invalidArgument("a re-seeded log cannot start at LSN 0") }
        try checkQuarantineLabel(quarantineLabel)
        try options.validate()
        try prepareDirectory(directory, fileSystem: fileSystem)
        let directoryLock = try lockDirectory(directory, fileSystem: fileSystem)
        defer { withExtendedLifetime(directoryLock) {} }

        let (segments, temporaries) = try segmentFiles(in: directory, fileSystem: fileSystem)
        let quarantine = Quarantine(directory: directory, fileSystem: fileSystem, subdirectory: quarantineLabel)
        try quarantine.prepare()
        let reason = "log reset to continue from LSN \(baseLSN) (re-seed from a checkpoint)"
        var moved: [String] = []
        // Leftovers first, so that the new segment's temporary name is free.
        for name in temporaries {
            _ = try quarantine.moveSegment(named: name, reason: reason)
            moved.append(name)
        }
        // The old log's epoch history goes with it (before its segments: a crash then leaves
        // the old log without a history, which opening rebuilds); the new log's starts with
        // its first batch.
        if fileSystem.fileExists(at: directory.appending(EpochHistoryFile.fileName)) {
            _ = try quarantine.moveSegment(named: EpochHistoryFile.fileName, reason: reason)
            moved.append(EpochHistoryFile.fileName)
        }
        let header = SegmentHeader(previousBatchCRC: previousBatchCRC, baseLSN: baseLSN, epoch: epoch, createdAt: createdAt)
        let finalName = SegmentName.fileName(baseLSN: baseLSN)
        let temporary = directory.appending(finalName + SegmentName.temporarySuffix)
        // Complete and synced under its temporary name before the old log starts to go: a
        // crash until the rename leaves a `.tmp` that opening removes.
        try writeEmptySegment(header, at: temporary, fileSystem: fileSystem, options: options)
        // Newest first, each move durable before the next: a crash leaves a prefix of the
        // old log, which opens (the reverse order could leave a gap in the middle).
        for name in segments.reversed() {
            _ = try quarantine.moveSegment(named: name, reason: reason)
            moved.append(name)
        }
        do {
            try fileSystem.rename(from: temporary, to: directory.appending(finalName))
            try fileSystem.syncDirectory(at: directory)
        } catch { throw .io(error) }
        return moved
    }

    /// A label names a directory inside `quarantine/`: one path component, not `.` or `..`.
    static func checkQuarantineLabel(_ label: String) throws(LogError) {
        let length = label.utf8.count
        guard length >= 1 && length <= quarantineLabelBytesMax else {
            throw .invalidArgument(
                "quarantine label must be 1...\(quarantineLabelBytesMax) bytes, got \(length)")
        }
        guard label != "." && label != "..", !label.utf8.contains(where: { $0 == UInt8(ascii: "/") || $0 == 0 }) else {
            throw .invalidArgument("quarantine label '\(label)' is not a single file name")
        }
    }

    /// Segment file names (in LSN order) and leftover temporary segment files in `directory`.
    private static func segmentFiles(
        in directory: FilePath, fileSystem: any FileSystem
    ) throws(LogError) -> (segments: [String], temporaries: [String]) {
        let entries: [String]
        do { entries = try fileSystem.contentsOfDirectory(at: directory) } catch { throw .io(error) }
        var segments: [(LSN, String)] = []
        var temporaries: [String] = []
        for name in entries {
            if let base = SegmentName.baseLSN(fromFileName: name) {
                segments.append((base, name))
            } else if name.hasSuffix("." + SegmentName.fileExtension + SegmentName.temporarySuffix) {
                temporaries.append(name)
            }
        }
        return (segments.sorted { $0.0 < $1.0 }.map(\.1), temporaries.sorted())
    }

    /// Writes a segment holding only `header`, preallocated like the log's own, and syncs it.
    private static func writeEmptySegment(
        _ header: SegmentHeader, at path: FilePath, fileSystem: any FileSystem, options: LogOptions
    ) throws(LogError) {
        do throws(FileSystemError) {
            let handle = try fileSystem.openFile(at: path, options: [.read, .write, .createNew])
            defer { handle.close() }
            do {
                try SegmentFile.writeEmpty(header, to: handle, options: options)
            } catch {
                try? fileSystem.removeFile(at: path)  // an unfinished temporary file holds nothing
                throw error
            }
        } catch {
            if error.operation == .sync { throw .syncFailed(error) }
            throw error.isOutOfSpace ? .outOfSpace(error) : .io(error)
        }
    }
}
