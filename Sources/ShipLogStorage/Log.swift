#if canImport(Glibc)
import Glibc
#endif
public import ShipLogFormat

/// An append-only, segmented log of checksummed, LZ4-compressed batches.
///
/// Appends take one batch of records and return its LSN range. One I/O thread per log owns
/// every write and fdatasync: concurrent appenders' batches are coalesced into one write and
/// share one fdatasync (group commit). Readers read concurrently from any LSN.
///
/// Open a log with `Log.open(directory:)` from ShipLogRecovery (or `import ShipLog`), which
/// checks and repairs what a crash left behind first.
public final class Log: @unchecked Sendable {
    /// Name of the lock file that keeps a second writer out of a log directory.
    public static let lockFileName = "LOCK"

    // @unchecked: every mutable field is in `state`, guarded by `lock`.
    public let directory: FilePath
    public let options: LogOptions
    let fileSystem: any FileSystem
    let lock = ConditionLock()
    /// Bumped by ``wakeProgressWaiters()`` (guarded by `lock`).
    var progressWakeups: UInt64 = 0
    var state: State
    /// Guarded by `lock`; joined by close().
    var ioThread: pthread_t?
    /// The directory's `LOCK` file, held until close(). Guarded by `lock`.
    private var directoryLock: (any FileLock)?

    struct State {
        var segments: [SegmentEntry]
        var assigned: AssignedSegment?
        var nextLSN: LSN
        var lastBatchCRC: UInt32
        var epoch: Epoch
        /// Last LSN handed to the OS and readable.
        var writtenLSN: LSN
        /// Last LSN on stable storage.
        var syncedLSN: LSN
        var pending: [PendingOperation] = []
        var pendingBytes = 0
        /// Waiting for their batch to be written (buffered, interval), in LSN order.
        var writeWaiters: [Waiter] = []
        /// Waiting for their batch to be synced (immediate, sync()), in LSN order.
        var syncWaiters: [Waiter] = []
        /// Monotonic nanoseconds by which an `interval` append must be synced.
        var syncDeadline: UInt64?
        /// Group commit: how many synchronous waiters the last fdatasync acknowledged, and until
        /// when the next one may wait for that many to come back before syncing fewer.
        var lastSyncGroupSize = 0
        var syncGatherDeadline: UInt64 = 0
        var failure: LogError?
        var closing = false
        var tailWaiters: [UInt64: @Sendable () -> Void] = [:]
        /// Async appenders waiting for `pendingBytes` to drop to `pendingBytesMax`.
        var spaceWaiters: [@Sendable () -> Void] = []
        var nextTailWaiterID: UInt64 = 0
        var stats = LogStatistics()
        /// Retention holds by name: no segment holding an LSN at or after a hold is removed.
        var retentionHolds: [String: LSN] = [:]
        /// The first LSN of every epoch, including epochs whose first batch is assigned but
        /// not yet written (``epochHistory`` shows only written ones). Ascending.
        var epochHistory: [EpochStart] = []
        /// Epoch of the last batch assigned, or of the last history entry when the log holds
        /// no batch; `nil` for a log that never held one. A batch of a greater epoch starts
        /// an epoch (docs/FORMAT.md section 21).
        var lastBatchEpoch: Epoch?
    }

    package init(
        directory: FilePath, fileSystem: any FileSystem, options: LogOptions, recovered: RecoveredLog,
        directoryLock: (any FileLock)?
    ) throws(LogError) {
        try options.validate()
        self.directoryLock = directoryLock
        self.directory = directory
        self.fileSystem = fileSystem
        self.options = options
        var segments: [SegmentEntry] = []
        for segment in recovered.segments {
            segments.append(
                SegmentEntry(
                    file: segment.file, lastLSN: segment.lastLSN, dataEnd: segment.dataEnd, index: segment.index,
                    footer: segment.footer, lastTimestamp: segment.lastTimestamp))
        }
        let last = recovered.segments.last
        var assigned: AssignedSegment?
        if let last, last.footer == nil {
            var active = AssignedSegment(
                baseLSN: last.file.baseLSN, previousBatchCRC: last.lastBatchCRC, epoch: last.lastEpoch)
            active.end = last.dataEnd
            active.batchCount = last.batchCount
            active.lastLSN = last.lastLSN
            active.lastTimestamp = last.lastTimestamp
            active.index = last.index
            active.nextIndexAt = (last.index.last?.position).map { $0 + options.indexIntervalBytes } ?? active.end
            assigned = active
        }
        let lastLSN = last?.lastLSN ?? .zero
        let lastBatchEpoch = recovered.segments.last { $0.batchCount > 0 }?.lastEpoch ?? recovered.epochHistory.last?.epoch
        var epoch = max(recovered.epoch, last?.lastEpoch ?? recovered.epoch)
        if let historyEpoch = recovered.epochHistory.last?.epoch { epoch = max(epoch, historyEpoch) }
        state = State(
            segments: segments, assigned: assigned, nextLSN: lastLSN.advanced(by: 1),
            lastBatchCRC: last?.lastBatchCRC ?? 0, epoch: epoch, writtenLSN: lastLSN, syncedLSN: lastLSN)
        state.epochHistory = recovered.epochHistory
        state.lastBatchEpoch = lastBatchEpoch
        try startIOThread()
    }

