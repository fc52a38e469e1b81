import ShipLogFormat
import ShipLogProtocol
import ShipLogStateMachine
import ShipLogStorage

/// The outcome of checking a follower's announced position.
enum PositionCheck: Sendable {
    case start(StreamStart)
    case refuse(Message.Failure)
}

/// What the primary sends a follower first: the log from an LSN, or a checkpoint then the log.
enum StreamStart: Sendable {
    case log(from: LSN)
    case snapshot(lsn: LSN, path: FilePath)
}

extension ReplicaNode {
    /// A follower's connection on the primary: StartStream and its position checks
    /// (docs/PROTOCOL.md 7.1), then a shipping thread and, on this thread, its statuses.
    func serveFollower(_ peer: PeerInfo, sender: MessageSender, receiver: inout MessageReceiver) {
        guard isPrimary, let host else {
            sender.fail(Message.Failure(.notPrimary(primaryAddress: primaryAddressHint)), refuse: true)
            return
        }
        let start: Message.StartStream
        do throws(ReplicationError) {
            switch try receiver.receive() {
            case .startStream(let m): start = m
            case let other?:
                sender.fail(Message.Failure(.protocolViolation, text: "expected StartStream, got \(other.type.name)"))
                return
            case nil: return
            }
        } catch {
            sender.fail(Message.Failure(.protocolViolation, text: "\(error)"))
            return
        }
        guard start.fromLSN == peer.lastLSN.advanced(by: 1) else {
            sender.fail(Message.Failure(.protocolViolation, text: "StartStream.fromLSN \(start.fromLSN) is not Hello.lastLSN + 1 (\(peer.lastLSN.advanced(by: 1)))"))
            return
        }
        let streamStart: StreamStart
        do throws(ReplicationError) {
            switch try checkPosition(of: peer, log: host.log) {
            case .start(let begin): streamStart = begin
            case .refuse(let failure):
                sender.fail(failure, refuse: true)
                return
            }
        } catch {
            sender.fail(Message.Failure(.internalError, text: "\(error)"), refuse: true)
            return
        }
        let stream = FollowerStream(nodeID: peer.nodeID, address: peer.address, sender: sender, options: options)
        let replaced: FollowerStream? = lock.withLock {
            let old = streams[peer.nodeID]
            streams[peer.nodeID] = stream
            return old
        }
        // A node id streams once: a reconnecting follower replaces its stale connection.
        replaced?.close()
        // The Hello names the follower's written end, not what it has made durable: nothing is
        // confirmed from it (positions only move forward from what statuses report). A new
        // slot starts there, holding back what the follower will ask for next.
        tracker.followerConnected(peer.nodeID, positions: FollowerPositions())
        slots.create(peer.nodeID, at: min(peer.lastLSN, host.log.writtenLSN))
        let fileSystem = fileSystem
        let shipper = OwnedThread.start(name: "shiplog-ship") {
            stream.ship(start: streamStart, log: host.log, fileSystem: fileSystem)
        }
        receiveStatuses(stream, receiver: &receiver)
        stream.close()
        shipper.join()
        // Only the follower's current stream may mark it disconnected: a reconnection may
        // already have replaced this one.
        let current = lock.withLock { () -> Bool in
            guard streams[peer.nodeID] === stream else { return false }
            streams[peer.nodeID] = nil
            return true
        }
        if current { tracker.followerDisconnected(peer.nodeID) }
        slots.persist()
    }

