public import ShipLogFormat
public import ShipLogProtocol
import ShipLogStorage

/// Settings of a ``ReplicationClient``.
public struct ClientOptions: Sendable {
    public var clusterID = "shiplog"
    /// How this client introduces itself (1 ... 64 bytes); appears in the node's messages.
    public var nodeID: String
    public var secret: SharedSecret
    public var connectTimeout: Duration = .seconds(5)
    /// A request waits at most this long for its answer beyond its own timeout.
    public var responseTimeout: Duration = .seconds(30)
    /// The highest epoch this client has seen: primaries of older epochs are refused, and
    /// newer ones fence older primaries when the client connects to them.
    public var knownEpoch = Epoch(0)
    /// Requests in flight at most; ``ReplicationClient/submitAppend(_:level:timeout:completion:)``
    /// blocks the caller at the limit.
    public var requestsInFlightMax = 4096

    public init(nodeID: String, secret: SharedSecret) {
        self.nodeID = nodeID
        self.secret = secret
    }
}

extension ReplicationClient {
    /// Connects to every endpoint (in order) and returns a connection to the node that says it
    /// is the primary of the highest epoch, or nil when none does. Used to find the primary
    /// again after a failover (`shiplog append --server A,B,C`, a follower's peers).
    public static func connectToPrimary(
        among endpoints: [Endpoint], options: ClientOptions, network: any Network = TCPNetwork()
    ) -> ReplicationClient? {
        var best: ReplicationClient?
        for endpoint in endpoints {
            guard let client = try? ReplicationClient(connectingTo: endpoint, options: options, network: network) else { continue }
            if client.role == .primary, client.epoch > (best?.epoch ?? Epoch(0)) || best == nil {
                best?.close()
                best = client
            } else {
                client.close()
            }
        }
        return best
    }
}

/// The answer to an append.
public struct AppendResult: Sendable, Hashable {
    public var range: LSNRange
    public var epoch: Epoch
    /// The primary answered after local durability only: the commit level timed out and the
    /// primary runs degraded (``CommitTimeoutPolicy/degrade``).
    public var degraded: Bool
}

/// A connection to one node of a cluster, for applications: appends (to the primary),
/// reads of the log, state-machine queries and status (any node). Requests are pipelined:
/// many may be in flight, answered in any order; a reading thread of the client's own
/// dispatches each answer to its request. Blocking calls block only the calling thread.
public final class ReplicationClient: @unchecked Sendable {
    // @unchecked: `pending`, `nextID`, `failure` are guarded by `lock`.
    public let endpoint: Endpoint
    /// The node's id and role as it announced them.
    public let nodeID: String
    public let role: Message.Role
    /// The node's epoch as its handshake announced it.
    public let epoch: Epoch
    private let connection: any Connection
    private let outbound: OutboundQueue
    private let options: ClientOptions
    private let lock = ConditionLock()
    private var pending: [UInt64: (complete: @Sendable (Result<Message, ReplicationError>) -> Void, deadline: UInt64)] = [:]
    private var nextID: UInt64 = 1
    private var failure: ReplicationError?
    private var reader: OwnedThread?

    /// Connects and authenticates.
    public init(connectingTo endpoint: Endpoint, options: ClientOptions, network: any Network = TCPNetwork()) throws(ReplicationError) {
        let connection: any Connection
        do { connection = try network.connect(to: endpoint, timeout: options.connectTimeout) } catch { throw .transport(error) }
        connection.setTimeouts(receive: options.connectTimeout, send: options.connectTimeout)
        let sender = MessageSender(connection: connection)
        var receiver = MessageReceiver(connection: connection)
        let peer: PeerInfo
        do throws(ReplicationError) {
            peer = try Handshake.initiate(
                identity: HandshakeIdentity(
                    clusterID: options.clusterID, nodeID: options.nodeID, role: .client, epoch: options.knownEpoch, lastLSN: .zero,
                    lastBatchCRC: 0),
                secret: options.secret, sender: sender, receiver: &receiver)
            // Fencing (docs/PROTOCOL.md 6.1): a primary older than an epoch this client has
            // seen has been replaced; its answers would be stale.
            if peer.role == .primary && peer.epoch < options.knownEpoch {
                sender.fail(Message.Failure(.staleEpoch(current: options.knownEpoch), text: "this client has seen epoch \(options.knownEpoch)"), refuse: true)
                throw ReplicationError.handshakeFailed(
                    peer: peer.address, reason: "\(peer.nodeID) is a primary of epoch \(peer.epoch), older than epoch \(options.knownEpoch) this client has seen")
            }
        } catch {
            connection.close()
            throw error
        }
        // The reader wakes at least this often to end requests that were never answered.
        connection.setTimeouts(receive: min(options.responseTimeout, .seconds(1)) / 2, send: options.responseTimeout)
        self.endpoint = endpoint
        self.nodeID = peer.nodeID
        self.role = peer.role
        self.epoch = peer.epoch
        self.connection = connection
        self.options = options
        self.outbound = OutboundQueue(sender: sender, name: "shiplog-client-w")
        let receiverBox = ReceiverBox(receiver)
        reader = OwnedThread.start(name: "shiplog-client-r") { [self] in readLoop(receiverBox) }
    }