    // The I/O thread keeps the log alive until close(): call it when done.

    // MARK: - Appending

    /// Appends the records of `batch` as one batch and waits for `durability`.
    /// - Returns: the LSNs the records got, in order.
    @discardableResult
    public func append(_ batch: BatchBuilder, durability: Durability = .immediate) throws(LogError) -> LSNRange {
        guard !batch.isEmpty else { throw .invalidArgument("a batch must hold at least one record") }
        return try appendEncoded(batch.encode(codec: options.compression), durability: durability)
    }

    /// Appends one record as a batch of its own.
    @discardableResult
    public func append(_ record: [UInt8], durability: Durability = .immediate) throws(LogError) -> LSNRange {
        var batch = BatchBuilder(capacity: record.count + 5)
        do { try batch.append(record) } catch { throw .invalidArgument(error.description) }
        return try append(batch, durability: durability)
    }

    /// Appends a batch encoded by the caller (``BatchBuilder/encode(codec:)``) and waits for `durability`.
    @discardableResult
    public func appendEncoded(_ batch: EncodedBatch, durability: Durability = .immediate) throws(LogError) -> LSNRange {
        try waitingFor { (completion) throws(LogError) in try submit(batch, durability: durability, completion: completion) }
    }

    /// Submits through `submit` and blocks the calling thread until the completion runs.
    private func waitingFor(
        _ submit: (@escaping @Sendable (Result<LSNRange, LogError>) -> Void) throws(LogError) -> LSNRange
    ) throws(LogError) -> LSNRange {
        let done = BlockingResult<LSNRange>()
        _ = try submit { done.set($0) }
        return try done.wait()
    }

