/// Collects records into the record block of one batch: each record is its length as an
/// unsigned LEB128 varint followed by its bytes (docs/FORMAT.md, "Record block").
public struct BatchBuilder: Sendable {
    @usableFromInline var block: [UInt8]
    /// Records appended so far.
    public private(set) var recordCount: UInt32 = 0

    /// Record blocks smaller than this are stored raw whatever the codec: LZ4 saves next to
    /// nothing on them and its per-call set-up would dominate a single small append, in bytes.
    public static let compressionThresholdBytes = 256

    /// - Parameter capacity: bytes to reserve for the record block.
    public init(capacity: Int = 64 << 10) {
        block = []
        block.reserveCapacity(capacity)
    }

    /// Bytes of the record block so far (the batch's uncompressed length).
    public var uncompressedByteCount: Int { block.count }
    public var isEmpty: Bool { recordCount == 0 }

    /// Whether a record of `byteCount` bytes still fits in this batch's limits.
    public func canAppend(byteCount: Int) -> Bool {
        byteCount <= FormatLimits.recordBytesMax && recordCount < FormatLimits.recordsPerBatchMax
            && block.count + byteCount + Varint.maxBytes <= FormatLimits.batchUncompressedBytesMax
    }

    /// Appends one record.
    /// - Throws: ``FormatError/recordTooLarge(byteCount:limit:)`` or ``FormatError/batchFull``.
    public mutating func append(_ record: UnsafeRawBufferPointer) throws(FormatError) {
        guard record.count <= FormatLimits.recordBytesMax else {
            throw .recordTooLarge(byteCount: record.count, limit: FormatLimits.recordBytesMax)
        }
        guard canAppend(byteCount: record.count) else { throw .batchFull }
        var prefix: UInt64 = 0
        let prefixLength = withUnsafeMutableBytes(of: &prefix) { Varint.write(UInt32(record.count), to: $0.baseAddress!) }
        withUnsafeBytes(of: &prefix) { block.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[0..<prefixLength])) }
        block.append(contentsOf: record)
        recordCount += 1
    }

    public mutating func append(_ record: [UInt8]) throws(FormatError) {
        let result: Result<Void, FormatError> = record.withUnsafeBytes { bytes in
            Result { () throws(FormatError) in try append(bytes) }
        }
        try result.get()
    }

    public mutating func append(_ record: ArraySlice<UInt8>) throws(FormatError) {
        let result: Result<Void, FormatError> = record.withUnsafeBytes { bytes in
            Result { () throws(FormatError) in try append(bytes) }
        }
        try result.get()
    }

    public mutating func append(_ record: String) throws(FormatError) {
        var record = record
        let result: Result<Void, FormatError> = record.withUTF8 { bytes in
            Result { () throws(FormatError) in try append(UnsafeRawBufferPointer(bytes)) }
        }
        try result.get()
    }

    /// Whether the records of `other` still fit in this batch's limits.
    public func canAppend(contentsOf other: BatchBuilder) -> Bool {
        recordCount + other.recordCount <= FormatLimits.recordsPerBatchMax
            && block.count + other.block.count <= FormatLimits.batchUncompressedBytesMax
    }

    /// Appends every record of `other`, in order (the record blocks concatenate).
    /// - Throws: ``FormatError/batchFull`` when they do not fit (see ``canAppend(contentsOf:)``).
    public mutating func append(contentsOf other: BatchBuilder) throws(FormatError) {
        guard canAppend(contentsOf: other) else { throw .batchFull }
        block.append(contentsOf: other.block)
        recordCount += other.recordCount
    }

    /// Calls `body` with each record appended so far, in order; the bytes are valid only during the call.
    public func forEachRecord(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try block.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let (length, prefix) = Varint.read(from: raw.baseAddress!, at: offset, end: raw.count)!
                offset += prefix
                try body(UnsafeRawBufferPointer(rebasing: raw[offset..<offset + Int(length)]))
                offset += Int(length)
            }
        }
    }

    /// Empties the builder, keeping its memory for the next batch.
    public mutating func removeAll() {
        block.removeAll(keepingCapacity: true)
        recordCount = 0
    }

    /// Compresses the record block (LZ4, or stored raw when that would not be smaller) into
    /// a batch whose header is filled in later by ``EncodedBatch/seal(baseLSN:epoch:previousBatchCRC:syncedThrough:timestamp:)``.
    public func encode(codec: CompressionCodec) -> EncodedBatch {
        precondition(recordCount > 0, "a batch holds at least one record")
        let headerSize = BatchHeader.byteCount
        let bound = codec == .lz4 ? LZ4.compressBound(block.count) : block.count
        var chosen = CompressionCodec.none
        let bytes = [UInt8](unsafeUninitializedCapacity: headerSize + max(bound, block.count)) { buffer, count in
            let out = UnsafeMutableRawBufferPointer(buffer)
            block.withUnsafeBytes { source in
                if codec == .lz4, source.count >= Self.compressionThresholdBytes,
                    let compressed = LZ4.compress(source, into: UnsafeMutableRawBufferPointer(rebasing: out[headerSize...])),
                    compressed < source.count
                {
                    chosen = .lz4
                    count = headerSize + compressed
                } else {
                    UnsafeMutableRawBufferPointer(rebasing: out[headerSize...]).copyMemory(from: source)
                    count = headerSize + source.count
                }
            }
            UnsafeMutableRawBufferPointer(rebasing: out[0..<headerSize]).initializeMemory(as: UInt8.self, repeating: 0)
        }
        let payloadCRC = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[headerSize...])) }
        return EncodedBatch(
            bytes: bytes, codec: chosen, recordCount: recordCount, uncompressedLength: UInt32(block.count),
            payloadCRC: payloadCRC)
    }
}

