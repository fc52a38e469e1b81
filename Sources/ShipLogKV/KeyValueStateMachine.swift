#if canImport(Glibc)
import Glibc
#endif
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

    /// A record is a write batch (docs/FORMAT.md, key-value records); anything else is refused.
    public static func validate(_ record: UnsafeRawBufferPointer) throws(StateMachineError) {
        do {
            try KeyValueRecord.decode(record, put: { _, _ in }, delete: { _ in })
        } catch {
            throw StateMachineError("not a key-value write batch: \(error)")
        }
    }

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

    /// Replay applies a whole window of records sorted by key: changes to different keys
    /// commute, and a stable order (by key, then by position in the log) keeps the last change
    /// to each key last, so the state equals applying the records one by one. Sorted inserts
    /// touch each B-tree leaf once per run of keys instead of once per key.
    public func replay(_ records: ReplayBatch) throws(StateMachineError) {
        let result = records.withRecords { storage, entries in
            Result { () throws(StateMachineError) in try replaySorted(storage, entries) }
        }
        try result.get()
    }

    private struct ReplayOperation {
        /// The key's first 8 bytes, big-endian, zero padded: orders most keys without memcmp.
        var prefix: UInt64
        var key: Range<Int>
        /// `nil` for a delete.
        var value: Range<Int>?
        var order: Int
    }

    private func replaySorted(
        _ storage: UnsafeRawBufferPointer, _ entries: [(lsn: LSN, range: Range<Int>)]
    ) throws(StateMachineError) {
        guard let base = storage.baseAddress else { return }
        var operations: [ReplayOperation] = []
        operations.reserveCapacity(entries.count)
        func range(_ bytes: UnsafeRawBufferPointer) -> Range<Int> {
            let start = bytes.baseAddress.map { $0 - base } ?? 0
            return start..<start + bytes.count
        }
        func prefix(_ key: UnsafeRawBufferPointer) -> UInt64 {
            var value: UInt64 = 0
            for i in 0..<8 { value = value << 8 | UInt64(i < key.count ? key[i] : 0) }
            return value
        }
        for entry in entries {
            let record = UnsafeRawBufferPointer(rebasing: storage[entry.range])
            do {
                try KeyValueRecord.decode(
                    record,
                    put: { key, value in
                        operations.append(ReplayOperation(prefix: prefix(key), key: range(key), value: range(value), order: operations.count))
                    },
                    delete: { key in
                        operations.append(ReplayOperation(prefix: prefix(key), key: range(key), value: nil, order: operations.count))
                    })
            } catch {
                throw StateMachineError("LSN \(entry.lsn): \(error)")
            }
        }
        operations.sort { a, b in
            if a.prefix != b.prefix { return a.prefix < b.prefix }
            let left = UnsafeRawBufferPointer(rebasing: storage[a.key])
            let right = UnsafeRawBufferPointer(rebasing: storage[b.key])
            let common = min(left.count, right.count)
            if common > 8 {
                let c = memcmp(left.baseAddress! + 8, right.baseAddress! + 8, common - 8)
                if c != 0 { return c < 0 }
            }
            if left.count != right.count { return left.count < right.count }
            return a.order < b.order
        }
        for operation in operations {
            let key = UnsafeRawBufferPointer(rebasing: storage[operation.key])
            if let value = operation.value {
                _ = tree.setValue(UnsafeRawBufferPointer(rebasing: storage[value]), forKey: key)
            } else {
                _ = tree.removeValue(forKey: key)
            }
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
