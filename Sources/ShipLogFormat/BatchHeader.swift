/// The 64-byte header in front of every batch. See docs/FORMAT.md, "Batch".
///
/// Byte layout (little-endian):
///
/// | offset | size | field              | meaning                                                        |
/// |-------:|-----:|--------------------|----------------------------------------------------------------|
/// |      0 |    4 | magic              | `SLB1`                                                         |
/// |      4 |    4 | batchCRC           | CRC32C of header bytes 8..<64 (which hold payloadCRC)          |
/// |      8 |    4 | payloadCRC         | CRC32C of the stored payload                                   |
/// |     12 |    4 | previousBatchCRC   | batchCRC of the batch before this one in the log (0: none)     |
/// |     16 |    2 | version            | 1                                                              |
/// |     18 |    2 | flags              | bits 0-3 codec (0 none, 1 lz4); bit 4 control; bits 5-15 zero  |
/// |     20 |    4 | recordCount        | records in the batch, >= 1                                     |
/// |     24 |    4 | storedLength       | payload bytes that follow the header                           |
/// |     28 |    4 | uncompressedLength | bytes of the record block once decompressed                    |
/// |     32 |    8 | baseLSN            | LSN of the first record                                        |
/// |     40 |    8 | epoch              | epoch of the primary that wrote it                             |
/// |     48 |    8 | syncedThrough      | last LSN durable on the writer's disk when this was written    |
/// |     56 |    8 | timestamp          | nanoseconds since the Unix epoch, writer's clock               |
public struct BatchHeader: Hashable, Sendable {
    public static let byteCount = 64
    /// "SLB1" as stored.
    public static let magic: UInt32 = 0x3142_4C53
    public static let currentVersion: UInt16 = 1
    /// The first byte covered by ``batchCRC``.
    public static let crcCoverageStart = 8
    /// Flags bit 4: the batch is a control batch (its records are ``ControlRecord``s, stored
    /// raw). See docs/FORMAT.md section 20.
    public static let controlFlag: UInt16 = 0x0010
    /// Flags bits 0-3: the codec.
    public static let codecFlagsMask: UInt16 = 0x000F
    /// Flag bits version 1 defines; any other set bit is `unknownFlags`.
    public static let knownFlagsMask: UInt16 = codecFlagsMask | controlFlag

    /// CRC32C of header bytes 8..<64; through ``payloadCRC`` it commits to the whole batch.
    public var batchCRC: UInt32
    /// CRC32C of the stored payload bytes.
    public var payloadCRC: UInt32
    /// ``batchCRC`` of the preceding batch in the log: the chain that exposes a missing,
    /// reordered or foreign batch. 0 before the first batch.
    public var previousBatchCRC: UInt32
    /// How the record block is stored.
    public var codec: CompressionCodec
    /// Whether this is a control batch: its records are the engine's ``ControlRecord``s, not
    /// application records (flags bit 4). Control batches are always stored raw.
    public var isControl: Bool
    /// Records in the batch (>= 1).
    public var recordCount: UInt32
    /// Payload bytes following the header.
    public var storedLength: UInt32
    /// Size of the record block after decompression.
    public var uncompressedLength: UInt32
    /// LSN of the first record; record `i` has LSN `baseLSN + i`.
    public var baseLSN: LSN
    /// Epoch of the primary that created the batch.
    public var epoch: Epoch
    /// Every LSN up to and including this one was durable on the writing node when the batch
    /// was written. Recovery uses it to tell corruption of synced data from a lost unsynced write.
    public var syncedThrough: LSN
    /// Creation time, nanoseconds since the Unix epoch.
    public var timestamp: UInt64

    public init(
        payloadCRC: UInt32, previousBatchCRC: UInt32, codec: CompressionCodec, recordCount: UInt32,
        storedLength: UInt32, uncompressedLength: UInt32, baseLSN: LSN, epoch: Epoch, syncedThrough: LSN,
        timestamp: UInt64, isControl: Bool = false
    ) {
        self.batchCRC = 0
        self.payloadCRC = payloadCRC
        self.previousBatchCRC = previousBatchCRC
        self.codec = codec
        self.isControl = isControl
        self.recordCount = recordCount
        self.storedLength = storedLength
        self.uncompressedLength = uncompressedLength
        self.baseLSN = baseLSN
        self.epoch = epoch
        self.syncedThrough = syncedThrough
        self.timestamp = timestamp
    }

    /// The LSNs of the batch's records.
    public var lsnRange: LSNRange { LSNRange(first: baseLSN, count: recordCount) }
    /// The header and payload together, in bytes.
    public var batchByteCount: Int { Self.byteCount + Int(storedLength) }
    /// The flags field as stored: the codec in bits 0-3, ``controlFlag`` when a control batch.
    public var flags: UInt16 { codec.rawValue | (isControl ? Self.controlFlag : 0) }

