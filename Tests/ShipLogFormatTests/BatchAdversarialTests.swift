import Testing
@testable import ShipLogFormat

@Suite("Batch decoding of damaged and hostile input")
struct BatchAdversarialTests {
    static func validBatches() throws -> [(name: String, bytes: [UInt8])] {
        let compressible = (0..<20).map { Array("record number \($0 % 4) with a repeated body".utf8) }
        return [
            ("codec none", try makeBatch([Array("a".utf8), Array("bc".utf8), []], codec: .none, baseLSN: 10, syncedThrough: 9).bytes),
            ("codec lz4", try makeBatch(compressible, codec: .lz4, baseLSN: 77, epoch: 4, previousBatchCRC: 0xFEED_F00D, syncedThrough: 50).bytes),
        ]
    }

    // MARK: Truncation

    @Test func truncatedHeaderNeedsMoreData() throws {
        for (name, batch) in try Self.validBatches() {
            for length in 0..<64 {
                #expect(decodeBatch(Array(batch[..<length])) == .needMoreData(64), "\(name) length \(length)")
                #expect(decodeBatchHeader(Array(batch[..<length])) == .needMoreData(64), "\(name) length \(length)")
            }
        }
    }

    @Test func truncatedPayloadNeedsMoreDataForTheWholeBatch() throws {
        for (name, batch) in try Self.validBatches() {
            #expect(batch.count > 64)
            for length in 64..<batch.count {
                #expect(decodeBatch(Array(batch[..<length])) == .needMoreData(batch.count), "\(name) length \(length)")
            }
        }
    }

    @Test func batchFollowedByMoreBytesDecodesAndStatesItsOwnLength() throws {
        for (name, batch) in try Self.validBatches() {
            guard case .batch(let header) = decodeBatch(batch + [0x53, 0x4C, 0x42, 0x31, 0, 0]) else {
                Issue.record("\(name) not decoded")
                continue
            }
            #expect(header.batchByteCount == batch.count)
            // ...but `decoding(_:)` insists on exactly one batch.
            #expect(throws: BatchDefect.self) { try Batch.decoding(batch + [0]) }
            #expect(throws: BatchDefect.self) { try Batch.decoding(Array(batch.dropLast())) }
        }
    }

    @Test func zeroFilledPreallocatedTailIsBadMagicZero() {
        #expect(decodeBatch([UInt8](repeating: 0, count: 4096)) == .invalid(.badMagic(found: 0)))
    }

    // MARK: Bit flips

    @Test func flippedMagicBitIsBadMagic() throws {
        for (name, batch) in try Self.validBatches() {
            for bit in 0..<32 {
                var damaged = batch
                damaged[bit / 8] ^= 1 << UInt8(bit % 8)
                #expect(decodeBatch(damaged).defectKind == "badMagic", "\(name) bit \(bit)")
            }
        }
    }

    @Test func flippedHeaderBitIsHeaderChecksumMismatch() throws {
        for (name, batch) in try Self.validBatches() {
            for bit in 32..<(64 * 8) {
                var damaged = batch
                damaged[bit / 8] ^= 1 << UInt8(bit % 8)
                #expect(decodeBatch(damaged).defectKind == "headerChecksumMismatch", "\(name) bit \(bit)")
            }
        }
    }

    @Test func flippedPayloadBitIsPayloadChecksumMismatch() throws {
        for (name, batch) in try Self.validBatches() {
            for bit in (64 * 8)..<(batch.count * 8) {
                var damaged = batch
                damaged[bit / 8] ^= 1 << UInt8(bit % 8)
                #expect(decodeBatch(damaged).defectKind == "payloadChecksumMismatch", "\(name) bit \(bit)")
            }
        }
    }

    /// batchCRC covers payloadCRC, so changing a payload byte and fixing only payloadCRC still fails.
    @Test func payloadChangedWithPayloadCRCFixedButNotBatchCRCIsHeaderChecksumMismatch() throws {
        for (name, batch) in try Self.validBatches() {
            var damaged = batch
            damaged[64] ^= 0x01
            damaged.put(referenceCRC32C(damaged[64...]), at: 8)
            #expect(decodeBatch(damaged).defectKind == "headerChecksumMismatch", "\(name)")
        }
    }

