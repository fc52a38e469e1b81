public import ShipLogFormat
public import ShipLogStorage

/// What ``LogRecovery/truncate(directory:fileSystem:after:quarantineLabel:options:)`` did.
public struct TruncationReport: Sendable, CustomStringConvertible {
    /// The log's last LSN before the truncation, and after it (the LSN asked for).
    public var previousLastLSN: LSN
    public var lastLSN: LSN
    /// Records no longer in the log (they are in quarantine).
    public var recordsRemoved: UInt64 = 0
    /// Bytes moved or copied into `quarantine/LABEL/`.
    public var bytesQuarantined: Int64 = 0
    /// What went to quarantine, in order: whole later segments (newest first), then the cut
    /// segment's tail as `SEGMENT@OFFSET`.
    public var quarantined: [RecoveryReport.Quarantined] = []
    /// The segment cut at the boundary (it is the active segment now) and the offset where
    /// its kept bytes end; `nil` when nothing was cut or every segment was moved.
    public var cutSegment: String?
    public var cutOffset: Int64?
    /// Epoch history entries removed: the epochs starting after the boundary.
    public var epochHistoryDropped: [EpochStart] = []
    /// The strict recovery run first, under the same lock (what it found and repaired).
    public var recovery: RecoveryReport

    /// Whether the log already ended at the boundary, so nothing changed.
    public var changedNothing: Bool { recordsRemoved == 0 }

    public var description: String {
        if changedNothing { return "log already ends at LSN \(lastLSN): nothing truncated" }
        var lines = [
            "truncated LSN \(lastLSN.advanced(by: 1))...\(previousLastLSN) (\(recordsRemoved) records, "
                + "\(bytesQuarantined) bytes to quarantine); the log ends at LSN \(lastLSN)"
        ]
        for item in quarantined { lines.append("moved \(item.bytes) bytes of \(item.from) from byte \(item.offset) to \(item.name)") }
        if let cutSegment, let cutOffset { lines.append("\(cutSegment) cut at byte \(cutOffset); it is the active segment") }
        for entry in epochHistoryDropped { lines.append("dropped epoch history entry \(entry)") }
        return lines.joined(separator: "\n")
    }
}

extension LogRecovery {
    /// Removes every record after `lsn` from the log in `directory`, keeping every removed
    /// byte in `quarantine/<quarantineLabel>/`: the rejoin of a former primary or a diverged
    /// follower, once the divergence point is known (docs/RECOVERY.md section 12).
    ///
    /// `lsn` must be a batch boundary the log holds, `firstLSN - 1` or 0 (everything goes), or the
    /// log's last LSN (nothing changes). Strict recovery runs first. Then, each step durable
    /// before the next: the segments after the one holding `lsn` move whole into quarantine,
    /// newest first; that segment's bytes after the boundary (batches, and its footer when it
    /// was sealed) are copied to `quarantine/<LABEL>/SEGMENT@OFFSET`, and the segment is
    /// truncated there and preallocated again, so it is the active segment; last, the epoch
    /// history loses the epochs starting after `lsn`. With `lsn` 0 every segment moves. A crash
    /// at any point leaves a log that strict recovery opens: the old log, a prefix of it no
    /// shorter than `lsn`, or the truncated log.
    ///
    /// No log may have the directory open: its `LOCK` is held throughout. Pass as `options`
    /// those the log will be opened with (preallocation). Checkpoints beyond `lsn` are the
    /// caller's to remove (`CheckpointStore.removeCheckpoints(after:)`).
    public static func truncate(
        directory: FilePath, fileSystem: any FileSystem, after lsn: LSN, quarantineLabel: String,
        options: LogOptions = LogOptions()
    ) throws(LogError) -> TruncationReport {
        try checkQuarantineLabel(quarantineLabel)
        try options.validate()
        let options = withEpochHistoryNames(options)
        guard fileSystem.fileExists(at: directory) else { throw .invalidArgument("no log at \(directory)") }
        let directoryLock = try lockDirectory(directory, fileSystem: fileSystem)
        defer { withExtendedLifetime(directoryLock) {} }

        var recoveryReport = RecoveryReport()
        let recovered = try recoverLocked(
            directory: directory, options: options, fileSystem: fileSystem, mode: .strict, report: &recoveryReport)
        let segments = recovered.segments
        let end = segments.last?.lastLSN ?? .zero
        let first = segments.first?.file.baseLSN ?? .first
        var report = TruncationReport(previousLastLSN: end, lastLSN: end, recovery: recoveryReport)
        guard lsn <= end else {
            throw .invalidArgument("cannot truncate after LSN \(lsn): the log ends at LSN \(end)")
        }
        guard lsn == .zero || lsn.advanced(by: 1) >= first else {
            throw .invalidArgument("cannot truncate after LSN \(lsn): the log starts at LSN \(first)")
        }
        if lsn == end { return report }

        // The segment that keeps the boundary (the one holding `lsn`, or the first when
        // nothing is kept); none when the log goes back to LSN 0.
        let cutIndex: Int? = lsn == .zero ? nil : (segments.lastIndex { $0.file.baseLSN <= lsn } ?? 0)
        let cutOffset = try cutIndex.map { index throws(LogError) in try boundaryOffset(in: segments[index], after: lsn) }
        let quarantine = Quarantine(directory: directory, fileSystem: fileSystem, subdirectory: quarantineLabel)
        try quarantine.prepare()
        let reason = "log truncated after LSN \(lsn) (rejoin)"
        let later = segments[((cutIndex ?? -1) + 1)...]
        // Newest first, each move durable before the next: a crash leaves a prefix of the log.
        for segment in later.reversed() {
            report.quarantined.append(try quarantine.moveSegment(named: segment.file.fileName, reason: reason))
        }
        if let cutIndex, let cutOffset {
            let file = segments[cutIndex].file
            // The copy is made durable before the cut: nothing is lost if the cut is interrupted.
            guard let saved = try quarantine.saveTail(of: file, from: cutOffset, reason: reason) else {
                throw .failed(underlying: "\(file.fileName) holds nothing after byte \(cutOffset) to truncate")
            }
            report.quarantined.append(saved)
            try truncateSegment(file, at: cutOffset, options: options)
            report.cutSegment = file.fileName
            report.cutOffset = cutOffset
        }
        // Last: until now every entry beyond the log's end is dropped by any open anyway.
        let kept = recovered.epochHistory.filter { $0.firstLSN <= lsn }
        if kept.count < recovered.epochHistory.count || lsn == .zero {
            try writeEpochHistory(kept, directory: directory, fileSystem: fileSystem)
            report.epochHistoryDropped = Array(recovered.epochHistory[kept.count...])
        }
        report.lastLSN = lsn
        report.recordsRemoved = end.rawValue - lsn.rawValue
        report.bytesQuarantined = report.quarantined.reduce(0) { $0 + $1.bytes }
        return report
    }

