import Testing
@testable import ShipLogFormat

/// Control batches and control records (docs/FORMAT.md section 20): the example there, laid out
/// by hand from the tables and printed as hex, must be exactly what the encoders write; every
/// "invalid if" condition must be refused.
@Suite("Control batches (docs/FORMAT.md section 20)")
struct ControlBatchTests {
    // The example's parameters: epoch 3 starts at LSN 1201, after epoch 2 ended at LSN 1200.
    static let baseLSN: UInt64 = 1201
    static let epoch: UInt64 = 3
    static let previousEpoch: UInt64 = 2
    static let previousEpochLastLSN: UInt64 = 1200
    static let previousBatchCRC: UInt32 = 0x1234_ABCD
    static let timestamp: UInt64 = 1_700_000_000_000_002_000
    static let record = ControlRecord.epochStart(
        epoch: Epoch(epoch), previousEpoch: Epoch(previousEpoch), previousEpochLastLSN: LSN(previousEpochLastLSN))

    // MARK: Literal bytes as printed in docs/FORMAT.md section 20.3

    static let recordHex = """
        53 4c 43 52 01 01 00 00 03 00 00 00 00 00 00 00
        02 00 00 00 00 00 00 00 b0 04 00 00 00 00 00 00
        """

    static let batchHex = """
        53 4c 42 31 5c 86 ca 0a d6 02 17 5d cd ab 34 12
        01 00 10 00 01 00 00 00 21 00 00 00 21 00 00 00
        b1 04 00 00 00 00 00 00 03 00 00 00 00 00 00 00
        b0 04 00 00 00 00 00 00 d0 07 2a 36 fe 9c 97 17
        20 53 4c 43 52 01 01 00 00 03 00 00 00 00 00 00
        00 02 00 00 00 00 00 00 00 b0 04 00 00 00 00 00
        00
        """

    // MARK: The same bytes, laid out by hand from the tables

    static func handRecord() -> [UInt8] {
        var r: [UInt8] = []
        r += ascii("SLCR")  //  0 magic
        r += [1]  //  4 version
        r += [1]  //  5 kind: epochStart
        r += le(UInt16(0))  //  6 reserved
        r += le(epoch)  //  8 epoch
        r += le(previousEpoch)  // 16 previousEpoch
        r += le(previousEpochLastLSN)  // 24 previousEpochLastLSN
        precondition(r.count == 32)
        return r
    }

    static func handBatch() -> [UInt8] {
        let block = [UInt8(32)] + handRecord()  // one record: length varint 32, then its bytes
        var h: [UInt8] = []
        h += ascii("SLB1")  //  0 magic
        h += [0, 0, 0, 0]  //  4 batchCRC, filled below
        h += le(referenceCRC32C(block))  //  8 payloadCRC
        h += le(previousBatchCRC)  // 12 previousBatchCRC
        h += le(UInt16(1))  // 16 version
        h += le(UInt16(0x0010))  // 18 flags: control, codec 0 (none)
        h += le(UInt32(1))  // 20 recordCount
        h += le(UInt32(33))  // 24 storedLength
        h += le(UInt32(33))  // 28 uncompressedLength
        h += le(baseLSN)  // 32 baseLSN
        h += le(epoch)  // 40 epoch
        h += le(previousEpochLastLSN)  // 48 syncedThrough: LSN 1200 was durable
        h += le(timestamp)  // 56 timestamp
        h.put(referenceCRC32C(h[8..<64]), at: 4)
        return h + block
    }

    static func encodedBatch() -> (bytes: [UInt8], header: BatchHeader) {
        var encoded = EncodedBatch.control([record])
        let header = encoded.seal(
            baseLSN: LSN(baseLSN), epoch: Epoch(epoch), previousBatchCRC: previousBatchCRC,
            syncedThrough: LSN(previousEpochLastLSN), timestamp: timestamp)
        return (encoded.bytes, header)
    }

    // MARK: Golden bytes

    @Test func epochStartRecordEncoderMatchesSpecTableByteForByte() {
        let encoded = Self.record.encoded()
        #expect(encoded == Self.handRecord(), "\(encoded.hex)")
        #expect(encoded == bytes(hex: Self.recordHex), "\(encoded.hex)")
        #expect(le(ControlRecord.magic) == ascii("SLCR"))
    }

    @Test func controlBatchEncoderMatchesSpecTableByteForByte() {
        let (encoded, header) = Self.encodedBatch()
        #expect(encoded == Self.handBatch(), "\(encoded.hex)")
        #expect(encoded == bytes(hex: Self.batchHex), "\(encoded.hex)")
        #expect(header.isControl && header.codec == .none && header.flags == BatchHeader.controlFlag)
        #expect(header.batchCRC == 0x0ACA_865C && header.payloadCRC == 0x5D17_02D6)
    }

