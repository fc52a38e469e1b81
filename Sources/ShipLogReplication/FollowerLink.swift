import ShipLogFormat
import ShipLogProtocol
import ShipLogRecovery
import ShipLogStateMachine
import ShipLogStorage

/// A follower's link to its primary: connects (with backoff), hands its log position over in
/// the handshake, and stores and applies the batches it receives, verifying each before it is
/// written; a ``StatusReporter`` acknowledges them (docs/PROTOCOL.md 7).
final class FollowerLink<Machine: QueryableStateMachine>: @unchecked Sendable {
    // @unchecked: every var is guarded by `lock`.
    private let node: ReplicaNode<Machine>
    /// The primary followed now (guarded by `lock`): it changes when a node answers
    /// `notPrimary` with the new primary's address, or when the peers name another one.
    private var target: Endpoint
    var primary: Endpoint { lock.withLock { target } }
    private let lock = ConditionLock()
    private var stopping = false
    private var connection: (any Connection)?
    private var thread: OwnedThread?
    private var connected = false
    private var primaryWritten = LSN.zero
    private var error: String?
    private var reseeds: UInt64 = 0
    private var rejoins: UInt64 = 0

    init(node: ReplicaNode<Machine>, primary: Endpoint) {
        self.node = node
        self.target = primary
    }

    var isConnected: Bool { lock.withLock { connected } }
    var primaryWrittenLSN: LSN { lock.withLock { primaryWritten } }
    var lastError: String? { lock.withLock { error } }
    var reseedCount: UInt64 { lock.withLock { reseeds } }
    /// Times this follower truncated a divergent suffix to rejoin its primary.
    var rejoinCount: UInt64 { lock.withLock { rejoins } }

    func start() {
        let thread = OwnedThread.start(name: "shiplog-follow") { [self] in run() }
        lock.withLock { self.thread = thread }
    }

