import ShipLogFormat
import ShipLogProtocol
import ShipLogStorage

/// How an append waiting for its commit level ended.
enum CommitOutcome: Sendable {
    /// Durable locally and the level was reached.
    case committed(LSNRange, Epoch)
    /// The timeout passed first, policy `fail`.
    case timedOut(LSNRange)
    /// Answered once durable locally because the primary runs degraded (policy `degrade`).
    case degraded(LSNRange, Epoch)
    /// The local append failed.
    case failed(LogError)
}

/// A follower's positions as the primary last heard them (docs/PROTOCOL.md 7.4).
struct FollowerPositions: Sendable, Hashable {
    var written: LSN = .zero
    var flushed: LSN = .zero
    var applied: LSN = .zero
    var connected = false
}

/// Appends waiting for their commit level, and the positions that release them.
///
/// An append is registered in two halves that may arrive in either order: the log's
/// completion (local durability, on the log's I/O thread) and the LSN range the log assigned
/// (on the requesting thread). Follower statuses move positions forward; each move releases
/// every waiter whose level is now met. A timer thread ends waiters whose timeout passed.
final class CommitTracker: @unchecked Sendable {
    // @unchecked: every var is guarded by `lock`.
    final class Pending: @unchecked Sendable {
        // Guarded by the tracker's lock.
        let level: CommitLevel
        let deadline: UInt64
        let complete: @Sendable (CommitOutcome) -> Void
        /// Answer as degraded once locally durable: the level could not be met when the
        /// append arrived and the policy is `degrade`.
        let degradeAtOnce: Bool
        var range: LSNRange?
        var epoch = Epoch.initial
        var local: Result<Void, LogError>?
        var done = false

        init(level: CommitLevel, deadline: UInt64, degradeAtOnce: Bool, complete: @escaping @Sendable (CommitOutcome) -> Void) {
            self.level = level
            self.deadline = deadline
            self.degradeAtOnce = degradeAtOnce
            self.complete = complete
        }
    }

    private let lock = ConditionLock()
    private let policy: CommitTimeoutPolicy
    private var followers: [String: FollowerPositions] = [:]
    private var waiting: [Pending] = []
    private var degradedLevel: CommitLevel?
    private var newestAssigned = LSN.zero
    /// Set while the node is fenced: nothing is confirmed.
    private var abandoned = false
    /// When the timer thread wakes next (monotonic ns): a new waiter with a later deadline
    /// need not wake it.
    private var timerWakeAt: UInt64 = 0
    private var degradedCount: UInt64 = 0
    /// Under an election, the followers whose positions count toward commit levels (the
    /// synchronous set published in the term record, docs/FAILOVER.md 9); nil: every follower.
    private var countedFollowers: Set<String>?
    /// The highest LSN decided `committed` at a follower level (write, flush, apply, all); its answer may still be on its way.
    private var acknowledged = LSN.zero
    private var stopped = false
    private var timer: OwnedThread?

    init(policy: CommitTimeoutPolicy) {
        self.policy = policy
        timer = OwnedThread.start(name: "shiplog-commit") { [self] in runTimer() }
    }

    /// Stops the timer; waiters still pending are ended as timed out.
    func stop() {
        let ended: [Pending] = lock.withLock {
            stopped = true
            let ended = waiting
            waiting.removeAll()
            return ended
        }
        lock.broadcast()
        timer?.join()
        for pending in ended where !pending.done {
            pending.done = true
            if let range = pending.range { pending.complete(.timedOut(range)) }
        }
    }

    /// Blocks until no append waits for its commit level (each ends by its timeout at the latest).
    func waitUntilIdle() {
        lock.withLock {
            while waiting.contains(where: { !$0.done }) && !stopped {
                lock.wait(untilMonotonicNanoseconds: monotonicNanoseconds() &+ 10_000_000)
            }
        }
    }

    /// Ends every waiting append as timed out at once (the primary was fenced: it must not
    /// confirm anything more).
    func abandonWaiting() {
        let ended: [(Pending, LSNRange)] = lock.withLock {
            abandoned = true
            let ended = waiting.compactMap { pending in pending.range.map { (pending, $0) } }
            waiting.removeAll()
            return ended
        }
        for (pending, range) in ended { finish(pending, .timedOut(range)) }
    }

