#if canImport(Glibc)
import Glibc
#endif
import ShipLogFormat

/// The log's I/O thread: the only code that writes or syncs segment files while the log is open.
extension Log {
    func startIOThread() throws(LogError) {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(IOThreadContext(log: self))
        let result = pthread_create(&thread, nil, { raw in
            let context = Unmanaged<IOThreadContext>.fromOpaque(raw!).takeRetainedValue()
            context.log.runIOLoop()
            return nil
        }, context.toOpaque())
        guard result == 0 else {
            context.release()
            throw .failed(underlying: "could not start the log's I/O thread: errno \(result)")
        }
        ioThread = thread
    }

    /// Writes pending batches, rolls segments and syncs for waiters until closed.
    func runIOLoop() {
        var activeFile: SegmentFile? = lock.withLock { state.assigned != nil ? state.segments.last?.file : nil }
        lock.lock()
        while true {
            if !state.pending.isEmpty && state.failure == nil {
                let operations = state.pending
                state.pending.removeAll(keepingCapacity: true)
                lock.unlock()
                for operation in operations {
                    let outcome = perform(operation, activeFile: &activeFile)
                    lock.lock()
                    let completions = publish(operation, outcome: outcome, activeFile: activeFile)
                    lock.unlock()
                    lock.broadcast()
                    lock.broadcastSecondary()  // position waiters (Log+Waiting)
                    completions.run()
                    if case .failure = outcome { break }
                }
                lock.lock()
                continue
            }
            let now = monotonicNanoseconds()
            if let file = activeFile, needsSync(now: now) {
                let target = state.writtenLSN
                // This sync serves the interval deadline; appends arriving meanwhile set a new one.
                let servedDeadline = state.syncDeadline
                state.syncDeadline = nil
                lock.unlock()
                let syncStarted = monotonicNanoseconds()
                let outcome: Result<Void, LogError>
                do {
                    try file.handle.synchronizeData()
                    outcome = .success(())
                } catch {
                    outcome = .failure(.syncFailed(error))
                }
                lock.lock()
                state.stats.syncCalls += 1
                var completions = Completions()
                switch outcome {
                case .success:
                    state.syncedLSN = max(state.syncedLSN, target)
                    if let servedDeadline, state.writtenLSN > target {
                        // Interval appends assigned before the sync but written after it started
                        // are not covered: keep their deadline (an earlier one is harmless).
                        state.syncDeadline = min(state.syncDeadline ?? servedDeadline, servedDeadline)
                    }
                    let waiting = state.syncWaiters.count
                    let synced = state.syncedLSN
                    completions.take(&state.syncWaiters, through: synced, result: { .success($0) })
                    let finished = monotonicNanoseconds()
                    state.lastSyncGroupSize = waiting - state.syncWaiters.count
                    state.syncGatherDeadline = finished + min(
                        options.groupCommitGatherMax.nanoseconds, (finished - syncStarted) / 2)
                case .failure(let error):
                    completions = fail(with: error)
                }
                lock.unlock()
                lock.broadcast()
                lock.broadcastSecondary()  // position waiters (Log+Waiting)
                completions.run()
                lock.lock()
                continue
            }
            if state.closing && (state.pending.isEmpty || state.failure != nil) {
                break
            }
            if let deadline = state.syncDeadline, deadline <= now, state.syncedLSN >= state.writtenLSN {
                state.syncDeadline = nil  // everything written is synced: nothing left to serve
            }
            var wakeAt = state.failure == nil ? state.syncDeadline : nil
            if state.failure == nil, !state.syncWaiters.isEmpty, state.syncGatherDeadline > now {
                wakeAt = min(wakeAt ?? .max, state.syncGatherDeadline)
            }
            if let wakeAt {
                lock.wait(untilMonotonicNanoseconds: wakeAt)
            } else {
                lock.wait()
            }
        }
        // Anyone still waiting can no longer be served.
        var completions = Completions()
        let error = state.failure ?? .closed
        completions.take(&state.writeWaiters, through: LSN(UInt64.max), result: { _ in .failure(Log.stopped(by: error)) })
        completions.take(&state.syncWaiters, through: LSN(UInt64.max), result: { _ in .failure(Log.stopped(by: error)) })
        completions.spaceWaiters = state.spaceWaiters
        state.spaceWaiters.removeAll()
        lock.unlock()
        lock.broadcast()
        lock.broadcastSecondary()  // position waiters (Log+Waiting)
        completions.run()
    }

