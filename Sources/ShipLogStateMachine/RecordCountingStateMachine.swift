public import ShipLogFormat
public import ShipLogStorage

/// The state machine of a node that is only a log: it accepts every record and keeps two
/// counts (records and bytes applied), so a replicating node with it ships, stores and
/// acknowledges records without interpreting them (`shiplog serve --state log`, and
/// `shiplog bench replicate`, which measures log shipping alone). Its query takes no request
/// bytes and answers both counts, little-endian u64 each.
public final class RecordCountingStateMachine: QueryableStateMachine {
    public typealias Snapshot = Counts
    public static let snapshotKind = "count1"

    /// Records and their bytes applied so far.
    public struct Counts: Sendable, Hashable {
        public var records: UInt64 = 0
        public var bytes: UInt64 = 0
    }

    public private(set) var counts = Counts()

    public init() {}

    public func apply(_ record: UnsafeRawBufferPointer, at lsn: LSN) throws(StateMachineError) {
        counts.records += 1
        counts.bytes += UInt64(record.count)
    }

    public func captureSnapshot() -> Counts { counts }
    public static func entryCount(of snapshot: Counts) -> UInt64 { snapshot.records }

    public static func write(_ snapshot: Counts, to output: inout CheckpointWriter) throws(LogError) {
        try output.writeVarint(snapshot.records)
        try output.writeVarint(snapshot.bytes)
    }

    public func restore(from input: inout CheckpointReader) throws(StateMachineError) {
        counts = Counts(records: try input.readVarint(), bytes: try input.readVarint())
    }

    public func reset() { counts = Counts() }

    /// The counts, for an empty request: records then bytes, little-endian u64 each.
    public func query(_ request: [UInt8]) throws(StateMachineError) -> [UInt8] {
        guard request.isEmpty else {
            throw StateMachineError("a record-counting node takes an empty query, got \(request.count) bytes")
        }
        var result = [UInt8](repeating: 0, count: 16)
        result.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: counts.records.littleEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: counts.bytes.littleEndian, toByteOffset: 8, as: UInt64.self)
        }
        return result
    }

    /// Decodes the answer of ``query(_:)``; `nil` when it is not 16 bytes.
    public static func decodeCounts(_ result: [UInt8]) -> Counts? {
        guard result.count == 16 else { return nil }
        return result.withUnsafeBytes { raw in
            Counts(
                records: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                bytes: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        }
    }
}
