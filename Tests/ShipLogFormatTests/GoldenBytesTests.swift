import Testing
@testable import ShipLogFormat

/// The worked example of docs/FORMAT.md, "Worked example": a segment with base LSN 42 holding
/// one batch of the records "a" and "bc", then its footer. Every expectation here is laid out
/// by hand from the spec's tables (field by field, CRCs from the spec's pseudo-code) and, a
/// second time, as the literal hex printed in the spec. The encoders must produce exactly these
/// bytes, so a change to either the code or the format breaks these tests.
@Suite("Golden bytes (docs/FORMAT.md worked example)")
struct GoldenBytesTests {
    // The example's parameters (docs/FORMAT.md, "Worked example").
    static let baseLSN: UInt64 = 42
    static let epoch: UInt64 = 3
    static let previousSegmentLastBatchCRC: UInt32 = 0x1234_ABCD
    static let createdAt: UInt64 = 1_700_000_000_000_000_000  // 0x17979CFE362A0000
    static let batchTimestamp: UInt64 = 1_700_000_000_000_001_000
    static let syncedThrough: UInt64 = 40

    // MARK: Literal bytes as printed in docs/FORMAT.md

    static let segmentHeaderHex = """
        53 4c 53 47 1e a4 f3 34 01 00 00 00 cd ab 34 12
        2a 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00
        00 00 2a 36 fe 9c 97 17 00 00 00 00 00 00 00 00
        00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
        """

    static let batchHex = """
        53 4c 42 31 a6 11 97 28 3e df 85 46 cd ab 34 12
        01 00 00 00 02 00 00 00 05 00 00 00 05 00 00 00
        2a 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00
        28 00 00 00 00 00 00 00 e8 03 2a 36 fe 9c 97 17
        01 61 02 62 63
        """

    static let footerHex = """
        53 4c 46 54 8e 96 ea 96 01 00 00 00 01 00 00 00
        2b 00 00 00 00 00 00 00 85 00 00 00 00 00 00 00
        e8 03 2a 36 fe 9c 97 17 03 00 00 00 00 00 00 00
        a6 11 97 28 00 00 00 00 00 00 00 00 40 00 00 00
        48 00 00 00 53 4c 46 45
        """

    // MARK: The same bytes, laid out by hand from the tables

    static func handSegmentHeader() -> [UInt8] {
        var h: [UInt8] = []
        h += ascii("SLSG")  //  0 magic
        h += [0, 0, 0, 0]  //  4 headerCRC, filled below
        h += le(UInt16(1))  //  8 version
        h += le(UInt16(0))  // 10 flags
        h += le(previousSegmentLastBatchCRC)  // 12 previousBatchCRC
        h += le(baseLSN)  // 16 baseLSN
        h += le(epoch)  // 24 epoch
        h += le(createdAt)  // 32 createdAt
        h += [UInt8](repeating: 0, count: 24)  // 40 reserved
        precondition(h.count == 64)
        h.put(referenceCRC32C(h[8..<64]), at: 4)
        return h
    }

    static let recordBlock: [UInt8] = [0x01, 0x61, 0x02, 0x62, 0x63]  // 1 "a", 2 "bc"

    static func handBatch() -> [UInt8] {
        var h: [UInt8] = []
        h += ascii("SLB1")  //  0 magic
        h += [0, 0, 0, 0]  //  4 batchCRC, filled below
        h += le(referenceCRC32C(recordBlock))  //  8 payloadCRC
        h += le(previousSegmentLastBatchCRC)  // 12 previousBatchCRC
        h += le(UInt16(1))  // 16 version
        h += le(UInt16(0))  // 18 flags: codec 0 (none)
        h += le(UInt32(2))  // 20 recordCount
        h += le(UInt32(5))  // 24 storedLength
        h += le(UInt32(5))  // 28 uncompressedLength
        h += le(baseLSN)  // 32 baseLSN
        h += le(epoch)  // 40 epoch
        h += le(syncedThrough)  // 48 syncedThrough
        h += le(batchTimestamp)  // 56 timestamp
        precondition(h.count == 64)
        h.put(referenceCRC32C(h[8..<64]), at: 4)
        return h + recordBlock
    }