    /// Confirms commit levels again (the node holds the leader lease again, or was promoted).
    func resume() { lock.withLock { abandoned = false } }

    // MARK: Followers

    /// Adds a follower to the replica set (a replication slot), or marks it connected.
    func followerConnected(_ nodeID: String, positions: FollowerPositions) {
        update { followers in
            var entry = followers[nodeID] ?? positions
            entry.written = max(entry.written, positions.written)
            entry.flushed = max(entry.flushed, positions.flushed)
            entry.applied = max(entry.applied, positions.applied)
            entry.connected = true
            followers[nodeID] = entry
        }
    }

    func followerDisconnected(_ nodeID: String) {
        update { followers in followers[nodeID]?.connected = false }
    }

    /// Removes a follower from the replica set (its slot was dropped).
    func followerRemoved(_ nodeID: String) {
        update { followers in followers[nodeID] = nil }
    }

    /// A FollowerStatus arrived: positions only move forward.
    func followerReported(_ nodeID: String, written: LSN, flushed: LSN, applied: LSN) {
        update { followers in
            guard var entry = followers[nodeID] else { return }
            entry.written = max(entry.written, written)
            entry.flushed = max(entry.flushed, flushed)
            entry.applied = max(entry.applied, applied)
            followers[nodeID] = entry
        }
    }

    var followerPositions: [String: FollowerPositions] { lock.withLock { followers } }
    var connectedFollowerCount: Int { lock.withLock { followers.values.filter(\.connected).count } }
    /// Whether the primary currently answers follower levels after local durability only.
    var isDegraded: Bool { lock.withLock { degradedLevel != nil } }
    /// Appends answered `appendedDegraded` so far.
    var degradedAnswers: UInt64 { lock.withLock { degradedCount } }

    /// Why `level` cannot be met right now (too few followers connected), or nil.
    func unavailability(of level: CommitLevel) -> String? {
        let connected = connectedFollowerCount
        switch level {
        case .local: return nil
        case .all:
            // `all` with an empty replica set would be `local`: a write nobody else holds.
            let registered = lock.withLock { followers.count }
            return registered > 0 ? nil : "all needs at least one follower in the replica set, there is none"
        case .write(let k), .flush(let k), .apply(let k):
            return connected >= k ? nil : "\(level) needs \(k) connected followers, \(connected) connected"
        }
    }

    // MARK: Appends

    func makePending(
        level: CommitLevel, timeout: Duration, degradeAtOnce: Bool = false, complete: @escaping @Sendable (CommitOutcome) -> Void
    ) -> Pending {
        Pending(level: level, deadline: monotonicNanoseconds() &+ timeout.nanoseconds, degradeAtOnce: degradeAtOnce, complete: complete)
    }

    /// The log's completion for the append (local durability or failure).
    func localCompleted(_ pending: Pending, _ result: Result<LSNRange, LogError>) {
        let ready = lock.withLock { () -> CommitOutcome? in
            pending.local = result.map { _ in () }
            return outcomeIfReady(pending)
        }
        if let ready { finish(pending, ready) }
    }

    /// The LSNs the log assigned to the append.
    func assigned(_ pending: Pending, range: LSNRange, epoch: Epoch) {
        let ready = lock.withLock { () -> CommitOutcome? in
            pending.range = range
            pending.epoch = epoch
            newestAssigned = max(newestAssigned, range.last)
            if pending.degradeAtOnce { degradedLevel = pending.level }
            if let outcome = outcomeIfReady(pending) { return outcome }
            waiting.append(pending)
            if pending.deadline < timerWakeAt { lock.broadcast() }
            return nil
        }
        if let ready { finish(pending, ready) }
    }

    /// The outcome when both halves are known and the level is met (lock held).
    private func outcomeIfReady(_ pending: Pending) -> CommitOutcome? {
        guard !pending.done, let range = pending.range, let local = pending.local else { return nil }
        if case .failure(let error) = local { return .failed(error) }
        if abandoned { return .timedOut(range) }
        if isMet(pending.level, through: range.last) {
            // Counted here, under the lock that decided it: a change of the counted followers
            // sees every acknowledgement already decided (FailoverManager's set removal).
            if pending.level != .local { acknowledged = max(acknowledged, range.last) }
            return .committed(range, pending.epoch)
        }
        if degradedLevel != nil && pending.level != .local {
            degradedCount += 1
            return .degraded(range, pending.epoch)
        }
        return nil
    }