    /// Reads FollowerStatus and SnapshotAck until the connection ends.
    private func receiveStatuses(_ stream: FollowerStream, receiver: inout MessageReceiver) {
        var lastHoldRefresh: UInt64 = 0
        while !stream.isClosed {
            let message: Message?
            do { message = try receiver.receive() } catch {
                if !stream.isClosed { stream.sender.fail(Message.Failure(.protocolViolation, text: "\(error)")) }
                return
            }
            switch message {
            case .followerStatus(let status):
                stream.acknowledge(written: status.writtenLSN, flushed: status.flushedLSN)
                tracker.followerReported(stream.nodeID, written: status.writtenLSN, flushed: status.flushedLSN, applied: status.appliedLSN)
                slots.record(stream.nodeID, durableThrough: status.flushedLSN)
                let now = monotonicNanoseconds()
                if now &- lastHoldRefresh > 1_000_000_000 {
                    lastHoldRefresh = now
                    slots.persist()
                    refreshRetentionHold()
                }
            case .snapshotAck(let ack):
                stream.acknowledgeSnapshot(bytesStored: ack.bytesStored)
            case .error(let failure), .refuse(let failure):
                _ = failure
                return
            case let other?:
                stream.sender.fail(Message.Failure(.protocolViolation, text: "a follower may not send \(other.type.name) now"))
                return
            case nil:
                return
            }
        }
    }

    /// Where to start shipping to a follower whose log ends at `peer.lastLSN` with
    /// `peer.lastBatchCRC`, or the refusal (docs/PROTOCOL.md 7.1).
    func checkPosition(of peer: PeerInfo, log: Log) throws(ReplicationError) -> PositionCheck {
        do throws(LogError) {
            let written = log.writtenLSN
            let first = log.firstLSN
            if peer.lastLSN <= written, peer.lastLSN.rawValue + 1 < first.rawValue {
                return try reseedStart(log: log, reason: "LSN \(peer.lastLSN.advanced(by: 1)) is before the first retained LSN \(first)")
            }
            if peer.lastLSN <= written, let crc = try log.batchCRC(endingAt: peer.lastLSN), crc == peer.lastBatchCRC {
                return .start(.log(from: peer.lastLSN.advanced(by: 1)))
            }
            // KIP-279: the histories can agree at most through the end, in this log, of the
            // newest epoch the follower has; name the last batch boundary there. The follower
            // truncates to it when its batch ending there has the same batchCRC, else walks back.
            let epochEnd = log.epochEnd(atOrBefore: peer.epoch) ?? .zero
            let boundary = try log.lastBatchBoundary(atOrBefore: min(peer.lastLSN, epochEnd, written))
            let why: String
            if peer.lastLSN > written {
                why = "the follower's log ends at LSN \(peer.lastLSN), after this primary's end \(written)"
            } else if let crc = try log.batchCRC(endingAt: peer.lastLSN) {
                why = "the batch ending at LSN \(peer.lastLSN) has batchCRC \(hex(crc)) here, \(hex(peer.lastBatchCRC)) on the follower"
            } else {
                why = "LSN \(peer.lastLSN) is not a batch boundary of this primary's log"
            }
            return .refuse(diverged(boundary, "\(why); epoch \(peer.epoch) ends at LSN \(epochEnd) here"))
        } catch {
            throw .log(error)
        }
    }

    private func reseedStart(log: Log, reason: String) throws(LogError) -> PositionCheck {
        guard let host, let newest = try host.newestCheckpoint(), newest.lsn.advanced(by: 1) >= log.firstLSN else {
            return .refuse(
                Message.Failure(
                    .lsnOutOfRange(first: log.firstLSN, last: log.writtenLSN),
                    text: "\(reason), and there is no checkpoint to re-seed from"))
        }
        return .start(.snapshot(lsn: newest.lsn, path: newest.path))
    }

    private func diverged(_ boundary: (lsn: LSN, batchCRC: UInt32)?, _ reason: String) -> Message.Failure {
        Message.Failure(
            .diverged(lsn: boundary?.lsn ?? .zero, batchCRC: boundary?.batchCRC ?? 0),
            text: "\(reason); truncate to the last common batch boundary and reconnect")
    }

    /// The primary's address for `notPrimary` answers: known on a follower.
    var primaryAddressHint: String {
        if case .follower(let primary) = role { return primary.description }
        return ""
    }
}

func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }
