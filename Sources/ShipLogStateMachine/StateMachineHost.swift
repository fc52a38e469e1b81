import Dispatch
#if canImport(Glibc)
import Glibc
#endif
public import ShipLogFormat
public import ShipLogRecovery
public import ShipLogStorage
import Synchronization

/// Tunables of a ``StateMachineHost``.
public struct StateMachineOptions: Sendable {
    public var log = LogOptions()
    public var recoveryMode: RecoveryMode = .strict
    /// Take a checkpoint automatically once this many log bytes were appended since the last
    /// one; `nil` checkpoints only on demand.
    public var checkpointIntervalBytes: Int64? = 256 << 20
    /// Checkpoints kept. A damaged newest checkpoint falls back to the previous one, so the
    /// log is kept from the oldest kept checkpoint on.
    public var checkpointsRetained = 2
    /// Drop log segments that every kept checkpoint covers.
    public var dropCoveredSegments = true

    public init() {}
}

/// What opening a state machine found and did.
public struct StateMachineRecoveryReport: Sendable, CustomStringConvertible {
    public var log: RecoveryReport
    /// LSN of the checkpoint restored, `nil` when the state was rebuilt from the log's start.
    public var checkpointLSN: LSN?
    /// Checkpoints that could not be used, newest first, with why.
    public var skippedCheckpoints: [String] = []
    /// Records replayed from the log after the checkpoint.
    public var replayedRecords: UInt64 = 0
    public var replayDuration: Duration = .zero

    public var description: String {
        var lines = [log.description]
        for skipped in skippedCheckpoints { lines.append("warning: skipped checkpoint \(skipped)") }
        lines.append(
            "restored \(checkpointLSN.map { "checkpoint at LSN \($0)" } ?? "no checkpoint"), replayed "
                + "\(replayedRecords) records in \(replayDuration)")
        return lines.joined(separator: "\n")
    }
}

/// A checkpoint that was written.
public struct CheckpointInfo: Sendable, Hashable {
    public var lsn: LSN
    public var path: FilePath
    public var bytes: Int64
    public var entries: UInt64
    public var duration: Duration
}

/// Runs a ``StateMachine`` on a log: recovery (newest valid checkpoint + replay), in-order
/// application of appends, checkpoints and the log retention they allow.
///
/// Appends are applied in LSN order under the host's lock as soon as the log has assigned
/// their LSNs; the call returns once the chosen durability is reached. Readers see the state
/// through ``withMachine(_:)``.
public final class StateMachineHost<Machine: StateMachine>: @unchecked Sendable {
    // @unchecked: `machine` is touched only under `state`'s lock or before the host is shared.
    public let log: Log
    public let machine: Machine
    public let options: StateMachineOptions
    public let recoveryReport: StateMachineRecoveryReport
    let checkpoints: CheckpointStore
    private let state: Mutex<HostState>
    private let checkpointQueue = DispatchQueue(label: "shiplog.checkpoint")

    struct HostState {
        var appliedLSN: LSN
        var bytesSinceCheckpoint: Int64 = 0
        var checkpointRunning = false
        var lastCheckpointError: LogError?
    }

    public init(
        directory: FilePath, machine: Machine, options: StateMachineOptions = StateMachineOptions(),
        fileSystem: any FileSystem = PosixFileSystem()
    ) throws(LogError) {
        var logOptions = options.log
        logOptions.auxiliaryNames.insert(CheckpointStore.directoryName)
        let (log, logReport) = try LogRecovery.open(
            directory: directory, options: logOptions, fileSystem: fileSystem, mode: options.recoveryMode)
        let store = CheckpointStore(logDirectory: directory, fileSystem: fileSystem)
        var report = StateMachineRecoveryReport(log: logReport)
        do {
            try Self.restore(machine: machine, log: log, checkpoints: store, report: &report)
        } catch {
            try? log.close()
            throw error
        }
        self.log = log
        self.machine = machine
        self.options = options
        self.checkpoints = store
        self.recoveryReport = report
        // A re-seeded follower's checkpoint may be ahead of its still empty log.
        self.state = Mutex(HostState(appliedLSN: max(report.checkpointLSN ?? .zero, log.writtenLSN)))
    }

    /// The log's directory (checkpoints are in its `checkpoints/`).
    public var directory: FilePath { log.directory }

    /// The newest checkpoint file present, unchecked (``CheckpointStore/verify(file:kind:)``
    /// checks one); `nil` when there is none. A primary sends it to re-seed a follower.
    public func newestCheckpoint() throws(LogError) -> (lsn: LSN, path: FilePath)? {
        try checkpoints.newest()
    }

