public import ShipLogFormat

/// What the log knows about one segment, as readers see it.
struct SegmentEntry {
    let file: SegmentFile
    /// Last LSN readable in the segment (`baseLSN - 1` while empty).
    var lastLSN: LSN
    /// Offset just after the last readable batch.
    var dataEnd: Int64
    /// Sparse index; for the active segment it may run ahead of `lastLSN` (filter by it).
    var index: [SegmentIndexEntry]
    var footer: SegmentFooter?
    var lastTimestamp: UInt64
    var baseLSN: LSN { file.baseLSN }
    var isSealed: Bool { footer != nil }
    var fileBytes: Int64 { dataEnd + Int64(footer?.byteCount ?? 0) }
}

/// The segment new batches are assigned to (the writer's view, ahead of what is written).
struct AssignedSegment {
    let baseLSN: LSN
    var end: Int64 = Int64(SegmentHeader.byteCount)
    var batchCount: UInt32 = 0
    var lastLSN: LSN
    var lastBatchCRC: UInt32
    var lastEpoch: Epoch
    var lastTimestamp: UInt64 = 0
    var index: [SegmentIndexEntry] = []
    var nextIndexAt: Int64 = Int64(SegmentHeader.byteCount)

    init(baseLSN: LSN, previousBatchCRC: UInt32, epoch: Epoch) {
        self.baseLSN = baseLSN
        self.lastLSN = baseLSN.predecessor
        self.lastBatchCRC = previousBatchCRC
        self.lastEpoch = epoch
    }

    var footer: SegmentFooter {
        SegmentFooter(
            batchCount: batchCount, lastLSN: lastLSN, dataEnd: UInt64(end), lastTimestamp: lastTimestamp,
            lastEpoch: lastEpoch, lastBatchCRC: lastBatchCRC, index: index)
    }
}

/// Work for the I/O thread, in log order.
enum PendingOperation {
    /// Write the footer of the current segment, trim the file, fdatasync.
    case seal(baseLSN: LSN, footer: SegmentFooter)
    /// Create the next segment (temporary name, header, preallocate, fdatasync, rename, directory fsync).
    case create(SegmentHeader)
    /// fdatasync before writing what follows, unless everything through `through` is durable
    /// already: a replicated batch may be written only once its `syncedThrough` holds here.
    case syncBarrier(through: LSN)
    /// Coalesced batches for the current segment.
    case write(offset: Int64, bytes: [UInt8], lastLSN: LSN, lastTimestamp: UInt64, indexUpTo: Int)
    /// Replace the `epoch-history` file durably (temporary file, fdatasync, rename, directory
    /// fsync) before the first batch of a new epoch is written: write-ahead.
    case writeEpochHistory([EpochStart])
}

/// A caller waiting for its batch to be written or synced.
struct Waiter {
    let range: LSNRange
    let completion: @Sendable (Result<LSNRange, LogError>) -> Void
}

/// The state recovery hands to ``Log`` when it opens one.
package struct RecoveredLog {
    package var segments: [RecoveredSegment]
    package var epoch: Epoch
    /// The epoch history as recovery reconciled it with the segments (docs/RECOVERY.md
    /// section 11): no entry beyond the log's end.
    package var epochHistory: [EpochStart]

    package init(segments: [RecoveredSegment], epoch: Epoch, epochHistory: [EpochStart] = []) {
        self.segments = segments
        self.epoch = epoch
        self.epochHistory = epochHistory
    }
}

package struct RecoveredSegment {
    package var file: SegmentFile
    package var batchCount: UInt32
    package var lastLSN: LSN
    package var lastBatchCRC: UInt32
    package var lastEpoch: Epoch
    package var lastTimestamp: UInt64
    package var dataEnd: Int64
    package var index: [SegmentIndexEntry]
    package var footer: SegmentFooter?

    package init(
        file: SegmentFile, batchCount: UInt32, lastLSN: LSN, lastBatchCRC: UInt32, lastEpoch: Epoch,
        lastTimestamp: UInt64, dataEnd: Int64, index: [SegmentIndexEntry], footer: SegmentFooter?
    ) {
        self.file = file
        self.batchCount = batchCount
        self.lastLSN = lastLSN
        self.lastBatchCRC = lastBatchCRC
        self.lastEpoch = lastEpoch
        self.lastTimestamp = lastTimestamp
        self.dataEnd = dataEnd
        self.index = index
        self.footer = footer
    }
}

/// A public description of a segment.
public struct SegmentInfo: Sendable, Hashable {
    public var fileName: String
    public var baseLSN: LSN
    /// `baseLSN - 1` when the segment holds no batch yet.
    public var lastLSN: LSN
    public var isSealed: Bool
    /// Bytes of batches in the file (header and footer excluded).
    public var dataBytes: Int64
    public var lastTimestamp: UInt64
}
