import ShipLogFormat
import ShipLogStorage

/// Reads that wait for the log to grow (`ReadRequest.waitMillis`, a tailing reader's long
/// poll), all served by one thread of the node: a waiting read holds an entry here, not a
/// thread, so thousands of idle tailers cost nothing and never starve other requests.
final class ReadWaiters: @unchecked Sendable {
    // @unchecked: `waiters`, `stopped` and `thread` are guarded by `lock`.
    private struct Waiter {
        /// Ready once the log holds an LSN after this one.
        let after: LSN
        /// Monotonic nanoseconds; ready then at the latest.
        let deadline: UInt64
        let complete: @Sendable () -> Void
    }

    /// Longest single wait of the thread, so a waiter added meanwhile is looked at soon.
    static let waitSlice: Duration = .milliseconds(20)

    private let lock = ConditionLock()
    private var waiters: [Waiter] = []
    private var stopped = false
    private var thread: OwnedThread?
    private let currentLog: @Sendable () -> Log?

    init(log: @escaping @Sendable () -> Log?) { currentLog = log }

    /// Calls `complete` (on the waiting thread) once the log holds an LSN after `lsn`, or
    /// when `timeout` has passed, or at shutdown.
    func add(after lsn: LSN, timeout: Duration, complete: @escaping @Sendable () -> Void) {
        let started = lock.withLock { () -> Bool in
            guard !stopped else { return false }
            waiters.append(Waiter(after: lsn, deadline: monotonicNanoseconds() &+ timeout.nanoseconds, complete: complete))
            if thread == nil { thread = OwnedThread.start(name: "shiplog-tail") { [self] in run() } }
            return true
        }
        if started { lock.broadcast() } else { complete() }
    }

    /// Completes every waiter and stops the thread.
    func stop() {
        let thread = lock.withLock { () -> OwnedThread? in
            stopped = true
            return self.thread
        }
        lock.broadcast()
        thread?.join()
        let left = lock.withLock { () -> [Waiter] in
            let left = waiters
            waiters.removeAll()
            return left
        }
        for waiter in left { waiter.complete() }
    }

    private func run() {
        while true {
            let next = lock.withLock { () -> (after: LSN, deadline: UInt64)? in
                while waiters.isEmpty && !stopped { lock.wait() }
                if stopped { return nil }
                return (waiters.map(\.after).min()!, waiters.map(\.deadline).min()!)
            }
            guard let next else { return }
            let now = monotonicNanoseconds()
            let wait = Duration.nanoseconds(Int64(min(next.deadline > now ? next.deadline - now : 0, Self.waitSlice.nanoseconds)))
            let log = currentLog()
            if let log {
                _ = log.waitForWrite(after: next.after, timeout: wait)
            } else {
                lock.withLock { _ = lock.wait(untilMonotonicNanoseconds: monotonicNanoseconds() &+ wait.nanoseconds) }
            }
            let written = log?.writtenLSN ?? .zero
            let later = monotonicNanoseconds()
            let ready = lock.withLock { () -> [Waiter] in
                var ready: [Waiter] = []
                waiters.removeAll { waiter in
                    guard written > waiter.after || waiter.deadline <= later else { return false }
                    ready.append(waiter)
                    return true
                }
                return ready
            }
            for waiter in ready { waiter.complete() }
        }
    }
}