    /// Closes the connection and waits for the link's thread.
    func stop() {
        let (connection, thread) = lock.withLock { () -> ((any Connection)?, OwnedThread?) in
            stopping = true
            return (self.connection, self.thread)
        }
        lock.broadcast()
        connection?.close()
        thread?.join()
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    /// Connects again and again until stopped, backing off exponentially (with jitter) after
    /// failures; a session that got as far as streaming resets the backoff.
    private func run() {
        var backoff = node.options.reconnectBackoffMin
        var failures = 0
        while !isStopping {
            var streamed = false
            var retryNow = false
            do throws(ReplicationError) {
                try session(streamed: &streamed)
            } catch {
                lock.withLock { self.error = "\(error)" }
                if case .refused(_, let failure) = error, case .notPrimary(let address) = failure.reason, let hint = Endpoint(address) {
                    retarget(hint)
                    retryNow = true
                }
                if case .refused(_, let failure) = error, case .diverged(let lsn, let crc) = failure.reason {
                    // Rejoin: cut this log back to where the primary's history agrees, then
                    // reconnect at once.
                    do throws(ReplicationError) {
                        try rejoin(divergedAt: lsn, batchCRC: crc)
                        backoff = node.options.reconnectBackoffMin
                        retryNow = true
                    } catch {
                        lock.withLock { self.error = "rejoin failed: \(error)" }
                    }
                }
            }
            lock.withLock {
                connected = false
                connection = nil
            }
            if node.host?.log.failure != nil {
                lock.withLock { self.error = "the follower's log stopped: \(node.host?.log.failure.map { "\($0)" } ?? "")" }
                return
            }
            if let failure = node.lock.withLock({ node.hostFailure }) {
                // Nothing to follow into until the node is restarted: say why, once.
                lock.withLock { self.error = "the follower has no log: \(failure)" }
                return
            }
            if retryNow { continue }
            failures = streamed ? 0 : failures + 1
            if streamed { backoff = node.options.reconnectBackoffMin }
            if failures >= 2, !node.options.peers.isEmpty, let found = findPrimary() {
                retarget(found)
                failures = 0
                continue
            }
            let jitter = Double.random(in: 0.5...1.0)
            let wait = backoff * jitter
            lock.withLock {
                let deadline = monotonicNanoseconds() &+ wait.nanoseconds
                while !stopping && monotonicNanoseconds() < deadline { lock.wait(untilMonotonicNanoseconds: deadline) }
            }
            backoff = min(backoff * 2, node.options.reconnectBackoffMax)
        }
    }

    /// One connection to the primary, from the handshake to its end.
    private func session(streamed: inout Bool) throws(ReplicationError) {
        let options = node.options
        let connection: any Connection
        do { connection = try node.network.connect(to: primary, timeout: options.handshakeTimeout) } catch {
            throw .transport(error)
        }
        let proceed = lock.withLock { () -> Bool in
            guard !stopping else { return false }
            self.connection = connection
            return true
        }
        defer { connection.close() }
        guard proceed else { return }
        connection.setTimeouts(receive: options.handshakeTimeout, send: options.handshakeTimeout)
        let sender = MessageSender(connection: connection)
        var receiver = MessageReceiver(connection: connection)
        let identity = node.identity()
        let peer = try Handshake.initiate(identity: identity, secret: options.secret, sender: sender, receiver: &receiver)
        guard peer.role == .primary else {
            sender.fail(Message.Failure(.protocolViolation, text: "this follower expected a primary, \(peer.nodeID) is a \(peer.role)"))
            throw .handshakeFailed(peer: peer.address, reason: "\(peer.nodeID) at \(primary) is a \(peer.role), not the primary")
        }
        guard peer.epoch >= identity.epoch || !options.fencesByEpoch else {
            sender.fail(Message.Failure(.staleEpoch(current: identity.epoch), text: "this follower has seen epoch \(identity.epoch)"), refuse: true)
            throw .handshakeFailed(peer: peer.address, reason: "primary \(peer.nodeID) is in epoch \(peer.epoch), older than this follower's \(identity.epoch)")
        }
        connection.setTimeouts(receive: options.replicationTimeout, send: options.replicationTimeout)
        try sender.send(.startStream(Message.StartStream(fromLSN: identity.lastLSN.advanced(by: 1))))
        lock.withLock { connected = true }
        let reporter = StatusReporter(node: node, sender: sender)
        defer { reporter.stop() }
        var stream = IncomingStream(next: identity.lastLSN.advanced(by: 1), previousBatchCRC: identity.lastBatchCRC, epoch: identity.epoch)
        while true {
            let received: Message?
            do { received = try receiver.receive() } catch {
                // An invalid frame from the primary: say why before closing (docs/PROTOCOL.md 2).
                if case .protocolViolation(_, let problem) = error {
                    sender.fail(Message.Failure(.protocolViolation, text: String(String(describing: problem).prefix(ProtocolLimits.reasonBytesMax))))
                }
                throw error
            }
            guard let message = received else { throw .connectionClosed(peer: peer.address) }
            streamed = true
            switch message {
            case .batches(let batches):
                lock.withLock { primaryWritten = max(primaryWritten, batches.writtenLSN) }
                try store(batches.batches, stream: &stream, sender: sender, reporter: reporter)
            case .keepalive(let keepalive):
                lock.withLock { primaryWritten = max(primaryWritten, keepalive.writtenLSN) }
                if keepalive.replyRequested { reporter.poke() }
            case .snapshotChunk(let chunk):
                try stream.receive(chunk, store: CheckpointStore(logDirectory: node.directory, fileSystem: node.fileSystem), fileSystem: node.fileSystem, kind: Machine.snapshotKind, peer: peer.address, sender: sender)
                reporter.pokeSnapshot(lsn: chunk.snapshotLSN, bytesStored: chunk.offset + UInt64(chunk.data.count))
            case .refuse(let failure), .error(let failure):
                throw .refused(peer: peer.address, failure)
            default:
                sender.fail(Message.Failure(.protocolViolation, text: "a primary may not send \(message.type.name) on a stream"))
                throw .unexpectedMessage(peer: peer.address, message.type, expected: "Batches, Keepalive or SnapshotChunk")
            }
        }
    }

    /// Verifies that `batches` continue the stream (dense LSNs, the CRC chain, epochs that never
    /// go back), then hands them to the state machine host, which writes them unchanged and
    /// applies them. A received checkpoint is installed before the first batch after it.
    private func store(
        _ batches: [Batch], stream: inout IncomingStream, sender: MessageSender, reporter: StatusReporter
    ) throws(ReplicationError) {
        for batch in batches {
            if let snapshot = stream.completedSnapshot {
                try reseed(from: snapshot, firstBatch: batch)
                stream = IncomingStream(next: batch.header.baseLSN, previousBatchCRC: batch.header.previousBatchCRC, epoch: batch.header.epoch)
            }
            if let problem = stream.problem(with: batch.header) {
                sender.fail(Message.Failure(.protocolViolation, text: problem))
                throw .handshakeFailed(peer: sender.peer, reason: "stream broken: \(problem)")
            }
            guard let host = node.host else { throw .shutDown }
            do {
                // The status reporter sees the write and the sync through the log's positions.
                try host.submitReplicated(batch, durability: node.options.followerDurability) { _ in }
            } catch {
                throw .log(error)
            }
            stream.advance(past: batch.header)
        }
    }

    /// Follows `endpoint` from now on (the node's role names it too).
    private func retarget(_ endpoint: Endpoint) {
        lock.withLock { target = endpoint }
        node.lock.withLock {
            if case .follower = node.currentRole { node.currentRole = .follower(primary: endpoint) }
        }
    }

    /// Asks the configured peers (and the current target) which one is the primary of the
    /// highest epoch; nil when none answers as primary.
    private func findPrimary() -> Endpoint? {
        var options = ClientOptions(nodeID: node.options.nodeID, secret: node.options.secret)
        options.clusterID = node.options.clusterID
        options.connectTimeout = node.options.handshakeTimeout
        options.knownEpoch = node.host?.log.epoch ?? Epoch(0)
        var candidates = node.options.peers
        let current = primary
        if !candidates.contains(current) { candidates.append(current) }
        guard let client = ReplicationClient.connectToPrimary(among: candidates, options: options, network: node.network) else { return nil }
        defer { client.close() }
        return client.endpoint == current ? nil : client.endpoint
    }

    /// Truncates this follower's log after the last batch boundary it shares with the primary
    /// (moving the rest to `quarantine/rejoin-...`, never deleting it): `lsn` when this log's
    /// batch ending there has `batchCRC` (KIP-279's divergence point), else one batch further
    /// back (the next handshake narrows it down again). With nothing left in common the log
    /// starts over empty and the primary streams it from LSN 1 or re-seeds it.
    private func rejoin(divergedAt lsn: LSN, batchCRC crc: UInt32) throws(ReplicationError) {
        guard let log = node.host?.log else { throw .shutDown }
        let keep: LSN
        do {
            if lsn > .zero, let mine = try log.batchCRC(endingAt: lsn), mine == crc {
                keep = lsn
            } else if lsn > .zero, let earlier = try log.lastBatchBoundary(atOrBefore: min(lsn, log.writtenLSN).predecessor) {
                keep = earlier.lsn
            } else {
                keep = .zero
            }
        } catch {
            throw .log(error)
        }
        let firstKept = log.firstLSN.predecessor
        let label = "rejoin-\(keep)-\(wallClockNanoseconds())"
        let directory = node.directory
        let fileSystem = node.fileSystem
        let options = node.stateMachineOptions.log
        // The state after truncation is the newest checkpoint at or before `keep` plus the log
        // after it. When retention already dropped the log such a checkpoint would need (the
        // checkpoints that allowed it are past `keep`), nothing can rebuild the state: start
        // over empty instead, and the primary re-seeds this node from its own checkpoint.
        let checkpoints: [(lsn: LSN, path: FilePath)]
        do { checkpoints = try CheckpointStore(logDirectory: directory, fileSystem: fileSystem).newestFirst() } catch {
            throw .log(error)
        }
        let restorable = firstKept == .zero || checkpoints.contains { $0.lsn <= keep && $0.lsn >= firstKept }
        let keepAnything = keep >= firstKept && restorable
        try node.replaceHost { () throws(LogError) in
            if keepAnything {
                // Checkpoints first: a checkpoint must never cover records the log no longer has.
                try CheckpointStore(logDirectory: directory, fileSystem: fileSystem).removeCheckpoints(after: keep)
                _ = try LogRecovery.truncate(directory: directory, fileSystem: fileSystem, after: keep, quarantineLabel: label, options: options)
            } else {
                // Start over with no segment at all (the first batch received creates segment 1,
                // byte for byte as the primary's), then keep the old checkpoints with the old log
                // in quarantine: they may be the only copy of state whose log retention dropped.
                _ = try LogRecovery.truncate(directory: directory, fileSystem: fileSystem, after: .zero, quarantineLabel: label, options: options)
                let store = CheckpointStore(logDirectory: directory, fileSystem: fileSystem)
                let target = directory.appending("quarantine").appending(label)
                do {
                    let top = directory.appending("quarantine")
                    if !fileSystem.fileExists(at: top) { try fileSystem.createDirectory(at: top) }
                    if !fileSystem.fileExists(at: target) { try fileSystem.createDirectory(at: target) }
                    for checkpoint in try store.newestFirst() {
                        try fileSystem.rename(from: checkpoint.path, to: target.appending("checkpoint-" + checkpoint.path.lastComponent))
                    }
                    try fileSystem.syncDirectory(at: target)
                    try fileSystem.syncDirectory(at: store.directory)
                } catch let error as LogError {
                    throw error
                } catch let error as FileSystemError {
                    throw .io(error)
                } catch {
                    throw .failed(underlying: "quarantining checkpoints: \(error)")
                }
            }
        }
        lock.withLock { rejoins += 1 }
    }

    /// Replaces this follower's log and state with the checkpoint received, keeping the old
    /// log in quarantine (docs/PROTOCOL.md 7.6, docs/RECOVERY.md "Re-seeding").
    private func reseed(from snapshot: ReceivedSnapshot, firstBatch batch: Batch) throws(ReplicationError) {
        guard batch.header.baseLSN <= snapshot.lsn.advanced(by: 1), batch.lsnRange.last >= snapshot.lsn else {
            throw .handshakeFailed(
                peer: primary.description,
                reason: "the first batch after checkpoint \(snapshot.lsn) holds LSNs \(batch.lsnRange): it neither holds the checkpoint's LSN nor the one after it")
        }
        try node.replaceHost { () throws(LogError) in
            // Crash-safe order (docs/RECOVERY.md, "Re-seeding a follower"): the checkpoint is
            // installed while the old log is still in place (a checkpoint past a log's end is
            // ignored while that log holds records), newer checkpoints of the abandoned history
            // go, and only then is the old log moved to quarantine and the new one started.
            let store = CheckpointStore(logDirectory: node.directory, fileSystem: node.fileSystem)
            try store.install(temporaryFile: snapshot.path, lsn: snapshot.lsn)
            try store.removeCheckpoints(after: snapshot.lsn)
            try LogRecovery.resetForReseed(
                directory: node.directory, fileSystem: node.fileSystem, startingAt: batch.header.baseLSN,
                previousBatchCRC: batch.header.previousBatchCRC, epoch: batch.header.epoch, createdAt: batch.header.timestamp,
                quarantineLabel: "reseed-\(snapshot.lsn)", options: node.stateMachineOptions.log)
        }
        lock.withLock { reseeds += 1 }
    }
}

/// A checkpoint received in full and checked, waiting for the first batch after it.
struct ReceivedSnapshot: Sendable {
    var lsn: LSN
    var path: FilePath
}

/// What the next batch of the stream must look like, and a checkpoint transfer in progress.
struct IncomingStream {
    var next: LSN
    var previousBatchCRC: UInt32
    var epoch: Epoch
    private var transfer: (lsn: LSN, total: UInt64, offset: UInt64, crc: UInt32, path: FilePath, handle: any FileHandle)?
    private(set) var completedSnapshot: ReceivedSnapshot?

