// Helpers shared by the format tests. Everything here is written from docs/FORMAT.md,
// independently of the encoders under test, so the tests pin the spec.
import Testing
@testable import ShipLogFormat

// MARK: - Deterministic randomness

/// SplitMix64: a tiny, seedable generator so every random test is reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Array where Element == UInt8 {
    /// `count` pseudo-random bytes.
    static func random(count: Int, using rng: inout SplitMix64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            var word = rng.next()
            for _ in 0..<8 where i < count {
                bytes[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
        return bytes
    }
}

// MARK: - Reference CRC-32C (the bit-at-a-time pseudo-code of docs/FORMAT.md)

func referenceCRC32C<S: Sequence>(_ bytes: S, continuing crc: UInt32 = 0) -> UInt32 where S.Element == UInt8 {
    var c = ~crc
    for byte in bytes {
        c ^= UInt32(byte)
        for _ in 0..<8 {
            c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1
        }
    }
    return ~c
}

// MARK: - Little-endian helpers written from scratch

/// The little-endian bytes of `value`.
func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    (0..<(T.bitWidth / 8)).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
}

/// ASCII bytes of a four-letter magic.
func ascii(_ text: String) -> [UInt8] { Array(text.utf8) }

extension Array where Element == UInt8 {
    /// Overwrites bytes at `offset` with the little-endian bytes of `value`.
    mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        for (i, byte) in le(value).enumerated() { self[offset + i] = byte }
    }

    func get<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        for i in 0..<(T.bitWidth / 8) { value |= T(self[offset + i]) << (8 * i) }
        return value
    }

    var hex: String {
        map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: " ")
    }
}

/// Parses "53 4c 42 31 ..." (any whitespace) into bytes.
func bytes(hex: String) -> [UInt8] {
    hex.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { UInt8($0, radix: 16)! }
}

// MARK: - Forging batches with valid checksums but arbitrary fields

/// Every field of a batch header as raw integers, so tests can write values the encoder refuses.
struct RawBatchHeader {
    var magic: UInt32 = 0x3142_4C53  // "SLB1"
    var payloadCRC: UInt32? = nil  // nil: CRC32C of the payload
    var previousBatchCRC: UInt32 = 0
    var version: UInt16 = 1
    var flags: UInt16 = 0
    var recordCount: UInt32 = 1
    var storedLength: UInt32? = nil  // nil: payload.count
    var uncompressedLength: UInt32? = nil  // nil: payload.count
    var baseLSN: UInt64 = 1
    var epoch: UInt64 = 1
    var syncedThrough: UInt64 = 0
    var timestamp: UInt64 = 0
    /// nil: the correct CRC32C of header bytes 8..<64.
    var batchCRC: UInt32? = nil
}

/// A batch laid out by hand from the spec's table, with correct CRCs unless overridden.
func forgeBatch(_ h: RawBatchHeader, payload: [UInt8]) -> [UInt8] {
    var header = [UInt8](repeating: 0, count: 64)
    header.put(h.magic, at: 0)
    header.put(h.payloadCRC ?? CRC32C.checksum(payload), at: 8)  // library CRC: pinned by CRC32CTests, fast on MiB payloads
    header.put(h.previousBatchCRC, at: 12)
    header.put(h.version, at: 16)
    header.put(h.flags, at: 18)
    header.put(h.recordCount, at: 20)
    header.put(h.storedLength ?? UInt32(payload.count), at: 24)
    header.put(h.uncompressedLength ?? UInt32(payload.count), at: 28)
    header.put(h.baseLSN, at: 32)
    header.put(h.epoch, at: 40)
    header.put(h.syncedThrough, at: 48)
    header.put(h.timestamp, at: 56)
    header.put(h.batchCRC ?? referenceCRC32C(header[8..<64]), at: 4)
    return header + payload
}

/// Recomputes the batchCRC of `batch` in place (after a test rewrote header fields).
func refreshBatchCRC(_ batch: inout [UInt8]) {
    batch.put(referenceCRC32C(batch[8..<64]), at: 4)
}

/// Recomputes payloadCRC (from the stored length in the header) and then batchCRC.
func refreshBothCRCs(_ batch: inout [UInt8]) {
    let stored = Int(batch.get(UInt32.self, at: 24))
    let end = min(batch.count, 64 + stored)
    batch.put(CRC32C.checksum(batch[64..<end]), at: 8)
    refreshBatchCRC(&batch)
}

