public import ShipLogFormat

/// Blocking waits for the log's positions, for threads the caller owns (a replication
/// sender, a commit tracker). Never call them from Swift's cooperative pool: they block the
/// thread. Async code has ``Log/tail(from:)`` instead.
extension Log {
    /// The longest a blocking wait waits; longer timeouts are cut to this (one year).
    public static let waitTimeoutMax: Duration = .seconds(365 * 86_400)

    /// Blocks until ``writtenLSN`` is past `lsn` (a batch after it is readable).
    /// - Returns: true as soon as `writtenLSN > lsn`; false when `timeout` passes first or
    ///   the log is closing or has stopped on a failure.
    public func waitForWrite(after lsn: LSN, timeout: Duration) -> Bool {
        waitUntil(\.writtenLSN, isAfter: lsn, timeout: timeout)
    }

    /// Blocks until ``durableLSN`` is past `lsn` (an fdatasync covered a record after it).
    /// - Returns: true as soon as `durableLSN > lsn`; false when `timeout` passes first or
    ///   the log is closing or has stopped on a failure.
    public func waitForDurable(after lsn: LSN, timeout: Duration) -> Bool {
        waitUntil(\.syncedLSN, isAfter: lsn, timeout: timeout)
    }

    /// Blocks until ``writtenLSN`` is past `written` or ``durableLSN`` is past `durable`, or
    /// ``wakeProgressWaiters()`` is called. A follower's status sender waits here to report
    /// each write and each fdatasync as the I/O thread publishes it.
    /// - Returns: false when `timeout` passed first or the log is closing or has stopped.
    public func waitForProgress(writtenAfter written: LSN, durableAfter durable: LSN, timeout: Duration) -> Bool {
        let deadline = monotonicNanoseconds() + min(max(timeout, .zero), Self.waitTimeoutMax).nanoseconds
        lock.lock()
        defer { lock.unlock() }
        let woken = progressWakeups
        while true {
            if state.writtenLSN > written || state.syncedLSN > durable || progressWakeups != woken { return true }
            if state.closing || state.failure != nil { return false }
            if monotonicNanoseconds() >= deadline { return false }
            lock.waitSecondary(untilMonotonicNanoseconds: deadline)
        }
    }

    /// Wakes every thread in ``waitForProgress(writtenAfter:durableAfter:timeout:)`` (and the
    /// other position waits, which wait on).
    public func wakeProgressWaiters() {
        lock.withLock { progressWakeups &+= 1 }
        lock.broadcastSecondary()
    }

    /// Waits on the log's secondary condition variable, which the I/O thread broadcasts after
    /// every write, seal and sync it publishes, on a failure and when it stops; `close()`
    /// broadcasts it too. Appends do not wake these waiters (they wake the I/O thread on the
    /// primary condition). No polling: the only other wake-up is the deadline.
    private func waitUntil(_ position: KeyPath<State, LSN>, isAfter lsn: LSN, timeout: Duration) -> Bool {
        let capped = min(max(timeout, .zero), Self.waitTimeoutMax)
        let deadline = monotonicNanoseconds() + capped.nanoseconds
        lock.lock()
        defer { lock.unlock() }
        while true {
            if state[keyPath: position] > lsn { return true }
            if state.closing || state.failure != nil { return false }
            if monotonicNanoseconds() >= deadline { return false }
            lock.waitSecondary(untilMonotonicNanoseconds: deadline)
        }
    }
}
