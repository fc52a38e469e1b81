import ShipLogFormat
import ShipLogProtocol
import ShipLogStateMachine
import ShipLogStorage

/// A follower's acknowledgements on one connection (docs/PROTOCOL.md 7.4), sent from a thread
/// of their own so the receiving thread never waits for an fdatasync or a full socket:
/// FollowerStatus after stored batches, after each flush, when a Keepalive asks, and at least
/// once per keepalive interval; SnapshotAck during a checkpoint transfer. With
/// `followerDurability` `.immediate` it also flushes the log after the written position moves,
/// so `write:K` is acknowledged before the fdatasync and `flush:K` right after it, as
/// PostgreSQL's walreceiver does.
final class StatusReporter: @unchecked Sendable {
    // @unchecked: every var is guarded by `lock`.
    private let lock = ConditionLock()
    private let sender: MessageSender
    private var poked = false
    private var stopped = false
    private var snapshot: (lsn: LSN, bytesStored: UInt64)?
    private var sent = (written: LSN.zero, flushed: LSN.zero, applied: LSN.zero)
    private var thread: OwnedThread?

    init<Machine: QueryableStateMachine>(node: ReplicaNode<Machine>, sender: MessageSender) {
        self.sender = sender
        let interval = node.options.keepaliveInterval
        let flushEachWrite = node.options.followerDurability == .immediate
        thread = OwnedThread.start(name: "shiplog-status") { [self] in
            run(interval: interval, flushEachWrite: flushEachWrite) { node.host }
        }
    }

    /// Something moved: send a status soon.
    func poke() {
        lock.withLock { poked = true }
        lock.broadcast()
    }

    func pokeSnapshot(lsn: LSN, bytesStored: UInt64) {
        lock.withLock {
            snapshot = (lsn, bytesStored)
            poked = true
        }
        lock.broadcast()
    }

    func stop() {
        lock.withLock { stopped = true }
        lock.broadcast()
        thread?.join()
    }

    private func run<Machine: QueryableStateMachine>(
        interval: Duration, flushEachWrite: Bool, host: () -> StateMachineHost<Machine>?
    ) {
        while true {
            let (stop, snapshot) = lock.withLock { () -> (Bool, (lsn: LSN, bytesStored: UInt64)?) in
                if !poked && !stopped {
                    lock.wait(untilMonotonicNanoseconds: monotonicNanoseconds() &+ interval.nanoseconds)
                }
                poked = false
                let taken = self.snapshot
                self.snapshot = nil
                return (stopped, taken)
            }
            if stop { return }
            if let snapshot {
                guard send(.snapshotAck(Message.SnapshotAck(snapshotLSN: snapshot.lsn, bytesStored: snapshot.bytesStored))) else { return }
            }
            guard let host = host() else { continue }
            guard sendStatus(host) else { return }
            if flushEachWrite && host.log.durableLSN < host.log.writtenLSN {
                do { try host.log.sync() } catch { continue }
                guard sendStatus(host) else { return }
            }
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
