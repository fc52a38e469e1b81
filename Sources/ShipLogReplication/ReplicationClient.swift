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
/// many may be in flight, answered in any order. Blocking calls block only the calling
/// thread, which reads the connection itself while no other thread does ("leader/followers":
/// one reader at a time hands each answer to its request), so a blocking call costs no thread
/// switch on this side. Answers to completion-based requests are read by whichever blocking
/// caller is reading, or else by the client's own reading thread, which sleeps while only
/// blocking calls are in flight.
public final class ReplicationClient: @unchecked Sendable {
    // @unchecked: every var is guarded by `lock`; `receiver` is used only by the thread that
    // set `reading`.
    public let endpoint: Endpoint
    /// The node's id and role as it announced them.
    public let nodeID: String
    public let role: Message.Role
    /// The node's epoch as its handshake announced it.
    public let epoch: Epoch
    private let connection: any Connection
    private let outbound: OutboundQueue
    private let options: ClientOptions
    /// Primary condition: blocking callers (an answer arrived, or the reader's turn is free,
    /// or room for a request). Secondary condition: the reading thread.
    private let lock = ConditionLock()
    private let receiver: ReceiverBox
    private var pending: [UInt64: PendingRequest] = [:]
    /// Answers for blocking callers, by request id, until the caller takes them.
    private var answers: [UInt64: Result<Message, ReplicationError>] = [:]
    private var nextID: UInt64 = 1
    private var failure: ReplicationError?
    /// A thread holds the reader's turn (is in, or about to be in, `receive`).
    private var reading = false
    /// Pending requests answered through a completion: only these need the reading thread.
    private var completionsPending = 0
    /// Blocking callers waiting on the primary condition.
    private var callersWaiting = 0
    /// Async callers waiting for fewer than `requestsInFlightMax` requests in flight.
    private var roomWaiters: [@Sendable () -> Void] = []
    private var readerThread: OwnedThread?

    private enum Waiter {
        case completion(@Sendable (Result<Message, ReplicationError>) -> Void)
        case caller
    }