    @Test func handBuiltControlBatchDecodesToItsRecord() throws {
        let batch = try Batch.decoding(Self.handBatch())
        #expect(batch.header.isControl)
        #expect(batch.header.lsnRange == LSNRange(first: LSN(1201), last: LSN(1201)))
        #expect(try batch.controlRecords() == [Self.record])
        #expect(Self.record.description == "epochStart epoch=3 previous=2 previousLast=1200")
    }

    /// Asking a control batch for LZ4 is not possible, and a large one still stays raw.
    @Test func controlBatchOfManyRecordsIsStoredRawAndRoundTrips() throws {
        let records = (1...200).map {
            ControlRecord.epochStart(epoch: Epoch(UInt64($0) + 1), previousEpoch: Epoch(UInt64($0)), previousEpochLastLSN: LSN(UInt64($0)))
        }
        var encoded = EncodedBatch.control(records)
        #expect(encoded.codec == .none && encoded.isControl && encoded.controlRecords == records)
        encoded.seal(baseLSN: LSN(500), epoch: Epoch(201), previousBatchCRC: 7, syncedThrough: LSN(3), timestamp: 9)
        let batch = try Batch.decoding(encoded.bytes)
        #expect(batch.header.codec == .none && batch.header.recordCount == 200)
        #expect(try batch.controlRecords() == records)
    }

    /// A reader that ignored bit 4 would hand the engine's records to the application.
    @Test func applicationBatchIsNotAControlBatch() throws {
        let (bytes, _) = try makeBatch([Array("a".utf8)], codec: .none, baseLSN: 1)
        let batch = try Batch.decoding(bytes)
        #expect(!batch.header.isControl)
        #expect(throws: ControlRecordDefect.notAControlBatch) { try batch.controlRecords() }
    }

    // MARK: Strict decoding (section 20.2, in order)

    static func mutated(_ change: (inout [UInt8]) -> Void) -> [UInt8] {
        var bytes = handRecord()
        change(&bytes)
        return bytes
    }

    static let invalidRecords: [(name: String, bytes: [UInt8], expected: ControlRecordDefect)] = [
        ("empty", [], .truncated(byteCount: 0)),
        ("7 bytes", Array(handRecord().prefix(7)), .truncated(byteCount: 7)),
        ("bad magic", mutated { $0[0] = 0x54 }, .badMagic(found: 0x5243_4C54)),
        ("version 0", mutated { $0[4] = 0 }, .unsupportedVersion(0)),
        ("version 2", mutated { $0[4] = 2 }, .unsupportedVersion(2)),
        ("kind 0", mutated { $0[5] = 0 }, .unknownKind(0)),
        ("kind 2", mutated { $0[5] = 2 }, .unknownKind(2)),
        ("reserved set", mutated { $0[7] = 1 }, .reservedNotZero(0x0100)),
        ("one byte short", Array(handRecord().prefix(31)), .lengthMismatch(kind: 1, expected: 32, found: 31)),
        ("one byte more", handRecord() + [0], .lengthMismatch(kind: 1, expected: 32, found: 33)),
        ("epoch equals previous", mutated { $0.put(UInt64(2), at: 8) }, .epochNotAfterPrevious(epoch: Epoch(2), previous: Epoch(2))),
        ("epoch 0", mutated { $0.put(UInt64(0), at: 8); $0.put(UInt64(0), at: 16) }, .epochNotAfterPrevious(epoch: Epoch(0), previous: Epoch(0))),
    ]

    @Test(arguments: 0..<invalidRecords.count)
    func invalidControlRecordIsRefusedWithItsDefect(index: Int) {
        let (name, bytes, expected) = Self.invalidRecords[index]
        #expect(throws: expected, "\(name)") { try ControlRecord(decoding: bytes) }
    }

    @Test func controlBatchWithAnInvalidRecordNamesTheRecord() throws {
        var builder = BatchBuilder()
        try builder.append(Self.record.encoded())
        try builder.append(Self.mutated { $0[5] = 9 })
        var encoded = builder.encode(codec: .none)
        encoded.seal(baseLSN: LSN(1), epoch: .initial, previousBatchCRC: 0, syncedThrough: .zero, timestamp: 0)
        var bytes = encoded.bytes
        bytes.put(UInt16(0x0010), at: 18)  // mark it a control batch, then fix the header CRC
        bytes.put(referenceCRC32C(bytes[8..<64]), at: 4)
        let batch = try Batch.decoding(bytes)
        #expect(throws: ControlRecordDefect.record(index: 1, .unknownKind(9))) { try batch.controlRecords() }
    }

    @Test func decodedControlHeaderReEncodesToTheSameBytes() throws {
        let original = Self.handBatch()
        let batch = try Batch.decoding(original)
        var header = batch.header
        var buffer = [UInt8](repeating: 0, count: 64)
        buffer.withUnsafeMutableBytes { _ = header.encode(into: $0) }
        #expect(buffer == Array(original[..<64]))
    }
}