    // MARK: Hostile headers: valid CRC, fields out of range

    /// Every case gets only its 64 header bytes plus a tiny payload: a decoder that trusted the
    /// lengths would answer needMoreData(huge) or allocate; it must answer invalid.
    static let hostile: [(name: String, header: RawBatchHeader, expected: BatchDefect)] = [
        ("version 0", RawBatchHeader(version: 0, recordCount: 1, storedLength: 1, uncompressedLength: 1), .unsupportedVersion(0)),
        ("version 2", RawBatchHeader(version: 2, recordCount: 1, storedLength: 1, uncompressedLength: 1), .unsupportedVersion(2)),
        ("flag bit 5", RawBatchHeader(flags: 0x0020, recordCount: 1, storedLength: 1, uncompressedLength: 1), .unknownFlags(0x0020)),
        ("control flag with bit 5", RawBatchHeader(flags: 0x0030, recordCount: 1, storedLength: 1, uncompressedLength: 1), .unknownFlags(0x0030)),
        ("control flag with LZ4", RawBatchHeader(flags: 0x0011, recordCount: 1, storedLength: 1, uncompressedLength: 1), .unknownFlags(0x0011)),
        ("flag bit 15", RawBatchHeader(flags: 0x8001, recordCount: 1, storedLength: 1, uncompressedLength: 1), .unknownFlags(0x8001)),
        ("codec 2", RawBatchHeader(flags: 2, recordCount: 1, storedLength: 1, uncompressedLength: 1), .unknownFlags(2)),
        ("codec 15", RawBatchHeader(flags: 15, recordCount: 1, storedLength: 1, uncompressedLength: 1), .unknownFlags(15)),
        ("zero records", RawBatchHeader(recordCount: 0, storedLength: 1, uncompressedLength: 1), .recordCountOutOfRange(0)),
        ("records over limit", RawBatchHeader(recordCount: (1 << 20) + 1, storedLength: 1 << 21, uncompressedLength: 1 << 21), .recordCountOutOfRange((1 << 20) + 1)),
        ("records UInt32.max", RawBatchHeader(recordCount: .max, storedLength: .max, uncompressedLength: .max), .recordCountOutOfRange(.max)),
        ("uncompressed over limit", RawBatchHeader(flags: 1, recordCount: 1, storedLength: 100, uncompressedLength: (16 << 20) + 1), .lengthOutOfRange(stored: 100, uncompressed: (16 << 20) + 1)),
        ("stored over limit", RawBatchHeader(flags: 1, recordCount: 1, storedLength: 16_843_026, uncompressedLength: 100), .lengthOutOfRange(stored: 16_843_026, uncompressed: 100)),
        ("stored UInt32.max", RawBatchHeader(flags: 1, recordCount: 1, storedLength: .max, uncompressedLength: 100), .lengthOutOfRange(stored: .max, uncompressed: 100)),
        ("codec none, stored != uncompressed", RawBatchHeader(recordCount: 1, storedLength: 10, uncompressedLength: 11), .lengthOutOfRange(stored: 10, uncompressed: 11)),
        ("fewer bytes than records", RawBatchHeader(recordCount: 5, storedLength: 4, uncompressedLength: 4), .lengthOutOfRange(stored: 4, uncompressed: 4)),
        ("base LSN 0", RawBatchHeader(recordCount: 1, storedLength: 1, uncompressedLength: 1, baseLSN: 0), .lsnOutOfRange(LSN(0))),
        ("last LSN overflows", RawBatchHeader(recordCount: 2, storedLength: 2, uncompressedLength: 2, baseLSN: .max), .lsnOutOfRange(LSN(.max))),
        ("next LSN would overflow", RawBatchHeader(recordCount: 2, storedLength: 2, uncompressedLength: 2, baseLSN: .max - 1), .lsnOutOfRange(LSN(.max - 1))),
        ("syncedThrough == baseLSN", RawBatchHeader(recordCount: 1, storedLength: 1, uncompressedLength: 1, baseLSN: 5, syncedThrough: 5), .syncedThroughAhead(LSN(5), baseLSN: LSN(5))),
        ("syncedThrough > baseLSN", RawBatchHeader(recordCount: 1, storedLength: 1, uncompressedLength: 1, baseLSN: 5, syncedThrough: 900), .syncedThroughAhead(LSN(900), baseLSN: LSN(5))),
    ]

