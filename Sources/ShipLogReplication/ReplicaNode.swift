public import ShipLogFormat
public import ShipLogProtocol
public import ShipLogRecovery
public import ShipLogStateMachine
public import ShipLogStorage

/// What a node is in its cluster.
public enum ReplicaRole: Sendable, Hashable, CustomStringConvertible {
    /// Accepts appends and ships its log to followers.
    case primary
    /// Receives the log of the primary at this address, and serves reads of what it applied.
    case follower(primary: Endpoint)

    public var description: String {
        switch self {
        case .primary: "primary"
        case .follower(let primary): "follower of \(primary)"
        }
    }
}

/// One node of a ShipLog cluster: a state machine on a log (``StateMachineHost``), shipped
/// to followers when primary, received from the primary when follower, with a listener that
/// serves followers and clients (docs/PROTOCOL.md, docs/ARCHITECTURE.md "Replication").
///
/// Threads (all owned, none from Swift's cooperative pool): one accepting connections; per
/// connection one reading it (and, for clients, one writing responses); per follower stream
/// one shipping batches; on a follower, one for the link to the primary and one sending its
/// statuses; one commit-timeout timer.
public final class ReplicaNode<Machine: QueryableStateMachine>: @unchecked Sendable {
    // @unchecked: mutable state is guarded by `lock`; the rest is immutable or thread-safe.
    public let directory: FilePath
    public let options: ReplicationOptions
    /// The role the node was opened with; ``role`` is the current one.
    public let initialRole: ReplicaRole
    let network: any Network
    let stateMachineOptions: StateMachineOptions
    let fileSystem: any FileSystem
    let makeMachine: @Sendable () -> Machine
    let tracker: CommitTracker
    /// Client appends arriving together, submitted as one batch.
    let appendCombiner = AppendCombiner()
    /// The replication slots of this node's time as primary (kept while it follows).
    let slots: ReplicationSlots
    /// Waiting reads, all on one thread.
    private(set) var readWaiters: ReadWaiters!
    let lock = ConditionLock()
    private var listener: (any Listener)?
    private var acceptThread: OwnedThread?
    // Guarded by `lock`:
    var currentHost: StateMachineHost<Machine>?
    /// Why the host is gone for good: it could not be opened again after a rejoin or a
    /// re-seed changed the directory (the node then serves nothing until restarted).
    var hostFailure: LogError?
    var connections: [ObjectIdentifier: any Connection] = [:]
    var threads: [OwnedThread] = []
    var streams: [String: FollowerStream] = [:]
    var stopping = false
    /// A primary that learned of a newer epoch stops accepting appends (fencing).
    var fencedBy: Epoch?
    /// Set when the node fenced itself (it lost or could not renew its leader lease).
    var fencedReason: String?
    var link: FollowerLink<Machine>?
    var currentRole: ReplicaRole

    /// Opens (recovering) the state machine in `directory` and starts the node: the listener
    /// on `listen` (if any) and, for a follower, the link to its primary.
    public init(
        directory: FilePath, role: ReplicaRole, listen: Endpoint?, options: ReplicationOptions,
        stateMachineOptions: StateMachineOptions = StateMachineOptions(), network: any Network = TCPNetwork(),
        fileSystem: any FileSystem = PosixFileSystem(), machine makeMachine: @escaping @Sendable () -> Machine
    ) throws(ReplicationError) {
        try options.validate()
        self.directory = directory
        self.options = options
        self.initialRole = role
        self.currentRole = role
        self.fencedReason = options.fencedAtStart ? "waiting for the leader election" : nil
        self.network = network
        var machineOptions = stateMachineOptions
        machineOptions.log.auxiliaryNames.insert(ReplicationSlots.fileName)
        machineOptions.log.auxiliaryNames.insert(ReplicationSlots.fileName + ".tmp")
        self.stateMachineOptions = machineOptions
        self.fileSystem = fileSystem
        self.makeMachine = makeMachine
        self.tracker = CommitTracker(policy: options.commitTimeoutPolicy)
        self.readWaiters = nil
        let host: StateMachineHost<Machine>
        do {
            host = try StateMachineHost(directory: directory, machine: makeMachine(), options: machineOptions, fileSystem: fileSystem)
        } catch {
            tracker.stop()
            throw .log(error)
        }
        currentHost = host
        do {
            slots = try ReplicationSlots(directory: directory, fileSystem: fileSystem)
        } catch {
            tracker.stop()
            try? host.close()
            throw error
        }
        if case .primary = role { loadSlotsIntoTracker() }
        readWaiters = ReadWaiters { [weak self] in self?.host?.log }
        do throws(ReplicationError) {
            if let listen { try startListening(on: listen) }
        } catch {
            tracker.stop()
            try? host.close()
            throw error
        }
        if case .follower(let primary) = role { startLink(to: primary) }
        refreshRetentionHold()
    }

