import ShipLogFormat

/// Limits of the key-value store, each in bytes.
public enum KeyValueLimits {
    /// The longest key.
    public static let keyBytesMax = 4096
    /// The longest value.
    public static let valueBytesMax = 1 << 20
    /// The most operations in one atomic write batch.
    public static let operationsPerBatchMax = 100_000
}

/// One change to the store.
public enum KeyValueOperation: Hashable, Sendable {
    case put(key: [UInt8], value: [UInt8])
    case delete(key: [UInt8])

    public var key: [UInt8] {
        switch self {
        case .put(let key, _), .delete(let key): key
        }
    }
}

/// Operations applied atomically: they become one log record, applied all together or not at all.
public struct WriteBatch: Sendable, Hashable {
    public internal(set) var operations: [KeyValueOperation] = []

    public init() {}

    public var isEmpty: Bool { operations.isEmpty }
    public var count: Int { operations.count }

    public mutating func put(_ key: [UInt8], _ value: [UInt8]) { operations.append(.put(key: key, value: value)) }
    public mutating func delete(_ key: [UInt8]) { operations.append(.delete(key: key)) }

    /// The log record of this batch (docs/FORMAT.md, "Key-value records"), after checking every limit.
    public func encodedRecord() throws(KeyValueError) -> [UInt8] {
        try KeyValueRecord.validate(operations)
        var record: [UInt8] = []
        KeyValueRecord.encode(operations, into: &record)
        return record
    }
}

/// The log record of a write batch (docs/FORMAT.md, "Key-value records"):
/// `count` varint, then per operation a type byte (1 put, 2 delete), key length varint, key,
/// and for puts value length varint, value.
enum KeyValueRecord {
    static let putType: UInt8 = 1
    static let deleteType: UInt8 = 2

    /// Checks the limits, naming the first violated.
    static func validate(_ operations: [KeyValueOperation]) throws(KeyValueError) {
        guard !operations.isEmpty else { throw .emptyBatch }
        guard operations.count <= KeyValueLimits.operationsPerBatchMax else {
            throw .tooManyOperations(operations.count, limit: KeyValueLimits.operationsPerBatchMax)
        }
        var total = 10
        for operation in operations {
            let key = operation.key
            guard key.count <= KeyValueLimits.keyBytesMax else {
                throw .keyTooLarge(byteCount: key.count, limit: KeyValueLimits.keyBytesMax)
            }
            total += 1 + 5 + key.count
            if case .put(_, let value) = operation {
                guard value.count <= KeyValueLimits.valueBytesMax else {
                    throw .valueTooLarge(byteCount: value.count, limit: KeyValueLimits.valueBytesMax)
                }
                total += 5 + value.count
            }
        }
        guard total <= FormatLimits.recordBytesMax else {
            throw .batchTooLarge(byteCount: total, limit: FormatLimits.recordBytesMax)
        }
    }

    static func encode(_ operations: [KeyValueOperation], into record: inout [UInt8]) {
        record.removeAll(keepingCapacity: true)
        appendVarint(UInt64(operations.count), to: &record)
        for operation in operations {
            switch operation {
            case .put(let key, let value):
                record.append(putType)
                appendVarint(UInt64(key.count), to: &record)
                record.append(contentsOf: key)
                appendVarint(UInt64(value.count), to: &record)
                record.append(contentsOf: value)
            case .delete(let key):
                record.append(deleteType)
                appendVarint(UInt64(key.count), to: &record)
                record.append(contentsOf: key)
            }
        }
    }

    /// Encodes a single put without building an operation array (the hot path of `put`).
    static func encodePut(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, into record: inout [UInt8]) {
        record.removeAll(keepingCapacity: true)
        record.append(1)
        record.append(putType)
        appendVarint(UInt64(key.count), to: &record)
        record.append(contentsOf: key)
        appendVarint(UInt64(value.count), to: &record)
        record.append(contentsOf: value)
    }