    deinit { connection.close() }

    /// Closes the connection; requests in flight fail with `shutDown`.
    public func close() {
        fail(with: .shutDown)
        connection.close()
        outbound.finish()
        reader?.join()
    }

    // MARK: Requests

    /// Sends `message` built for a fresh request id; `completion` gets the answer, on the
    /// client's reading thread. Blocks while `requestsInFlightMax` requests are in flight.
    /// `waiting`: how long the node may legitimately take before it answers (the request's
    /// own timeout or wait); the client gives up `responseTimeout` after that.
    private func request(
        waiting: Duration = .zero, _ build: (UInt64) -> Message,
        completion: @escaping @Sendable (Result<Message, ReplicationError>) -> Void
    ) {
        let outcome = lock.withLock { () -> ReplicationError? in
            while pending.count >= options.requestsInFlightMax && failure == nil { lock.wait() }
            if let failure { return failure }
            let id = nextID
            nextID += 1
            pending[id] = (completion, monotonicNanoseconds() &+ (waiting + options.responseTimeout).nanoseconds)
            outbound.enqueue(build(id))
            return nil
        }
        if let outcome { completion(.failure(outcome)) }
    }

    /// Appends `records` as one batch on the primary; `completion` runs with the LSNs once the
    /// commit level (`nil`: the primary's default) is confirmed (or the failure: `commitTimedOut` says the records were
    /// appended anyway).
    public func submitAppend(
        _ records: [[UInt8]], level: CommitLevel? = nil, timeout: Duration? = nil,
        completion: @escaping @Sendable (Result<AppendResult, ReplicationError>) -> Void
    ) {
        let millis = timeout.map { UInt32(clamping: max(1, $0.nanoseconds / 1_000_000)) } ?? 0
        request(waiting: timeout ?? .seconds(Int(ProtocolLimits.requestWaitMillisMax / 1000))) { id in
            .appendRequest(Message.AppendRequest(requestID: id, commitLevel: level, timeoutMillis: min(millis, ProtocolLimits.requestWaitMillisMax), records: records))
        } completion: { result in
            completion(
                result.flatMap { message in
                    guard case .appendResponse(let response) = message else { return .failure(.unexpectedMessage(peer: "", message.type, expected: "AppendResponse")) }
                    switch response.outcome {
                    case .appended(let range, let epoch): return .success(AppendResult(range: range, epoch: epoch, degraded: false))
                    case .appendedDegraded(let range, let epoch): return .success(AppendResult(range: range, epoch: epoch, degraded: true))
                    case .failed(let failure): return .failure(.requestFailed(failure))
                    }
                })
        }
    }

    /// Appends and waits for the answer.
    public func append(_ records: [[UInt8]], level: CommitLevel? = nil, timeout: Duration? = nil) throws(ReplicationError) -> AppendResult {
        try waiting { submitAppend(records, level: level, timeout: timeout, completion: $0) }
    }

    /// Batches from the one holding `lsn`, up to about `maxBytes` (0: the node's default),
    /// waiting up to `wait` when nothing at or after `lsn` exists yet. Returns the node's last
    /// written LSN with the batches (possibly none).
    public func read(from lsn: LSN, maxBytes: Int = 0, wait: Duration = .zero) throws(ReplicationError) -> (lastLSN: LSN, batches: [Batch]) {
        let millis = UInt32(clamping: min(wait.nanoseconds / 1_000_000, UInt64(ProtocolLimits.requestWaitMillisMax)))
        return try waiting { (completion: @escaping @Sendable (Result<(lastLSN: LSN, batches: [Batch]), ReplicationError>) -> Void) in
            request(waiting: wait) { id in
                .readRequest(Message.ReadRequest(requestID: id, fromLSN: lsn, maxBytes: UInt32(clamping: maxBytes), waitMillis: millis))
            } completion: { result in
                completion(
                    result.flatMap { message in
                        guard case .readResponse(let response) = message else { return .failure(.unexpectedMessage(peer: "", message.type, expected: "ReadResponse")) }
                        switch response.outcome {
                        case .batches(let last, let batches): return .success((last, batches))
                        case .failed(let failure): return .failure(.requestFailed(failure))
                        }
                    })
            }
        }
    }

    /// The node's status document (JSON, docs/PROTOCOL.md 8.5).
    public func status() throws(ReplicationError) -> String {
        try waiting { (completion: @escaping @Sendable (Result<String, ReplicationError>) -> Void) in
            request { id in .statusRequest(Message.StatusRequest(requestID: id)) } completion: { result in
                completion(
                    result.flatMap { message in
                        guard case .statusResponse(let response) = message else { return .failure(.unexpectedMessage(peer: "", message.type, expected: "StatusResponse")) }
                        return .success(response.json)
                    })
            }
        }
    }