    /// Records handed to ``StateMachine/replay(_:)`` at a time, at most, and their bytes.
    static var replayWindowRecords: Int { 1 << 19 }
    static var replayWindowBytes: Int { 64 << 20 }

    /// Newest valid checkpoint, then every record after it. Control batches are skipped
    /// (``Log/forEachRecord(from:through:_:)``): the machine never sees them.
    private static func restore(
        machine: Machine, log: Log, checkpoints: CheckpointStore, report: inout StateMachineRecoveryReport
    ) throws(LogError) {
        let started = ContinuousClock.now
        machine.reset()
        var restored: LSN?
        // A re-seeded follower's log holds no record yet and starts after LSN 1, at or before
        // the checkpoint's next LSN (PROTOCOL.md section 7.6): the checkpoint is its whole
        // state. (A new log at LSN 1 is not one: its appends would get LSNs the state has.)
        let reseeded = log.firstLSN == log.nextLSN && log.firstLSN > .first
        for candidate in try checkpoints.list() {
            let continuesEmptyLog = reseeded && log.firstLSN <= candidate.lsn.advanced(by: 1)
            if candidate.lsn > log.writtenLSN && !continuesEmptyLog {
                report.skippedCheckpoints.append(
                    "\(candidate.path.lastComponent): covers LSN \(candidate.lsn), beyond the log's end \(log.writtenLSN)")
                continue
            }
            do throws(StateMachineError) {
                var (header, reader) = try checkpoints.open(candidate.path, kind: Machine.snapshotKind)
                guard header.lsn == candidate.lsn else {
                    throw StateMachineError("header says LSN \(header.lsn), name says \(candidate.lsn)")
                }
                try machine.restore(from: &reader)
                try checkpoints.finish(reader)
                restored = header.lsn
                break
            } catch {
                machine.reset()
                report.skippedCheckpoints.append("\(candidate.path.lastComponent): \(error)")
            }
        }
        report.checkpointLSN = restored
        let start = (restored ?? .zero).advanced(by: 1)
        if start <= log.writtenLSN {
            guard start >= log.firstLSN else {
                throw .corruption(
                    file: CheckpointStore.directoryName, offset: 0, lsnRange: "\(start)...\(log.firstLSN.predecessor)",
                    reason: "no usable checkpoint covers LSNs the log no longer holds (first retained LSN \(log.firstLSN))")
            }
            var replayed: UInt64 = 0
            var window = ReplayBatch()
            do {
                try log.forEachRecord(from: start) { lsn, record in
                    window.append(record, at: lsn)
                    if window.byteCount >= Self.replayWindowBytes || window.count >= Self.replayWindowRecords {
                        try machine.replay(window)
                        replayed += UInt64(window.count)
                        window.removeAll()
                    }
                }
                if window.count > 0 {
                    try machine.replay(window)
                    replayed += UInt64(window.count)
                }
            } catch let error as LogError {
                throw error
            } catch {
                throw .failed(underlying: "replaying the log: \(error)")
            }
            report.replayedRecords = replayed
        }
        report.replayDuration = ContinuousClock.now - started
    }

    /// The last LSN applied to the state machine.
    public var appliedLSN: LSN { state.withLock { $0.appliedLSN } }

    /// Runs `body` with the machine and the last LSN applied to it, while no append is being applied.
    public func withMachine<T>(_ body: (Machine, LSN) throws -> T) rethrows -> T {
        try state.withLock { host in try body(machine, host.appliedLSN) }
    }