    /// The address the node listens on (with the port chosen when 0 was asked for).
    public var listenEndpoint: Endpoint? { lock.withLock { listener?.endpoint } }

    /// The state machine host, `nil` while a follower re-seeds or after shutdown.
    public var host: StateMachineHost<Machine>? { lock.withLock { currentHost } }

    /// Whether the primary is answering follower commit levels asynchronously after timeouts
    /// (policy ``CommitTimeoutPolicy/degrade``).
    public var isDegraded: Bool { tracker.isDegraded }

    /// Followers streaming from this primary now.
    public var connectedFollowerCount: Int { tracker.connectedFollowerCount }

    // MARK: - Accepting

    private func startListening(on endpoint: Endpoint) throws(ReplicationError) {
        let listener: any Listener
        do { listener = try network.listen(on: endpoint) } catch { throw .transport(error) }
        lock.withLock { self.listener = listener }
        let thread = OwnedThread.start(name: "shiplog-accept") { [self] in acceptLoop(listener) }
        lock.withLock { acceptThread = thread }
    }

    private func acceptLoop(_ listener: any Listener) {
        while true {
            let connection: any Connection
            do { connection = try listener.accept() } catch {
                if lock.withLock({ stopping }) { return }
                if case .closed = error { return }
                continue
            }
            let admitted = lock.withLock { () -> Bool in
                guard !stopping, connections.count < options.connectionsMax else { return false }
                connections[ObjectIdentifier(connection)] = connection
                return true
            }
            guard admitted else {
                let sender = MessageSender(connection: connection)
                let stoppingNow = lock.withLock { stopping }
                sender.fail(
                    Message.Failure(stoppingNow ? .shuttingDown : .overloaded, text: "\(options.connectionsMax) connections open"),
                    refuse: true)
                continue
            }
            spawn(name: "shiplog-conn") { [self] in serve(connection) }
        }
    }

    /// Starts an owned thread that the node joins at shutdown.
    func spawn(name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = OwnedThread.start(name: name, body)
        let finished = lock.withLock { () -> [OwnedThread] in
            var done: [OwnedThread] = []
            threads.removeAll { candidate in
                guard candidate.isFinished else { return false }
                done.append(candidate)
                return true
            }
            threads.append(thread)
            return done
        }
        for done in finished { done.join() }
    }

    /// Handshake, then the session the peer's role asks for. Runs on the connection's thread.
    private func serve(_ connection: any Connection) {
        defer {
            connection.close()
            _ = lock.withLock { connections.removeValue(forKey: ObjectIdentifier(connection)) }
        }
        connection.setTimeouts(receive: options.handshakeTimeout, send: options.handshakeTimeout)
        let sender = MessageSender(connection: connection)
        var receiver = MessageReceiver(connection: connection)
        // The whole handshake, not each receive, must fit the timeout: a peer trickling one
        // byte at a time cannot hold the connection.
        receiver.deadline = ConditionLock.deadline(after: options.handshakeTimeout)
        let peer: PeerInfo
        do {
            peer = try Handshake.respond(identity: identity(), secret: options.secret, sender: sender, receiver: &receiver)
        } catch {
            return
        }
        // Fencing is decided only on what an authenticated peer says (a stranger could
        // otherwise stop the primary with one Hello).
        if let failure = fence(by: peer) {
            sender.fail(failure, refuse: true)
            return
        }
        receiver.deadline = nil
        connection.setTimeouts(receive: nil, send: options.replicationTimeout)
        switch peer.role {
        case .follower:
            serveFollower(peer, sender: sender, receiver: &receiver)
        case .client:
            ClientSession(node: self, peer: peer, sender: sender).run(receiver: &receiver)
        case .primary:
            sender.fail(Message.Failure(.protocolViolation, text: "a primary does not initiate connections in protocol version 1"))
        }
    }

