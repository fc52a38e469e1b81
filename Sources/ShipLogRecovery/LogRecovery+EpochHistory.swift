import ShipLogFormat
import ShipLogStorage

/// The epoch history at open: read strictly, reconciled with the recovered segments, rebuilt
/// from the batches when missing (docs/RECOVERY.md section 11).
extension LogRecovery {
    /// The history the recovered log starts with. Entries whose first LSN is beyond the log's
    /// end are dropped (their batch was never written, was torn, or was cut) and the file is
    /// rewritten without them; a missing file is rebuilt from the batches when the log holds
    /// any. A damaged file, or one that contradicts the segments, is refused in strict mode;
    /// salvage moves it to `quarantine/` and rebuilds.
    static func reconcileEpochHistory(
        segments: [RecoveredSegment], directory: FilePath, fileSystem: any FileSystem, mode: RecoveryMode,
        report: inout RecoveryReport
    ) throws(LogError) -> [EpochStart] {
        let withBatches = segments.filter { $0.batchCount > 0 }
        let end = segments.last?.lastLSN ?? .zero
        var stored: [EpochStart]?
        do {
            stored = try EpochHistoryFile.read(directory: directory, fileSystem: fileSystem)
        } catch {
            guard mode == .salvage, case .corruption = error else { throw error }
            try setAsideEpochHistory(directory: directory, fileSystem: fileSystem, because: "\(error)", report: &report)
        }
        if let entries = stored {
            let kept = entries.filter { $0.firstLSN <= end }
            if let problem = epochHistoryMismatch(kept, segments: withBatches) {
                let error = LogError.corruption(
                    file: EpochHistoryFile.fileName, offset: 0, lsnRange: "unknown",
                    reason: "the epoch history does not match the log: \(problem)")
                guard mode == .salvage else { throw error }
                try setAsideEpochHistory(directory: directory, fileSystem: fileSystem, because: "\(error)", report: &report)
                stored = nil
            } else {
                if kept.count < entries.count {
                    try writeEpochHistory(kept, directory: directory, fileSystem: fileSystem)
                    report.epochHistoryDropped = Array(entries[kept.count...])
                }
                return kept
            }
        }
        guard !withBatches.isEmpty else { return [] }
        let rebuilt = try rebuildEpochHistory(from: withBatches)
        try writeEpochHistory(rebuilt, directory: directory, fileSystem: fileSystem)
        report.epochHistoryRebuilt = true
        return rebuilt
    }

    /// Why `history` (no entry beyond the log's end) cannot describe `segments` (those holding
    /// batches), or `nil`: every epoch the log holds must have its entry, so the first entry
    /// starts at or before the log's first LSN and each segment's last epoch is the one the
    /// history gives its last LSN.
    static func epochHistoryMismatch(_ history: [EpochStart], segments: [RecoveredSegment]) -> String? {
        guard let first = segments.first else { return nil }
        guard let start = history.first, start.firstLSN <= first.file.baseLSN else {
            return "no entry covers the log's first LSN \(first.file.baseLSN)"
        }
        for segment in segments {
            let epoch = history.last { $0.firstLSN <= segment.lastLSN }?.epoch
            if epoch != segment.lastEpoch {
                return "\(segment.file.fileName) ends (LSN \(segment.lastLSN)) with a batch of epoch "
                    + "\(segment.lastEpoch), the history says epoch \(epoch.map { "\($0)" } ?? "none")"
            }
        }
        return nil
    }

    /// The epoch starts of `segments` (all holding batches, in log order), read from their
    /// batch headers. A segment whose first batch has its last batch's epoch is read no
    /// further; others are walked header by header.
    static func rebuildEpochHistory(from segments: [RecoveredSegment]) throws(LogError) -> [EpochStart] {
        var history: [EpochStart] = []
        var previous: Epoch?
        for segment in segments {
            if previous == segment.lastEpoch { continue }  // non-decreasing: constant throughout
            var offset = Int64(SegmentHeader.byteCount)
            var expected = segment.file.baseLSN
            while offset < segment.dataEnd {
                let header = try batchHeader(in: segment.file, at: offset, expected: expected)
                if previous.map({ header.epoch > $0 }) ?? true {
                    history.append(EpochStart(epoch: header.epoch, firstLSN: header.baseLSN))
                }
                previous = header.epoch
                if header.epoch == segment.lastEpoch { break }  // nothing changes after this one
                offset += Int64(header.batchByteCount)
                expected = header.lsnRange.next
            }
            guard previous == segment.lastEpoch else {
                throw .corruption(
                    file: segment.file.fileName, offset: offset, lsnRange: "\(expected)...",
                    reason: "rebuilding the epoch history: the batches end with epoch \(previous.map { "\($0)" } ?? "none"), "
                        + "the segment says \(segment.lastEpoch)")
            }
        }
        return history
    }

    /// The header of the batch at `offset`, which must start at LSN `expected`.
    static func batchHeader(in file: SegmentFile, at offset: Int64, expected: LSN) throws(LogError) -> BatchHeader {
        let bytes: [UInt8]
        do { bytes = try file.handle.read(count: BatchHeader.byteCount, fromAbsoluteOffset: offset) } catch {
            throw .io(error)
        }
        guard case .header(let header) = bytes.withUnsafeBytes({ BatchHeader.decode($0) }), header.baseLSN == expected else {
            throw .corruption(
                file: file.fileName, offset: offset, lsnRange: "\(expected)...",
                reason: "no valid batch header starting at LSN \(expected) where the recovered segment has one")
        }
        return header
    }

    /// Replaces the history file durably, mapping failures as recovery does.
    static func writeEpochHistory(_ entries: [EpochStart], directory: FilePath, fileSystem: any FileSystem) throws(LogError) {
        do {
            try EpochHistoryFile.write(entries, directory: directory, fileSystem: fileSystem)
        } catch {
            if error.operation == .sync || error.operation == .syncDirectory { throw .syncFailed(error) }
            throw error.isOutOfSpace ? .outOfSpace(error) : .io(error)
        }
    }

    /// Salvage: moves a damaged or contradicting history into `quarantine/` (never deleted).
    private static func setAsideEpochHistory(
        directory: FilePath, fileSystem: any FileSystem, because reason: String, report: inout RecoveryReport
    ) throws(LogError) {
        let moved = try Quarantine(directory: directory, fileSystem: fileSystem)
            .moveSegment(named: EpochHistoryFile.fileName, reason: reason)
        report.quarantined.append(moved)
        report.warnings.append("set the epoch history aside (\(reason)); rebuilt it from the batches")
    }
}
