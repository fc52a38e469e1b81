import ShipLogFormat
import ShipLogProtocol
import ShipLogStorage

/// The primary's side of one follower's stream: ships batches (or a checkpoint, then batches)
/// within the follower's window of unacknowledged bytes (docs/PROTOCOL.md 7.5), and keeps
/// what the status page shows about the follower.
final class FollowerStream: @unchecked Sendable {
    // @unchecked: every var is guarded by `lock`; `sender` is thread-safe.
    let nodeID: String
    let address: String
    let sender: MessageSender
    private let options: ReplicationOptions
    private let lock = ConditionLock()
    /// Counted frames sent and not yet acknowledged: (last LSN or snapshot end, bytes).
    private var inFlight: [(end: UInt64, bytes: Int)] = []
    private var inFlightBytes = 0
    /// Frames sent whose batches the follower has not yet flushed: (last LSN, send time).
    private var unflushed: [(lsn: LSN, sentAt: UInt64)] = []
    private var lastHeardAt: UInt64
    private var closed = false
    private(set) var sentLSN = LSN.zero
    private(set) var writtenLSN = LSN.zero
    private(set) var flushedLSN = LSN.zero
    /// Entries in `unflushed` at most; beyond it the newest entry absorbs later frames, which
    /// only overstates the lag.
    static let lagSamplesMax = 4096
    /// Longest single wait of an idle stream for new log data before it checks whether it
    /// was closed.
    static let idleSlice: Duration = .milliseconds(50)

    init(nodeID: String, address: String, sender: MessageSender, options: ReplicationOptions) {
        self.nodeID = nodeID
        self.address = address
        self.sender = sender
        self.options = options
        self.lastHeardAt = monotonicNanoseconds()
    }

    var isClosed: Bool { lock.withLock { closed } }

    /// Ends the stream: the connection closes, the shipping thread returns.
    func close() {
        lock.withLock { closed = true }
        lock.broadcast()
        sender.connection.close()
    }

    /// How long the oldest batch sent and not yet flushed by the follower has been waiting,
    /// in nanoseconds (0 when the follower has flushed everything sent).
    var lagNanoseconds: UInt64 {
        lock.withLock { unflushed.first.map { monotonicNanoseconds() &- $0.sentAt } ?? 0 }
    }

    var lastContactNanosecondsAgo: UInt64 { lock.withLock { monotonicNanoseconds() &- lastHeardAt } }

    // MARK: Acknowledgements (the connection's reading thread)

    func acknowledge(written: LSN, flushed: LSN) {
        lock.withLock {
            lastHeardAt = monotonicNanoseconds()
            writtenLSN = max(writtenLSN, written)
            flushedLSN = max(flushedLSN, flushed)
            release(through: written.rawValue)
            let keep = unflushed.firstIndex { $0.lsn > flushed } ?? unflushed.count
            if keep > 0 { unflushed.removeFirst(keep) }
        }
        lock.broadcast()
    }

    func acknowledgeSnapshot(bytesStored: UInt64) {
        lock.withLock {
            lastHeardAt = monotonicNanoseconds()
            release(through: bytesStored)
        }
        lock.broadcast()
    }

    /// Frees the window of frames ending at or before `end` (lock held).
    private func release(through end: UInt64) {
        var count = 0
        while count < inFlight.count, inFlight[count].end <= end {
            inFlightBytes -= inFlight[count].bytes
            count += 1
        }
        if count > 0 { inFlight.removeFirst(count) }
    }

    // MARK: Shipping (the stream's own thread)