    static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Decodes a record, calling `put`/`delete` for each operation in order. Checks every
    /// length against the limits before slicing; throws on anything malformed.
    static func decode(
        _ record: UnsafeRawBufferPointer, put: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void,
        delete: (UnsafeRawBufferPointer) -> Void
    ) throws(KeyValueError) {
        var offset = 0
        func varint() throws(KeyValueError) -> Int {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while offset < record.count && shift <= 28 {
                let byte = record[offset]
                offset += 1
                result |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return Int(result) }
                shift += 7
            }
            throw .malformedRecord("bad varint at byte \(offset)")
        }
        func bytes(_ count: Int) throws(KeyValueError) -> UnsafeRawBufferPointer {
            guard count <= record.count - offset else { throw .malformedRecord("length \(count) runs past the record") }
            defer { offset += count }
            return UnsafeRawBufferPointer(rebasing: record[offset..<offset + count])
        }
        func operation() throws(KeyValueError) -> (UInt8, UnsafeRawBufferPointer, UnsafeRawBufferPointer?) {
            guard offset < record.count else { throw .malformedRecord("record ends before its operations") }
            let type = record[offset]
            offset += 1
            let keyLength = try varint()
            guard keyLength <= KeyValueLimits.keyBytesMax else {
                throw .keyTooLarge(byteCount: keyLength, limit: KeyValueLimits.keyBytesMax)
            }
            let key = try bytes(keyLength)
            switch type {
            case putType:
                let valueLength = try varint()
                guard valueLength <= KeyValueLimits.valueBytesMax else {
                    throw .valueTooLarge(byteCount: valueLength, limit: KeyValueLimits.valueBytesMax)
                }
                return (type, key, try bytes(valueLength))
            case deleteType:
                return (type, key, nil)
            default:
                throw .malformedRecord("unknown operation type \(type)")
            }
        }
        let count = try varint()
        guard count >= 1 && count <= KeyValueLimits.operationsPerBatchMax else {
            throw .malformedRecord("operation count \(count) out of range")
        }
        if count == 1 {
            // The common single-operation record: check it whole, then apply, without a list.
            let (type, key, value) = try operation()
            guard offset == record.count else { throw .malformedRecord("\(record.count - offset) bytes after the last operation") }
            if type == putType { put(key, value!) } else { delete(key) }
            return
        }
        // Decode everything first so a malformed record applies nothing.
        var operations: [(UInt8, UnsafeRawBufferPointer, UnsafeRawBufferPointer?)] = []
        operations.reserveCapacity(count)
        for _ in 0..<count { operations.append(try operation()) }
        guard offset == record.count else { throw .malformedRecord("\(record.count - offset) bytes after the last operation") }
        for (_, key, value) in operations {
            if let value { put(key, value) } else { delete(key) }
        }
    }
}

/// Errors of the key-value store's own checks; failures of the log underneath are `LogError`s.
public enum KeyValueError: Error, Sendable, CustomStringConvertible {
    case keyTooLarge(byteCount: Int, limit: Int)
    case valueTooLarge(byteCount: Int, limit: Int)
    case batchTooLarge(byteCount: Int, limit: Int)
    case tooManyOperations(Int, limit: Int)
    case emptyBatch
    case malformedRecord(String)

    public var description: String {
        switch self {
        case .keyTooLarge(let n, let limit): "key of \(n) bytes exceeds keyBytesMax (\(limit) bytes)"
        case .valueTooLarge(let n, let limit): "value of \(n) bytes exceeds valueBytesMax (\(limit) bytes)"
        case .batchTooLarge(let n, let limit): "write batch of \(n) bytes exceeds recordBytesMax (\(limit) bytes)"
        case .tooManyOperations(let n, let limit): "write batch of \(n) operations exceeds operationsPerBatchMax (\(limit))"
        case .emptyBatch: "a write batch needs at least one operation"
        case .malformedRecord(let why): "malformed key-value record: \(why)"
        }
    }
}
