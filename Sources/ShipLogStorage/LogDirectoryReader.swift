public import ShipLogFormat

/// Reads a log directory without opening it for writing: for tools (`shiplog read`,
/// `verify`, `inspect`) that may run while another process appends. Changes nothing on disk.
///
/// Batches are checked exactly as ``BatchCursor`` checks them. At the end of the newest
/// segment, bytes that do not (yet) form a valid batch end the read for now: a concurrent
/// writer may be half-way through them, or they are a torn tail the next open will cut.
/// Damage anywhere else is an error naming file, offset and LSN.
public final class LogDirectoryReader {
    /// How far past a zeroed batch position the reader looks for data before calling it the end, in bytes.
    public static let zeroProbeBytes = 1 << 20
    public let directory: FilePath
    let fileSystem: any FileSystem
    let readBufferBytes: Int
    /// LSN of the next record to return.
    public private(set) var nextLSN: LSN
    private var file: SegmentFile?
    private var position: Int64 = 0
    private var previousBatchCRC: UInt32?
    private var expectedBaseLSN: LSN?
    private var reader: ChunkedFileReader?

    public init(directory: FilePath, from lsn: LSN = .first, fileSystem: any FileSystem = PosixFileSystem(), readBufferBytes: Int = 256 << 10) {
        self.directory = directory
        self.fileSystem = fileSystem
        self.readBufferBytes = readBufferBytes
        self.nextLSN = max(lsn, .first)
    }

    /// Segment base LSNs and file names, oldest first.
    public func segmentNames() throws(LogError) -> [(baseLSN: LSN, name: String)] {
        let names: [String]
        do { names = try fileSystem.contentsOfDirectory(at: directory) } catch { throw .io(error) }
        return names.compactMap { name in SegmentName.baseLSN(fromFileName: name).map { ($0, name) } }
            .sorted { $0.0 < $1.0 }
    }

    /// The next batch, or `nil` at the current end of the log (call again to follow it).
    public func next() throws(LogError) -> Batch? {
        while true {
            if file == nil {
                guard try openSegment() else { return nil }
            }
            switch try readBatch() {
            case .batch(let batch):
                if batch.lsnRange.last < nextLSN { continue }
                nextLSN = batch.lsnRange.next
                return batch
            case .endOfSegment:
                // Move on only when the next segment exists and starts where this one ended.
                let segments = try segmentNames()
                guard let following = segments.first(where: { $0.baseLSN > file!.baseLSN }) else { return nil }
                guard following.baseLSN == expectedBaseLSN ?? nextLSN else {
                    throw LogError.corruption(
                        file: following.name, offset: 0, lsnRange: "\(expectedBaseLSN ?? nextLSN)...",
                        reason: "next segment starts at LSN \(following.baseLSN), expected \(expectedBaseLSN ?? nextLSN)")
                }
                file = nil
            case .notYet:
                reader = nil  // segments are preallocated: new data shows up without the size changing
                return nil
            }
        }
    }

    private enum Step {
        case batch(Batch)
        case endOfSegment
        case notYet
    }

    /// Opens the segment holding `nextLSN`; false when there is none yet.
    private func openSegment() throws(LogError) -> Bool {
        let segments = try segmentNames()
        guard let first = segments.first else { return false }
        guard nextLSN >= first.baseLSN else {
            throw .lsnBeforeStart(requested: nextLSN, firstAvailable: first.baseLSN)
        }
        let chosen = segments.last { $0.baseLSN <= nextLSN }!
        let opened = try SegmentFile.open(at: directory.appending(chosen.name), fileSystem: fileSystem, writable: false)
        if let previous = previousBatchCRC, opened.header.previousBatchCRC != previous {
            throw .corruption(
                file: opened.fileName, offset: 12, lsnRange: "\(opened.baseLSN)...",
                reason: "CRC chain broken between segments")
        }
        position = Int64(SegmentHeader.byteCount)
        if previousBatchCRC == nil {
            // A fresh start: jump through the footer's index when there is one, and check the
            // first batch is the one the index (or the header) says starts there.
            expectedBaseLSN = opened.baseLSN
            previousBatchCRC = opened.header.previousBatchCRC
            if let footer = try? opened.readFooter(), let entry = footer.index.last(where: { $0.lsn <= nextLSN }),
                entry.position > position
            {
                position = entry.position
                expectedBaseLSN = entry.lsn
                previousBatchCRC = nil
            }
        }
        file = opened
        reader = nil
        return true
    }

