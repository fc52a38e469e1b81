public import ShipLogStateMachine

extension KeyValueLimits {
    /// The largest encoded query result, in bytes: a scan stops before the entry that would
    /// take its result past this and says there is `more`.
    public static let queryResultBytesMax = 4 << 20
    /// The most entries one scan returns, whatever its `limit` asks (entries).
    public static let scanEntriesMax = 10_000
}

/// A read-only question to the key-value state (docs/FORMAT.md section 17.1), answered on
/// any node through ``StateMachineHost/query(_:)``.
public enum KeyValueQuery: Hashable, Sendable {
    /// The value of `key`.
    case get(key: [UInt8])
    /// Entries with `start <= key < end` (no `end`: to the last key), in key order, at most
    /// `limit` (and never more than ``KeyValueLimits/scanEntriesMax``) of them.
    case scan(start: [UInt8], end: [UInt8]?, limit: Int)

    /// Version byte of the encoding.
    public static let currentVersion: UInt8 = 1
    static let getKind: UInt8 = 1
    static let scanKind: UInt8 = 2

    /// The request bytes (docs/FORMAT.md section 17.1). Lengths and limits are not checked
    /// here; ``init(decoding:)`` on the answering node checks them all.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = [Self.currentVersion]
        switch self {
        case .get(let key):
            out.append(Self.getKind)
            QueryBytes.appendField(key, to: &out)
        case .scan(let start, let end, let limit):
            out.append(Self.scanKind)
            QueryBytes.appendField(start, to: &out)
            if let end {
                out.append(1)
                QueryBytes.appendField(end, to: &out)
            } else {
                out.append(0)
            }
            QueryBytes.appendUInt32(UInt32(clamping: limit), to: &out)
        }
        return out
    }

    /// Decodes request bytes from outside, checking every length against ``KeyValueLimits``
    /// before copying, and that nothing follows the query.
    public init(decoding bytes: [UInt8]) throws(KeyValueError) {
        var reader = QueryBytes(bytes: bytes, what: "query")
        try reader.expectVersion(Self.currentVersion)
        let kind = try reader.byte("kind")
        switch kind {
        case Self.getKind:
            self = .get(key: try reader.field("key", max: KeyValueLimits.keyBytesMax))
        case Self.scanKind:
            let start = try reader.field("start key", max: KeyValueLimits.keyBytesMax)
            let end: [UInt8]?
            switch try reader.byte("hasEnd") {
            case 0: end = nil
            case 1: end = try reader.field("end key", max: KeyValueLimits.keyBytesMax)
            case let other: throw reader.malformed("hasEnd must be 0 or 1, got \(other)", at: reader.offset - 1)
            }
            let limit = try reader.uint32("limit")
            guard limit >= 1 && limit <= UInt32(KeyValueLimits.scanEntriesMax) else {
                throw reader.malformed(
                    "limit \(limit) is not in 1...\(KeyValueLimits.scanEntriesMax) (scanEntriesMax)", at: reader.offset - 4)
            }
            self = .scan(start: start, end: end, limit: Int(limit))
        default:
            throw reader.malformed("unknown kind \(kind)", at: 1)
        }
        try reader.expectEnd()
    }
}

/// The answer to a ``KeyValueQuery`` (docs/FORMAT.md section 17.1).
public enum KeyValueQueryResult: Sendable, Equatable {
    /// A `get`'s value, `nil` when the key is absent.
    case value([UInt8]?)
    /// A scan's entries in key order; `more` when entries in the range follow the last one
    /// returned (continue from its key plus a zero byte).
    case entries([(key: [UInt8], value: [UInt8])], more: Bool)

    static let valueKind: UInt8 = 1
    static let entriesKind: UInt8 = 2
    /// Bytes of an `entries` result before its first entry: version, kind, flags, count.
    static let entriesHeaderBytes = 7
    /// Bytes an entry adds besides its key and value: two 32-bit lengths.
    static let entryOverheadBytes = 8

    public static func == (a: KeyValueQueryResult, b: KeyValueQueryResult) -> Bool {
        switch (a, b) {
        case (.value(let x), .value(let y)): x == y
        case (.entries(let x, let xMore), .entries(let y, let yMore)):
            xMore == yMore && x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: false
        }
    }

    /// The result bytes (docs/FORMAT.md section 17.1).
    public func encoded() -> [UInt8] {
        var out: [UInt8] = [KeyValueQuery.currentVersion]
        switch self {
        case .value(let value):
            out.append(Self.valueKind)
            if let value {
                out.append(1)
                QueryBytes.appendField(value, to: &out)
            } else {
                out.append(0)
            }
        case .entries(let entries, let more):
            out.append(Self.entriesKind)
            out.append(more ? 1 : 0)
            QueryBytes.appendUInt32(UInt32(clamping: entries.count), to: &out)
            for entry in entries {
                QueryBytes.appendField(entry.key, to: &out)
                QueryBytes.appendField(entry.value, to: &out)
            }
        }
        return out
    }

