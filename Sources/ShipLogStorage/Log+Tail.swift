import Dispatch
public import ShipLogFormat

extension Log {
    /// Batches from the one containing `lsn` onwards; waits for new appends at the end and
    /// finishes when the log closes. Reads run on a reader thread, not the cooperative pool.
    public func tail(from lsn: LSN) -> LogTail {
        LogTail(log: self, from: lsn)
    }

    /// Suspends until something after `lsn` is written, or the log closes. Returns false when closed.
    func waitForWrite(after lsn: LSN) async -> Bool {
        let id: UInt64 = lock.withLock {
            state.nextTailWaiterID += 1
            return state.nextTailWaiterID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let resumeNow: Bool? = lock.withLock {
                    if state.closing || state.failure != nil { return false }
                    if state.writtenLSN > lsn || Task.isCancelled { return true }
                    state.tailWaiters[id] = { continuation.resume(returning: true) }
                    return nil
                }
                if let resumeNow { continuation.resume(returning: resumeNow) }
            }
        } onCancel: {
            let waiter = lock.withLock { state.tailWaiters.removeValue(forKey: id) }
            waiter?()
        }
    }

    var isClosing: Bool { lock.withLock { state.closing } }
}

/// The queue blocking reads of async readers run on (threads libdispatch owns, not the
/// Swift cooperative pool).
let readerQueue = DispatchQueue(label: "shiplog.reader", attributes: .concurrent)

/// An `AsyncSequence` of batches that follows the log as it grows.
public struct LogTail: AsyncSequence, Sendable {
    public typealias Element = Batch
    let log: Log
    let start: LSN

    init(log: Log, from start: LSN) {
        self.log = log
        self.start = start
    }

    public func makeAsyncIterator() -> Iterator { Iterator(cursor: log.batches(from: start)) }

    public struct Iterator: AsyncIteratorProtocol {
        var cursor: BatchCursor

        public mutating func next() async throws(LogError) -> Batch? {
            while true {
                try Task.checkCancellationAsLogError()
                let current = cursor
                let (batch, advanced) = try await Self.read(current)
                cursor = advanced
                if let batch { return batch }
                if cursor.log.isClosing && cursor.log.writtenLSN < cursor.nextLSN { return nil }
                guard await cursor.log.waitForWrite(after: cursor.nextLSN.predecessor) else {
                    // Closed: return what was written before the close, then end.
                    let (last, advanced) = try await Self.read(cursor)
                    cursor = advanced
                    return last
                }
            }
        }

        private static func read(_ cursor: BatchCursor) async throws(LogError) -> (Batch?, BatchCursor) {
            let result: Result<(Batch?, BatchCursor), LogError> = await withCheckedContinuation { continuation in
                readerQueue.async {
                    var cursor = cursor
                    do throws(LogError) {
                        let batch = try cursor.next()
                        continuation.resume(returning: .success((batch, cursor)))
                    } catch {
                        continuation.resume(returning: .failure(error))
                    }
                }
            }
            return try result.get()
        }
    }
}

extension Task where Success == Never, Failure == Never {
    static func checkCancellationAsLogError() throws(LogError) {
        if Task.isCancelled { throw .closed }
    }
}