    init(next: LSN, previousBatchCRC: UInt32, epoch: Epoch) {
        self.next = next
        self.previousBatchCRC = previousBatchCRC
        self.epoch = epoch
    }

    /// Why `header` cannot be the next batch, or nil.
    func problem(with header: BatchHeader) -> String? {
        if completedSnapshot != nil || transfer != nil { return "a batch arrived in the middle of a checkpoint transfer" }
        if header.baseLSN != next { return "batch LSNs \(header.lsnRange) do not start at the next LSN \(next)" }
        if header.previousBatchCRC != previousBatchCRC {
            return "batch \(header.lsnRange) has previousBatchCRC \(hex(header.previousBatchCRC)), the chain needs \(hex(previousBatchCRC))"
        }
        if header.epoch < epoch { return "batch \(header.lsnRange) is of epoch \(header.epoch), older than \(epoch)" }
        return nil
    }

    mutating func advance(past header: BatchHeader) {
        next = header.lsnRange.next
        previousBatchCRC = header.batchCRC
        epoch = header.epoch
    }

    /// Stores one chunk of a checkpoint after checking it continues the transfer; on the last
    /// chunk syncs and verifies the whole file.
    mutating func receive(
        _ chunk: Message.SnapshotChunk, store: CheckpointStore, fileSystem: any FileSystem, kind: String, peer: String,
        sender: MessageSender
    ) throws(ReplicationError) {
        func broken(_ problem: String) -> ReplicationError {
            sender.fail(Message.Failure(.protocolViolation, text: problem))
            return .handshakeFailed(peer: peer, reason: "checkpoint transfer broken: \(problem)")
        }
        if chunk.offset == 0 {
            guard transfer == nil, completedSnapshot == nil else { throw broken("a second checkpoint transfer began before the first ended") }
            do {
                try store.removeIncomingFiles()
                let path = try store.incomingFile(lsn: chunk.snapshotLSN)
                let handle = try Self.create(path, fileSystem: fileSystem)
                transfer = (chunk.snapshotLSN, chunk.totalBytes, 0, 0, path, handle)
            } catch {
                throw .log(error)
            }
        }
        guard var current = transfer else { throw broken("SnapshotChunk at offset \(chunk.offset) without a transfer starting at 0") }
        guard chunk.snapshotLSN == current.lsn, chunk.totalBytes == current.total, chunk.offset == current.offset else {
            throw broken("SnapshotChunk (LSN \(chunk.snapshotLSN), offset \(chunk.offset)) does not continue the transfer of checkpoint \(current.lsn) at offset \(current.offset)")
        }
        guard chunk.continues(crcBefore: current.crc) else {
            throw broken("SnapshotChunk at offset \(chunk.offset): running CRC \(hex(chunk.runningCRC)) does not match the data")
        }
        do {
            try current.handle.write(chunk.data, toAbsoluteOffset: Int64(chunk.offset))
        } catch {
            throw .log(.io(error))
        }
        current.offset += UInt64(chunk.data.count)
        current.crc = chunk.runningCRC
        transfer = current
        guard chunk.isLast else { return }
        transfer = nil
        defer { current.handle.close() }
        do {
            try current.handle.synchronizeData()
        } catch {
            throw .log(.syncFailed(error))
        }
        do {
            let header = try store.verify(file: current.path, kind: kind)
            guard header.lsn == current.lsn else { throw StateMachineError("its header says LSN \(header.lsn)") }
        } catch {
            throw broken("checkpoint \(current.lsn) received intact but invalid: \(error)")
        }
        completedSnapshot = ReceivedSnapshot(lsn: current.lsn, path: current.path)
    }