    @Test(arguments: 0..<hostile.count)
    func hostileHeaderWithValidCRCIsRejectedBeforeReadingThePayload(index: Int) {
        let (name, header, expected) = Self.hostile[index]
        let forged = forgeBatch(header, payload: [0x00])
        let headerOnly = Array(forged[..<64])
        #expect(decodeBatchHeader(headerOnly) == .invalid(expected), "\(name)")
        #expect(decodeBatch(headerOnly) == .invalid(expected), "\(name)")
        #expect(decodeBatch(forged) == .invalid(expected), "\(name)")
    }

    @Test func largestLegalLengthsStillOnlyAskForMoreData() {
        let header = RawBatchHeader(
            flags: 1, recordCount: 1 << 20, storedLength: UInt32(FormatLimits.batchStoredBytesMax),
            uncompressedLength: UInt32(FormatLimits.batchUncompressedBytesMax))
        let forged = Array(forgeBatch(header, payload: [])[..<64])
        #expect(decodeBatch(forged) == .needMoreData(FormatLimits.batchBytesMax))
    }

    @Test func lastLSNAtUInt64MaxMinusOneIsTheHighestAccepted() {
        // baseLSN + recordCount must not overflow, so lsnRange.next is always representable.
        let forged = forgeBatch(RawBatchHeader(recordCount: 1, baseLSN: .max - 1, syncedThrough: 3), payload: [0x00])
        guard case .batch(let header) = decodeBatch(forged) else {
            Issue.record("rejected")
            return
        }
        #expect(header.lsnRange.next == LSN(.max))
    }

    @Test func headerWithWrongBatchCRCIsHeaderChecksumMismatchEvenIfFieldsAreFine() {
        let forged = forgeBatch(RawBatchHeader(batchCRC: 0xDEAD_BEEF), payload: [0x00])
        #expect(decodeBatch(forged).defectKind == "headerChecksumMismatch")
    }

    // MARK: Payloads that pass both CRCs but are malformed

    @Test func lz4PayloadThatDecompressesToFewerBytesIsDecompressionFailed() throws {
        let (valid, header) = try makeBatch((0..<30).map { _ in Array("aaaaaaaaaaaaaaaa".utf8) }, codec: .lz4)
        #expect(header.codec == .lz4)
        for delta in [1, 2, 100] {
            var damaged = valid
            damaged.put(header.uncompressedLength + UInt32(delta), at: 28)
            refreshBatchCRC(&damaged)
            let batch = try Batch.decoding(damaged)  // header and payload CRCs both pass
            #expect(throws: BatchDefect.decompressionFailed) { try batch.records() }
        }
    }

    @Test func lz4PayloadThatDecompressesToMoreBytesIsDecompressionFailed() throws {
        let (valid, header) = try makeBatch((0..<30).map { _ in Array("aaaaaaaaaaaaaaaa".utf8) }, codec: .lz4)
        for delta in [1, 2, 100] {
            var damaged = valid
            damaged.put(header.uncompressedLength - UInt32(delta), at: 28)
            refreshBatchCRC(&damaged)
            let batch = try Batch.decoding(damaged)
            #expect(throws: BatchDefect.decompressionFailed) { try batch.records() }
        }
    }

