#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CShipLogSupport
import ShipLogStorage

/// A pthread the replication layer owns, for its blocking calls (socket I/O, waits on
/// ``ConditionLock``). Swift's cooperative pool must never block on a syscall; these
/// threads may.
///
/// ```swift
/// let receiver = OwnedThread.start(name: "shiplog.recv") { runReceiveLoop() }
/// ...
/// connection.close()      // makes the loop's blocked receive return
/// receiver.join()
/// ```
///
/// ``join()`` may be called any number of times, from any thread, concurrently: every caller
/// returns once the thread has finished. Called from the thread itself (a loop that shuts its
/// own component down) it cannot wait for itself: it detaches the thread instead and returns
/// at once, and other joiners still wait until the body has returned.
public final class OwnedThread: @unchecked Sendable {
    /// What the kernel shows for a thread name (`/proc/self/task/*/comm`), in bytes, without
    /// the terminating NUL: pthread_setname_np fails with ERANGE beyond it.
    public static let nameBytesMax = 15

    /// The name given to ``start(name:_:)`` (not truncated).
    public let name: String

    // `condition` guards every `var` below.
    private let condition = ConditionLock()
    private var handle: pthread_t?
    private var finished = false
    private var joinState = JoinState.none

    private enum JoinState {
        /// Nobody has joined yet.
        case none
        /// A thread is in pthread_join; other joiners wait for `finished`.
        case joining
        /// pthread_join returned, or the thread was detached (its resources go with it).
        case released
    }

    private init(name: String) {
        self.name = name
    }

    deinit {
        // Never joined: detach so the thread's resources are freed when it ends.
        if joinState == .none, let handle { pthread_detach(handle) }
    }

    /// Starts `body` on a new pthread named `name` (its first ``nameBytesMax`` bytes, cut at a
    /// character boundary). Fails only when the system cannot create a thread (EAGAIN: out of
    /// threads or memory), which is treated as fatal like any allocation failure.
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) -> OwnedThread {
        let thread = OwnedThread(name: name)
        let context = Unmanaged.passRetained(StartContext(thread: thread, body: body))
        var handle = pthread_t()
        let result = pthread_create(
            &handle, nil,
            { raw in
                let context = Unmanaged<StartContext>.fromOpaque(raw!).takeRetainedValue()
                context.run()
                return nil
            }, context.toOpaque())
        guard result == 0 else {
            context.release()
            fatalError("OwnedThread: cannot start thread \(name): \(TransportError.errnoText(result))")
        }
        thread.condition.withLock { thread.handle = handle }
        return thread
    }

    /// Whether the calling thread is this thread.
    public var isCurrent: Bool {
        guard let handle = condition.withLock({ self.handle }) else { return false }
        return pthread_equal(handle, pthread_self()) != 0
    }

    /// Whether the body has returned.
    public var isFinished: Bool { condition.withLock { finished } }

    /// Waits until the body has returned. Idempotent; safe from several threads at once.
    /// From the thread itself it detaches the thread and returns without waiting.
    public func join() {
        if isCurrent {
            condition.withLock {
                if joinState == .none, let handle {
                    pthread_detach(handle)
                    joinState = .released
                }
            }
            return
        }
        condition.lock()
        switch joinState {
        case .none:
            joinState = .joining
            let handle = self.handle!
            condition.unlock()
            // Not under the lock: the body may itself call join() or isCurrent.
            let result = pthread_join(handle, nil)
            precondition(result == 0, "OwnedThread \(name): pthread_join failed: \(TransportError.errnoText(result))")
            condition.withLock {
                joinState = .released
                condition.broadcast()
            }
        case .joining, .released:
            // Another joiner, or the thread itself (detached): wait for the body to return.
            while !finished { condition.wait() }
            condition.unlock()
        }
    }

    /// Runs on the new thread.
    private final class StartContext {
        let thread: OwnedThread
        let body: @Sendable () -> Void

        init(thread: OwnedThread, body: @escaping @Sendable () -> Void) {
            self.thread = thread
            self.body = body
        }

        func run() {
            thread.condition.withLock {
                // pthread_create may not have stored the handle yet when the body asks isCurrent.
                if thread.handle == nil { thread.handle = pthread_self() }
            }
            OwnedThread.setCurrentThreadName(thread.name)
            body()
            thread.condition.withLock {
                thread.finished = true
                thread.condition.broadcast()
            }
        }
    }

    /// Names the calling thread (for `top -H`, gdb, perf), truncated to ``nameBytesMax`` bytes.
    static func setCurrentThreadName(_ name: String) {
        var bytes: [CChar] = []
        for character in name {
            let encoded = Array(String(character).utf8)
            if bytes.count + encoded.count > nameBytesMax { break }
            bytes.append(contentsOf: encoded.map { CChar(bitPattern: $0) })
        }
        bytes.append(0)
        _ = shiplog_set_thread_name(bytes)
    }
}