    /// The offset in `segment` where the batch after `lsn` starts (its `dataEnd` when `lsn` is
    /// its last LSN, 64 when `lsn` precedes it). Walks batch headers from the last index entry
    /// at or before `lsn + 1`.
    /// - Throws: ``LogError/invalidArgument(_:)`` when `lsn` falls inside a batch.
    static func boundaryOffset(in segment: RecoveredSegment, after lsn: LSN) throws(LogError) -> Int64 {
        let next = lsn.advanced(by: 1)
        if next <= segment.file.baseLSN { return Int64(SegmentHeader.byteCount) }
        if lsn == segment.lastLSN { return segment.dataEnd }
        let entry = segment.index.last { $0.lsn <= next && $0.lsn <= segment.lastLSN }
        var offset = entry?.position ?? Int64(SegmentHeader.byteCount)
        var expected = entry?.lsn ?? segment.file.baseLSN
        while offset < segment.dataEnd {
            let header = try batchHeader(in: segment.file, at: offset, expected: expected)
            if header.baseLSN == next { return offset }
            if header.lsnRange.contains(next) {
                throw .invalidArgument(
                    "cannot truncate after LSN \(lsn): it falls inside the batch of LSN \(header.lsnRange) "
                        + "in \(segment.file.fileName); truncation keeps whole batches")
            }
            offset += Int64(header.batchByteCount)
            expected = header.lsnRange.next
        }
        throw .corruption(
            file: segment.file.fileName, offset: offset, lsnRange: "\(next)...",
            reason: "no batch starts at LSN \(next) although the segment holds it")
    }

    /// Truncates a segment at `offset`, preallocates it again (the space reads as zeros) and
    /// fdatasyncs it: it is the log's active segment from there on.
    static func truncateSegment(_ file: SegmentFile, at offset: Int64, options: LogOptions) throws(LogError) {
        do {
            try file.handle.truncate(toSize: offset)
            if options.preallocateSegments && offset < options.segmentBytesMax {
                do {
                    try file.handle.preallocate(fromAbsoluteOffset: offset, length: options.segmentBytesMax - offset)
                } catch where error.isUnsupported {}
            }
        } catch { throw error.isOutOfSpace ? .outOfSpace(error) : .io(error) }
        do { try file.handle.synchronizeData() } catch { throw .syncFailed(error) }
    }
}