    /// Whether a sync is due (lock held): a synchronous waiter's batch is written, an interval
    /// deadline passed, or the log is closing with unsynced data.
    private func needsSync(now: UInt64) -> Bool {
        if let failure = state.failure {
            if case .syncFailed = failure { return false }
            return state.syncedLSN < state.writtenLSN  // the final sync after a failed write
        }
        guard state.syncedLSN < state.writtenLSN || !state.syncWaiters.isEmpty else { return false }
        if let first = state.syncWaiters.first, first.range.last <= state.writtenLSN {
            // Group commit: give the appenders the last sync released a moment to rejoin.
            return state.syncWaiters.count >= state.lastSyncGroupSize || now >= state.syncGatherDeadline
                || state.closing
        }
        if let deadline = state.syncDeadline, deadline <= now, state.syncedLSN < state.writtenLSN { return true }
        return state.closing && state.syncedLSN < state.writtenLSN
    }

    /// Does one operation's I/O (lock not held).
    private func perform(_ operation: PendingOperation, activeFile: inout SegmentFile?) -> Result<Void, LogError> {
        do throws(FileSystemError) {
            switch operation {
            case .write(let offset, let bytes, _, _, _):
                guard let file = activeFile else { return .failure(.failed(underlying: "no active segment to write to")) }
                try file.handle.write(bytes, toAbsoluteOffset: offset)
            case .seal(_, let footer):
                guard let file = activeFile else { return .failure(.failed(underlying: "no active segment to seal")) }
                let bytes = footer.encoded(baseLSN: file.baseLSN)
                let end = Int64(footer.dataEnd) + Int64(bytes.count)
                try file.handle.write(bytes, toAbsoluteOffset: Int64(footer.dataEnd))
                try file.handle.truncate(toSize: end)
                do { try file.handle.synchronizeData() } catch { return .failure(.syncFailed(error)) }
            case .create(let header):
                activeFile = try createSegment(header)
            case .writeEpochHistory(let entries):
                try EpochHistoryFile.write(entries, directory: directory, fileSystem: fileSystem)
            case .syncBarrier(let through):
                // Every operation before the barrier was performed: what is written gets synced.
                let (needed, target) = lock.withLock { (state.syncedLSN < through, state.writtenLSN) }
                guard needed, let file = activeFile else { break }
                do { try file.handle.synchronizeData() } catch { return .failure(.syncFailed(error)) }
                lock.withLock {
                    state.syncedLSN = max(state.syncedLSN, target)
                    state.stats.syncCalls += 1
                }
            }
            return .success(())
        } catch {
            if error.operation == .sync || error.operation == .syncDirectory { return .failure(.syncFailed(error)) }
            return .failure(error.isOutOfSpace ? .outOfSpace(error) : .writeFailed(error))
        }
    }

    /// Creates a segment durably: temporary name, header, preallocation, fdatasync, rename,
    /// directory fsync. A crash leaves either no segment or a complete one (plus a `.tmp`
    /// file recovery removes).
    private func createSegment(_ header: SegmentHeader) throws(FileSystemError) -> SegmentFile {
        let name = SegmentName.fileName(baseLSN: header.baseLSN)
        let path = directory.appending(name)
        let temporary = directory.appending(name + SegmentName.temporarySuffix)
        if fileSystem.fileExists(at: temporary) { try fileSystem.removeFile(at: temporary) }
        let handle = try fileSystem.openFile(at: temporary, options: [.read, .write, .createNew])
        var renamed = false
        do {
            try SegmentFile.writeEmpty(header, to: handle, options: options)
            try fileSystem.rename(from: temporary, to: path)
            renamed = true
            try fileSystem.syncDirectory(at: directory)
        } catch {
            handle.close()
            try? fileSystem.removeFile(at: renamed ? path : temporary)  // it holds no batch yet
            throw error
        }
        handle.close()
        // Reopen under the final name, so that errors name the segment, not the temporary file.
        let final = try fileSystem.openFile(at: path, options: [.read, .write])
        return SegmentFile(path: path, handle: final, header: header)
    }

