import Testing
@testable import ShipLogFormat

@Suite("Batch round trips")
struct BatchRoundTripTests {
    static func sampleRecords() -> [[UInt8]] {
        var rng = SplitMix64(seed: 3)
        var records: [[UInt8]] = [
            [],  // empty records are allowed: just a 0x00 length byte
            Array("hello, ShipLog".utf8),
            [UInt8](repeating: 0x41, count: 127),  // 1-byte varint limit
            [UInt8](repeating: 0x42, count: 128),  // first 2-byte varint
            [UInt8](repeating: 0x43, count: 16_384),  // first 3-byte varint
        ]
        for _ in 0..<50 {
            let length = Int(rng.next() % 200)
            records.append((0..<length).map { UInt8(truncatingIfNeeded: $0 % 7) })
        }
        return records
    }

    @Test(arguments: [CompressionCodec.none, .lz4])
    func builderEncodeSealDecodeReturnsTheSameRecords(codec: CompressionCodec) throws {
        let records = Self.sampleRecords()
        let (bytes, sealed) = try makeBatch(records, codec: codec, baseLSN: 1000, epoch: 9, previousBatchCRC: 0xABCD, syncedThrough: 990)
        #expect(sealed.codec == codec)  // the sample compresses well, so lz4 is kept
        guard case .success(let (header, decoded)) = decodeRecords(bytes) else {
            Issue.record("decode failed: \(decodeRecords(bytes))")
            return
        }
        #expect(header == sealed)
        #expect(decoded == records)
        #expect(header.lsnRange == LSNRange(first: LSN(1000), count: UInt32(records.count)))
        #expect(header.epoch == Epoch(9) && header.syncedThrough == LSN(990) && header.previousBatchCRC == 0xABCD)
        #expect(Int(header.uncompressedLength) == recordBlock(records).count)
        #expect(bytes.count == 64 + Int(header.storedLength))
    }

    @Test func forEachVisitsTheSameRecordsAsTheIterator() throws {
        let records = Self.sampleRecords()
        let batch = try Batch.decoding(try makeBatch(records).bytes)
        var visited: [[UInt8]] = []
        try batch.records().forEach { visited.append(Array($0)) }
        #expect(visited == records)
        #expect(try batch.records().count == records.count)
    }

    @Test func uncompressedRecordBlockIsLengthPrefixedRecords() throws {
        let records = Self.sampleRecords()
        let (bytes, header) = try makeBatch(records, codec: .none)
        #expect(header.codec == .none)
        #expect(Array(bytes[64...]) == recordBlock(records))
    }

    @Test func checksumsCoverExactlyTheSpecifiedBytes() throws {
        let (bytes, header) = try makeBatch(Self.sampleRecords())
        #expect(header.payloadCRC == referenceCRC32C(bytes[64...]))
        #expect(header.batchCRC == referenceCRC32C(bytes[8..<64]))
        #expect(bytes.get(UInt32.self, at: 4) == header.batchCRC)
        #expect(bytes.get(UInt32.self, at: 8) == header.payloadCRC)
    }

    @Test func incompressibleRecordsAreStoredAsCodecNone() throws {
        var rng = SplitMix64(seed: 17)
        let records = (0..<8).map { _ in [UInt8].random(count: 4000, using: &rng) }
        let (bytes, header) = try makeBatch(records, codec: .lz4)
        #expect(header.codec == .none)
        #expect(header.storedLength == header.uncompressedLength)
        #expect(Array(bytes[64...]) == recordBlock(records))
        guard case .success(let (_, decoded)) = decodeRecords(bytes) else {
            Issue.record("decode failed")
            return
        }
        #expect(decoded == records)
    }

    @Test func compressibleRecordsAreStoredAsLZ4AndSmaller() throws {
        let records = (0..<100).map { i in Array("event \(i % 3) happened at the usual place".utf8) }
        let (_, header) = try makeBatch(records, codec: .lz4)
        #expect(header.codec == .lz4)
        #expect(header.storedLength < header.uncompressedLength)
    }

    @Test func singleRecordOfMaximumSizeRoundTrips() throws {
        var record = [UInt8](repeating: 0, count: FormatLimits.recordBytesMax)
        for i in stride(from: 0, to: record.count, by: 4096) { record[i] = UInt8(truncatingIfNeeded: i >> 12) }
        let (bytes, header) = try makeBatch([record], codec: .lz4)
        #expect(header.codec == .lz4)
        #expect(Int(header.uncompressedLength) == record.count + 4)  // 4-byte varint
        guard case .success(let (_, decoded)) = decodeRecords(bytes) else {
            Issue.record("decode failed")
            return
        }
        #expect(decoded == [record])
    }