    @Test func garbageLZ4PayloadWithValidCRCsIsDecompressionFailed() throws {
        let cases: [[UInt8]] = [
            [0xFF],  // literal length continues past the end
            [0xF0, 0xFF, 0xFF],
            [0x10, 0x41, 0x05, 0x00],  // match offset 5 before the start of output
            [0x1F, 0x41, 0x01, 0x00, 0xFF, 0xFF, 0xFF, 0x00],  // match far longer than declared output
            [0x00, 0x00],
        ]
        for payload in cases {
            let forged = forgeBatch(RawBatchHeader(flags: 1, recordCount: 1, uncompressedLength: 64), payload: payload)
            let batch = try Batch.decoding(forged)
            #expect(throws: BatchDefect.decompressionFailed, "\(payload.hex)") { try batch.records() }
        }
    }

    @Test func emptyLZ4PayloadIsDecompressionFailed() throws {
        let forged = forgeBatch(RawBatchHeader(flags: 1, recordCount: 1, uncompressedLength: 1), payload: [])
        let batch = try Batch.decoding(forged)
        #expect(throws: BatchDefect.decompressionFailed) { try batch.records() }
    }

    static func malformedBlockDefect(_ block: [UInt8], recordCount: UInt32) throws -> BatchDefect? {
        let forged = forgeBatch(RawBatchHeader(recordCount: recordCount), payload: block)
        let batch = try Batch.decoding(forged)
        if case .failure(let defect) = records(of: batch) { return defect }
        return nil
    }

    @Test func recordBlockWithTrailingBytesIsMalformed() throws {
        // "a", "bc" but the header claims one record.
        #expect(try Self.malformedBlockDefect([0x01, 0x61, 0x02, 0x62, 0x63], recordCount: 1)?.kind == "malformedRecordBlock")
        // One zero-length record and a stray zero byte.
        #expect(try Self.malformedBlockDefect([0x00, 0x00], recordCount: 1)?.kind == "malformedRecordBlock")
    }

    @Test func recordLengthRunningPastTheBlockIsMalformed() throws {
        #expect(try Self.malformedBlockDefect([0x05, 0x61, 0x62], recordCount: 1)?.kind == "malformedRecordBlock")
        #expect(try Self.malformedBlockDefect([0x01, 0x61, 0x02, 0x62], recordCount: 2)?.kind == "malformedRecordBlock")
    }

    @Test func varintRunningPastTheBlockIsMalformed() throws {
        #expect(try Self.malformedBlockDefect([0x80], recordCount: 1)?.kind == "malformedRecordBlock")
        #expect(try Self.malformedBlockDefect([0x01, 0x61, 0xFF], recordCount: 2)?.kind == "malformedRecordBlock")
    }

    @Test func overlongOrOverflowingVarintIsMalformed() throws {
        #expect(try Self.malformedBlockDefect([0x80, 0x80, 0x80, 0x80, 0x80, 0x00], recordCount: 1)?.kind == "malformedRecordBlock")
        #expect(try Self.malformedBlockDefect([0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0x00], recordCount: 1)?.kind == "malformedRecordBlock")
    }

    @Test func recordLengthOverRecordBytesMaxIsMalformedEvenIfBytesFollow() throws {
        // A varint of recordBytesMax + 1 (4 MiB + 1): 0x81 0x80 0x80 0x02, then that many bytes.
        let length = FormatLimits.recordBytesMax + 1
        var block: [UInt8] = [0x81, 0x80, 0x80, 0x02]
        block += [UInt8](repeating: 0x5A, count: length)
        // Too large for a none batch of 1 record? No: uncompressed 4 MiB + 5 is within 16 MiB.
        #expect(try Self.malformedBlockDefect(block, recordCount: 1)?.kind == "malformedRecordBlock")
    }

    @Test func fewerRecordsThanTheCountIsMalformed() throws {
        // Two records' worth of bytes, header says 3 (uncompressedLength 5 >= 3 passes the header check).
        #expect(try Self.malformedBlockDefect([0x01, 0x61, 0x02, 0x62, 0x63], recordCount: 3)?.kind == "malformedRecordBlock")
    }

    @Test func wellFormedForgedBlockIsAccepted() throws {
        #expect(try Self.malformedBlockDefect([0x01, 0x61, 0x02, 0x62, 0x63], recordCount: 2) == nil)
        #expect(try Self.malformedBlockDefect([0x00, 0x00, 0x00], recordCount: 3) == nil)
    }
}