    /// Appends without blocking the caller's thread: suspends until `durability` is reached.
    /// Encoding runs on the calling task; writes and syncs run on the log's I/O thread.
    @discardableResult
    public func append(_ batch: BatchBuilder, durability: Durability = .immediate) async throws(LogError) -> LSNRange {
        guard !batch.isEmpty else { throw .invalidArgument("a batch must hold at least one record") }
        let encoded = batch.encode(codec: options.compression)
        await waitForWriteBufferSpace()
        let result: Result<LSNRange, LogError> = await withCheckedContinuation { continuation in
            do throws(LogError) {
                _ = try submit(encoded, durability: durability, blockWhenFull: false) { continuation.resume(returning: $0) }
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
        return try result.get()
    }

    /// Suspends while more than `pendingBytesMax` bytes wait to be written (the async
    /// counterpart of the blocking wait in ``submit(_:durability:blockWhenFull:completion:)``).
    public func waitForWriteBufferSpace() async {
        while lock.withLock({ state.pendingBytes > options.pendingBytesMax && state.failure == nil && !state.closing }) {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let waitNow = lock.withLock { () -> Bool in
                    guard state.pendingBytes > options.pendingBytesMax && state.failure == nil && !state.closing else {
                        return false
                    }
                    state.spaceWaiters.append { continuation.resume() }
                    return true
                }
                if !waitNow { continuation.resume() }
            }
        }
    }

    /// Appends `batch` and returns its LSN range at once; `completion` runs on the log's I/O
    /// thread when `durability` is reached or the append failed. Completions run in LSN order.
    /// Blocks the calling thread while more than `pendingBytesMax` bytes wait to be written
    /// (unless `blockWhenFull` is false).
    ///
    /// A control batch (``EncodedBatch/control(_:)``) must fit the log: an `epochStart`
    /// record names the log's current ``epoch`` and an LSN before the batch; otherwise
    /// ``LogError/invalidArgument(_:)``. The first batch of a new epoch has its history entry
    /// written ahead of it (``epochHistory``).
    @discardableResult
    public func submit(
        _ batch: EncodedBatch, durability: Durability, blockWhenFull: Bool = true,
        completion: @escaping @Sendable (Result<LSNRange, LogError>) -> Void
    ) throws(LogError) -> LSNRange {
        lock.lock()
        do throws(LogError) {
            try admit(blockWhenFull: blockWhenFull)
            if batch.isControl, let problem = controlRecordProblem(batch.controlRecords, epoch: state.epoch, baseLSN: state.nextLSN) {
                throw .invalidArgument("control batch at LSN \(state.nextLSN): \(problem)")
            }
            try checkEpochHistoryRoom(for: state.epoch)
        } catch {
            lock.unlock()
            throw error
        }
        let range = assign(batch)
        register(Waiter(range: range, completion: completion), durability: durability)
        lock.unlock()
        lock.broadcast()
        return range
    }

    /// Waits (lock held) while the write buffer is over `pendingBytesMax` if asked to, then
    /// refuses when the log has stopped or is closing.
    private func admit(blockWhenFull: Bool) throws(LogError) {
        if blockWhenFull {
            while state.pendingBytes > options.pendingBytesMax && state.failure == nil && !state.closing { lock.wait() }
        }
        if let failure = state.failure { throw Self.stopped(by: failure) }
        if state.closing { throw .closed }
    }

    /// Queues `waiter` for the moment its batch reaches `durability` (lock held).
    private func register(_ waiter: Waiter, durability: Durability) {
        switch durability {
        case .buffered:
            state.writeWaiters.append(waiter)
        case .interval(let period):
            state.writeWaiters.append(waiter)
            let deadline = monotonicNanoseconds() &+ period.nanoseconds
            state.syncDeadline = min(state.syncDeadline ?? deadline, deadline)
        case .immediate:
            state.syncWaiters.append(waiter)
        }
    }

    /// Gives `batch` its LSNs, chain link and place in a segment, and queues its bytes.
    /// Called with the lock held.
    private func assign(_ batch: EncodedBatch) -> LSNRange {
        var batch = batch
        // One reading of the clock: a segment's createdAt is its first batch's timestamp, so
        // that a follower writing the same batches writes the same segment files.
        let timestamp = wallClockNanoseconds()
        recordEpochStartIfNeeded(epoch: state.epoch, firstLSN: state.nextLSN)
        rollSegmentIfNeeded(adding: batch.byteCount, recordCount: batch.recordCount, firstBatchTimestamp: timestamp)
        let header = batch.seal(
            baseLSN: state.nextLSN, epoch: state.epoch, previousBatchCRC: state.lastBatchCRC,
            syncedThrough: state.syncedLSN, timestamp: timestamp)
        return place(batch.bytes, header: header)
    }

    /// Seals the current segment and queues a new one when the next batch would not fit (or
    /// its LSN would not fit the 32-bit index deltas). A new segment's `createdAt` is
    /// `firstBatchTimestamp`, the timestamp of the batch that opens it (FORMAT.md section 5).
    /// Called with the lock held.
    private func rollSegmentIfNeeded(adding byteCount: Int, recordCount: UInt32, firstBatchTimestamp: UInt64) {
        let baseLSN = state.nextLSN
        let footerReserve = Int64(SegmentFooter.fixedByteCount + SegmentFooter.trailerByteCount)
        if let current = state.assigned, current.batchCount > 0,
            current.end + Int64(byteCount) + footerReserve + 8 * Int64(current.index.count + 1)
                > options.segmentBytesMax
                // Index entries store LSNs as 32-bit offsets from the segment's base.
                || baseLSN.rawValue - current.baseLSN.rawValue + UInt64(recordCount) > UInt64(UInt32.max)
        {
            state.pending.append(.seal(baseLSN: current.baseLSN, footer: current.footer))
            state.assigned = nil
        }
        if state.assigned == nil {
            let header = SegmentHeader(
                previousBatchCRC: state.lastBatchCRC, baseLSN: baseLSN, epoch: state.epoch,
                createdAt: firstBatchTimestamp)
            state.pending.append(.create(header))
            state.assigned = AssignedSegment(baseLSN: baseLSN, previousBatchCRC: state.lastBatchCRC, epoch: state.epoch)
        }
    }

    /// Queues a batch whose header is final at the end of the current segment. Called with the lock held.
    private func place(_ bytes: [UInt8], header: BatchHeader) -> LSNRange {
        let offset = state.assigned!.end
        let range = header.lsnRange
        state.assigned!.end += Int64(bytes.count)
        state.assigned!.batchCount += 1
        state.assigned!.lastLSN = range.last
        state.assigned!.lastBatchCRC = header.batchCRC
        state.assigned!.lastEpoch = header.epoch
        state.assigned!.lastTimestamp = header.timestamp
        if offset >= state.assigned!.nextIndexAt {
            state.assigned!.index.append(SegmentIndexEntry(lsn: range.first, position: offset))
            state.assigned!.nextIndexAt = offset + options.indexIntervalBytes
        }
        let indexCount = state.assigned!.index.count
        if case .write(let start, var pendingBytes, _, _, _) = state.pending.last, start + Int64(pendingBytes.count) == offset {
            state.pending.removeLast()
            pendingBytes.append(contentsOf: bytes)
            state.pending.append(
                .write(offset: start, bytes: pendingBytes, lastLSN: range.last, lastTimestamp: header.timestamp, indexUpTo: indexCount))
        } else {
            var pendingBytes = bytes
            pendingBytes.reserveCapacity(max(bytes.count, 256 << 10))
            state.pending.append(
                .write(offset: offset, bytes: pendingBytes, lastLSN: range.last, lastTimestamp: header.timestamp, indexUpTo: indexCount))
        }
        state.pendingBytes += bytes.count
        state.nextLSN = range.next
        state.lastBatchCRC = header.batchCRC
        state.stats.batchesAppended += 1
        state.stats.recordsAppended += UInt64(header.recordCount)
        state.stats.uncompressedBytesAppended += UInt64(header.uncompressedLength)
        state.stats.storedBytesAppended += UInt64(bytes.count)
        return range
    }

    // MARK: - Replicated batches

    /// Appends a batch exactly as another node wrote it (header and payload untouched), the
    /// follower's side of log shipping, and waits for `durability`.
    @discardableResult
    public func appendReplicated(_ batch: Batch, durability: Durability = .immediate) throws(LogError) -> LSNRange {
        try waitingFor { (completion) throws(LogError) in
            try submitReplicated(batch, durability: durability, completion: completion)
        }
    }

    /// Queues a batch exactly as another node wrote it, after checking that it continues this
    /// log: its base LSN is the next LSN, its previousBatchCRC is this log's last batchCRC, its
    /// epoch is not older. Every LSN up to its `syncedThrough` is made durable here before its
    /// bytes are written (FORMAT.md section 9), so recovery's corruption rule holds on this
    /// node too. `completion` runs on the I/O thread as for ``submit(_:durability:blockWhenFull:completion:)``.
    @discardableResult
    public func submitReplicated(
        _ batch: Batch, durability: Durability, completion: @escaping @Sendable (Result<LSNRange, LogError>) -> Void
    ) throws(LogError) -> LSNRange {
        let header = batch.header
        if header.isControl {
            // Stored byte for byte, so checked before: a control batch this log could not read
            // back is refused.
            let problem: String?
            do {
                problem = controlRecordProblem(try batch.controlRecords(), epoch: header.epoch, baseLSN: header.baseLSN)
            } catch {
                problem = error.description
            }
            if let problem { throw .invalidArgument("replicated control batch LSN \(header.lsnRange): \(problem)") }
        }
        lock.lock()
        do throws(LogError) {
            try admit(blockWhenFull: true)
            if let problem = continuityProblem(header) {
                throw .invalidArgument("replicated batch LSN \(header.lsnRange) does not continue this log: \(problem)")
            }
            try checkEpochHistoryRoom(for: header.epoch)
        } catch {
            lock.unlock()
            throw error
        }
        state.epoch = max(state.epoch, header.epoch)
        recordEpochStartIfNeeded(epoch: header.epoch, firstLSN: header.baseLSN)
        rollSegmentIfNeeded(
            adding: batch.bytes.count, recordCount: header.recordCount, firstBatchTimestamp: header.timestamp)
        if header.syncedThrough > state.syncedLSN {
            state.pending.append(.syncBarrier(through: header.syncedThrough))
        }
        let range = place(batch.bytes, header: header)
        register(Waiter(range: range, completion: completion), durability: durability)
        lock.unlock()
        lock.broadcast()
        return range
    }

    /// Why `header` cannot be the next batch of this log, or `nil`. Called with the lock held.
    private func continuityProblem(_ header: BatchHeader) -> String? {
        if header.baseLSN != state.nextLSN { return "expected base LSN \(state.nextLSN)" }
        if header.previousBatchCRC != state.lastBatchCRC {
            return "previousBatchCRC 0x\(String(header.previousBatchCRC, radix: 16)) is not this log's last batchCRC "
                + "0x\(String(state.lastBatchCRC, radix: 16))"
        }
        if header.epoch < state.epoch { return "epoch \(header.epoch) is older than this log's epoch \(state.epoch)" }
        return nil
    }

    // MARK: - Syncing and closing

    /// Makes everything appended so far durable (one fdatasync, shared with concurrent callers).
    public func sync() throws(LogError) {
        let done = BlockingResult<Void>()
        lock.lock()
        if let failure = state.failure {
            lock.unlock()
            throw Self.stopped(by: failure)
        }
        let target = state.nextLSN.predecessor
        if target <= state.syncedLSN {
            lock.unlock()
            return
        }
        state.syncWaiters.append(
            Waiter(range: LSNRange(first: target, last: target)) { result in done.set(result.map { _ in () }) })
        lock.unlock()
        lock.broadcast()
        try done.wait()
    }

    /// Stops accepting appends, writes and syncs what was accepted, and stops the I/O thread.
    /// Idempotent. Reading stays possible.
    public func close() throws(LogError) {
        lock.lock()
        state.closing = true
        lock.unlock()
        lock.broadcast()
        lock.broadcastSecondary()
        if let thread = lock.withLock({ () -> pthread_t? in
            let t = ioThread
            ioThread = nil
            return t
        }) {
            pthread_join(thread, nil)
        }
        let tails = lock.withLock { () -> [@Sendable () -> Void] in
            let waiters = Array(state.tailWaiters.values)
            state.tailWaiters.removeAll()
            directoryLock = nil  // another process may open the log for writing now
            return waiters
        }
        tails.forEach { $0() }
        if let failure = lock.withLock({ state.failure }) { throw Self.stopped(by: failure) }
    }

    /// The error to throw once the log has stopped.
    static func stopped(by failure: LogError) -> LogError {
        switch failure {
        case .syncFailed, .writeFailed, .outOfSpace, .closed: failure
        default: .failed(underlying: failure.description)
        }
    }

    // MARK: - Positions

    /// LSN the next appended record will get.
    public var nextLSN: LSN { lock.withLock { state.nextLSN } }
    /// Last LSN written to the OS: what readers see.
    public var writtenLSN: LSN { lock.withLock { state.writtenLSN } }
    /// Last LSN on stable storage.
    public var durableLSN: LSN { lock.withLock { state.syncedLSN } }
    /// Oldest LSN still in the log (after retention); `nextLSN` when the log is empty.
    public var firstLSN: LSN { lock.withLock { state.segments.first?.baseLSN ?? state.nextLSN } }
    /// Epoch stamped on new batches.
    public var epoch: Epoch { lock.withLock { state.epoch } }
    /// The chain value the next batch must carry as its `previousBatchCRC`: the `batchCRC` of
    /// the last batch appended (assigned, possibly not yet written), or, for a log that holds
    /// no batch, its first segment header's `previousBatchCRC` (0 for a new log).
    public var lastBatchCRC: UInt32 { lock.withLock { state.lastBatchCRC } }
    /// The failure that stopped the log, if any.
    public var failure: LogError? { lock.withLock { state.failure } }
    /// Counters since the log was opened.
    public var statistics: LogStatistics { lock.withLock { state.stats } }

    /// The segments, oldest first.
    public var segments: [SegmentInfo] {
        lock.withLock {
            state.segments.map {
                SegmentInfo(
                    fileName: $0.file.fileName, baseLSN: $0.baseLSN, lastLSN: $0.lastLSN, isSealed: $0.isSealed,
                    dataBytes: $0.dataEnd - Int64(SegmentHeader.byteCount), lastTimestamp: $0.lastTimestamp)
            }
        }
    }
}

/// Counters of one open log.
public struct LogStatistics: Sendable, Hashable {
    public var batchesAppended: UInt64 = 0
    public var recordsAppended: UInt64 = 0
    public var uncompressedBytesAppended: UInt64 = 0
    public var storedBytesAppended: UInt64 = 0
    /// pwrite calls and fdatasync calls the I/O thread made (group commit shares them).
    public var writeCalls: UInt64 = 0
    public var syncCalls: UInt64 = 0
    public var segmentsCreated: UInt64 = 0
}

/// A result one thread waits for and another sets.
final class BlockingResult<Value: Sendable>: @unchecked Sendable {
    private let lock = ConditionLock()
    private var result: Result<Value, LogError>?

    func set(_ value: Result<Value, LogError>) {
        lock.withLock { result = value }
        lock.broadcast()
    }

    func wait() throws(LogError) -> Value {
        lock.lock()
        while result == nil { lock.wait() }
        let value = result!
        lock.unlock()
        return try value.get()
    }
}