    private func readBatch() throws(LogError) -> Step {
        guard let file else { return .notYet }
        let size: Int64
        do { size = try file.handle.size() } catch { throw .io(error) }
        if reader == nil || reader!.fileSize != size {
            reader = ChunkedFileReader(handle: file.handle, fileSize: size, chunkBytes: readBufferBytes)
        }
        let head = try reader!.bytes(at: position, count: BatchHeader.byteCount)
        if head.count >= 4, head.withUnsafeBytes({ $0.loadUnaligned(as: UInt32.self) }) == SegmentFooter.magic.littleEndian {
            return .endOfSegment
        }
        if head.allSatisfy({ $0 == 0 }) {
            // Preallocated space: the end for now, unless a newer segment exists (a sealed
            // segment ends with its footer, never with zeros) or data follows the zeros nearby
            // (a writer fills a segment front to back, so that is damage, which the scan judges).
            guard try segmentNames().contains(where: { $0.baseLSN > file.baseLSN }) else {
                let window = min(Int64(Self.zeroProbeBytes), size - position)
                let nearby = try reader!.bytes(at: position, count: Int(window))
                if nearby.allSatisfy({ $0 == 0 }) { return .notYet }
                return try endOrDamage(in: file, reason: "zeros where a batch should start, followed by data")
            }
            throw LogError.corruption(
                file: file.fileName, offset: position, lsnRange: "\(expectedBaseLSN ?? nextLSN)...",
                reason: "zeros where the segment's next batch or footer should be, and a newer segment follows")
        }
        guard case .header(let header) = head.withUnsafeBytes({ BatchHeader.decode($0) }),
            position + Int64(header.batchByteCount) <= size
        else {
            return try endOrDamage(in: file, reason: "no valid batch header")
        }
        let bytes = Array(try reader!.bytes(at: position, count: header.batchByteCount))
        if case .invalid(let defect) = bytes.withUnsafeBytes({ Batch.decode($0) }) {
            return try endOrDamage(in: file, reason: defect.description)
        }
        if let expectedPrevious = previousBatchCRC, header.previousBatchCRC != expectedPrevious {
            throw LogError.corruption(
                file: file.fileName, offset: position, lsnRange: "\(header.lsnRange)", reason: "CRC chain broken")
        }
        if let expected = expectedBaseLSN, header.baseLSN != expected {
            throw LogError.corruption(
                file: file.fileName, offset: position, lsnRange: "\(header.lsnRange)",
                reason: "batch starts at LSN \(header.baseLSN), expected \(expected)")
        }
        position += Int64(header.batchByteCount)
        previousBatchCRC = header.batchCRC
        expectedBaseLSN = header.lsnRange.next
        return .batch(Batch(verifiedHeader: header, bytes: bytes))
    }

    /// Invalid bytes: the (current) end when they may be a write in progress or a torn tail
    /// of the newest segment; corruption otherwise.
    private func endOrDamage(in file: SegmentFile, reason: String) throws(LogError) -> Step {
        let newer = try segmentNames().contains { $0.baseLSN > file.baseLSN }
        if !newer {
            let scan = try SegmentScanner(file: file).scan()
            if case .damage(let damage) = scan.ending, damage.offset == position, !damage.isTornTail {
                throw LogError.corruption(
                    file: file.fileName, offset: position, lsnRange: "\(expectedBaseLSN ?? nextLSN)...", reason: reason)
            }
            return .notYet
        }
        throw LogError.corruption(
            file: file.fileName, offset: position, lsnRange: "\(expectedBaseLSN ?? nextLSN)...", reason: reason)
    }
}
