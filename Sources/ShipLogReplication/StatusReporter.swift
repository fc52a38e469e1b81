import ShipLogFormat
import ShipLogProtocol
import ShipLogStateMachine
import ShipLogStorage

/// A follower's acknowledgements on one connection (docs/PROTOCOL.md 7.4), sent from a thread
/// of their own so the receiving thread never waits for an fdatasync or a full socket:
/// FollowerStatus when the log's I/O thread publishes a write or an fdatasync (so `write:K` is
/// acknowledged before the fdatasync and `flush:K` right after it, as PostgreSQL's walreceiver
/// does), when a Keepalive asks, and at least once per keepalive interval; SnapshotAck during
/// a checkpoint transfer.
final class StatusReporter: @unchecked Sendable {
    // @unchecked: every var is guarded by `lock`.
    private let lock = ConditionLock()
    private let sender: MessageSender
    private var poked = false
    private var stopped = false
    private var snapshot: (lsn: LSN, bytesStored: UInt64)?
    private var sent = (written: LSN.zero, flushed: LSN.zero, applied: LSN.zero)
    private var thread: OwnedThread?
    private let currentLog: @Sendable () -> Log?

    init<Machine: QueryableStateMachine>(node: ReplicaNode<Machine>, sender: MessageSender) {
        self.sender = sender
        self.currentLog = { node.host?.log }
        let interval = node.options.keepaliveInterval
        let flushEachWrite = node.options.followerDurability == .immediate
        thread = OwnedThread.start(name: "shiplog-status") { [self] in
            run(interval: interval, flushEachWrite: flushEachWrite) { node.host }
        }
    }

    /// Send a status now (a Keepalive asked for one, or something moved that the log's
    /// positions do not show).
    func poke() {
        lock.withLock { poked = true }
        wake()
    }

    func pokeSnapshot(lsn: LSN, bytesStored: UInt64) {
        lock.withLock {
            snapshot = (lsn, bytesStored)
            poked = true
        }
        wake()
    }

    func stop() {
        lock.withLock { stopped = true }
        wake()
        thread?.join()
    }

    private func wake() {
        lock.broadcast()
        currentLog()?.wakeProgressWaiters()
    }

    private func run<Machine: QueryableStateMachine>(
        interval: Duration, flushEachWrite: Bool, host: () -> StateMachineHost<Machine>?
    ) {
        var lastSent: UInt64 = 0
        while true {
            let (stop, snapshot, wasPoked) = lock.withLock { () -> (Bool, (lsn: LSN, bytesStored: UInt64)?, Bool) in
                let taken = (stopped, self.snapshot, poked)
                self.snapshot = nil
                poked = false
                return taken
            }
            if stop { return }
            if let snapshot {
                guard send(.snapshotAck(Message.SnapshotAck(snapshotLSN: snapshot.lsn, bytesStored: snapshot.bytesStored))) else { return }
            }
            guard let host = host() else {
                lock.withLock { if !poked && !stopped { lock.wait(untilMonotonicNanoseconds: monotonicNanoseconds() &+ 10_000_000) } }
                continue
            }
            let log = host.log
            let now = monotonicNanoseconds()
            let moved = log.writtenLSN > sent.written || log.durableLSN > sent.flushed || host.appliedLSN > sent.applied
            if moved || wasPoked || now &- lastSent >= interval.nanoseconds {
                guard sendStatus(host) else { return }
                lastSent = now
            }
            // Sleep until the I/O thread publishes a write or an fdatasync, a poke, or the
            // next status is due. The batches themselves are appended with the follower's
            // durability, so with `.immediate` the I/O thread syncs right after it writes.
            _ = log.waitForProgress(writtenAfter: sent.written, durableAfter: sent.flushed, timeout: interval)
        }
    }

    /// Sends the current positions (never lower than the last sent on this connection).
    private func sendStatus<Machine: QueryableStateMachine>(_ host: StateMachineHost<Machine>) -> Bool {
        let log = host.log
        let applied = host.appliedLSN
        let written = max(log.writtenLSN, sent.written)
        let flushed = min(max(log.durableLSN, sent.flushed), written)
        let status = Message.FollowerStatus(
            writtenLSN: written, flushedLSN: flushed, appliedLSN: min(max(applied, sent.applied), written),
            timestamp: wallClockNanoseconds())
        sent = (status.writtenLSN, status.flushedLSN, status.appliedLSN)
        return send(.followerStatus(status))
    }

    private func send(_ message: Message) -> Bool {
        do { try sender.send(message) } catch { return false }
        return true
    }
}
