#if canImport(Glibc)
import Glibc
#endif

/// A mutex with a condition variable (pthread), for the engine's own threads to wait on.
/// Synchronization.Mutex has no condition variable; waiting threads here are never Swift's
/// cooperative threads. Public for the engine's other layers (replication), which wait on
/// their own threads too.
public final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// A second condition on the same mutex, for a separate group of waiters (the log's
    /// position waiters), so broadcasts meant for one group do not wake the other.
    private let secondary = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_cond_init(secondary, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_cond_destroy(secondary)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
        secondary.deallocate()
    }

    @inline(__always) public func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) public func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always)
    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    /// Waits (lock held) until signalled.
    public func wait() { pthread_cond_wait(condition, mutex) }

    /// Waits (lock held) until signalled or `deadline` (monotonic nanoseconds, see
    /// ``monotonicNanoseconds()``) passes. Returns `false` when the deadline passed. May wake
    /// spuriously: wait in a loop.
    @discardableResult
    public func wait(untilMonotonicNanoseconds deadline: UInt64) -> Bool {
        var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(condition, mutex, &time) != ETIMEDOUT
    }

    /// Waits (lock held) until signalled or `deadline` passes; `nil` waits without a limit.
    /// Returns `false` when the deadline passed.
    @discardableResult
    public func wait(untilMonotonicNanoseconds deadline: UInt64?) -> Bool {
        guard let deadline else {
            wait()
            return true
        }
        return wait(untilMonotonicNanoseconds: deadline)
    }

    /// Waits (lock held) on the secondary condition until ``broadcastSecondary()`` or
    /// `deadline`. Returns `false` when the deadline passed.
    @discardableResult
    public func waitSecondary(untilMonotonicNanoseconds deadline: UInt64) -> Bool {
        var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(secondary, mutex, &time) != ETIMEDOUT
    }

    /// Wakes every waiter of the secondary condition.
    public func broadcastSecondary() { pthread_cond_broadcast(secondary) }

    /// Wakes one waiter.
    public func signal() { pthread_cond_signal(condition) }
    /// Wakes every waiter.
    public func broadcast() { pthread_cond_broadcast(condition) }

    /// Nanoseconds on the monotonic clock (the clock timed waits use).
    public static func monotonicNanoseconds() -> UInt64 { ShipLogStorage.monotonicNanoseconds() }

    /// The monotonic deadline `duration` from now (saturating); `nil` for `nil`.
    public static func deadline(after duration: Duration?) -> UInt64? {
        guard let duration else { return nil }
        let (sum, overflow) = monotonicNanoseconds().addingReportingOverflow(duration.nanoseconds)
        return overflow ? .max : sum
    }
}

/// Nanoseconds on the monotonic clock.
public func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// Nanoseconds since the Unix epoch, for batch timestamps.
public func wallClockNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

extension Duration {
    /// The duration in whole nanoseconds: 0 when negative, saturating at `UInt64.max`.
    public var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
        let (secondsPart, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .max }
        let (sum, overflowSum) = secondsPart.addingReportingOverflow(UInt64(max(0, attoseconds) / 1_000_000_000))
        return overflowSum ? .max : sum
    }
}