/// The epoch-history file (docs/FORMAT.md section 21).
@Suite("Epoch history file (docs/FORMAT.md section 21)")
struct EpochHistoryFileTests {
    static let entries = [
        EpochStart(epoch: Epoch(1), firstLSN: LSN(1)), EpochStart(epoch: Epoch(3), firstLSN: LSN(1201)),
    ]

    /// Written from the spec: magic line, one line per entry, CRC line over everything before it.
    static func handFile() -> [UInt8] {
        let body = Array("shiplog-epochs 1\n1 1\n3 1201\n".utf8)
        let crc = String(referenceCRC32C(body), radix: 16)
        return body + Array(("crc32c " + String(repeating: "0", count: 8 - crc.count) + crc + "\n").utf8)
    }

    static let fileText = "shiplog-epochs 1\n1 1\n3 1201\ncrc32c f01e0423\n"

    @Test func encoderMatchesTheSpecExample() throws {
        let encoded = EpochHistoryFile.encode(Self.entries)
        #expect(encoded == Self.handFile())
        #expect(String(decoding: encoded, as: UTF8.self) == Self.fileText)
        #expect(try EpochHistoryFile.decode(encoded) == Self.entries)
    }

    @Test func emptyHistoryRoundTrips() throws {
        let encoded = EpochHistoryFile.encode([])
        #expect(try EpochHistoryFile.decode(encoded) == [])
    }

    static func withCRC(_ body: String) -> [UInt8] {
        let bytes = Array(body.utf8)
        let crc = String(referenceCRC32C(bytes), radix: 16)
        return bytes + Array(("crc32c " + String(repeating: "0", count: 8 - crc.count) + crc + "\n").utf8)
    }

    static let invalidFiles: [(name: String, bytes: [UInt8], line: Int)] = [
        ("empty", [], 0),
        ("no final newline", Array(fileText.utf8.dropLast()), 0),
        ("non-ASCII byte", withCRC("shiplog-epochs 1\n1 1\u{e9}\n"), 0),
        ("tab", withCRC("shiplog-epochs 1\n1\t1\n"), 0),
        ("magic only", Array("shiplog-epochs 1\n".utf8), 1),
        ("wrong magic", withCRC("shiplog-epochs 2\n1 1\n"), 1),
        ("uppercase CRC", Array(fileText.replacing("crc32c f01e0423", with: "crc32c F01E0423").utf8), 4),
        ("CRC mismatch", Array(fileText.replacing("1201", with: "1202").utf8), 4),
        ("short CRC", Array("shiplog-epochs 1\ncrc32c 1234\n".utf8), 2),
        ("epoch 0", withCRC("shiplog-epochs 1\n0 1\n"), 2),
        ("LSN 0", withCRC("shiplog-epochs 1\n1 0\n"), 2),
        ("leading zero", withCRC("shiplog-epochs 1\n01 1\n"), 2),
        ("sign", withCRC("shiplog-epochs 1\n+1 1\n"), 2),
        ("u64 overflow", withCRC("shiplog-epochs 1\n18446744073709551616 1\n"), 2),
        ("three fields", withCRC("shiplog-epochs 1\n1 1 1\n"), 2),
        ("two spaces", withCRC("shiplog-epochs 1\n1  1\n"), 2),
        ("empty line", withCRC("shiplog-epochs 1\n\n"), 2),
        ("epoch repeats", withCRC("shiplog-epochs 1\n1 1\n1 5\n"), 3),
        ("epoch goes back", withCRC("shiplog-epochs 1\n3 1\n2 5\n"), 3),
        ("LSN repeats", withCRC("shiplog-epochs 1\n1 5\n2 5\n"), 3),
    ]

    @Test(arguments: 0..<invalidFiles.count)
    func invalidFileIsRefusedNamingTheLine(index: Int) {
        let (name, bytes, line) = Self.invalidFiles[index]
        do {
            let entries = try EpochHistoryFile.decode(bytes)
            Issue.record("\(name): accepted as \(entries)")
        } catch {
            #expect(error.line == line, "\(name): \(error)")
        }
    }

    @Test func fileOverTheSizeLimitIsRefusedBeforeParsing() {
        let huge = [UInt8](repeating: UInt8(ascii: "1"), count: EpochHistoryFile.fileBytesMax + 1)
        #expect(throws: EpochHistoryDefect.self) { try EpochHistoryFile.decode(huge) }
    }

    @Test func largestU64ValuesRoundTrip() throws {
        let entries = [EpochStart(epoch: Epoch(.max - 1), firstLSN: LSN(1)), EpochStart(epoch: Epoch(.max), firstLSN: LSN(.max))]
        #expect(try EpochHistoryFile.decode(EpochHistoryFile.encode(entries)) == entries)
    }
}
