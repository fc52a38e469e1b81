/// One batch exactly as stored and shipped: header followed by payload.
public struct Batch: Sendable, Hashable {
    public let header: BatchHeader
    /// Every byte of the batch, header included; what replication ships.
    public let bytes: [UInt8]

    /// Wraps bytes already checked by ``decode(_:)``.
    public init(verifiedHeader header: BatchHeader, bytes: [UInt8]) {
        precondition(bytes.count == header.batchByteCount)
        self.header = header
        self.bytes = bytes
    }

    public var lsnRange: LSNRange { header.lsnRange }

    public enum Decoding: Hashable, Sendable {
        /// At least this many bytes are needed in total; never thrown, incomplete input is normal.
        case needMoreData(Int)
        /// The bytes start with a whole batch that passed header, range and payload checks.
        case batch(BatchHeader)
        case invalid(BatchDefect)
    }

    /// Checks the batch at the start of `bytes`: header, lengths and payload CRC. Does not
    /// decompress; ``records()`` does, and checks the record block.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> Decoding {
        switch BatchHeader.decode(bytes) {
        case .needMoreData(let n): return .needMoreData(n)
        case .invalid(let defect): return .invalid(defect)
        case .header(let header):
            guard bytes.count >= header.batchByteCount else { return .needMoreData(header.batchByteCount) }
            let payload = UnsafeRawBufferPointer(rebasing: bytes[BatchHeader.byteCount..<header.batchByteCount])
            let computed = CRC32C.checksum(payload)
            guard computed == header.payloadCRC else {
                return .invalid(.payloadChecksumMismatch(stored: header.payloadCRC, computed: computed))
            }
            return .batch(header)
        }
    }

    /// Decodes a whole batch from `bytes`, which must hold exactly one batch.
    public static func decoding(_ bytes: [UInt8]) throws(BatchDefect) -> Batch {
        let result = bytes.withUnsafeBytes { decode($0) }
        switch result {
        case .batch(let header) where header.batchByteCount == bytes.count:
            return Batch(verifiedHeader: header, bytes: bytes)
        case .batch, .needMoreData:
            throw .lengthOutOfRange(stored: UInt32(truncatingIfNeeded: bytes.count), uncompressed: 0)
        case .invalid(let defect):
            throw defect
        }
    }

    /// Decompresses and parses the record block.
    public func records() throws(BatchDefect) -> RecordBlock {
        let header = header
        let result = bytes.withUnsafeBytes { all in
            Result { () throws(BatchDefect) in
                try RecordBlock(payload: UnsafeRawBufferPointer(rebasing: all[BatchHeader.byteCount...]), header: header)
            }
        }
        return try result.get()
    }
}

/// The decoded records of one batch, in LSN order.
public struct RecordBlock: Sendable, Sequence {
    /// Length-prefixed records, as in docs/FORMAT.md "Record block".
    public let storage: [UInt8]
    public let count: Int

    /// Decompresses (when needed) and validates a payload against its header.
    public init(payload: UnsafeRawBufferPointer, header: BatchHeader) throws(BatchDefect) {
        // The header may not have come through `BatchHeader.decode`: check its lengths before
        // allocating the record block.
        if let defect = header.rangeDefect { throw defect }
        let expected = Int(header.uncompressedLength)
        switch header.codec {
        case .none:
            guard payload.count == expected else { throw .decompressionFailed }
            storage = Array(payload)
        case .lz4:
            var ok = true
            storage = [UInt8](unsafeUninitializedCapacity: expected) { buffer, count in
                let produced = LZ4.decompress(payload, into: UnsafeMutableRawBufferPointer(buffer))
                ok = produced == expected
                count = ok ? expected : 0
            }
            guard ok else { throw .decompressionFailed }
        }
        count = Int(header.recordCount)
        try Self.validate(storage, recordCount: count)
    }

    /// Every record must be length-prefixed, within limits, and the block must end exactly
    /// after `recordCount` records.
    static func validate(_ storage: [UInt8], recordCount: Int) throws(BatchDefect) {
        let result = storage.withUnsafeBytes { raw in Result { () throws(BatchDefect) in try validate(raw, recordCount: recordCount) } }
        try result.get()
    }

    static func validate(_ raw: UnsafeRawBufferPointer, recordCount: Int) throws(BatchDefect) {
        do {
            guard let base = raw.baseAddress else { throw .malformedRecordBlock("empty") }
            var offset = 0
            for index in 0..<recordCount {
                guard let (length, prefix) = Varint.read(from: base, at: offset, end: raw.count) else {
                    throw .malformedRecordBlock("record \(index): bad length prefix at byte \(offset)")
                }
                guard Int(length) <= FormatLimits.recordBytesMax, offset + prefix + Int(length) <= raw.count else {
                    throw .malformedRecordBlock("record \(index): length \(length) runs past the block")
                }
                offset += prefix + Int(length)
            }
            guard offset == raw.count else {
                throw .malformedRecordBlock("\(raw.count - offset) bytes after the last record")
            }
        }
    }

    /// Calls `body` with each record's bytes, valid only during the call.
    public func forEach(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try storage.withUnsafeBytes { raw in
            var offset = 0
            for _ in 0..<count {
                let (length, prefix) = Varint.read(from: raw.baseAddress!, at: offset, end: raw.count)!
                offset += prefix
                try body(UnsafeRawBufferPointer(rebasing: raw[offset..<offset + Int(length)]))
                offset += Int(length)
            }
        }
    }

    public func makeIterator() -> Iterator { Iterator(storage: storage, remaining: count) }

    public struct Iterator: IteratorProtocol {
        let storage: [UInt8]
        var remaining: Int
        var offset = 0

        init(storage: [UInt8], remaining: Int) {
            self.storage = storage
            self.remaining = remaining
        }

        public mutating func next() -> ArraySlice<UInt8>? {
            guard remaining > 0 else { return nil }
            remaining -= 1
            let (length, prefix) = storage.withUnsafeBytes {
                Varint.read(from: $0.baseAddress!, at: offset, end: $0.count)!
            }
            let start = offset + prefix
            offset = start + Int(length)
            return storage[start..<offset]
        }
    }
}
