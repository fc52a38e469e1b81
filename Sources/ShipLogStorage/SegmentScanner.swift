public import ShipLogFormat
import CShipLogSupport

/// Reads a segment's batches in order and says exactly where and why valid data ends.
///
/// It checks every batch (header CRC, lengths, payload CRC, LSN continuity, the CRC chain,
/// epochs never decreasing) and, with `verifyRecords`, decompresses and parses each record
/// block too, and decodes the records of control batches (docs/FORMAT.md section 20). It never repairs anything: deciding what to do is recovery's job.
public struct SegmentScanner {
    /// Sector size that torn writes are assumed to respect.
    public static let sectorBytes: Int64 = 512
    /// Bytes after an unreadable header that must be zero for it to count as never-written
    /// space rather than a damaged batch, in bytes.
    public static let payloadProbeBytes: Int64 = 8
    /// Read size while scanning, in bytes.
    public static let readChunkBytes = 1 << 20

    public let file: SegmentFile
    public let indexIntervalBytes: Int64
    public let verifyRecords: Bool

    public init(file: SegmentFile, indexIntervalBytes: Int64 = 4096, verifyRecords: Bool = false) {
        self.file = file
        self.indexIntervalBytes = indexIntervalBytes
        self.verifyRecords = verifyRecords
    }

    /// How the valid data of a segment ends.
    public enum Ending: Sendable, Equatable {
        /// The file ends right after the last batch.
        case endOfFile
        /// Only zero bytes follow (preallocated space never written).
        case zeroFill
        /// A valid footer follows: the segment is sealed.
        case footer(SegmentFooter)
        /// A footer starts after the last valid batch but is torn, damaged or does not match
        /// the batches. Every batch before it checked out; the footer is derived data.
        case damagedFooter(offset: Int64)
        /// Something that is not a valid next batch.
        case damage(Damage)
    }

    /// Where valid data stops and what follows it.
    public struct Damage: Sendable, Equatable {
        /// Byte offset of the first bad byte (the start of the bad batch).
        public var offset: Int64
        /// LSN the bad batch should have started at.
        public var expectedLSN: LSN
        public var reason: String
        /// The damage looks like a write that did not complete: the file ends inside it, the
        /// part of some 512-byte sector it covers is still all zero, or (for an unreadable
        /// header) zeros follow where its payload would be. Bit rot in fully written data does not.
        public var tornWriteSignature: Bool
        /// A later valid batch whose `syncedThrough` says the damaged LSN had been made durable:
        /// then the damage is corruption of synced data, never a torn tail.
        public var laterBatchClaimingDurability: (offset: Int64, lsnRange: LSNRange)?
        /// Valid-looking batches after the damage (never synced, or corruption victims).
        public var validBatchesAfter: Int
        /// File bytes from `offset` to the end.
        public var bytesAfter: Int64

        /// A torn tail: explainable by an interrupted write and nothing later says it was synced.
        public var isTornTail: Bool { tornWriteSignature && laterBatchClaimingDurability == nil }

        public static func == (a: Damage, b: Damage) -> Bool {
            a.offset == b.offset && a.reason == b.reason && a.isTornTail == b.isTornTail
        }
    }

    /// The result of a scan.
    public struct Result: Sendable {
        public var batchCount = 0
        /// How many of the valid batches are control batches.
        public var controlBatchCount = 0
        /// The segment's first valid batch and each later one whose epoch exceeds its
        /// predecessor's, as (epoch, baseLSN): where epochs start, as far as this segment shows.
        public var epochStarts: [EpochStart] = []
        /// Last LSN of the last valid batch; `baseLSN - 1` when there is none.
        public var lastLSN: LSN
        public var lastBatchCRC: UInt32
        public var lastEpoch: Epoch
        public var lastTimestamp: UInt64 = 0
        /// Offset just after the last valid batch.
        public var dataEnd: Int64 = Int64(SegmentHeader.byteCount)
        public var index: [SegmentIndexEntry] = []
        public var ending: Ending = .endOfFile
        /// Record-block bytes of the valid batches (uncompressed), and their stored bytes.
        public var uncompressedBytes: Int64 = 0
        public var storedBytes: Int64 = 0
    }