    @Test func recordOverTheLimitIsRefusedByTheBuilder() {
        var builder = BatchBuilder()
        let tooLarge = [UInt8](repeating: 0, count: FormatLimits.recordBytesMax + 1)
        #expect(throws: FormatError.recordTooLarge(byteCount: tooLarge.count, limit: FormatLimits.recordBytesMax)) {
            try builder.append(tooLarge)
        }
        #expect(builder.isEmpty)
        #expect(!builder.canAppend(byteCount: FormatLimits.recordBytesMax + 1))
        #expect(builder.canAppend(byteCount: FormatLimits.recordBytesMax))
    }

    @Test func builderRefusesRecordsThatWouldOverflowTheBlockLimit() throws {
        var builder = BatchBuilder(capacity: 0)
        let record = [UInt8](repeating: 1, count: FormatLimits.recordBytesMax)
        for _ in 0..<3 { try builder.append(record) }
        // 3 x (4 MiB + 4) bytes so far; a fourth 4 MiB record would pass 16 MiB.
        #expect(!builder.canAppend(byteCount: FormatLimits.recordBytesMax))
        #expect(throws: FormatError.batchFull) { try builder.append(record) }
        #expect(builder.recordCount == 3)
    }

    @Test func builderReusedAfterRemoveAllProducesAFreshBatch() throws {
        var builder = BatchBuilder()
        try builder.append("first")
        builder.removeAll()
        #expect(builder.isEmpty && builder.uncompressedByteCount == 0)
        try builder.append("second")
        var encoded = builder.encode(codec: .none)
        encoded.seal(baseLSN: LSN(1), epoch: Epoch(1), previousBatchCRC: 0, syncedThrough: LSN(0), timestamp: 0)
        guard case .success(let (_, decoded)) = decodeRecords(encoded.bytes) else {
            Issue.record("decode failed")
            return
        }
        #expect(decoded == [Array("second".utf8)])
    }

    @Test func appendOverloadsWriteTheSameBytes() throws {
        var a = BatchBuilder()
        var b = BatchBuilder()
        var c = BatchBuilder()
        try a.append("xyz")
        try b.append(Array("xyz".utf8))
        try c.append(Array("--xyz".utf8)[2...])
        let ea = a.encode(codec: .none).bytes
        #expect(ea == b.encode(codec: .none).bytes)
        #expect(ea == c.encode(codec: .none).bytes)
        #expect(Array(ea[64...]) == [0x03, 0x78, 0x79, 0x7A])
    }

    /// The chain: each batch's previousBatchCRC is the batchCRC of the batch before it.
    @Test func chainedBatchesLinkThroughPreviousBatchCRC() throws {
        var previous: UInt32 = 0
        var next: UInt64 = 1
        var headers: [BatchHeader] = []
        for i in 0..<5 {
            let records = (0...i).map { Array("r\($0)".utf8) }
            let (bytes, _) = try makeBatch(
                records, baseLSN: next, previousBatchCRC: previous, syncedThrough: next - 1)
            let decoded = try Batch.decoding(bytes)
            #expect(decoded.header.previousBatchCRC == previous)
            previous = decoded.header.batchCRC
            next = decoded.lsnRange.next.rawValue
            headers.append(decoded.header)
        }
        #expect(headers.first?.previousBatchCRC == 0)
        for (a, b) in zip(headers, headers.dropFirst()) {
            #expect(b.previousBatchCRC == a.batchCRC)
            #expect(b.baseLSN == a.lsnRange.next)
        }
        #expect(next == 16)  // 1 + 2 + 3 + 4 + 5 records, dense from LSN 1
    }

    /// Only the header depends on the batch's place in the log; the payload does not.
    @Test func sealingTwiceRewritesOnlyTheHeader() throws {
        var builder = BatchBuilder()
        try builder.append("payload")
        var encoded = builder.encode(codec: .lz4)
        let first = encoded.seal(baseLSN: LSN(5), epoch: Epoch(1), previousBatchCRC: 1, syncedThrough: LSN(4), timestamp: 1)
        let payload = Array(encoded.bytes[64...])
        let second = encoded.seal(baseLSN: LSN(9), epoch: Epoch(2), previousBatchCRC: 2, syncedThrough: LSN(3), timestamp: 2)
        #expect(Array(encoded.bytes[64...]) == payload)
        #expect(first.payloadCRC == second.payloadCRC)
        #expect(first.batchCRC != second.batchCRC)
        #expect(try Batch.decoding(encoded.bytes).header == second)
    }

    @Test func streamOfBatchesDecodesOneAfterAnother() throws {
        var stream: [UInt8] = []
        var previous: UInt32 = 0
        var lsn: UInt64 = 1
        var expected: [[UInt8]] = []
        for i in 0..<10 {
            let records = (0..<(i % 4 + 1)).map { Array("b\(i)r\($0)".utf8) }
            let (bytes, header) = try makeBatch(records, baseLSN: lsn, previousBatchCRC: previous, syncedThrough: lsn - 1)
            stream += bytes
            expected += records
            previous = header.batchCRC
            lsn += UInt64(records.count)
        }
        var offset = 0
        var decoded: [[UInt8]] = []
        previous = 0
        lsn = 1
        while offset < stream.count {
            let rest = Array(stream[offset...])
            guard case .batch(let header) = decodeBatch(rest) else {
                Issue.record("no batch at \(offset)")
                return
            }
            #expect(header.previousBatchCRC == previous && header.baseLSN == LSN(lsn))
            let batch = try Batch.decoding(Array(rest[..<header.batchByteCount]))
            decoded += try batch.records().map { Array($0) }
            offset += header.batchByteCount
            previous = header.batchCRC
            lsn = header.lsnRange.next.rawValue
        }
        #expect(decoded == expected)
    }
}