/// The record block of docs/FORMAT.md: LEB128 length then bytes, for each record.
func recordBlock(_ records: [[UInt8]]) -> [UInt8] {
    var out: [UInt8] = []
    for record in records {
        var n = UInt32(record.count)
        while n >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: n) | 0x80)
            n >>= 7
        }
        out.append(UInt8(n))
        out += record
    }
    return out
}

// MARK: - Driving the code under test

func decodeBatch(_ bytes: [UInt8]) -> Batch.Decoding {
    bytes.withUnsafeBytes { Batch.decode($0) }
}

func decodeBatchHeader(_ bytes: [UInt8]) -> BatchHeader.Decoding {
    bytes.withUnsafeBytes { BatchHeader.decode($0) }
}

/// Builds, encodes and seals one batch with the library.
func makeBatch(
    _ records: [[UInt8]], codec: CompressionCodec = .lz4, baseLSN: UInt64 = 1, epoch: UInt64 = 1,
    previousBatchCRC: UInt32 = 0, syncedThrough: UInt64 = 0, timestamp: UInt64 = 1_700_000_000_000_000_000
) throws -> (bytes: [UInt8], header: BatchHeader) {
    var builder = BatchBuilder()
    for record in records { try builder.append(record) }
    var encoded = builder.encode(codec: codec)
    let header = encoded.seal(
        baseLSN: LSN(baseLSN), epoch: Epoch(epoch), previousBatchCRC: previousBatchCRC,
        syncedThrough: LSN(syncedThrough), timestamp: timestamp)
    return (encoded.bytes, header)
}

/// Decodes one whole batch and its records, or returns the defect.
func decodeRecords(_ bytes: [UInt8]) -> Result<(BatchHeader, [[UInt8]]), BatchDefect> {
    do {
        let batch = try Batch.decoding(bytes)
        let records = try batch.records().map { Array($0) }
        return .success((batch.header, records))
    } catch {
        return .failure(error)
    }
}

/// The records of a batch, or the defect that `records()` threw.
func records(of batch: Batch) -> Result<[[UInt8]], BatchDefect> {
    do { return .success(try batch.records().map { Array($0) }) } catch { return .failure(error) }
}

extension BatchDefect {
    /// The case name, ignoring associated values.
    var kind: String {
        switch self {
        case .badMagic: "badMagic"
        case .headerChecksumMismatch: "headerChecksumMismatch"
        case .unsupportedVersion: "unsupportedVersion"
        case .unknownFlags: "unknownFlags"
        case .recordCountOutOfRange: "recordCountOutOfRange"
        case .lengthOutOfRange: "lengthOutOfRange"
        case .lsnOutOfRange: "lsnOutOfRange"
        case .syncedThroughAhead: "syncedThroughAhead"
        case .payloadChecksumMismatch: "payloadChecksumMismatch"
        case .decompressionFailed: "decompressionFailed"
        case .malformedRecordBlock: "malformedRecordBlock"
        }
    }
}

extension Batch.Decoding {
    var defectKind: String? {
        if case .invalid(let defect) = self { return defect.kind }
        return nil
    }
}

extension SegmentDefect {
    var kind: String {
        switch self {
        case .headerTruncated: "headerTruncated"
        case .headerZeroed: "headerZeroed"
        case .headerBadMagic: "headerBadMagic"
        case .headerChecksumMismatch: "headerChecksumMismatch"
        case .unsupportedVersion: "unsupportedVersion"
        case .unknownFlags: "unknownFlags"
        case .baseLSNZero: "baseLSNZero"
        case .footerMissing: "footerMissing"
        case .footerBadMagic: "footerBadMagic"
        case .footerChecksumMismatch: "footerChecksumMismatch"
        case .footerInconsistent: "footerInconsistent"
        }
    }
}

/// The SegmentDefect that `body` threw, or nil when it returned.
func segmentDefect(_ body: () throws -> Void) -> SegmentDefect? {
    do {
        try body()
        return nil
    } catch let defect as SegmentDefect {
        return defect
    } catch {
        Issue.record("unexpected error type: \(error)")
        return nil
    }
}
