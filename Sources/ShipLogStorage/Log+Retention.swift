public import ShipLogFormat

/// Which sealed segments retention may drop. The active segment is never dropped.
public struct RetentionPolicy: Sendable, Hashable {
    /// Drop the oldest segments while the log's data exceeds this many bytes.
    public var totalBytesMax: Int64?
    /// Drop segments whose newest batch is older than this.
    public var ageMax: Duration?

    public init(totalBytesMax: Int64? = nil, ageMax: Duration? = nil) {
        self.totalBytesMax = totalBytesMax
        self.ageMax = ageMax
    }
}

extension Log {
    /// Sets (or, with `nil`, removes) the retention hold `name`: until it moves or goes, no
    /// segment holding an LSN at or after `lsn` is removed, whatever ``removeSegments(before:)``
    /// or ``applyRetention(_:)`` ask. A replication slot: the primary holds the log from the
    /// next LSN each follower needs. Holds live in memory only; they end with the open log.
    public func setRetentionHold(_ name: String, from lsn: LSN?) {
        lock.withLock { state.retentionHolds[name] = lsn }
    }

    /// The retention holds in force, by name, each with the oldest LSN it keeps.
    public var retentionHolds: [String: LSN] { lock.withLock { state.retentionHolds } }

    /// Drops whole sealed segments whose records all precede `lsn`; never the active segment,
    /// nor one holding an LSN a retention hold keeps (``setRetentionHold(_:from:)``).
    /// - Returns: the segments removed.
    @discardableResult
    public func removeSegments(before lsn: LSN) throws(LogError) -> [SegmentInfo] {
        try removeSegments { entry, _ in entry.lastLSN < lsn }
    }

    /// Drops the oldest sealed segments that `policy` no longer keeps (and no retention hold
    /// keeps).
    @discardableResult
    public func applyRetention(_ policy: RetentionPolicy) throws(LogError) -> [SegmentInfo] {
        let now = wallClockNanoseconds()
        let oldest = policy.ageMax.map { now &- min(now, $0.nanoseconds) }
        return try removeSegments { entry, remainingBytes in
            if let limit = policy.totalBytesMax, remainingBytes > limit { return true }
            if let oldest, entry.lastTimestamp < oldest { return true }
            return false
        }
    }

    /// Removes segments from the front while `shouldRemove(entry, bytesOfAllSegments)` holds
    /// and no retention hold keeps the segment.
    private func removeSegments(while shouldRemove: (SegmentEntry, Int64) -> Bool) throws(LogError) -> [SegmentInfo] {
        let removed: [SegmentEntry] = lock.withLock {
            var total = state.segments.reduce(0) { $0 + $1.fileBytes }
            let held = state.retentionHolds.values.min()
            var count = 0
            while count < state.segments.count - 1, state.segments[count].isSealed,
                held.map({ state.segments[count].lastLSN < $0 }) ?? true,
                shouldRemove(state.segments[count], total)
            {
                total -= state.segments[count].fileBytes
                count += 1
            }
            let removed = Array(state.segments.prefix(count))
            state.segments.removeFirst(count)
            return removed
        }
        guard !removed.isEmpty else { return [] }
        var unlinked = 0
        do {
            for entry in removed {
                do {
                    try fileSystem.removeFile(at: entry.file.path)
                } catch where error.errno == ENOENT_VALUE {
                    // Already gone (an earlier unlink took effect but reported an error).
                }
                unlinked += 1
            }
            try fileSystem.syncDirectory(at: directory)
        } catch {
            // Segments that are still on disk stay in the log (readers may still use them).
            let kept = Array(removed[unlinked...])
            if !kept.isEmpty { lock.withLock { state.segments.insert(contentsOf: kept, at: 0) } }
            throw .io(error)
        }
        return removed.map {
            SegmentInfo(
                fileName: $0.file.fileName, baseLSN: $0.baseLSN, lastLSN: $0.lastLSN, isSealed: true,
                dataBytes: $0.dataEnd - Int64(SegmentHeader.byteCount), lastTimestamp: $0.lastTimestamp)
        }
    }
}
