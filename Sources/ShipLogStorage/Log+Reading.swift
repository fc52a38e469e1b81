public import ShipLogFormat

extension Log {
    /// A cursor over batches, starting with the one that contains `lsn`.
    public func batches(from lsn: LSN) -> BatchCursor {
        BatchCursor(log: self, from: lsn)
    }

    /// The batch containing `lsn`, exactly as stored; `nil` when `lsn` is not written yet.
    public func batch(containing lsn: LSN) throws(LogError) -> Batch? {
        var cursor = batches(from: lsn)
        return try cursor.next()
    }

    /// Calls `body` with every application record from `lsn` through `last` (default: the
    /// written end), in LSN order. The bytes are valid only during the call.
    ///
    /// Control batches (docs/FORMAT.md section 20) are skipped: their records are the
    /// engine's, not the application's, so `body` never sees their LSNs, which are consumed
    /// all the same (the LSNs passed to `body` then jump over them). ``batches(from:)``
    /// returns control batches as they are.
    public func forEachRecord(
        from lsn: LSN, through last: LSN? = nil, _ body: (LSN, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        var cursor = batches(from: lsn)
        let end = last ?? writtenLSN
        while let batch = try cursor.next() {
            if batch.header.isControl {
                if batch.lsnRange.last >= end { break }
                continue
            }
            var current = batch.header.baseLSN
            try batch.records().forEach { record in
                if current >= lsn && current <= end { try body(current, record) }
                current = current.advanced(by: 1)
            }
            if batch.lsnRange.last >= end { break }
        }
    }

    /// Where to read a batch: the segment, the offset to start scanning from and the end of
    /// the readable data, as of now. `nil` when `lsn` is past the written end.
    func locate(_ lsn: LSN) throws(LogError) -> BatchLocation? {
        try lock.withLock { () throws(LogError) -> BatchLocation? in
            guard lsn <= state.writtenLSN else { return nil }
            guard let first = state.segments.first, lsn >= first.baseLSN else {
                throw .lsnBeforeStart(requested: lsn, firstAvailable: state.segments.first?.baseLSN ?? state.nextLSN)
            }
            var low = 0
            var high = state.segments.count - 1
            while low < high {
                let middle = (low + high + 1) / 2
                if state.segments[middle].baseLSN <= lsn { low = middle } else { high = middle - 1 }
            }
            let entry = state.segments[low]
            var position = Int64(SegmentHeader.byteCount)
            var firstLSN = entry.baseLSN
            var lowIndex = 0
            var highIndex = entry.index.count - 1
            while lowIndex <= highIndex {
                let middle = (lowIndex + highIndex) / 2
                let candidate = entry.index[middle]
                if candidate.lsn <= lsn && candidate.lsn <= entry.lastLSN {
                    position = candidate.position
                    firstLSN = candidate.lsn
                    lowIndex = middle + 1
                } else {
                    highIndex = middle - 1
                }
            }
            return BatchLocation(file: entry.file, position: position, end: entry.dataEnd, firstLSN: firstLSN)
        }
    }
}

/// Where a reader starts: a batch that must begin at `firstLSN`, at `position` in `file`,
/// with readable data up to `end`.
struct BatchLocation {
    let file: SegmentFile
    let position: Int64
    let end: Int64
    let firstLSN: LSN

    /// The chain link the batch at `position` must carry, when known without reading back.
    var previousBatchCRC: UInt32? { position == Int64(SegmentHeader.byteCount) ? file.header.previousBatchCRC : nil }
}

/// Reads batches in LSN order, checking each one (header CRC, payload CRC, LSN continuity
/// and the CRC chain). Never returns a batch that failed a check: it throws
/// ``LogError/corruption(file:offset:lsnRange:reason:)`` naming the file and offset instead.
///
/// Control batches (``BatchHeader/isControl``) are returned like every other batch:
/// replication ships them; readers of application records skip them.
public struct BatchCursor: Sendable {
    public let log: Log
    /// LSN of the next record to return.
    public private(set) var nextLSN: LSN
    private var file: SegmentFile?
    private var position: Int64 = 0
    private var end: Int64 = 0
    private var reader: ChunkedFileReader?
    /// CRC and next LSN of the batch read last in this segment, for the chain checks.
    private var previousBatchCRC: UInt32?
    private var expectedBaseLSN: LSN?

    init(log: Log, from lsn: LSN) {
        self.log = log
        self.nextLSN = max(lsn, .first)
    }

    /// The next batch, or `nil` when the cursor has reached the written end (call again later
    /// to get batches appended since).
    public mutating func next() throws(LogError) -> Batch? {
        while true {
            if file == nil || position >= end {
                guard try refresh() else { return nil }
                continue
            }
            let batch = try readBatch()
            if batch.lsnRange.last < nextLSN { continue }  // before the start LSN: skip
            nextLSN = batch.lsnRange.next
            return batch
        }
    }

    /// Re-reads where `nextLSN` is; returns false at the written end.
    private mutating func refresh() throws(LogError) -> Bool {
        guard let location = try log.locate(nextLSN) else { return false }
        if location.file !== file {
            // Moving on sequentially: the new segment must continue the chain of the last batch.
            if let last = previousBatchCRC, expectedBaseLSN == location.firstLSN,
                let link = location.previousBatchCRC, link != last
            {
                throw LogError.corruption(
                    file: location.file.fileName, offset: 12, lsnRange: "\(location.firstLSN)...",
                    reason: "CRC chain broken between segments")
            }
            file = location.file
            position = location.position
            previousBatchCRC = location.previousBatchCRC
            expectedBaseLSN = location.firstLSN
        } else if location.end == end {
            return false
        }
        end = location.end
        reader = ChunkedFileReader(handle: location.file.handle, fileSize: end, chunkBytes: log.options.readBufferBytes)
        return position < end
    }

    private mutating func readBatch() throws(LogError) -> Batch {
        guard let file, var reader else { throw .failed(underlying: "cursor has no segment") }
        defer { self.reader = reader }
        let head = try reader.bytes(at: position, count: BatchHeader.byteCount)
        let header: BatchHeader
        switch head.withUnsafeBytes({ BatchHeader.decode($0) }) {
        case .header(let decoded): header = decoded
        case .needMoreData: throw corruption(file, "batch header runs past the written data")
        case .invalid(let defect): throw corruption(file, defect.description)
        }
        guard position + Int64(header.batchByteCount) <= end else {
            throw corruption(file, "batch of \(header.batchByteCount) bytes runs past the written data")
        }
        let bytes = Array(try reader.bytes(at: position, count: header.batchByteCount))
        if case .invalid(let defect) = bytes.withUnsafeBytes({ Batch.decode($0) }) {
            throw corruption(file, defect.description, range: header.lsnRange)
        }
        if let previous = previousBatchCRC, previous != header.previousBatchCRC {
            throw corruption(file, "CRC chain broken", range: header.lsnRange)
        }
        if let expected = expectedBaseLSN, header.baseLSN != expected {
            throw corruption(file, "batch starts at LSN \(header.baseLSN), expected \(expected)", range: header.lsnRange)
        }
        position += Int64(header.batchByteCount)
        previousBatchCRC = header.batchCRC
        expectedBaseLSN = header.lsnRange.next
        return Batch(verifiedHeader: header, bytes: bytes)
    }

    private func corruption(_ file: SegmentFile, _ reason: String, range: LSNRange? = nil) -> LogError {
        .corruption(file: file.fileName, offset: position, lsnRange: range.map { "\($0)" } ?? "\(nextLSN)...", reason: reason)
    }
}
