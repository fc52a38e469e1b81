public import ShipLogFormat
public import ShipLogStateMachine
public import ShipLogStorage

/// The key-value state machine: a B-tree from keys to values, changed by write-batch records.
public final class KeyValueStateMachine: StateMachine {
    public typealias Snapshot = BTree

    public static let snapshotKind = "kv1"

    /// The live tree; copies of it are O(1) snapshots (copy-on-write nodes).
    public private(set) var tree = BTree()

    public init() {}

    public func apply(_ record: UnsafeRawBufferPointer, at lsn: LSN) throws(StateMachineError) {
        do {
            try KeyValueRecord.decode(
                record,
                put: { key, value in _ = tree.setValue(value, forKey: key) },
                delete: { key in _ = tree.removeValue(forKey: key) })
        } catch {
            throw StateMachineError("LSN \(lsn): \(error)")
        }
    }

    public func captureSnapshot() -> BTree { tree }

    public static func entryCount(of snapshot: BTree) -> UInt64 { UInt64(snapshot.count) }

    /// Body: per entry, key length varint, key, value length varint, value; in key order.
    public static func write(_ snapshot: BTree, to output: inout CheckpointWriter) throws(LogError) {
        var failure: LogError?
        snapshot.forEachUnsafe { key, value in
            do throws(LogError) {
                try output.writeVarint(UInt64(key.count))
                try output.write(key)
                try output.writeVarint(UInt64(value.count))
                try output.write(value)
                return true
            } catch {
                failure = error
                return false
            }
        }
        if let failure { throw failure }
    }

    public func restore(from input: inout CheckpointReader) throws(StateMachineError) {
        var restored = BTree()
        var previous: [UInt8]?
        while !input.isAtEnd {
            let keyLength = try input.readVarint()
            guard keyLength <= UInt64(KeyValueLimits.keyBytesMax) else {
                throw StateMachineError("checkpoint key of \(keyLength) bytes exceeds keyBytesMax")
            }
            let key = try input.read(count: Int(keyLength))
            let valueLength = try input.readVarint()
            guard valueLength <= UInt64(KeyValueLimits.valueBytesMax) else {
                throw StateMachineError("checkpoint value of \(valueLength) bytes exceeds valueBytesMax")
            }
            let value = try input.read(count: Int(valueLength))
            if let previous, !previous.lexicographicallyPrecedes(key) {
                throw StateMachineError("checkpoint keys out of order")
            }
            restored.updateValue(value, forKey: key)
            previous = key
        }
        tree = restored
    }

    public func reset() { tree = BTree() }
}