    /// Runs a state-machine query (e.g. a key-value get or scan) on the node; returns the
    /// result and the LSN the node's state had reached.
    public func query(_ query: [UInt8]) throws(ReplicationError) -> (appliedLSN: LSN, result: [UInt8]) {
        try waiting { (completion: @escaping @Sendable (Result<(appliedLSN: LSN, result: [UInt8]), ReplicationError>) -> Void) in
            request { id in .queryRequest(Message.QueryRequest(requestID: id, query: query)) } completion: { result in
                completion(
                    result.flatMap { message in
                        guard case .queryResponse(let response) = message else { return .failure(.unexpectedMessage(peer: "", message.type, expected: "QueryResponse")) }
                        switch response.outcome {
                        case .result(let applied, let bytes): return .success((applied, bytes))
                        case .failed(let failure): return .failure(.requestFailed(failure))
                        }
                    })
            }
        }
    }

    /// Asks the node (a follower) to become the primary of a new epoch, at least
    /// `minimumEpoch`. Returns the new epoch and the LSN of its epoch-start record.
    public func promote(minimumEpoch: Epoch = Epoch(0)) throws(ReplicationError) -> (epoch: Epoch, firstLSN: LSN) {
        try waiting { (completion: @escaping @Sendable (Result<(epoch: Epoch, firstLSN: LSN), ReplicationError>) -> Void) in
            request(waiting: .seconds(30)) { id in .promoteRequest(Message.PromoteRequest(requestID: id, minimumEpoch: minimumEpoch)) } completion: { result in
                completion(
                    result.flatMap { message in
                        guard case .promoteResponse(let response) = message else { return .failure(.unexpectedMessage(peer: "", message.type, expected: "PromoteResponse")) }
                        switch response.outcome {
                        case .promoted(let epoch, let first): return .success((epoch, first))
                        case .failed(let failure): return .failure(.requestFailed(failure))
                        }
                    })
            }
        }
    }

    /// Blocks until the completion passed to `start` runs.
    private func waiting<T: Sendable>(
        _ start: (@escaping @Sendable (Result<T, ReplicationError>) -> Void) -> Void
    ) throws(ReplicationError) -> T {
        let box = ResultBox<T>()
        start { box.set($0) }
        return try box.wait().get()
    }

    // MARK: Answers

    private func readLoop(_ box: ReceiverBox) {
        while true {
            let message: Message?
            do { message = try box.receiver.receive() } catch {
                if case .transport(.timedOut) = error {
                    if let overdue = overdueRequest() {
                        fail(with: .transport(.timedOut(operation: "waiting for the answer to request \(overdue)", peer: endpoint.description)))
                        return
                    }
                    continue
                }
                fail(with: error)
                return
            }
            guard let message else {
                fail(with: .connectionClosed(peer: endpoint.description))
                return
            }
            let id: UInt64
            switch message {
            case .appendResponse(let m): id = m.requestID
            case .readResponse(let m): id = m.requestID
            case .statusResponse(let m): id = m.requestID
            case .queryResponse(let m): id = m.requestID
            case .promoteResponse(let m): id = m.requestID
            case .error(let failure), .refuse(let failure):
                fail(with: .refused(peer: endpoint.description, failure))
                return
            default:
                fail(with: .unexpectedMessage(peer: endpoint.description, message.type, expected: "a response"))
                return
            }
            let entry = lock.withLock { pending.removeValue(forKey: id) }
            lock.broadcast()
            entry?.complete(.success(message))
        }
    }

    /// The id of a request past its deadline, if any.
    private func overdueRequest() -> UInt64? {
        let now = monotonicNanoseconds()
        return lock.withLock { pending.first { $0.value.deadline < now }?.key }
    }

    private func fail(with error: ReplicationError) {
        let failed = lock.withLock { () -> [@Sendable (Result<Message, ReplicationError>) -> Void] in
            if failure == nil { failure = error }
            let all = pending.values.map(\.complete)
            pending.removeAll()
            return all
        }
        lock.broadcast()
        connection.close()
        for completion in failed { completion(.failure(error)) }
    }
}

/// Hands a `MessageReceiver` (non-copyable) to the reading thread.
final class ReceiverBox: @unchecked Sendable {
    // @unchecked: used by one thread at a time (the creator, then the reader).
    var receiver: MessageReceiver
    init(_ receiver: consuming MessageReceiver) { self.receiver = receiver }
}

/// A result set once by one thread and waited for by another.
final class ResultBox<T: Sendable>: @unchecked Sendable {
    // @unchecked: `value` is guarded by `lock`.
    private let lock = ConditionLock()
    private var value: Result<T, ReplicationError>?

    func set(_ result: Result<T, ReplicationError>) {
        lock.withLock { if value == nil { value = result } }
        lock.broadcast()
    }

    func wait() -> Result<T, ReplicationError> {
        lock.withLock {
            while value == nil { lock.wait() }
            return value!
        }
    }
}