    public func scan() throws(LogError) -> Result {
        let fileSize: Int64
        do { fileSize = try file.handle.size() } catch { throw .io(error) }
        var reader = ChunkedFileReader(handle: file.handle, fileSize: fileSize, chunkBytes: Self.readChunkBytes)
        var result = Result(
            lastLSN: file.baseLSN.predecessor, lastBatchCRC: file.header.previousBatchCRC, lastEpoch: file.header.epoch)
        var offset = Int64(SegmentHeader.byteCount)
        var nextIndexAt = offset
        while true {
            let expected = result.lastLSN.advanced(by: 1)
            if offset == fileSize {
                result.ending = .endOfFile
                return result
            }
            let available = min(Int64(BatchHeader.byteCount), fileSize - offset)
            let head = try reader.bytes(at: offset, count: Int(available))
            if head.allSatisfy({ $0 == 0 }) {
                if try reader.isZero(from: offset + available) {
                    result.ending = .zeroFill
                    return result
                }
                result.ending = .damage(
                    try damage(at: offset, expected: expected, reason: "zero bytes followed by data", reader: &reader))
                return result
            }
            if available >= 4, head.withUnsafeBytes({ $0.loadUnaligned(as: UInt32.self) }) == SegmentFooter.magic.littleEndian {
                if let footer = try footer(at: offset, result: result, reader: &reader) {
                    result.ending = .footer(footer)
                } else {
                    result.ending = .damagedFooter(offset: offset)
                }
                return result
            }
            switch head.withUnsafeBytes({ BatchHeader.decode($0) }) {
            case .needMoreData:
                result.ending = .damage(
                    try damage(at: offset, expected: expected, reason: "file ends inside a batch header", reader: &reader))
                return result
            case .invalid(let defect):
                result.ending = .damage(try damage(at: offset, expected: expected, reason: defect.description, reader: &reader))
                return result
            case .header(let header):
                if let problem = try check(header, at: offset, expected: expected, result: result, fileSize: fileSize, reader: &reader) {
                    result.ending = .damage(problem)
                    return result
                }
                if offset >= nextIndexAt {
                    result.index.append(SegmentIndexEntry(lsn: header.baseLSN, position: offset))
                    nextIndexAt = offset + indexIntervalBytes
                }
                result.batchCount += 1
                if header.isControl { result.controlBatchCount += 1 }
                if result.batchCount == 1 || header.epoch > result.lastEpoch {
                    result.epochStarts.append(EpochStart(epoch: header.epoch, firstLSN: header.baseLSN))
                }
                result.lastLSN = header.lsnRange.last
                result.lastBatchCRC = header.batchCRC
                result.lastEpoch = header.epoch
                result.lastTimestamp = header.timestamp
                result.uncompressedBytes += Int64(header.uncompressedLength)
                result.storedBytes += Int64(header.batchByteCount)
                offset += Int64(header.batchByteCount)
                result.dataEnd = offset
            }
        }
    }

    /// Checks a batch whose header decoded: payload, continuity, chain, epoch, records.
    private func check(
        _ header: BatchHeader, at offset: Int64, expected: LSN, result: Result, fileSize: Int64,
        reader: inout ChunkedFileReader
    ) throws(LogError) -> Damage? {
        let length = Int64(header.batchByteCount)
        if offset + length > fileSize {
            return try damage(
                at: offset, expected: expected, reason: "file ends inside a batch", reader: &reader, extent: length)
        }
        let batchBytes = try reader.bytes(at: offset, count: Int(length))
        let decoded = batchBytes.withUnsafeBytes { Batch.decode($0) }
        if case .invalid(let defect) = decoded {
            return try damage(at: offset, expected: expected, reason: defect.description, reader: &reader, extent: length)
        }
        var misplaced: String?
        if header.baseLSN != expected {
            misplaced = "batch starts at LSN \(header.baseLSN), expected \(expected)"
        } else if header.previousBatchCRC != result.lastBatchCRC {
            misplaced = "CRC chain broken: previousBatchCRC 0x\(String(header.previousBatchCRC, radix: 16)), "
                + "expected 0x\(String(result.lastBatchCRC, radix: 16))"
        } else if header.epoch < result.lastEpoch {
            misplaced = "epoch \(header.epoch) after epoch \(result.lastEpoch)"
        } else if verifyRecords {
            let batch = Batch(verifiedHeader: header, bytes: Array(batchBytes))
            do {
                if header.isControl {
                    _ = try batch.controlRecords()
                } else {
                    _ = try batch.records()
                }
            } catch let error as ControlRecordDefect {
                misplaced = error.description
            } catch {
                misplaced = "\(error)"
            }
        }
        guard let reason = misplaced else { return nil }
        // A whole, checksummed batch in the wrong place is never a torn write.
        var found = try damage(at: offset, expected: expected, reason: reason, reader: &reader, extent: length)
        found.tornWriteSignature = false
        return found
    }