    static func handFooter(lastBatchCRC: UInt32) -> [UInt8] {
        var f: [UInt8] = []
        f += ascii("SLFT")  //  0 magic
        f += [0, 0, 0, 0]  //  4 footerCRC, filled below
        f += le(UInt32(1))  //  8 entryCount
        f += le(UInt32(1))  // 12 batchCount
        f += le(UInt64(43))  // 16 lastLSN
        f += le(UInt64(64 + 69))  // 24 dataEnd: header + one 69-byte batch
        f += le(batchTimestamp)  // 32 lastTimestamp
        f += le(epoch)  // 40 lastEpoch
        f += le(lastBatchCRC)  // 48 lastBatchCRC
        f += [0, 0, 0, 0]  // 52 reserved
        f += le(UInt32(0)) + le(UInt32(64))  // 56 entry 0: lsnDelta 0, position 64
        f += le(UInt32(72))  // 64 footerLength = 64 + 8 * 1
        f += ascii("SLFE")  // 68 trailerMagic
        precondition(f.count == 72)
        f.put(referenceCRC32C(f[8...]), at: 4)
        return f
    }

    // MARK: Encoders

    static func encodedSegmentHeader() -> [UInt8] {
        SegmentHeader(
            previousBatchCRC: previousSegmentLastBatchCRC, baseLSN: LSN(baseLSN), epoch: Epoch(epoch),
            createdAt: createdAt
        ).encoded()
    }

    static func encodedBatch(codec: CompressionCodec) throws -> (bytes: [UInt8], header: BatchHeader) {
        try makeBatch(
            [Array("a".utf8), Array("bc".utf8)], codec: codec, baseLSN: baseLSN, epoch: epoch,
            previousBatchCRC: previousSegmentLastBatchCRC, syncedThrough: syncedThrough, timestamp: batchTimestamp)
    }

    static func encodedFooter(lastBatchCRC: UInt32) -> [UInt8] {
        SegmentFooter(
            batchCount: 1, lastLSN: LSN(43), dataEnd: 133, lastTimestamp: batchTimestamp, lastEpoch: Epoch(epoch),
            lastBatchCRC: lastBatchCRC, index: [SegmentIndexEntry(lsn: LSN(42), position: 64)]
        ).encoded(baseLSN: LSN(baseLSN))
    }

    // MARK: Tests

    @Test func segmentHeaderEncoderMatchesSpecTableByteForByte() {
        let encoded = Self.encodedSegmentHeader()
        #expect(encoded == Self.handSegmentHeader(), "\(encoded.hex)")
        #expect(encoded == bytes(hex: Self.segmentHeaderHex), "\(encoded.hex)")
    }

    @Test func batchEncoderWithCodecNoneMatchesSpecTableByteForByte() throws {
        let (encoded, header) = try Self.encodedBatch(codec: .none)
        #expect(encoded == Self.handBatch(), "\(encoded.hex)")
        #expect(encoded == bytes(hex: Self.batchHex), "\(encoded.hex)")
        #expect(header.batchCRC == encoded.get(UInt32.self, at: 4))
    }

    /// Three bytes of records do not shrink under LZ4, so asking for LZ4 stores them raw.
    @Test func batchEncoderAskedForLZ4StoresTinyBlockRawWithIdenticalBytes() throws {
        let (encoded, header) = try Self.encodedBatch(codec: .lz4)
        #expect(header.codec == .none)
        #expect(encoded == Self.handBatch(), "\(encoded.hex)")
    }

    @Test func footerEncoderMatchesSpecTableByteForByte() throws {
        let batchCRC = try Self.encodedBatch(codec: .none).header.batchCRC
        let encoded = Self.encodedFooter(lastBatchCRC: batchCRC)
        #expect(encoded == Self.handFooter(lastBatchCRC: batchCRC), "\(encoded.hex)")
        #expect(encoded == bytes(hex: Self.footerHex), "\(encoded.hex)")
    }

    @Test func handBuiltExampleDecodesToTheExampleValues() throws {
        let header = try SegmentHeader.decode(Self.handSegmentHeader())
        #expect(header.baseLSN == LSN(42) && header.epoch == Epoch(3) && header.createdAt == Self.createdAt)
        #expect(header.previousBatchCRC == Self.previousSegmentLastBatchCRC)

        let batch = try Batch.decoding(Self.handBatch())
        #expect(batch.header.lsnRange == LSNRange(first: LSN(42), last: LSN(43)))
        #expect(batch.header.syncedThrough == LSN(40))
        #expect(batch.header.timestamp == Self.batchTimestamp)
        // The chain into the segment: first batch's previousBatchCRC equals the header's.
        #expect(batch.header.previousBatchCRC == header.previousBatchCRC)
        #expect(try batch.records().map { Array($0) } == [Array("a".utf8), Array("bc".utf8)])

        let footerBytes = Self.handFooter(lastBatchCRC: batch.header.batchCRC)
        let trailerLength = footerBytes[(footerBytes.count - 8)...].withUnsafeBytes {
            SegmentFooter.footerLength(fromTrailer: $0)
        }
        #expect(trailerLength == 72)
        let footer = try footerBytes.withUnsafeBytes { raw throws(SegmentDefect) in
            try SegmentFooter.decode(raw, baseLSN: LSN(42))
        }
        #expect(footer.lastLSN == LSN(43) && footer.batchCount == 1 && footer.dataEnd == 133)
        #expect(footer.lastBatchCRC == batch.header.batchCRC)
        #expect(footer.index == [SegmentIndexEntry(lsn: LSN(42), position: 64)])
    }