    /// Whether `level` holds for every LSN through `lsn` (lock held; local durability is
    /// checked by the caller).
    private func isMet(_ level: CommitLevel, through lsn: LSN) -> Bool {
        let counted = followers.lazy.filter { self.countedFollowers?.contains($0.key) ?? true }.map(\.value)
        switch level {
        case .local: return true
        case .write(let k): return counted.filter { $0.written >= lsn }.count >= k
        case .flush(let k): return counted.filter { $0.flushed >= lsn }.count >= k
        case .apply(let k): return counted.filter { $0.applied >= lsn }.count >= k
        case .all:
            // Under an election, `all` also needs one counted follower: the term record
            // promises the candidates that every counted follower holds the write.
            if let set = countedFollowers, !followers.keys.contains(where: set.contains) { return false }
            return followers.values.allSatisfy { $0.flushed >= lsn }
        }
    }

    // MARK: The synchronous set (elections)

    /// Counts only the positions of `nodeIDs` toward commit levels from now on (nil: every
    /// follower's). Under an election the manager publishes a follower in the term record
    /// before it counts here, and stops it counting here before it leaves the record.
    func countOnly(_ nodeIDs: Set<String>?) {
        update { _ in self.countedFollowers = nodeIDs }
    }

    /// The followers whose positions count toward commit levels; nil: every follower's.
    var counted: Set<String>? { lock.withLock { countedFollowers } }

    /// The highest LSN acknowledged at a follower level, and the followers' positions.
    var acknowledgements: (acknowledgedLSN: LSN, followers: [String: FollowerPositions]) {
        lock.withLock { (acknowledged, followers) }
    }

    /// Changes follower positions, then releases every waiter whose level is now met.
    private func update(_ change: (inout [String: FollowerPositions]) -> Void) {
        let released: [(Pending, CommitOutcome)] = lock.withLock {
            change(&followers)
            // Degraded mode ends once the followers have caught up with every assigned LSN.
            if let level = degradedLevel, isMet(level, through: newestAssigned) { degradedLevel = nil }
            var released: [(Pending, CommitOutcome)] = []
            waiting.removeAll { pending in
                guard let outcome = outcomeIfReady(pending) else { return pending.done }
                released.append((pending, outcome))
                return true
            }
            return released
        }
        for (pending, outcome) in released { finish(pending, outcome) }
    }

    private func finish(_ pending: Pending, _ outcome: CommitOutcome) {
        let first = lock.withLock { () -> Bool in
            if pending.done { return false }
            pending.done = true
            return true
        }
        if first { pending.complete(outcome) }
    }

    // MARK: Timeouts

    private func runTimer() {
        lock.lock()
        while !stopped {
            let now = monotonicNanoseconds()
            var expired: [(Pending, CommitOutcome)] = []
            var next = now &+ 1_000_000_000
            waiting.removeAll { pending in
                if pending.done { return true }
                guard pending.deadline <= now else {
                    next = min(next, pending.deadline)
                    return false
                }
                guard let range = pending.range else { return false }
                switch policy {
                case .fail:
                    expired.append((pending, .timedOut(range)))
                case .degrade:
                    // Answered once durable locally (at once if it already is).
                    degradedLevel = pending.level
                    guard pending.local != nil else { return false }
                    if case .failure(let error) = pending.local { expired.append((pending, .failed(error))) } else {
                        degradedCount += 1
                        expired.append((pending, .degraded(range, pending.epoch)))
                    }
                }
                return true
            }
            if !expired.isEmpty {
                lock.unlock()
                for (pending, outcome) in expired { finish(pending, outcome) }
                lock.lock()
                continue
            }
            timerWakeAt = next
            lock.wait(untilMonotonicNanoseconds: next)
            timerWakeAt = 0
        }
        lock.unlock()
    }
}