    /// Writes the header into the first 64 bytes of `buffer`, computing and storing ``batchCRC``.
    @discardableResult
    public mutating func encode(into buffer: UnsafeMutableRawBufferPointer) -> UInt32 {
        precondition(buffer.count >= Self.byteCount)
        precondition(recordCount >= 1 && Int(storedLength) <= FormatLimits.batchStoredBytesMax)
        precondition(!isControl || codec == .none, "control batches are stored raw")
        buffer.writeLittleEndian(Self.magic, at: 0)
        buffer.writeLittleEndian(payloadCRC, at: 8)
        buffer.writeLittleEndian(previousBatchCRC, at: 12)
        buffer.writeLittleEndian(Self.currentVersion, at: 16)
        buffer.writeLittleEndian(flags, at: 18)
        buffer.writeLittleEndian(recordCount, at: 20)
        buffer.writeLittleEndian(storedLength, at: 24)
        buffer.writeLittleEndian(uncompressedLength, at: 28)
        buffer.writeLittleEndian(baseLSN.rawValue, at: 32)
        buffer.writeLittleEndian(epoch.rawValue, at: 40)
        buffer.writeLittleEndian(syncedThrough.rawValue, at: 48)
        buffer.writeLittleEndian(timestamp, at: 56)
        batchCRC = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[Self.crcCoverageStart..<Self.byteCount]))
        buffer.writeLittleEndian(batchCRC, at: 4)
        assert(Self.decode(UnsafeRawBufferPointer(buffer)) == .header(self), "batch header must round-trip")
        return batchCRC
    }

    /// Decodes and checks a header: magic, CRC, version, flags and the range of every length.
    /// Returns `.needMoreData` when fewer than 64 bytes are given.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> Decoding {
        guard bytes.count >= byteCount else { return .needMoreData(byteCount) }
        let magic: UInt32 = bytes.readLittleEndian(at: 0)
        guard magic == Self.magic else { return .invalid(.badMagic(found: magic)) }
        let stored: UInt32 = bytes.readLittleEndian(at: 4)
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[crcCoverageStart..<byteCount]))
        guard stored == computed else { return .invalid(.headerChecksumMismatch(stored: stored, computed: computed)) }
        let version: UInt16 = bytes.readLittleEndian(at: 16)
        guard version == currentVersion else { return .invalid(.unsupportedVersion(version)) }
        let flags: UInt16 = bytes.readLittleEndian(at: 18)
        let isControl = flags & controlFlag != 0
        // Control batches are stored raw: a control flag with a codec is no defined combination.
        guard flags & ~knownFlagsMask == 0, let codec = CompressionCodec(rawValue: flags & codecFlagsMask),
            !isControl || codec == .none
        else {
            return .invalid(.unknownFlags(flags))
        }
        var header = BatchHeader(
            payloadCRC: bytes.readLittleEndian(at: 8), previousBatchCRC: bytes.readLittleEndian(at: 12),
            codec: codec, recordCount: bytes.readLittleEndian(at: 20), storedLength: bytes.readLittleEndian(at: 24),
            uncompressedLength: bytes.readLittleEndian(at: 28), baseLSN: LSN(bytes.readLittleEndian(at: 32)),
            epoch: Epoch(bytes.readLittleEndian(at: 40)), syncedThrough: LSN(bytes.readLittleEndian(at: 48)),
            timestamp: bytes.readLittleEndian(at: 56), isControl: isControl)
        header.batchCRC = stored
        if let defect = header.rangeDefect { return .invalid(defect) }
        return .header(header)
    }

    /// The first field out of range, or `nil`. A header with a valid CRC can still be hostile.
    var rangeDefect: BatchDefect? {
        if recordCount == 0 || recordCount > FormatLimits.recordsPerBatchMax {
            return .recordCountOutOfRange(recordCount)
        }
        if Int(uncompressedLength) > FormatLimits.batchUncompressedBytesMax
            || Int(storedLength) > FormatLimits.batchStoredBytesMax
            || (codec == .none && storedLength != uncompressedLength)
            || uncompressedLength < recordCount  // every record has at least its length byte
        {
            return .lengthOutOfRange(stored: storedLength, uncompressed: uncompressedLength)
        }
        if baseLSN == .zero || baseLSN.rawValue > UInt64.max - UInt64(recordCount) {
            return .lsnOutOfRange(baseLSN)
        }
        if syncedThrough >= baseLSN { return .syncedThroughAhead(syncedThrough, baseLSN: baseLSN) }
        return nil
    }

    public enum Decoding: Hashable, Sendable {
        /// At least this many bytes are needed in total.
        case needMoreData(Int)
        case header(BatchHeader)
        case invalid(BatchDefect)
    }
}

/// Why bytes are not a valid batch.
public enum BatchDefect: Error, Hashable, Sendable, CustomStringConvertible {
    case badMagic(found: UInt32)
    case headerChecksumMismatch(stored: UInt32, computed: UInt32)
    case unsupportedVersion(UInt16)
    case unknownFlags(UInt16)
    case recordCountOutOfRange(UInt32)
    case lengthOutOfRange(stored: UInt32, uncompressed: UInt32)
    case lsnOutOfRange(LSN)
    case syncedThroughAhead(LSN, baseLSN: LSN)
    case payloadChecksumMismatch(stored: UInt32, computed: UInt32)
    case decompressionFailed
    case malformedRecordBlock(String)

    public var description: String {
        switch self {
        case .badMagic(let found): "bad batch magic 0x\(String(found, radix: 16))"
        case .headerChecksumMismatch(let s, let c):
            "batch header CRC mismatch (stored 0x\(String(s, radix: 16)), computed 0x\(String(c, radix: 16)))"
        case .unsupportedVersion(let v): "unsupported batch version \(v)"
        case .unknownFlags(let f): "unknown batch flags 0x\(String(f, radix: 16))"
        case .recordCountOutOfRange(let n): "record count \(n) out of range"
        case .lengthOutOfRange(let s, let u): "payload lengths out of range (stored \(s), uncompressed \(u))"
        case .lsnOutOfRange(let l): "base LSN \(l) out of range"
        case .syncedThroughAhead(let s, let b): "syncedThrough \(s) is not before base LSN \(b)"
        case .payloadChecksumMismatch(let s, let c):
            "batch payload CRC mismatch (stored 0x\(String(s, radix: 16)), computed 0x\(String(c, radix: 16)))"
        case .decompressionFailed: "LZ4 payload does not decompress to its stated length"
        case .malformedRecordBlock(let why): "malformed record block: \(why)"
        }
    }
}
