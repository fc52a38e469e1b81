/// Written once when a segment is sealed, right after its last batch; the file ends with it.
/// Lets a sealed segment be opened without scanning it. See docs/FORMAT.md, "Segment footer".
///
/// | offset  | size | field          | meaning                                                  |
/// |--------:|-----:|----------------|----------------------------------------------------------|
/// |       0 |    4 | magic          | `SLFT`                                                   |
/// |       4 |    4 | footerCRC      | CRC32C of footer bytes 8..<footerLength                  |
/// |       8 |    4 | entryCount     | index entries that follow the fixed part                 |
/// |      12 |    4 | batchCount     | batches in the segment                                   |
/// |      16 |    8 | lastLSN        | LSN of the segment's last record                         |
/// |      24 |    8 | dataEnd        | file offset where the footer starts                      |
/// |      32 |    8 | lastTimestamp  | timestamp of the last batch                              |
/// |      40 |    8 | lastEpoch      | epoch of the last batch                                  |
/// |      48 |    4 | lastBatchCRC   | batchCRC of the last batch                               |
/// |      52 |    4 | reserved       | zero                                                     |
/// |      56 |  8*n | entries        | (lsnDelta u32, position u32): batch at `position` starts at baseLSN+lsnDelta |
/// | 56+8n   |    4 | footerLength   | 64 + 8n                                                  |
/// | 60+8n   |    4 | trailerMagic   | `SLFE`                                                   |
public struct SegmentFooter: Hashable, Sendable {
    public static let magic: UInt32 = 0x5446_4C53  // "SLFT"
    public static let trailerMagic: UInt32 = 0x4546_4C53  // "SLFE"
    public static let fixedByteCount = 56
    public static let trailerByteCount = 8

    public var batchCount: UInt32
    public var lastLSN: LSN
    public var dataEnd: UInt64
    public var lastTimestamp: UInt64
    public var lastEpoch: Epoch
    public var lastBatchCRC: UInt32
    /// Sparse LSN -> file position index, ascending in both.
    public var index: [SegmentIndexEntry]

    public init(
        batchCount: UInt32, lastLSN: LSN, dataEnd: UInt64, lastTimestamp: UInt64, lastEpoch: Epoch,
        lastBatchCRC: UInt32, index: [SegmentIndexEntry]
    ) {
        self.batchCount = batchCount
        self.lastLSN = lastLSN
        self.dataEnd = dataEnd
        self.lastTimestamp = lastTimestamp
        self.lastEpoch = lastEpoch
        self.lastBatchCRC = lastBatchCRC
        self.index = index
    }

    public var byteCount: Int { Self.fixedByteCount + 8 * index.count + Self.trailerByteCount }