    /// Makes an operation's outcome visible (lock held) and collects the completions it allows.
    private func publish(
        _ operation: PendingOperation, outcome: Result<Void, LogError>, activeFile: SegmentFile?
    ) -> Completions {
        if case .failure(let error) = outcome { return fail(with: error) }
        var completions = Completions()
        switch operation {
        case .write(_, let bytes, let lastLSN, let lastTimestamp, let indexUpTo):
            state.pendingBytes -= bytes.count
            if state.pendingBytes <= options.pendingBytesMax {
                completions.spaceWaiters = state.spaceWaiters
                state.spaceWaiters.removeAll()
            }
            state.stats.writeCalls += 1
            let last = state.segments.count - 1
            state.segments[last].dataEnd += Int64(bytes.count)
            state.segments[last].lastLSN = lastLSN
            state.segments[last].lastTimestamp = lastTimestamp
            if let assigned = state.assigned, assigned.baseLSN == state.segments[last].baseLSN {
                state.segments[last].index = Array(assigned.index.prefix(indexUpTo))
            }
            state.writtenLSN = lastLSN
            completions.take(&state.writeWaiters, through: lastLSN, result: { .success($0) })
            completions.tails = Array(state.tailWaiters.values)
            state.tailWaiters.removeAll()
        case .seal(_, let footer):
            let last = state.segments.count - 1
            state.segments[last].footer = footer
            state.segments[last].index = footer.index
            // Sealing synced this segment, and every older one was synced when it was sealed.
            state.syncedLSN = max(state.syncedLSN, footer.lastLSN)
            let synced = state.syncedLSN
            completions.take(&state.syncWaiters, through: synced, result: { .success($0) })
        case .syncBarrier:
            let synced = state.syncedLSN
            completions.take(&state.syncWaiters, through: synced, result: { .success($0) })
        case .writeEpochHistory:
            break  // Log.epochHistory shows an entry once its first batch is written
        case .create:
            guard let file = activeFile else { return completions }
            state.segments.append(
                SegmentEntry(
                    file: file, lastLSN: file.baseLSN.predecessor, dataEnd: Int64(SegmentHeader.byteCount), index: [],
                    footer: nil, lastTimestamp: file.header.createdAt))
            state.stats.segmentsCreated += 1
        }
        return completions
    }

    /// Stops the log (lock held): every waiter not yet served fails; nothing more is acknowledged.
    ///
    /// After a failed write (EIO, ENOSPC) what was written before it is still synced once more,
    /// so synchronous waiters for it and `interval` appends already acknowledged get the
    /// durability they were promised. After a failed fdatasync nothing is synced again
    /// (fsyncgate: a retry could report success without the data on disk).
    func fail(with error: LogError) -> Completions {
        if state.failure == nil {
            state.failure = error
        } else if case .syncFailed = error {
            state.failure = error
        }
        var completions = Completions()
        let stopped = Log.stopped(by: state.failure!)
        completions.take(&state.writeWaiters, through: LSN(UInt64.max), result: { _ in .failure(stopped) })
        if case .syncFailed = state.failure! {
            completions.take(&state.syncWaiters, through: LSN(UInt64.max), result: { _ in .failure(stopped) })
        } else {
            // Keep the synchronous waiters whose batches were written: the final sync serves them.
            let written = state.writtenLSN
            let unwritten = state.syncWaiters.filter { $0.range.last > written }
            state.syncWaiters.removeAll { $0.range.last > written }
            var failed = unwritten
            completions.take(&failed, through: LSN(UInt64.max), result: { _ in .failure(stopped) })
        }
        state.pending.removeAll()
        state.pendingBytes = 0
        completions.spaceWaiters = state.spaceWaiters
        state.spaceWaiters.removeAll()
        return completions
    }
}

/// Completions collected under the lock and run after it is released.
struct Completions {
    private var calls: [(Waiter, Result<LSNRange, LogError>)] = []
    var tails: [@Sendable () -> Void] = []
    /// Async appenders waiting for the write buffer to drain below `pendingBytesMax`.
    var spaceWaiters: [@Sendable () -> Void] = []

    /// Moves the waiters whose batches end at or before `lsn` out of `waiters`.
    mutating func take(
        _ waiters: inout [Waiter], through lsn: LSN, result: (LSNRange) -> Result<LSNRange, LogError>
    ) {
        var count = 0
        while count < waiters.count && waiters[count].range.last <= lsn {
            calls.append((waiters[count], result(waiters[count].range)))
            count += 1
        }
        if count > 0 { waiters.removeFirst(count) }
    }

    func run() {
        for (waiter, result) in calls { waiter.completion(result) }
        for tail in tails { tail() }
        for waiter in spaceWaiters { waiter() }
    }
}

/// Carries the log to its I/O thread, which keeps it alive until `close()`.
final class IOThreadContext {
    let log: Log
    init(log: Log) { self.log = log }
}