    /// Ships until the stream closes or fails.
    func ship(start: StreamStart, log: Log, fileSystem: any FileSystem) {
        defer { close() }
        var from: LSN
        switch start {
        case .log(let lsn):
            from = lsn
        case .snapshot(let lsn, let path):
            guard sendSnapshot(lsn: lsn, path: path, fileSystem: fileSystem, log: log) else { return }
            // The batch holding the checkpoint's own LSN (when still held) comes first: the
            // follower can then start its log at once, even if nothing is appended after the
            // checkpoint. Its records up to the checkpoint's LSN are skipped by the apply.
            from = lsn >= log.firstLSN ? lsn : lsn.advanced(by: 1)
            resetWindow()
        }
        var cursor = log.batches(from: from)
        var carried: Batch?
        let frameBudget = ProtocolLimits.framePayloadBytesMax - Message.Batches.fixedByteCount
        let target = min(ReplicationLimits.batchesFrameBytesTarget, options.followerWindowBytes)
        while !isClosed {
            guard waitForWindow(frameBytes: target, log: log) else { return }
            var batches: [Batch] = []
            var bytes = 0
            if let batch = carried {
                batches.append(batch)
                bytes = batch.bytes.count
                carried = nil
            }
            do throws(LogError) {
                while bytes < target, batches.count < ProtocolLimits.batchesPerFrameMax, let batch = try cursor.next() {
                    if !batches.isEmpty && bytes + batch.bytes.count > min(frameBudget, target) {
                        carried = batch
                        break
                    }
                    batches.append(batch)
                    bytes += batch.bytes.count
                }
            } catch {
                sender.fail(Message.Failure(error.isBeforeStart ? .lsnOutOfRange(first: log.firstLSN, last: log.writtenLSN) : .logFailed, text: "reading the log at LSN \(cursor.nextLSN): \(error)"))
                return
            }
            if batches.isEmpty {
                guard idle(after: cursor.nextLSN.predecessor, log: log) else { return }
                continue
            }
            let last = batches[batches.count - 1].lsnRange.last
            let written = max(log.writtenLSN, last)
            let message = Message.batches(
                Message.Batches(writtenLSN: written, flushedLSN: min(log.durableLSN, written), timestamp: wallClockNanoseconds(), batches: batches))
            guard send(message, countedEnd: last.rawValue, lsn: last) else { return }
        }
    }

    /// Nothing to ship: waits for the log to grow for up to a keepalive interval, then sends a
    /// Keepalive. False when the stream must end.
    private func idle(after lsn: LSN, log: Log) -> Bool {
        // Wait in short slices so a closed stream ends promptly.
        let deadline = monotonicNanoseconds() &+ options.keepaliveInterval.nanoseconds
        while monotonicNanoseconds() < deadline {
            if isClosed { return false }
            if log.waitForWrite(after: lsn, timeout: min(options.keepaliveInterval, Self.idleSlice)) { return true }
            if log.failure != nil { break }
        }
        if let failure = log.failure {
            sender.fail(Message.Failure(.logFailed, text: "the primary's log stopped: \(failure)"))
            return false
        }
        return keepalive(log: log, replyRequested: false) && !silentTooLong()
    }

    /// Waits while the window has no room for a frame of `frameBytes` (unless nothing is in
    /// flight). Asks for a status after each quiet keepalive interval; ends a follower silent
    /// for the replication timeout.
    private func waitForWindow(frameBytes: Int, log: Log) -> Bool {
        while true {
            let full = lock.withLock { () -> Bool? in
                if closed { return nil }
                guard inFlightBytes > 0 && inFlightBytes + frameBytes > options.followerWindowBytes else { return false }
                lock.wait(untilMonotonicNanoseconds: monotonicNanoseconds() &+ options.keepaliveInterval.nanoseconds)
                if closed { return nil }
                return inFlightBytes > 0 && inFlightBytes + frameBytes > options.followerWindowBytes
            }
            guard let full else { return false }
            if !full { return true }
            if silentTooLong() || !keepalive(log: log, replyRequested: true) { return false }
        }
    }

    private func silentTooLong() -> Bool {
        guard lastContactNanosecondsAgo > options.replicationTimeout.nanoseconds else { return false }
        sender.fail(Message.Failure(.protocolViolation, text: "no status from the follower for \(options.replicationTimeout)"))
        return true
    }