    private static func create(_ path: FilePath, fileSystem: any FileSystem) throws(LogError) -> any FileHandle {
        do {
            if fileSystem.fileExists(at: path) { try fileSystem.removeFile(at: path) }
            return try fileSystem.openFile(at: path, options: [.read, .write, .createNew])
        } catch {
            throw .io(error)
        }
    }
}

extension ReplicaNode {
    /// Closes the host, runs `change` on the directory, and opens the host again. Requests
    /// arriving meanwhile are answered `shuttingDown`.
    func replaceHost(_ change: () throws(LogError) -> Void) throws(ReplicationError) {
        let old = lock.withLock { () -> StateMachineHost<Machine>? in
            let old = currentHost
            currentHost = nil
            return old
        }
        var changeFailure: LogError?
        do {
            try old?.close()
            try change()
        } catch {
            changeFailure = error  // every change is crash-safe: reopening recovers a valid state
        }
        do {
            let host = try StateMachineHost(directory: directory, machine: makeMachine(), options: stateMachineOptions, fileSystem: fileSystem)
            lock.withLock { currentHost = host }
        } catch {
            let reason = changeFailure.map { " (after the change itself failed: \($0))" } ?? ""
            lock.withLock { hostFailure = .failed(underlying: "reopening the log at \(directory) failed: \(error)\(reason)") }
            throw .log(error)
        }
        if let changeFailure { throw .log(changeFailure) }
    }
}