    /// Appends `batch`, applies its records, and waits for `durability`.
    @discardableResult
    public func append(_ batch: BatchBuilder, durability: Durability) throws(LogError) -> LSNRange {
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<LSNRange, LogError>?>(nil)
        let range = try submit(batch, durability: durability, blockWhenFull: true) { result in
            outcome.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        _ = range
        return try outcome.withLock { $0! }.get()
    }

    /// Appends without blocking the calling thread.
    @discardableResult
    public func append(_ batch: BatchBuilder, durability: Durability) async throws(LogError) -> LSNRange {
        await log.waitForWriteBufferSpace()
        let result: Result<LSNRange, LogError> = await withCheckedContinuation { continuation in
            do throws(LogError) {
                _ = try submit(batch, durability: durability, blockWhenFull: false) { continuation.resume(returning: $0) }
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
        return try result.get()
    }

    /// Appends and applies `batch` in LSN order; `completion` runs when `durability` is reached.
    @discardableResult
    public func submit(
        _ batch: BatchBuilder, durability: Durability, blockWhenFull: Bool = true,
        completion: @escaping @Sendable (Result<LSNRange, LogError>) -> Void
    ) throws(LogError) -> LSNRange {
        guard !batch.isEmpty else { throw .invalidArgument("a batch must hold at least one record") }
        let encoded = batch.encode(codec: log.options.compression)
        let (range, checkpointDue) = try state.withLock { (host) throws(LogError) -> (LSNRange, Bool) in
            let range = try log.submit(encoded, durability: durability, blockWhenFull: blockWhenFull, completion: completion)
            var lsn = range.first
            do {
                try batch.forEachRecord { record in
                    try machine.apply(record, at: lsn)
                    lsn = lsn.advanced(by: 1)
                }
            } catch {
                throw Self.refused(lsn, error)
            }
            host.appliedLSN = range.last
            return (range, Self.countTowardsCheckpoint(Int64(encoded.byteCount), host: &host, options: options))
        }
        if checkpointDue { startAutomaticCheckpoint() }
        return range
    }

    /// Appends a control batch holding `records` (docs/FORMAT.md section 20), such as the
    /// epoch-start record a promoted primary writes first in its epoch. The machine never sees
    /// control records; ``appliedLSN`` moves past them. `completion` runs on the log's I/O
    /// thread when `durability` is reached.
    /// - Throws: ``LogError/invalidArgument(_:)`` for no records, or records that do not fit
    ///   the log (an epochStart of another epoch than the log's); the log's errors.
    @discardableResult
    public func submitControl(
        _ records: [ControlRecord], durability: Durability,
        completion: @escaping @Sendable (Result<LSNRange, LogError>) -> Void
    ) throws(LogError) -> LSNRange {
        guard !records.isEmpty else { throw .invalidArgument("a control batch must hold at least one record") }
        let encoded = EncodedBatch.control(records)
        let (range, checkpointDue) = try state.withLock { (host) throws(LogError) -> (LSNRange, Bool) in
            let range = try log.submit(encoded, durability: durability, completion: completion)
            host.appliedLSN = range.last
            return (range, Self.countTowardsCheckpoint(Int64(encoded.byteCount), host: &host, options: options))
        }
        if checkpointDue { startAutomaticCheckpoint() }
        return range
    }

    /// ``submitControl(_:durability:completion:)``, waiting for `durability`.
    @discardableResult
    public func appendControl(_ records: [ControlRecord], durability: Durability = .immediate) throws(LogError) -> LSNRange {
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<LSNRange, LogError>?>(nil)
        try submitControl(records, durability: durability) { result in
            outcome.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return try outcome.withLock { $0! }.get()
    }

    /// Appends a batch exactly as another node wrote it (``Log/submitReplicated(_:durability:completion:)``:
    /// it must continue the log) and applies its records in LSN order, skipping those at or
    /// before ``appliedLSN``: after a re-seed the first batch may start before the checkpoint's
    /// LSN. A control batch's records are checked but never applied; ``appliedLSN`` moves past
    /// them. Its bytes count towards automatic checkpoints as appends do. `completion` runs on
    /// the log's I/O thread when `durability` is reached.
    ///
    /// The records are decoded (and checked) before anything is appended: a batch whose
    /// record block is damaged is refused and changes nothing.
    @discardableResult
    public func submitReplicated(
        _ batch: Batch, durability: Durability, completion: @escaping @Sendable (Result<LSNRange, LogError>) -> Void
    ) throws(LogError) -> LSNRange {
        let records: RecordBlock?
        if batch.header.isControl {
            do { _ = try batch.controlRecords() } catch {
                throw .invalidArgument("replicated control batch LSN \(batch.lsnRange) is invalid: \(error)")
            }
            records = nil
        } else {
            do { records = try batch.records() } catch {
                throw .invalidArgument("replicated batch LSN \(batch.lsnRange) has a bad record block: \(error)")
            }
        }
        let (range, checkpointDue) = try state.withLock { (host) throws(LogError) -> (LSNRange, Bool) in
            let range = try log.submitReplicated(batch, durability: durability, completion: completion)
            var lsn = range.first
            let applied = host.appliedLSN
            do {
                try records?.forEach { record in
                    if lsn > applied { try machine.apply(record, at: lsn) }
                    lsn = lsn.advanced(by: 1)
                }
            } catch {
                throw Self.refused(lsn, error)
            }
            host.appliedLSN = max(applied, range.last)
            return (range, Self.countTowardsCheckpoint(Int64(batch.bytes.count), host: &host, options: options))
        }
        if checkpointDue { startAutomaticCheckpoint() }
        return range
    }

    /// ``submitReplicated(_:durability:completion:)``, waiting for `durability`.
    @discardableResult
    public func appendReplicated(_ batch: Batch, durability: Durability = .immediate) throws(LogError) -> LSNRange {
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<LSNRange, LogError>?>(nil)
        try submitReplicated(batch, durability: durability) { result in
            outcome.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return try outcome.withLock { $0! }.get()
    }

    /// The record is in the log but the machine refused it: a bug in the machine's encoder or
    /// decoder. The host stops here; reopening replays the record and fails the same way.
    private static func refused(_ lsn: LSN, _ error: any Error) -> LogError {
        .failed(underlying: "state machine refused LSN \(lsn): \(error)")
    }

    /// Adds appended bytes to the count since the last checkpoint (host lock held); true when
    /// an automatic checkpoint is due and this caller must start it.
    private static func countTowardsCheckpoint(
        _ bytes: Int64, host: inout HostState, options: StateMachineOptions
    ) -> Bool {
        host.bytesSinceCheckpoint += bytes
        let due = options.checkpointIntervalBytes.map { host.bytesSinceCheckpoint >= $0 } ?? false
        guard due && !host.checkpointRunning else { return false }
        host.checkpointRunning = true
        return true
    }

    /// Takes a checkpoint on the checkpoint queue; its error is kept for ``lastCheckpointError``.
    private func startAutomaticCheckpoint() {
        checkpointQueue.async { [self] in
            do throws(LogError) { _ = try takeCheckpoint() } catch {
                state.withLock { $0.lastCheckpointError = error }
            }
            state.withLock { $0.checkpointRunning = false }
        }
    }

    /// Takes a checkpoint now (waits for a running automatic one first).
    @discardableResult
    public func checkpoint() throws(LogError) -> CheckpointInfo {
        while true {
            let acquired = state.withLock { host -> Bool in
                if host.checkpointRunning { return false }
                host.checkpointRunning = true
                return true
            }
            if acquired { break }
            checkpointQueue.sync {}
        }
        defer { state.withLock { $0.checkpointRunning = false } }
        return try takeCheckpoint()
    }

    /// The error of the last automatic checkpoint, if it failed.
    public var lastCheckpointError: LogError? { state.withLock { $0.lastCheckpointError } }

    /// Captures the state, makes the log durable through it, streams it to a checkpoint file,
    /// prunes old checkpoints and drops log segments every kept checkpoint covers.
    private func takeCheckpoint() throws(LogError) -> CheckpointInfo {
        let started = ContinuousClock.now
        let (snapshot, lsn) = state.withLock { host in
            host.bytesSinceCheckpoint = 0
            return (machine.captureSnapshot(), host.appliedLSN)
        }
        // A checkpoint must never hold a record the log could still lose.
        try log.sync()
        let header = CheckpointHeader(
            lsn: lsn, epoch: log.epoch, createdAt: wallClockNanoseconds(),
            kind: Machine.snapshotKind, entryCount: Machine.entryCount(of: snapshot))
        let (path, bytes) = try checkpoints.save(header: header) { (writer) throws(LogError) in
            try Machine.write(snapshot, to: &writer)
        }
        let retained = max(1, options.checkpointsRetained)
        // Drop log segments only once the full set of retained checkpoints exists: until
        // then the log is the fallback for a damaged newest checkpoint.
        if let kept = try checkpoints.prune(keeping: retained), kept.count >= retained, options.dropCoveredSegments {
            try log.removeSegments(before: kept.oldest.advanced(by: 1))
        }
        return CheckpointInfo(
            lsn: lsn, path: path, bytes: bytes, entries: header.entryCount, duration: ContinuousClock.now - started)
    }

    /// Waits for a running checkpoint, then closes the log.
    public func close() throws(LogError) {
        checkpointQueue.sync {}
        try log.close()
    }
}

extension StateMachineHost {
    /// Checks every record of `batch` with ``StateMachine/validate(_:)`` before it is appended.
    public func validate(_ batch: BatchBuilder) throws(StateMachineError) {
        var index = 0
        let result = Result { () throws(StateMachineError) in
            try Result {
                try batch.forEachRecord { record in
                    do { try Machine.validate(record) } catch { throw StateMachineError("record \(index) of the batch: \(error)") }
                    index += 1
                }
            }.mapError { $0 as? StateMachineError ?? StateMachineError("\($0)") }.get()
        }
        try result.get()
    }
}

extension StateMachineHost where Machine: QueryableStateMachine {
    /// Answers a read-only `request` (``QueryableStateMachine/query(_:)``) under the host's
    /// lock, with the last LSN applied: the answer reflects every record through it.
    public func query(_ request: [UInt8]) throws(StateMachineError) -> (result: [UInt8], appliedLSN: LSN) {
        try state.withLock { (host) throws(StateMachineError) -> (result: [UInt8], appliedLSN: LSN) in
            (try machine.query(request), host.appliedLSN)
        }
    }
}

/// Nanoseconds since the Unix epoch.
func wallClockNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
