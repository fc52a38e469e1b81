/// The 64-byte header at offset 0 of every segment file. See docs/FORMAT.md, "Segment header".
///
/// | offset | size | field            | meaning                                               |
/// |-------:|-----:|------------------|-------------------------------------------------------|
/// |      0 |    4 | magic            | `SLSG`                                                |
/// |      4 |    4 | headerCRC        | CRC32C of bytes 8..<64                                |
/// |      8 |    2 | version          | 1                                                     |
/// |     10 |    2 | flags            | 0                                                     |
/// |     12 |    4 | previousBatchCRC | batchCRC of the last batch of the previous segment    |
/// |     16 |    8 | baseLSN          | LSN of the segment's first record (also its name)     |
/// |     24 |    8 | epoch            | writer's epoch when the segment was created           |
/// |     32 |    8 | createdAt        | nanoseconds since the Unix epoch                      |
/// |     40 |   24 | reserved         | zero                                                  |
public struct SegmentHeader: Hashable, Sendable {
    public static let byteCount = 64
    /// "SLSG" as stored.
    public static let magic: UInt32 = 0x4753_4C53
    public static let currentVersion: UInt16 = 1

    /// The chain link into this segment: its first batch's previousBatchCRC must equal this.
    public var previousBatchCRC: UInt32
    public var baseLSN: LSN
    public var epoch: Epoch
    public var createdAt: UInt64

    public init(previousBatchCRC: UInt32, baseLSN: LSN, epoch: Epoch, createdAt: UInt64) {
        self.previousBatchCRC = previousBatchCRC
        self.baseLSN = baseLSN
        self.epoch = epoch
        self.createdAt = createdAt
    }

    public func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.byteCount)
        bytes.withUnsafeMutableBytes { buffer in
            buffer.writeLittleEndian(Self.magic, at: 0)
            buffer.writeLittleEndian(Self.currentVersion, at: 8)
            buffer.writeLittleEndian(UInt16(0), at: 10)
            buffer.writeLittleEndian(previousBatchCRC, at: 12)
            buffer.writeLittleEndian(baseLSN.rawValue, at: 16)
            buffer.writeLittleEndian(epoch.rawValue, at: 24)
            buffer.writeLittleEndian(createdAt, at: 32)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[8..<Self.byteCount]))
            buffer.writeLittleEndian(crc, at: 4)
        }
        assert((try? Self.decode(bytes)) == self, "segment header must round-trip")
        return bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(SegmentDefect) -> SegmentHeader {
        try bytes.withUnsafeBytes { raw in Result { () throws(SegmentDefect) in try decode(raw) } }.get()
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(SegmentDefect) -> SegmentHeader {
        guard bytes.count >= byteCount else { throw .headerTruncated(byteCount: bytes.count) }
        if bytes[0..<byteCount].allSatisfy({ $0 == 0 }) { throw .headerZeroed }
        let magic: UInt32 = bytes.readLittleEndian(at: 0)
        guard magic == Self.magic else { throw .headerBadMagic(found: magic) }
        let stored: UInt32 = bytes.readLittleEndian(at: 4)
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[8..<byteCount]))
        guard stored == computed else { throw .headerChecksumMismatch(stored: stored, computed: computed) }
        let version: UInt16 = bytes.readLittleEndian(at: 8)
        guard version == currentVersion else { throw .unsupportedVersion(version) }
        let flags: UInt16 = bytes.readLittleEndian(at: 10)
        guard flags == 0 else { throw .unknownFlags(flags) }
        let header = SegmentHeader(
            previousBatchCRC: bytes.readLittleEndian(at: 12), baseLSN: LSN(bytes.readLittleEndian(at: 16)),
            epoch: Epoch(bytes.readLittleEndian(at: 24)), createdAt: bytes.readLittleEndian(at: 32))
        guard header.baseLSN != .zero else { throw .baseLSNZero }
        return header
    }
}

/// Segment files are named by their base LSN, zero-padded to 20 digits so names sort as LSNs do.
public enum SegmentName {
    public static let fileExtension = "seg"
    /// Suffix of a segment still being created; such files are removed on open.
    public static let temporarySuffix = ".tmp"

    public static func fileName(baseLSN: LSN) -> String {
        let digits = String(baseLSN.rawValue)
        return String(repeating: "0", count: 20 - digits.count) + digits + "." + fileExtension
    }

    /// The base LSN a segment file name stands for, or `nil` if the name is not a segment's.
    public static func baseLSN(fromFileName name: String) -> LSN? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1] == fileExtension, parts[0].count == 20,
            parts[0].allSatisfy({ $0.isASCII && $0.isNumber }), let value = UInt64(parts[0]), value > 0
        else { return nil }
        return LSN(value)
    }
}

/// Why a segment's header or footer is not valid.
public enum SegmentDefect: Error, Hashable, Sendable, CustomStringConvertible {
    case headerTruncated(byteCount: Int)
    case headerZeroed
    case headerBadMagic(found: UInt32)
    case headerChecksumMismatch(stored: UInt32, computed: UInt32)
    case unsupportedVersion(UInt16)
    case unknownFlags(UInt16)
    case baseLSNZero
    case footerMissing
    case footerBadMagic
    case footerChecksumMismatch(stored: UInt32, computed: UInt32)
    case footerInconsistent(String)

    public var description: String {
        switch self {
        case .headerTruncated(let n): "segment header truncated (\(n) of \(SegmentHeader.byteCount) bytes)"
        case .headerZeroed: "segment header is all zeros"
        case .headerBadMagic(let m): "bad segment magic 0x\(String(m, radix: 16))"
        case .headerChecksumMismatch(let s, let c):
            "segment header CRC mismatch (stored 0x\(String(s, radix: 16)), computed 0x\(String(c, radix: 16)))"
        case .unsupportedVersion(let v): "unsupported segment version \(v)"
        case .unknownFlags(let f): "unknown segment flags 0x\(String(f, radix: 16))"
        case .baseLSNZero: "segment base LSN is 0"
        case .footerMissing: "segment has no footer"
        case .footerBadMagic: "bad segment footer magic"
        case .footerChecksumMismatch(let s, let c):
            "segment footer CRC mismatch (stored 0x\(String(s, radix: 16)), computed 0x\(String(c, radix: 16)))"
        case .footerInconsistent(let why): "segment footer inconsistent: \(why)"
        }
    }
}