    /// Decodes result bytes from another node, checking every length against
    /// ``KeyValueLimits`` before copying, and that nothing follows the result.
    public init(decoding bytes: [UInt8]) throws(KeyValueError) {
        guard bytes.count <= KeyValueLimits.queryResultBytesMax else {
            throw .malformedRecord(
                "query result of \(bytes.count) bytes exceeds queryResultBytesMax (\(KeyValueLimits.queryResultBytesMax) bytes)")
        }
        var reader = QueryBytes(bytes: bytes, what: "query result")
        try reader.expectVersion(KeyValueQuery.currentVersion)
        let kind = try reader.byte("kind")
        switch kind {
        case Self.valueKind:
            switch try reader.byte("present") {
            case 0: self = .value(nil)
            case 1: self = .value(try reader.field("value", max: KeyValueLimits.valueBytesMax))
            case let other: throw reader.malformed("present must be 0 or 1, got \(other)", at: reader.offset - 1)
            }
        case Self.entriesKind:
            let flags = try reader.byte("flags")
            guard flags <= 1 else { throw reader.malformed("unknown flags 0x\(String(flags, radix: 16))", at: 2) }
            let count = Int(try reader.uint32("count"))
            // Checked before reserving: every entry takes at least its two lengths.
            guard count <= KeyValueLimits.scanEntriesMax, count * Self.entryOverheadBytes <= reader.remaining else {
                throw reader.malformed("entry count \(count) does not fit the result or scanEntriesMax", at: 3)
            }
            var entries: [(key: [UInt8], value: [UInt8])] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                let key = try reader.field("key", max: KeyValueLimits.keyBytesMax)
                let value = try reader.field("value", max: KeyValueLimits.valueBytesMax)
                entries.append((key, value))
            }
            self = .entries(entries, more: flags == 1)
        default:
            throw reader.malformed("unknown kind \(kind)", at: 1)
        }
        try reader.expectEnd()
    }
}

extension KeyValueStateMachine: QueryableStateMachine {
    /// Decodes a ``KeyValueQuery`` and encodes its ``KeyValueQueryResult``.
    public func query(_ request: [UInt8]) throws(StateMachineError) -> [UInt8] {
        let query: KeyValueQuery
        do { query = try KeyValueQuery(decoding: request) } catch { throw StateMachineError("\(error)") }
        return answer(query).encoded()
    }

    /// Answers `query` from the live tree.
    public func answer(_ query: KeyValueQuery) -> KeyValueQueryResult {
        switch query {
        case .get(let key):
            return .value(tree[key])
        case .scan(let start, let end, let limit):
            return Self.scan(tree, start: start, end: end, limit: limit)
        }
    }

    /// Entries in `start..<end`, stopping before the entry that would take the encoded
    /// result past ``KeyValueLimits/queryResultBytesMax`` or past `limit` entries (capped
    /// at ``KeyValueLimits/scanEntriesMax``); `more` says whether the range holds more.
    static func scan(_ tree: BTree, start: [UInt8], end: [UInt8]?, limit: Int) -> KeyValueQueryResult {
        let entriesMax = min(max(limit, 0), KeyValueLimits.scanEntriesMax)
        if let end, !start.lexicographicallyPrecedes(end) { return .entries([], more: false) }
        var entries: [(key: [UInt8], value: [UInt8])] = []
        var resultBytes = KeyValueQueryResult.entriesHeaderBytes
        var more = false
        tree.forEachUnsafe(from: start, to: end) { key, value in
            let entryBytes = KeyValueQueryResult.entryOverheadBytes + key.count + value.count
            guard entries.count < entriesMax, resultBytes + entryBytes <= KeyValueLimits.queryResultBytesMax else {
                more = true
                return false
            }
            entries.append((Array(key), Array(value)))
            resultBytes += entryBytes
            return true
        }
        return .entries(entries, more: more)
    }
}

/// Strict little-endian reading of query and result bytes: every read is bounds-checked and
/// every error names the field and byte offset.
struct QueryBytes {
    let bytes: [UInt8]
    let what: String
    private(set) var offset = 0

    init(bytes: [UInt8], what: String) {
        self.bytes = bytes
        self.what = what
    }

    var remaining: Int { bytes.count - offset }

    func malformed(_ reason: String, at position: Int) -> KeyValueError {
        .malformedRecord("\(what) at byte \(position): \(reason)")
    }

    mutating func expectVersion(_ version: UInt8) throws(KeyValueError) {
        let found = try byte("version")
        guard found == version else { throw malformed("unsupported version \(found)", at: 0) }
    }

    mutating func byte(_ field: String) throws(KeyValueError) -> UInt8 {
        guard remaining >= 1 else { throw malformed("ends before its \(field)", at: offset) }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func uint32(_ field: String) throws(KeyValueError) -> UInt32 {
        guard remaining >= 4 else { throw malformed("ends inside its \(field)", at: offset) }
        defer { offset += 4 }
        return bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    }

    /// A 32-bit length, checked against `max` and what is left, then that many bytes.
    mutating func field(_ field: String, max: Int) throws(KeyValueError) -> [UInt8] {
        let start = offset
        let length = Int(try uint32("\(field) length"))
        guard length <= max else { throw malformed("\(field) of \(length) bytes exceeds its limit of \(max) bytes", at: start) }
        guard length <= remaining else { throw malformed("\(field) of \(length) bytes runs past the end", at: start) }
        defer { offset += length }
        return Array(bytes[offset..<offset + length])
    }

    func expectEnd() throws(KeyValueError) {
        guard remaining == 0 else { throw malformed("\(remaining) bytes follow the end", at: offset) }
    }

    static func appendUInt32(_ value: UInt32, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }

    static func appendField(_ bytes: [UInt8], to out: inout [UInt8]) {
        appendUInt32(UInt32(clamping: bytes.count), to: &out)
        out.append(contentsOf: bytes)
    }
}
