/// A record of the engine itself, carried in a control batch (docs/FORMAT.md section 20):
/// readers of application records never see it, replication ships it like any batch.
///
/// Byte layout (little-endian), every kind:
///
/// | offset | size | field    | meaning                                   |
/// |-------:|-----:|----------|-------------------------------------------|
/// |      0 |    4 | magic    | `SLCR`                                    |
/// |      4 |    1 | version  | 1                                         |
/// |      5 |    1 | kind     | 1 = epochStart                            |
/// |      6 |    2 | reserved | zero                                      |
/// |      8 |      | body     | the kind's fields                         |
///
/// `epochStart` body (the record is 32 bytes):
///
/// | offset | size | field                | meaning                                          |
/// |-------:|-----:|----------------------|--------------------------------------------------|
/// |      8 |    8 | epoch                | the epoch that starts with this batch            |
/// |     16 |    8 | previousEpoch        | the epoch of the log's batch before it; 0: none  |
/// |     24 |    8 | previousEpochLastLSN | the last LSN of that epoch here; 0: none         |
public enum ControlRecord: Hashable, Sendable, CustomStringConvertible {
    /// A promoted primary's first batch of its epoch: `epoch` starts here, after
    /// `previousEpoch`, whose last record in the log is `previousEpochLastLSN`.
    case epochStart(epoch: Epoch, previousEpoch: Epoch, previousEpochLastLSN: LSN)

    /// "SLCR" as stored.
    public static let magic: UInt32 = 0x5243_4C53
    public static let currentVersion: UInt8 = 1
    /// Magic, version, kind and reserved bytes, in bytes.
    public static let prefixByteCount = 8
    /// The largest control record of version 1, in bytes.
    public static let byteCountMax = 32

    /// The kind byte of each record.
    public enum Kind: UInt8, Sendable, CaseIterable {
        case epochStart = 1

        /// The whole record's length for this kind, in bytes.
        public var byteCount: Int {
            switch self {
            case .epochStart: 32
            }
        }
    }

    public var kind: Kind {
        switch self {
        case .epochStart: .epochStart
        }
    }

    /// The record's bytes (docs/FORMAT.md section 20.2).
    public func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: kind.byteCount)
        bytes.withUnsafeMutableBytes { buffer in
            buffer.writeLittleEndian(Self.magic, at: 0)
            buffer.writeLittleEndian(Self.currentVersion, at: 4)
            buffer.writeLittleEndian(kind.rawValue, at: 5)
            switch self {
            case .epochStart(let epoch, let previousEpoch, let previousEpochLastLSN):
                buffer.writeLittleEndian(epoch.rawValue, at: 8)
                buffer.writeLittleEndian(previousEpoch.rawValue, at: 16)
                buffer.writeLittleEndian(previousEpochLastLSN.rawValue, at: 24)
            }
        }
        return bytes
    }

    /// Decodes one record, strictly: every condition of docs/FORMAT.md section 20.2, in order.
    public init(decoding bytes: UnsafeRawBufferPointer) throws(ControlRecordDefect) {
        guard bytes.count >= Self.prefixByteCount else { throw .truncated(byteCount: bytes.count) }
        let magic: UInt32 = bytes.readLittleEndian(at: 0)
        guard magic == Self.magic else { throw .badMagic(found: magic) }
        let version: UInt8 = bytes.readLittleEndian(at: 4)
        guard version == Self.currentVersion else { throw .unsupportedVersion(version) }
        let kindByte: UInt8 = bytes.readLittleEndian(at: 5)
        guard let kind = Kind(rawValue: kindByte) else { throw .unknownKind(kindByte) }
        let reserved: UInt16 = bytes.readLittleEndian(at: 6)
        guard reserved == 0 else { throw .reservedNotZero(reserved) }
        guard bytes.count == kind.byteCount else {
            throw .lengthMismatch(kind: kindByte, expected: kind.byteCount, found: bytes.count)
        }
        switch kind {
        case .epochStart:
            let epoch = Epoch(bytes.readLittleEndian(at: 8))
            let previous = Epoch(bytes.readLittleEndian(at: 16))
            guard previous < epoch else { throw .epochNotAfterPrevious(epoch: epoch, previous: previous) }
            self = .epochStart(epoch: epoch, previousEpoch: previous, previousEpochLastLSN: LSN(bytes.readLittleEndian(at: 24)))
        }
    }

    /// Decodes one record from an array holding exactly its bytes.
    public init(decoding bytes: [UInt8]) throws(ControlRecordDefect) {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(ControlRecordDefect) in try ControlRecord(decoding: raw) }
        }
        self = try result.get()
    }

    public var description: String {
        switch self {
        case .epochStart(let epoch, let previous, let last):
            "epochStart epoch=\(epoch) previous=\(previous) previousLast=\(last)"
        }
    }
}

/// Why bytes are not a valid control record, or a batch not a valid control batch.
public enum ControlRecordDefect: Error, Hashable, Sendable, CustomStringConvertible {
    /// The batch's flags do not mark it as a control batch.
    case notAControlBatch
    /// The batch's record block is damaged (decompression or record framing).
    case batch(BatchDefect)
    /// Record `index` of the control batch is invalid.
    indirect case record(index: Int, ControlRecordDefect)
    case truncated(byteCount: Int)
    case badMagic(found: UInt32)
    case unsupportedVersion(UInt8)
    case unknownKind(UInt8)
    case reservedNotZero(UInt16)
    case lengthMismatch(kind: UInt8, expected: Int, found: Int)
    case epochNotAfterPrevious(epoch: Epoch, previous: Epoch)

    public var description: String {
        switch self {
        case .notAControlBatch: "not a control batch (flags bit 4 clear)"
        case .batch(let defect): "control batch: \(defect)"
        case .record(let index, let defect): "control record \(index): \(defect)"
        case .truncated(let n): "control record of \(n) bytes is shorter than its 8-byte prefix"
        case .badMagic(let found): "bad control record magic 0x\(String(found, radix: 16))"
        case .unsupportedVersion(let v): "unsupported control record version \(v)"
        case .unknownKind(let k): "unknown control record kind \(k)"
        case .reservedNotZero(let r): "control record reserved bytes are 0x\(String(r, radix: 16)), not zero"
        case .lengthMismatch(let kind, let expected, let found):
            "control record of kind \(kind) has \(found) bytes, expected \(expected)"
        case .epochNotAfterPrevious(let epoch, let previous):
            "epochStart record: epoch \(epoch) is not after the previous epoch \(previous)"
        }
    }
}

extension Batch {
    /// The control records of a control batch, each decoded strictly. Decompresses and checks
    /// the record block first (``records()``).
    public func controlRecords() throws(ControlRecordDefect) -> [ControlRecord] {
        guard header.isControl else { throw .notAControlBatch }
        let block: RecordBlock
        do { block = try records() } catch { throw .batch(error) }
        var decoded: [ControlRecord] = []
        decoded.reserveCapacity(block.count)
        for (index, record) in block.enumerated() {
            do {
                decoded.append(try ControlRecord(decoding: Array(record)))
            } catch {
                throw .record(index: index, error)
            }
        }
        return decoded
    }
}
