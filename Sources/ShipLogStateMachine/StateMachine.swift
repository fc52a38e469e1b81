public import ShipLogFormat
public import ShipLogStorage

/// A deterministic state machine fed by the log.
///
/// The host (``StateMachineHost``) guarantees exactly-once, in-order application across
/// restarts: after recovery the state equals the newest valid checkpoint plus every durable
/// record after it, applied once, in LSN order.
public protocol StateMachine: AnyObject, SendableMetatype {
    /// An immutable view of the state, captured in O(1) while the host holds its lock and
    /// written to a checkpoint later without blocking the writer.
    associatedtype Snapshot: Sendable

    /// Up to 8 ASCII bytes stored in every checkpoint, so a checkpoint of another kind of
    /// state machine is never restored into this one.
    static var snapshotKind: String { get }

    /// Applies one record. Must be deterministic: the same records in the same order give the
    /// same state. Throwing stops the host (the record is not applied). LSNs ascend but are
    /// not always consecutive: the LSNs of control batches (docs/FORMAT.md section 20), which
    /// the machine never sees, are skipped.
    func apply(_ record: UnsafeRawBufferPointer, at lsn: LSN) throws(StateMachineError)

    /// Applies records read back from the log while recovering, in LSN order, many at a time.
    /// The result must equal applying each with ``apply(_:at:)`` in order; the default does
    /// exactly that. A machine may reorder work that commutes (e.g. changes to different
    /// keys) to go faster: nothing reads the state during replay.
    func replay(_ records: ReplayBatch) throws(StateMachineError)

    /// Captures the current state.
    func captureSnapshot() -> Snapshot

    /// Streams `snapshot` into a checkpoint.
    static func write(_ snapshot: Snapshot, to output: inout CheckpointWriter) throws(LogError)

    /// Number of entries in `snapshot`, stored in the checkpoint header for humans.
    static func entryCount(of snapshot: Snapshot) -> UInt64

    /// Replaces the whole state with the one streamed from a checkpoint.
    func restore(from input: inout CheckpointReader) throws(StateMachineError)

    /// Empties the state (before replaying a log from its start, or after a failed restore).
    func reset()

    /// Throws when ``apply(_:at:)`` would refuse `record`. Records from outside (a client of a
    /// replicating node) are checked with it before they are appended: a record the machine
    /// refuses once it is in the log stops the host, and would stop it again at every replay.
    /// The default accepts every record.
    static func validate(_ record: UnsafeRawBufferPointer) throws(StateMachineError)
}

/// A state machine that answers read-only queries on its state, so that any node (a
/// primary or a follower) can serve reads. Requests and results are bytes the machine
/// defines (the key-value store's are in docs/FORMAT.md section 17); a request comes from
/// outside, so the machine checks every length before it allocates.
public protocol QueryableStateMachine: StateMachine {
    /// Answers `request` from the current state without changing it. Runs under the host's
    /// lock (no record is applied meanwhile), so it must be quick and bounded.
    func query(_ request: [UInt8]) throws(StateMachineError) -> [UInt8]
}

/// Why a state machine could not apply a record or restore a checkpoint.
public struct StateMachineError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension StateMachine {
    public static func validate(_ record: UnsafeRawBufferPointer) throws(StateMachineError) {}

    public func replay(_ records: ReplayBatch) throws(StateMachineError) {
        let result = records.withRecords { storage, entries in
            Result { () throws(StateMachineError) in
                for entry in entries {
                    try apply(UnsafeRawBufferPointer(rebasing: storage[entry.range]), at: entry.lsn)
                }
            }
        }
        try result.get()
    }
}

/// Records replayed together: copies of their bytes, back to back, with their LSNs (ascending).
public struct ReplayBatch: Sendable {
    /// The records' bytes, back to back.
    public private(set) var storage: [UInt8] = []
    /// Each record's LSN and byte range in `storage`.
    public private(set) var entries: [(lsn: LSN, range: Range<Int>)] = []

    public init() {}

    public var count: Int { entries.count }
    public var byteCount: Int { storage.count }

    mutating func append(_ record: UnsafeRawBufferPointer, at lsn: LSN) {
        let start = storage.count
        storage.append(contentsOf: record)
        entries.append((lsn, start..<storage.count))
    }

    mutating func removeAll() {
        storage.removeAll(keepingCapacity: true)
        entries.removeAll(keepingCapacity: true)
    }

    /// Calls `body` with the whole storage and the entries, for machines that decode in bulk.
    public func withRecords<R>(
        _ body: (UnsafeRawBufferPointer, [(lsn: LSN, range: Range<Int>)]) throws -> R
    ) rethrows -> R {
        try storage.withUnsafeBytes { try body($0, entries) }
    }
}