    /// This node's side of a handshake.
    func identity() -> HandshakeIdentity {
        let log = host?.log
        return HandshakeIdentity(
            // A fenced primary accepts no append: it does not call itself the primary (clients
            // and followers looking for the primary pass it by).
            clusterID: options.clusterID, nodeID: options.nodeID, role: isPrimary && fencing == nil ? .primary : .follower,
            epoch: log?.epoch ?? .initial, lastLSN: log?.writtenLSN ?? .zero, lastBatchCRC: log?.lastBatchCRC ?? 0)
    }

    /// The node's role now: promotion and demotion change it.
    public var role: ReplicaRole { lock.withLock { currentRole } }

    var isPrimary: Bool {
        if case .primary = role { return true }
        return false
    }

    /// The followers of the replica set are the slots: known to the tracker (disconnected)
    /// until they connect. Their positions start at zero: a slot's LSN holds back retention but
    /// confirms nothing, since it may name records of an earlier term's history that a rejoin
    /// has since truncated. Only statuses of this term move positions.
    func loadSlotsIntoTracker() {
        for nodeID in slots.positions.keys {
            tracker.followerConnected(nodeID, positions: FollowerPositions())
            tracker.followerDisconnected(nodeID)
        }
    }

    /// Epoch fencing (docs/PROTOCOL.md 6.1), after authentication: a primary that hears of a
    /// newer epoch has been replaced and stops accepting appends.
    private func fence(by peer: PeerInfo) -> Message.Failure? {
        guard options.fencesByEpoch, isPrimary, let ownEpoch = host?.log.epoch, peer.epoch > ownEpoch else { return nil }
        lock.withLock { fencedBy = max(fencedBy ?? peer.epoch, peer.epoch) }
        return Message.Failure(.staleEpoch(current: peer.epoch), text: "this primary's epoch \(ownEpoch) is older; it stops accepting writes")
    }

    // MARK: - Shutdown

    /// Stops accepting, lets appends in flight reach their commit level (each within its own
    /// timeout), closes every connection, and closes the log.
    public func shutdown() {
        let (listener, link) = lock.withLock { () -> ((any Listener)?, FollowerLink<Machine>?) in
            stopping = true
            return (self.listener, self.link)
        }
        listener?.close()
        acceptThread?.join()
        link?.stop()
        // Appends in flight get their answers (each within its own timeout) before the
        // connections close.
        tracker.waitUntilIdle()
        tracker.stop()
        readWaiters.stop()
        let (open, streams) = lock.withLock { (Array(connections.values), Array(self.streams.values)) }
        for stream in streams { stream.close() }
        for connection in open { connection.close() }
        while true {
            let pending = lock.withLock { () -> [OwnedThread] in
                let taken = threads
                threads.removeAll()
                return taken
            }
            if pending.isEmpty { break }
            for thread in pending { thread.join() }
        }
        slots.persist()
        let host = lock.withLock { () -> StateMachineHost<Machine>? in
            let host = currentHost
            currentHost = nil
            return host
        }
        try? host?.close()
    }

    // MARK: - Retention

    /// Holds back log retention for every replication slot, except slots further behind than
    /// `slotRetainedBytesMax` (their followers re-seed from a checkpoint).
    func refreshRetentionHold() {
        guard let log = host?.log else { return }
        guard isPrimary else {
            log.setRetentionHold("replication", from: nil)
            return
        }
        let segments = log.segments
        var hold: LSN?
        for (_, lsn) in slots.positions {
            let needed = lsn.advanced(by: 1)
            let retainedBytes = segments.filter { $0.lastLSN >= needed }.reduce(Int64(0)) { $0 + $1.dataBytes }
            guard retainedBytes <= options.slotRetainedBytesMax else { continue }
            hold = min(hold ?? needed, needed)
        }
        log.setRetentionHold("replication", from: hold)
    }
}