    private func keepalive(log: Log, replyRequested: Bool) -> Bool {
        let written = log.writtenLSN
        let message = Message.keepalive(
            Message.Keepalive(writtenLSN: written, flushedLSN: min(log.durableLSN, written), timestamp: wallClockNanoseconds(), replyRequested: replyRequested))
        do { try sender.send(message) } catch { return false }
        return true
    }

    /// Sends a counted frame and records it in the window (and, for batches, the lag samples).
    private func send(_ message: Message, countedEnd: UInt64, lsn: LSN?) -> Bool {
        let frame: [UInt8]
        do { frame = try message.encodedFrame() } catch {
            sender.fail(Message.Failure(.internalError, text: "encoding \(message.type.name): \(error)"))
            return false
        }
        let now = monotonicNanoseconds()
        lock.withLock {
            inFlight.append((countedEnd, frame.count))
            inFlightBytes += frame.count
            if let lsn {
                sentLSN = lsn
                if unflushed.count < Self.lagSamplesMax { unflushed.append((lsn, now)) } else { unflushed[unflushed.count - 1].lsn = lsn }
            }
        }
        do { try sender.send(frame: frame) } catch { return false }
        return true
    }

    /// Between a snapshot and the log, the window counts LSNs again instead of file bytes.
    private func resetWindow() {
        lock.withLock {
            inFlight.removeAll()
            inFlightBytes = 0
        }
    }

    /// Sends the checkpoint at `path` in chunks within the window. False when the stream must end.
    private func sendSnapshot(lsn: LSN, path: FilePath, fileSystem: any FileSystem, log: Log) -> Bool {
        let handle: any FileHandle
        let total: Int64
        do {
            handle = try fileSystem.openFile(at: path, options: [.read])
            total = try handle.size()
        } catch {
            sender.fail(Message.Failure(.internalError, text: "opening checkpoint \(path): \(error)"))
            return false
        }
        defer { handle.close() }
        guard total > 0, UInt64(total) <= ProtocolLimits.snapshotBytesMax else {
            sender.fail(Message.Failure(.internalError, text: "checkpoint \(path) has \(total) bytes"))
            return false
        }
        var offset: Int64 = 0
        var crc: UInt32 = 0
        while offset < total {
            let count = Int(min(Int64(ReplicationLimits.snapshotChunkBytes), total - offset))
            guard waitForWindow(frameBytes: count, log: log) else { return false }
            let data: [UInt8]
            do { data = try handle.read(count: count, fromAbsoluteOffset: offset) } catch {
                sender.fail(Message.Failure(.internalError, text: "reading checkpoint \(path) at offset \(offset): \(error)"))
                return false
            }
            guard data.count == count else {
                sender.fail(Message.Failure(.internalError, text: "checkpoint \(path) shrank while being sent"))
                return false
            }
            let chunk = Message.SnapshotChunk(snapshotLSN: lsn, totalBytes: UInt64(total), offset: UInt64(offset), crcBefore: crc, data: data)
            crc = chunk.runningCRC
            offset += Int64(count)
            guard send(.snapshotChunk(chunk), countedEnd: UInt64(offset), lsn: nil) else { return false }
        }
        // Let the follower store the whole checkpoint before batches follow.
        return waitForWindowEmpty(log: log)
    }

    private func waitForWindowEmpty(log: Log) -> Bool {
        while true {
            let empty = lock.withLock { () -> Bool? in
                if closed { return nil }
                if inFlightBytes == 0 { return true }
                lock.wait(untilMonotonicNanoseconds: monotonicNanoseconds() &+ options.keepaliveInterval.nanoseconds)
                return closed ? nil : inFlightBytes == 0
            }
            guard let empty else { return false }
            if empty { return true }
            if silentTooLong() { return false }
        }
    }
}

extension LogError {
    /// Whether the error says an LSN is older than what the log still holds.
    var isBeforeStart: Bool {
        if case .lsnBeforeStart = self { return true }
        return false
    }
}