    private struct PendingRequest {
        var waiter: Waiter
        /// Monotonic nanoseconds after which the request counts as unanswered.
        var deadline: UInt64
    }

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
        // A reader wakes at least this often to end requests that were never answered.
        connection.setTimeouts(receive: min(options.responseTimeout, .seconds(1)) / 2, send: options.responseTimeout)
        self.endpoint = endpoint
        self.nodeID = peer.nodeID
        self.role = peer.role
        self.epoch = peer.epoch
        self.connection = connection
        self.options = options
        self.outbound = OutboundQueue(sender: sender, name: "shiplog-client-w")
        self.receiver = ReceiverBox(receiver)
        readerThread = OwnedThread.start(name: "shiplog-client-r") { [self] in readerLoop() }
    }

    deinit { connection.close() }

    /// Closes the connection; requests in flight fail with `shutDown`.
    public func close() {
        fail(with: .shutDown)
        connection.close()
        outbound.finish()
        readerThread?.join()
    }

    // MARK: Requests

    /// Registers a request with a fresh id and sends it; returns the id, or the client's
    /// failure (nothing sent). While `requestsInFlightMax` requests are in flight it blocks,
    /// or, with `blocking` false, returns nil at once (nothing sent).
    /// `waiting`: how long the node may legitimately take before it answers (the request's
    /// own timeout or wait); the client gives up `responseTimeout` after that.
    private func register(
        waiting: Duration, _ waiter: Waiter, blocking: Bool = true, _ build: (UInt64) -> Message
    ) -> Result<UInt64, ReplicationError>? {
        let registered = lock.withLock { () -> Result<UInt64, ReplicationError>? in
            while pending.count >= options.requestsInFlightMax && failure == nil {
                guard blocking else { return nil }
                callersWaiting += 1
                lock.wait()
                callersWaiting -= 1
            }
            if let failure { return .failure(failure) }
            let id = nextID
            nextID += 1
            pending[id] = PendingRequest(waiter: waiter, deadline: monotonicNanoseconds() &+ (waiting + options.responseTimeout).nanoseconds)
            if case .completion = waiter {
                completionsPending += 1
                if !reading { lock.broadcastSecondary() }
            }
            return .success(id)
        }
        if case .success(let id) = registered { outbound.enqueue(build(id)) }
        return registered
    }

    /// Sends the request without ever blocking the calling thread: nil (nothing sent) while
    /// `requestsInFlightMax` requests are in flight. For the async API.
    func requestIfRoom(
        waiting: Duration, _ build: (UInt64) -> Message, completion: @escaping @Sendable (Result<Message, ReplicationError>) -> Void
    ) -> Bool {
        switch register(waiting: waiting, .completion(completion), blocking: false, build) {
        case nil: return false
        case .failure(let error)?: completion(.failure(error))
        case .success?: break
        }
        return true
    }

    /// Runs `resume` once fewer than `requestsInFlightMax` requests are in flight (or the
    /// client failed): at once, or on the thread that makes room. For the async API.
    func whenRoom(_ resume: @escaping @Sendable () -> Void) {
        let now = lock.withLock { () -> Bool in
            guard pending.count >= options.requestsInFlightMax && failure == nil else { return true }
            roomWaiters.append(resume)
            return false
        }
        if now { resume() }
    }

    /// Sends the request and calls `completion` with the answer, on whichever thread reads it.
    private func request(
        waiting: Duration = .zero, _ build: (UInt64) -> Message,
        completion: @escaping @Sendable (Result<Message, ReplicationError>) -> Void
    ) {
        if case .failure(let error)? = register(waiting: waiting, .completion(completion), build) { completion(.failure(error)) }
    }

    /// Sends the request and returns its answer, reading the connection on this thread while
    /// no other thread does.
    private func call(waiting: Duration = .zero, _ build: (UInt64) -> Message) -> Result<Message, ReplicationError> {
        let id: UInt64
        switch register(waiting: waiting, .caller, build) {
        case .success(let registered)?: id = registered
        case .failure(let error)?: return .failure(error)
        case nil: preconditionFailure("a blocking registration waits for room")
        }
        lock.lock()
        while true {
            if let answer = answers.removeValue(forKey: id) {
                lock.unlock()
                return answer
            }
            if !reading {
                reading = true
                lock.unlock()
                readOne()
                lock.lock()
            } else {
                callersWaiting += 1
                lock.wait()
                callersWaiting -= 1
            }
        }
    }

    /// Appends `records` as one batch on the primary; `completion` runs with the LSNs once the
    /// commit level (`nil`: the primary's default) is confirmed (or the failure: `commitTimedOut` says the records were
    /// appended anyway).
    public func submitAppend(
        _ records: [[UInt8]], level: CommitLevel? = nil, timeout: Duration? = nil,
        completion: @escaping @Sendable (Result<AppendResult, ReplicationError>) -> Void
    ) {
        let (wait, build) = Self.appendRequest(records, level: level, timeout: timeout)
        request(waiting: wait, build) { completion($0.flatMap(Self.appendResult)) }
    }

    /// Appends and waits for the answer.
    public func append(_ records: [[UInt8]], level: CommitLevel? = nil, timeout: Duration? = nil) throws(ReplicationError) -> AppendResult {
        let (wait, build) = Self.appendRequest(records, level: level, timeout: timeout)
        return try call(waiting: wait, build).flatMap(Self.appendResult).get()
    }

    static func appendRequest(
        _ records: [[UInt8]], level: CommitLevel?, timeout: Duration?
    ) -> (waiting: Duration, build: (UInt64) -> Message) {
        let millis = timeout.map { UInt32(clamping: max(1, $0.nanoseconds / 1_000_000)) } ?? 0
        return (
            timeout ?? .seconds(Int(ProtocolLimits.requestWaitMillisMax / 1000)),
            { id in
                .appendRequest(
                    Message.AppendRequest(requestID: id, commitLevel: level, timeoutMillis: min(millis, ProtocolLimits.requestWaitMillisMax), records: records))
            }
        )
    }

    static func appendResult(_ message: Message) -> Result<AppendResult, ReplicationError> {
        guard case .appendResponse(let response) = message else { return .failure(.unexpectedMessage(peer: "", message.type, expected: "AppendResponse")) }
        switch response.outcome {
        case .appended(let range, let epoch): return .success(AppendResult(range: range, epoch: epoch, degraded: false))
        case .appendedDegraded(let range, let epoch): return .success(AppendResult(range: range, epoch: epoch, degraded: true))
        case .failed(let failure): return .failure(.requestFailed(failure))
        }
    }

    /// Batches from the one holding `lsn`, up to about `maxBytes` (0: the node's default),
    /// waiting up to `wait` when nothing at or after `lsn` exists yet. Returns the node's last
    /// written LSN with the batches (possibly none).
    public func read(from lsn: LSN, maxBytes: Int = 0, wait: Duration = .zero) throws(ReplicationError) -> (lastLSN: LSN, batches: [Batch]) {
        let (waiting, build) = Self.readRequest(from: lsn, maxBytes: maxBytes, wait: wait)
        return try call(waiting: waiting, build).flatMap(Self.readResult).get()
    }

    static func readRequest(from lsn: LSN, maxBytes: Int, wait: Duration) -> (waiting: Duration, build: (UInt64) -> Message) {
        let millis = UInt32(clamping: min(wait.nanoseconds / 1_000_000, UInt64(ProtocolLimits.requestWaitMillisMax)))
        return (wait, { id in .readRequest(Message.ReadRequest(requestID: id, fromLSN: lsn, maxBytes: UInt32(clamping: maxBytes), waitMillis: millis)) })
    }

    static func readResult(_ message: Message) -> Result<(lastLSN: LSN, batches: [Batch]), ReplicationError> {
        guard case .readResponse(let response) = message else { return .failure(.unexpectedMessage(peer: "", message.type, expected: "ReadResponse")) }
        switch response.outcome {
        case .batches(let last, let batches): return .success((last, batches))
        case .failed(let failure): return .failure(.requestFailed(failure))
        }
    }

    /// The node's status document (JSON, docs/PROTOCOL.md 8.5).
    public func status() throws(ReplicationError) -> String {
        try call(Self.statusRequest).flatMap(Self.statusResult).get()
    }

    static func statusRequest(_ id: UInt64) -> Message { .statusRequest(Message.StatusRequest(requestID: id)) }

    static func statusResult(_ message: Message) -> Result<String, ReplicationError> {
        guard case .statusResponse(let response) = message else { return .failure(.unexpectedMessage(peer: "", message.type, expected: "StatusResponse")) }
        return .success(response.json)
    }

    /// Runs a state-machine query (e.g. a key-value get or scan) on the node; returns the
    /// result and the LSN the node's state had reached.
    public func query(_ query: [UInt8]) throws(ReplicationError) -> (appliedLSN: LSN, result: [UInt8]) {
        try call(Self.queryRequest(query)).flatMap(Self.queryResult).get()
    }

    static func queryRequest(_ query: [UInt8]) -> (UInt64) -> Message {
        { id in .queryRequest(Message.QueryRequest(requestID: id, query: query)) }
    }

    static func queryResult(_ message: Message) -> Result<(appliedLSN: LSN, result: [UInt8]), ReplicationError> {
        guard case .queryResponse(let response) = message else { return .failure(.unexpectedMessage(peer: "", message.type, expected: "QueryResponse")) }
        switch response.outcome {
        case .result(let applied, let bytes): return .success((applied, bytes))
        case .failed(let failure): return .failure(.requestFailed(failure))
        }
    }

    /// Asks the node (a follower) to become the primary of a new epoch, at least
    /// `minimumEpoch`. Returns the new epoch and the LSN of its epoch-start record.
    public func promote(minimumEpoch: Epoch = Epoch(0)) throws(ReplicationError) -> (epoch: Epoch, firstLSN: LSN) {
        try call(waiting: .seconds(30)) { id in .promoteRequest(Message.PromoteRequest(requestID: id, minimumEpoch: minimumEpoch)) }.flatMap {
            message -> Result<(epoch: Epoch, firstLSN: LSN), ReplicationError> in
            guard case .promoteResponse(let response) = message else { return .failure(.unexpectedMessage(peer: "", message.type, expected: "PromoteResponse")) }
            switch response.outcome {
            case .promoted(let epoch, let first): return .success((epoch, first))
            case .failed(let failure): return .failure(.requestFailed(failure))
            }
        }.get()
    }

    // MARK: Answers

    /// The reading thread: reads while completion-based requests are pending and no blocking
    /// caller holds the reader's turn; sleeps otherwise.
    private func readerLoop() {
        while true {
            lock.lock()
            while failure == nil && (completionsPending == 0 || reading) {
                lock.waitSecondary(untilMonotonicNanoseconds: monotonicNanoseconds() &+ 1_000_000_000)
            }
            if failure != nil {
                lock.unlock()
                return
            }
            reading = true
            lock.unlock()
            readOne()
        }
    }

    /// Reads one message (or times out) as the holder of the reader's turn, hands it to its
    /// request and gives the turn back. Failures fail every request.
    private func readOne() {
        let message: Message?
        do { message = try receiver.receiver.receive() } catch {
            guard case .transport(.timedOut) = error else {
                fail(with: error)
                return
            }
            // A quiet connection is fine unless a request is past its deadline.
            guard let overdue = overdueRequest() else {
                releaseTurn(delivering: nil)
                return
            }
            fail(with: .transport(.timedOut(operation: "waiting for the answer to request \(overdue)", peer: endpoint.description)))
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
        releaseTurn(delivering: (id, message))
    }

    /// Gives the reader's turn back and hands `delivered` to its request: a blocking caller
    /// finds it in `answers`; a completion runs here, after the lock is released.
    private func releaseTurn(delivering delivered: (id: UInt64, message: Message)?) {
        lock.lock()
        reading = false
        var completion: (@Sendable (Result<Message, ReplicationError>) -> Void)?
        if let delivered, let entry = pending.removeValue(forKey: delivered.id) {
            switch entry.waiter {
            case .caller: answers[delivered.id] = .success(delivered.message)
            case .completion(let complete):
                completionsPending -= 1
                completion = complete
            }
        }
        let wakeCallers = callersWaiting > 0
        let wakeReader = completionsPending > 0
        let room = takeRoomWaiters()
        lock.unlock()
        if wakeCallers { lock.broadcast() }
        if wakeReader { lock.broadcastSecondary() }
        completion?(.success(delivered!.message))
        for resume in room { resume() }
    }

    /// The id of a request past its deadline, if any.
    private func overdueRequest() -> UInt64? {
        let now = monotonicNanoseconds()
        return lock.withLock { pending.first { $0.value.deadline < now }?.key }
    }

    /// Fails every request in flight and every later one with `error`, and closes the connection.
    private func fail(with error: ReplicationError) {
        let (failed, room) = lock.withLock { () -> ([@Sendable (Result<Message, ReplicationError>) -> Void], [@Sendable () -> Void]) in
            if failure == nil { failure = error }
            var completions: [@Sendable (Result<Message, ReplicationError>) -> Void] = []
            for (id, entry) in pending {
                switch entry.waiter {
                case .caller: answers[id] = .failure(error)
                case .completion(let complete): completions.append(complete)
                }
            }
            pending.removeAll()
            completionsPending = 0
            return (completions, takeRoomWaiters())
        }
        lock.broadcast()
        lock.broadcastSecondary()
        connection.close()
        for completion in failed { completion(.failure(error)) }
        for resume in room { resume() }
    }

    /// The async callers to resume now that there is room or a failure (lock held).
    private func takeRoomWaiters() -> [@Sendable () -> Void] {
        guard !roomWaiters.isEmpty, pending.count < options.requestsInFlightMax || failure != nil else { return [] }
        defer { roomWaiters.removeAll() }
        return roomWaiters
    }
}

/// Hands a `MessageReceiver` (non-copyable) to whichever thread holds the reader's turn.
final class ReceiverBox: @unchecked Sendable {
    // @unchecked: used by one thread at a time (the creator, then the holder of the turn).
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