    private func footer(at offset: Int64, result: Result, reader: inout ChunkedFileReader) throws(LogError) -> SegmentFooter? {
        let fixed = try reader.bytes(at: offset, count: Int(min(Int64(SegmentFooter.fixedByteCount), reader.fileSize - offset)))
        guard fixed.count == SegmentFooter.fixedByteCount else { return nil }
        let entries = Int(fixed.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian })
        guard entries <= FormatLimits.indexEntriesMax else { return nil }
        let length = SegmentFooter.fixedByteCount + 8 * entries + SegmentFooter.trailerByteCount
        guard offset + Int64(length) <= reader.fileSize else { return nil }
        let bytes = try reader.bytes(at: offset, count: length)
        let decoded = bytes.withUnsafeBytes { raw in
            Swift.Result { () throws(SegmentDefect) in try SegmentFooter.decode(raw, baseLSN: file.baseLSN) }
        }
        guard case .success(let footer) = decoded, footer.dataEnd == UInt64(offset), footer.lastLSN == result.lastLSN,
            footer.lastBatchCRC == result.lastBatchCRC, Int(footer.batchCount) == result.batchCount
        else { return nil }
        return footer
    }

    /// Describes damage at `offset`: does it look like an interrupted write, and does any later
    /// valid batch say the damaged LSNs had already been synced?
    private func damage(
        at offset: Int64, expected: LSN, reason: String, reader: inout ChunkedFileReader, extent: Int64? = nil
    ) throws(LogError) -> Damage {
        let fileSize = reader.fileSize
        let regionEnd = offset + (extent ?? Int64(BatchHeader.byteCount))
        // Writes reach the disk in whole sectors: a write that stopped part-way leaves some of
        // its sectors as they were, zeros (segments are preallocated and only ever appended to).
        var torn = regionEnd > fileSize
        var sectorStart = offset - offset % Self.sectorBytes
        while sectorStart < regionEnd && !torn {
            let from = max(sectorStart, offset)
            let to = min(sectorStart + Self.sectorBytes, regionEnd)
            torn = try reader.bytes(at: from, count: Int(to - from)).allSatisfy { $0 == 0 }
            sectorStart += Self.sectorBytes
        }
        if !torn && extent == nil {
            // The header is unreadable, so the batch's extent is unknown. A real batch has a
            // payload right behind its header; zeros there mean no batch was written here:
            // garbage in never-written space, or a header whose sector tore.
            let after = min(Self.payloadProbeBytes, fileSize - regionEnd)
            torn = try reader.bytes(at: regionEnd, count: Int(after)).allSatisfy { $0 == 0 }
        }
        var found = Damage(
            offset: offset, expectedLSN: expected, reason: reason, tornWriteSignature: torn,
            laterBatchClaimingDurability: nil, validBatchesAfter: 0, bytesAfter: fileSize - offset)
        // Look for valid batch headers after the damage (magic, then CRC).
        var position = offset + 1
        while position + Int64(BatchHeader.byteCount) <= fileSize {
            guard let candidate = try reader.nextMagic(BatchHeader.magic, from: position) else { break }
            position = candidate
            guard position + Int64(BatchHeader.byteCount) <= fileSize else { break }
            let head = try reader.bytes(at: position, count: BatchHeader.byteCount)
            if case .header(let header) = head.withUnsafeBytes({ BatchHeader.decode($0) }) {
                found.validBatchesAfter += 1
                if header.syncedThrough >= expected, found.laterBatchClaimingDurability == nil {
                    found.laterBatchClaimingDurability = (position, header.lsnRange)
                }
            }
            position += 1
        }
        return found
    }
}

/// Sequential reads through a large buffer, for scanning.
struct ChunkedFileReader {
    let handle: any FileHandle
    let fileSize: Int64
    let chunkBytes: Int
    private var buffer: [UInt8] = []
    private var bufferStart: Int64 = 0

    init(handle: any FileHandle, fileSize: Int64, chunkBytes: Int) {
        self.handle = handle
        self.fileSize = fileSize
        self.chunkBytes = chunkBytes
    }

    /// `count` bytes at `offset` (fewer only at end of file).
    mutating func bytes(at offset: Int64, count: Int) throws(LogError) -> ArraySlice<UInt8> {
        let end = min(offset + Int64(count), fileSize)
        if offset >= bufferStart && end <= bufferStart + Int64(buffer.count) {
            let start = Int(offset - bufferStart)
            return buffer[start..<start + Int(end - offset)]
        }
        let want = Int(min(max(Int64(count), Int64(chunkBytes)), fileSize - offset))
        do { buffer = try handle.read(count: max(want, 0), fromAbsoluteOffset: offset) } catch { throw .io(error) }
        let got = buffer.count
        bufferStart = offset
        return buffer[0..<min(got, Int(end - offset))]
    }

    /// Whether every byte from `offset` to the end of the file is zero.
    mutating func isZero(from offset: Int64) throws(LogError) -> Bool {
        var position = offset
        while position < fileSize {
            let chunk = try bytes(at: position, count: chunkBytes)
            if chunk.isEmpty { return true }
            let allZero = chunk.withUnsafeBytes { shiplog_first_nonzero($0.baseAddress, $0.count) == $0.count }
            if !allZero { return false }
            position += Int64(chunk.count)
        }
        return true
    }

    /// The offset of the next occurrence of `magic` (little-endian bytes) at or after `offset`.
    mutating func nextMagic(_ magic: UInt32, from offset: Int64) throws(LogError) -> Int64? {
        var position = offset
        while position + 4 <= fileSize {
            let chunk = try bytes(at: position, count: chunkBytes)
            if chunk.count < 4 { return nil }
            let hit = chunk.withUnsafeBytes { raw -> Int? in
                withUnsafeBytes(of: magic.littleEndian) { needle in
                    let found = shiplog_find4(raw.baseAddress, raw.count, needle.baseAddress)
                    return found < raw.count ? found : nil
                }
            }
            if let hit { return position + Int64(hit) }
            position += Int64(chunk.count - 3)
        }
        return nil
    }
}
