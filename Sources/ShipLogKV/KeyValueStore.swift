public import ShipLogFormat
public import ShipLogStateMachine
public import ShipLogStorage

/// An embedded key-value store whose every change is a record in a ShipLog log.
///
/// Writes are appended to the log and applied in LSN order; each call waits for its
/// durability (as the log's appends do). Reads never wait for writes: they read an O(1)
/// snapshot of the B-tree, so a scan sees one consistent state however long it runs.
/// After a crash, opening restores the newest valid checkpoint and replays the log after it.
public final class KeyValueStore: Sendable {
    public let host: StateMachineHost<KeyValueStateMachine>

    /// Opens (creating when missing) the store in `directory`.
    public init(
        directory: FilePath, options: StateMachineOptions = StateMachineOptions(),
        fileSystem: any FileSystem = PosixFileSystem()
    ) throws(LogError) {
        host = try StateMachineHost(
            directory: directory, machine: KeyValueStateMachine(), options: options, fileSystem: fileSystem)
    }

    /// What opening found: log recovery, the checkpoint restored, records replayed.
    public var recoveryReport: StateMachineRecoveryReport { host.recoveryReport }
    /// The last LSN applied: every write up to it is visible to reads.
    public var appliedLSN: LSN { host.appliedLSN }

    // MARK: Writes

    /// Sets `key` to `value`; returns the LSN of the change.
    @discardableResult
    public func put(_ key: [UInt8], _ value: [UInt8], durability: Durability = .immediate) throws -> LSN {
        try write(Self.batch([.put(key: key, value: value)]), durability: durability)
    }

    /// Removes `key` (a no-op for the state when absent, but still a logged change).
    @discardableResult
    public func delete(_ key: [UInt8], durability: Durability = .immediate) throws -> LSN {
        try write(Self.batch([.delete(key: key)]), durability: durability)
    }

    /// Applies every operation of `batch` atomically; returns the LSN of the change.
    @discardableResult
    public func write(_ batch: WriteBatch, durability: Durability = .immediate) throws -> LSN {
        try host.append(try Self.record(batch.operations), durability: durability).last
    }

    @discardableResult
    public func put(_ key: [UInt8], _ value: [UInt8], durability: Durability = .immediate) async throws -> LSN {
        try await write(Self.batch([.put(key: key, value: value)]), durability: durability)
    }

    @discardableResult
    public func delete(_ key: [UInt8], durability: Durability = .immediate) async throws -> LSN {
        try await write(Self.batch([.delete(key: key)]), durability: durability)
    }

    @discardableResult
    public func write(_ batch: WriteBatch, durability: Durability = .immediate) async throws -> LSN {
        try await host.append(try Self.record(batch.operations), durability: durability).last
    }

    private static func batch(_ operations: [KeyValueOperation]) -> WriteBatch {
        var batch = WriteBatch()
        for operation in operations {
            switch operation {
            case .put(let key, let value): batch.put(key, value)
            case .delete(let key): batch.delete(key)
            }
        }
        return batch
    }

    /// One log record holding the whole batch, checked against the limits first.
    private static func record(_ operations: [KeyValueOperation]) throws -> BatchBuilder {
        var batch = WriteBatch()
        batch.operations = operations
        let bytes = try batch.encodedRecord()
        var builder = BatchBuilder(capacity: bytes.count + 8)
        try builder.append(bytes)
        return builder
    }

    /// Pipelined writes: appends and applies several write batches (one record each, each
    /// with its own LSN) as one log batch, and returns their LSNs at once; `completion` runs
    /// on the log's I/O thread when `durability` is reached. Reads see the writes at once.
    @discardableResult
    public func submit(
        _ batches: [WriteBatch], durability: Durability,
        completion: @escaping @Sendable (Result<LSNRange, LogError>) -> Void
    ) throws -> LSNRange {
        var builder = BatchBuilder(capacity: 64 << 10)
        var record: [UInt8] = []
        for batch in batches {
            try KeyValueRecord.validate(batch.operations)
            KeyValueRecord.encode(batch.operations, into: &record)
            try builder.append(record)
        }
        return try host.submit(builder, durability: durability, completion: completion)
    }

    // MARK: Reads

    /// A consistent, immutable view of the whole store as of now.
    public func snapshot() -> KeyValueSnapshot {
        host.withMachine { machine, lsn in KeyValueSnapshot(tree: machine.tree, lsn: lsn) }
    }

    /// The value of `key`, or `nil`.
    public func get(_ key: [UInt8]) -> [UInt8]? {
        snapshot().get(key)
    }

    /// Answers an encoded ``KeyValueQuery`` (from another node, say) with its encoded
    /// ``KeyValueQueryResult`` and the last LSN applied when it was answered.
    public func query(_ request: [UInt8]) throws(StateMachineError) -> (result: [UInt8], appliedLSN: LSN) {
        try host.query(request)
    }

    /// Takes a checkpoint now.
    @discardableResult
    public func checkpoint() throws -> CheckpointInfo { try host.checkpoint() }

    /// Waits for a running checkpoint and closes the log. Idempotent.
    public func close() throws { try host.close() }
}

/// An immutable view of the store at one LSN. Cheap to take; holds memory only for the parts
/// of the tree the writer has changed since.
public struct KeyValueSnapshot: Sendable {
    let tree: BTree
    /// Every write up to this LSN is in the snapshot, none after it.
    public let lsn: LSN

    public var count: Int { tree.count }

    public func get(_ key: [UInt8]) -> [UInt8]? { tree[key] }

    /// Calls `body` for each entry with `lowerBound <= key < upperBound`, in key order, until it returns false.
    public func scan(
        from lowerBound: [UInt8]? = nil, to upperBound: [UInt8]? = nil, _ body: ([UInt8], [UInt8]) throws -> Bool
    ) rethrows {
        try tree.forEach(from: lowerBound, to: upperBound) { key, value in try body(key, value) }
    }

    /// Calls `body` for each entry whose key starts with `prefix`, in key order, until it returns false.
    public func scan(prefix: [UInt8], _ body: ([UInt8], [UInt8]) throws -> Bool) rethrows {
        try tree.forEach(prefix: prefix) { key, value in try body(key, value) }
    }
}