    @Test func wholeExampleSegmentIsHeaderThenBatchThenFooter() throws {
        let batch = try Self.encodedBatch(codec: .none)
        let file = Self.encodedSegmentHeader() + batch.bytes + Self.encodedFooter(lastBatchCRC: batch.header.batchCRC)
        #expect(file.count == 205)
        #expect(SegmentName.fileName(baseLSN: LSN(Self.baseLSN)) == "00000000000000000042.seg")
        #expect(Array(file[133...]) == bytes(hex: Self.footerHex))
    }

    /// Pins the codec: a block written by hand in the LZ4 block format (not by liblz4's
    /// compressor) must decode. The record block is one 32-byte record of "x": 0x20 then 32 "x".
    /// Sequence 1: token 0x2F (2 literals, match length 4 + 15 + 7 = 26), literals 20 78,
    /// offset 01 00, extra length 07. Sequence 2 (last): token 0x50, five literal "x".
    @Test func handWrittenLZ4BlockDecodes() throws {
        let lz4: [UInt8] = [0x2F, 0x20, 0x78, 0x01, 0x00, 0x07, 0x50, 0x78, 0x78, 0x78, 0x78, 0x78]
        let forged = forgeBatch(
            RawBatchHeader(flags: 1, recordCount: 1, uncompressedLength: 33, baseLSN: 7), payload: lz4)
        let batch = try Batch.decoding(forged)
        #expect(batch.header.codec == .lz4)
        #expect(try batch.records().map { Array($0) } == [[UInt8](repeating: 0x78, count: 32)])
    }

    @Test func exampleChecksumsHaveTheirPrintedValues() throws {
        #expect(referenceCRC32C(Self.recordBlock) == 0x4685_DF3E)  // payloadCRC
        let (_, header) = try Self.encodedBatch(codec: .none)
        #expect(header.payloadCRC == 0x4685_DF3E)
        #expect(header.batchCRC == 0x2897_11A6)
        #expect(Self.encodedSegmentHeader().get(UInt32.self, at: 4) == 0x34F3_A41E)
        #expect(Self.encodedFooter(lastBatchCRC: header.batchCRC).get(UInt32.self, at: 4) == 0x96EA_968E)
    }

    @Test func magicsSpellTheirASCIINamesInFileOrder() {
        #expect(le(BatchHeader.magic) == ascii("SLB1"))
        #expect(le(SegmentHeader.magic) == ascii("SLSG"))
        #expect(le(SegmentFooter.magic) == ascii("SLFT"))
        #expect(le(SegmentFooter.trailerMagic) == ascii("SLFE"))
    }

    @Test func fixedSizesMatchTheSpec() {
        #expect(BatchHeader.byteCount == 64)
        #expect(BatchHeader.crcCoverageStart == 8)
        #expect(SegmentHeader.byteCount == 64)
        #expect(SegmentFooter.fixedByteCount == 56)
        #expect(SegmentFooter.trailerByteCount == 8)
        #expect(CompressionCodec.none.rawValue == 0 && CompressionCodec.lz4.rawValue == 1)
        #expect(LSN.first == LSN(1))
    }

    @Test func namedLimitsHaveTheirSpecifiedValues() {
        #expect(FormatLimits.recordBytesMax == 4_194_304)
        #expect(FormatLimits.recordsPerBatchMax == 1_048_576)
        #expect(FormatLimits.batchUncompressedBytesMax == 16_777_216)
        #expect(FormatLimits.batchStoredBytesMax == 16_843_025)
        #expect(FormatLimits.batchBytesMax == 16_843_089)
        #expect(FormatLimits.segmentBytesMax == 4_294_967_295)
        #expect(FormatLimits.indexEntriesMax == 4_194_304)
        // LZ4's worst case for the largest block fits the stored limit exactly.
        #expect(LZ4.compressBound(FormatLimits.batchUncompressedBytesMax) <= FormatLimits.batchStoredBytesMax)
    }
}