/// A compressed, checksummed batch waiting for its position in the log (base LSN and chain).
public struct EncodedBatch: Sendable {
    /// Header (zeros until sealed) followed by the stored payload.
    public private(set) var bytes: [UInt8]
    public let codec: CompressionCodec
    public let recordCount: UInt32
    public let uncompressedLength: UInt32
    public let payloadCRC: UInt32
    /// The records of a control batch (``control(_:)``), in order; empty for a batch of
    /// application records. The log checks them against its state before it assigns LSNs.
    public let controlRecords: [ControlRecord]

    init(
        bytes: [UInt8], codec: CompressionCodec, recordCount: UInt32, uncompressedLength: UInt32, payloadCRC: UInt32,
        controlRecords: [ControlRecord] = []
    ) {
        self.bytes = bytes
        self.codec = codec
        self.recordCount = recordCount
        self.uncompressedLength = uncompressedLength
        self.payloadCRC = payloadCRC
        self.controlRecords = controlRecords
    }

    /// A control batch (docs/FORMAT.md section 20) holding `records`, stored raw (codec none)
    /// with the control flag set. It is sealed, assigned and replicated like any batch.
    public static func control(_ records: [ControlRecord]) -> EncodedBatch {
        precondition(!records.isEmpty, "a control batch holds at least one record")
        var builder = BatchBuilder(capacity: records.count * (ControlRecord.byteCountMax + 1))
        for record in records {
            // A control record is far below every batch limit: appending cannot fail.
            do { try builder.append(record.encoded()) } catch { preconditionFailure("control record: \(error)") }
        }
        let plain = builder.encode(codec: .none)
        return EncodedBatch(
            bytes: plain.bytes, codec: .none, recordCount: plain.recordCount,
            uncompressedLength: plain.uncompressedLength, payloadCRC: plain.payloadCRC, controlRecords: records)
    }

    /// Whether this is a control batch.
    public var isControl: Bool { !controlRecords.isEmpty }

    /// Header and payload, in bytes.
    public var byteCount: Int { bytes.count }

    /// Fills in the header for the batch's place in the log and returns it (with its batchCRC).
    @discardableResult
    public mutating func seal(
        baseLSN: LSN, epoch: Epoch, previousBatchCRC: UInt32, syncedThrough: LSN, timestamp: UInt64
    ) -> BatchHeader {
        var header = BatchHeader(
            payloadCRC: payloadCRC, previousBatchCRC: previousBatchCRC, codec: codec, recordCount: recordCount,
            storedLength: UInt32(bytes.count - BatchHeader.byteCount), uncompressedLength: uncompressedLength,
            baseLSN: baseLSN, epoch: epoch, syncedThrough: syncedThrough, timestamp: timestamp, isControl: isControl)
        bytes.withUnsafeMutableBytes { _ = header.encode(into: $0) }
        return header
    }
}

/// Errors of building batches from caller input.
public enum FormatError: Error, Hashable, Sendable, CustomStringConvertible {
    case recordTooLarge(byteCount: Int, limit: Int)
    case batchFull
    case emptyBatch

    public var description: String {
        switch self {
        case .recordTooLarge(let n, let limit): "record of \(n) bytes exceeds recordBytesMax (\(limit) bytes)"
        case .batchFull: "batch is full (recordsPerBatchMax or batchUncompressedBytesMax reached)"
        case .emptyBatch: "a batch must hold at least one record"
        }
    }
}