    public func encoded(baseLSN: LSN) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: byteCount)
        bytes.withUnsafeMutableBytes { buffer in
            buffer.writeLittleEndian(Self.magic, at: 0)
            buffer.writeLittleEndian(UInt32(index.count), at: 8)
            buffer.writeLittleEndian(batchCount, at: 12)
            buffer.writeLittleEndian(lastLSN.rawValue, at: 16)
            buffer.writeLittleEndian(dataEnd, at: 24)
            buffer.writeLittleEndian(lastTimestamp, at: 32)
            buffer.writeLittleEndian(lastEpoch.rawValue, at: 40)
            buffer.writeLittleEndian(lastBatchCRC, at: 48)
            var offset = Self.fixedByteCount
            for entry in index {
                buffer.writeLittleEndian(UInt32(entry.lsn.rawValue - baseLSN.rawValue), at: offset)
                buffer.writeLittleEndian(UInt32(entry.position), at: offset + 4)
                offset += 8
            }
            buffer.writeLittleEndian(UInt32(byteCount), at: offset)
            buffer.writeLittleEndian(Self.trailerMagic, at: offset + 4)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[8...]))
            buffer.writeLittleEndian(crc, at: 4)
        }
        return bytes
    }

    /// The footer length stated by the last 8 bytes of a sealed segment, or `nil` if they are
    /// not a footer trailer.
    public static func footerLength(fromTrailer trailer: UnsafeRawBufferPointer) -> Int? {
        guard trailer.count == trailerByteCount else { return nil }
        let length: UInt32 = trailer.readLittleEndian(at: 0)
        let magic: UInt32 = trailer.readLittleEndian(at: 4)
        guard magic == trailerMagic, length >= UInt32(fixedByteCount + trailerByteCount),
            (Int(length) - fixedByteCount - trailerByteCount) % 8 == 0,
            Int(length) <= fixedByteCount + trailerByteCount + 8 * FormatLimits.indexEntriesMax
        else { return nil }
        return Int(length)
    }

    /// Decodes a whole footer (as located by ``footerLength(fromTrailer:)``).
    public static func decode(_ bytes: UnsafeRawBufferPointer, baseLSN: LSN) throws(SegmentDefect) -> SegmentFooter {
        guard bytes.count >= fixedByteCount + trailerByteCount else { throw .footerMissing }
        let magic: UInt32 = bytes.readLittleEndian(at: 0)
        guard magic == Self.magic else { throw .footerBadMagic }
        let stored: UInt32 = bytes.readLittleEndian(at: 4)
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[8...]))
        guard stored == computed else { throw .footerChecksumMismatch(stored: stored, computed: computed) }
        let entryCount = Int(bytes.readLittleEndian(at: 8, as: UInt32.self))
        guard fixedByteCount + 8 * entryCount + trailerByteCount == bytes.count else {
            throw .footerInconsistent("entry count \(entryCount) does not match footer length \(bytes.count)")
        }
        let trailerLength: UInt32 = bytes.readLittleEndian(at: bytes.count - trailerByteCount)
        let trailer: UInt32 = bytes.readLittleEndian(at: bytes.count - 4)
        guard Int(trailerLength) == bytes.count, trailer == trailerMagic else {
            throw .footerInconsistent("trailer says \(trailerLength) bytes, footer has \(bytes.count)")
        }
        let lastLSN = LSN(bytes.readLittleEndian(at: 16))
        guard lastLSN >= baseLSN else {
            throw .footerInconsistent("last LSN \(lastLSN) before base LSN \(baseLSN)")
        }
        var index: [SegmentIndexEntry] = []
        index.reserveCapacity(entryCount)
        var offset = fixedByteCount
        for _ in 0..<entryCount {
            let delta: UInt32 = bytes.readLittleEndian(at: offset)
            let position: UInt32 = bytes.readLittleEndian(at: offset + 4)
            guard UInt64(delta) <= lastLSN.rawValue - baseLSN.rawValue else {
                throw .footerInconsistent("index entry \(index.count) points past the last LSN")
            }
            let entry = SegmentIndexEntry(lsn: baseLSN.advanced(by: UInt64(delta)), position: Int64(position))
            if let last = index.last, !(last.lsn < entry.lsn && last.position < entry.position) {
                throw .footerInconsistent("index entries not ascending at entry \(index.count)")
            }
            index.append(entry)
            offset += 8
        }
        let footer = SegmentFooter(
            batchCount: bytes.readLittleEndian(at: 12), lastLSN: LSN(bytes.readLittleEndian(at: 16)),
            dataEnd: bytes.readLittleEndian(at: 24), lastTimestamp: bytes.readLittleEndian(at: 32),
            lastEpoch: Epoch(bytes.readLittleEndian(at: 40)), lastBatchCRC: bytes.readLittleEndian(at: 48),
            index: index)
        guard footer.lastLSN >= baseLSN, footer.batchCount >= 1 else {
            throw .footerInconsistent("last LSN \(footer.lastLSN) before base LSN \(baseLSN) or no batches")
        }
        if let last = index.last, last.lsn > footer.lastLSN || UInt64(last.position) >= footer.dataEnd {
            throw .footerInconsistent("index entry beyond the segment's data")
        }
        return footer
    }
}

/// One sparse index entry: the batch starting at `lsn` begins at byte `position` of the segment file.
public struct SegmentIndexEntry: Hashable, Sendable {
    public var lsn: LSN
    public var position: Int64

    public init(lsn: LSN, position: Int64) {
        self.lsn = lsn
        self.position = position
    }
}
