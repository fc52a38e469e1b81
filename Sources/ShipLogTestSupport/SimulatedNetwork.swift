#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import ShipLogReplication
import ShipLogStorage

/// An in-process ``Network`` for tests: virtual endpoints (`Endpoint(host: "node-a", port: 1)`),
/// connections through bounded byte queues, and faults drawn from a seed.
///
/// Each direction of a connection is one queue. A send blocks while the queue holds
/// ``queueCapacityBytes`` bytes the receiver has not read, so backpressure is real; bytes are
/// never reordered, duplicated or altered inside a stream (TCP semantics). Faults
/// (see ``FaultPlan``):
/// * **drop**: the connection is cut at a byte offset of one direction. Bytes before it arrive,
///   bytes after it never do; each side's sends then fail with ECONNRESET, and each receiver
///   gets what was already sent, then ECONNRESET or the end of the stream (0).
/// * **stale delivery** of a dropped connection: what its receivers still have to get (bytes,
///   then the error or end) is held back until a newer connection between the same client host
///   and server endpoint has delivered data, so old bytes arrive after new ones; a receiver
///   must never mix streams.
/// * **delay**: each chunk sent on the connection becomes readable only after a random time
///   up to ``FaultPlan/maximumDelay`` (still in order).
/// * **refuse**: the listener is unreachable (ECONNREFUSED) for a number of connect attempts.
/// * **partitions** set by the test at run time (``partition(_:_:mode:)``, ``heal(_:_:)``).
/// * **cut after N bytes**, chosen by the test per connection (``SimulatedConnection/cut(afterSending:)``).
///
/// Every fault decision is drawn when a connection is made, from one `SplitMix64` seeded with
/// ``seed``, and written to ``log`` ("seed 7: conn 3 node-a -> node-b:1: drop after 1234
/// bytes client->server, receiver sees ECONNRESET"). Given the same seed and the same order of
/// connect calls, the same faults hit the same byte offsets. Only delays and stale-delivery
/// fallbacks use wall-clock time.
///
/// Connections are made from a host: ``SimulatedNetwork/host(_:)`` gives the view of the same
/// network from another host name (what partitions and server-side peer names use).
/// ``close()`` unblocks calls blocked on other threads with `.closed`, as with TCP; timeouts
/// (``Connection/setTimeouts(receive:send:)``) run on the monotonic clock.
///
/// Thread-safe: all state sits behind one ``ConditionLock`` shared by every view and
/// connection of the network.
public final class SimulatedNetwork: Network {
    /// Default bytes a direction of a connection holds unread before sends block: 1 MiB.
    public static let defaultQueueCapacityBytes = 1 << 20
    /// Connections a listener holds before they are accepted; further connects wait.
    public static let listenBacklog = 128
    /// Ports handed out for port 0 and to connecting clients.
    public static let ephemeralPorts: ClosedRange<UInt16> = 49152...65535

    /// The probabilities of the faults drawn for each connect and connection.
    public struct FaultPlan: Sendable, Hashable {
        /// Chance that a connection is dropped (cut at a random byte offset).
        public var dropProbability = 0.0
        /// The byte offset of a drop, within the direction it cuts (chosen by a coin).
        public var dropOffsets: ClosedRange<Int> = 0...(64 << 10)
        /// Chance that a dropped connection's remaining deliveries are held back until a newer
        /// connection between the same hosts has delivered data (reordering across reconnects).
        public var staleDeliveryProbability = 0.0
        /// The longest a stale delivery waits for a newer connection before it is released anyway.
        public var staleHoldMaximum: Duration = .milliseconds(500)
        /// Chance that a connection delays its chunks.
        public var delayProbability = 0.0
        /// The longest a chunk of a delayed connection is held back.
        public var maximumDelay: Duration = .milliseconds(2)
        /// Chance that a connect attempt finds the listener unreachable.
        public var refuseProbability = 0.0
        /// For how many connect attempts (this one included) an unreachable listener refuses.
        public var refusedAttempts: ClosedRange<Int> = 1...3

        /// No faults.
        public init() {}

        /// No faults.
        public static var none: FaultPlan { FaultPlan() }

        /// Every fault fairly often: for tests that must survive anything.
        public static var hostile: FaultPlan {
            var plan = FaultPlan()
            plan.dropProbability = 0.5
            plan.staleDeliveryProbability = 0.5
            plan.delayProbability = 0.3
            plan.refuseProbability = 0.1
            return plan
        }
    }

    /// How a partition treats the connections it separates.
    public enum PartitionMode: Sendable, Hashable {
        /// Connections between the two hosts are reset at once (undelivered bytes are lost,
        /// every side's calls fail with ECONNRESET) and connects are refused (ECONNREFUSED).
        case reset
        /// Nothing crosses: bytes queue up (sends block at capacity), receives and connects
        /// time out. After ``SimulatedNetwork/heal(_:_:)`` the queued bytes flow again.
        case silent
    }

    let fabric: Fabric
    /// The host connects are made from.
    public let localHost: String

    /// - Parameters:
    ///   - seed: every fault decision is drawn from a generator seeded with it.
    ///   - plan: the fault probabilities; changeable later through ``plan``.
    ///   - queueCapacityBytes: unread bytes per direction before a send blocks.
    ///   - host: the host connects of this view are made from.
    public init(
        seed: UInt64 = 0, plan: FaultPlan = .none, queueCapacityBytes: Int = SimulatedNetwork.defaultQueueCapacityBytes,
        host: String = "client"
    ) {
        precondition(queueCapacityBytes > 0, "queue capacity must be positive")
        precondition(plan.dropOffsets.lowerBound >= 0 && plan.refusedAttempts.lowerBound >= 1)
        self.fabric = Fabric(seed: seed, plan: plan, queueCapacityBytes: queueCapacityBytes)
        self.localHost = host
    }

    private init(fabric: Fabric, host: String) {
        self.fabric = fabric
        self.localHost = host
    }

    /// The same network seen from `name`: its connects come from that host.
    public func host(_ name: String) -> SimulatedNetwork {
        SimulatedNetwork(fabric: fabric, host: name)
    }

    /// The seed the faults are drawn from.
    public var seed: UInt64 { fabric.seed }

    /// The fault probabilities for later connects.
    public var plan: FaultPlan {
        get { fabric.condition.withLock { fabric.plan } }
        set {
            precondition(newValue.dropOffsets.lowerBound >= 0 && newValue.refusedAttempts.lowerBound >= 1)
            fabric.condition.withLock { fabric.plan = newValue }
        }
    }

    /// Every injected fault and partition change, in order, each prefixed with the seed.
    public var log: [String] { fabric.condition.withLock { fabric.log } }

    /// How many connections have been made.
    public var connectionCount: Int { fabric.condition.withLock { fabric.nextLinkID - 1 } }

    /// Separates hosts `a` and `b` (both directions) until ``heal(_:_:)``.
    public func partition(_ a: String, _ b: String, mode: PartitionMode = .reset) {
        fabric.partition(HostPair(a, b), mode: mode)
    }

    /// Ends the partition between `a` and `b`.
    public func heal(_ a: String, _ b: String) { fabric.heal(HostPair(a, b)) }

    /// Ends every partition.
    public func healAll() { fabric.healAll() }

    /// Listens on a virtual endpoint; port 0 takes a free port. Throws `.listenFailed(EADDRINUSE)`
    /// when something listens there already.
    public func listen(on endpoint: Endpoint) throws(TransportError) -> any Listener {
        try fabric.listen(on: endpoint)
    }

    /// Connects from ``localHost``. Throws `.connectFailed(ECONNREFUSED)` when nothing listens,
    /// the listener is unreachable (refuse fault) or a reset partition is in the way,
    /// `.timedOut` when a silent partition or a full backlog outlasts `timeout`.
    public func connect(to endpoint: Endpoint, timeout: Duration) throws(TransportError) -> any Connection {
        try fabric.connect(from: localHost, to: endpoint, timeout: timeout)
    }
}

/// One end of a connection of a ``SimulatedNetwork``.
public final class SimulatedConnection: Connection {
    /// Which end: the one that connected or the one that accepted.
    public enum Side: Int, Sendable, Hashable, CustomStringConvertible {
        case client = 0
        case server = 1

        var other: Side { self == .client ? .server : .client }
        public var description: String { self == .client ? "client" : "server" }
    }

    let fabric: Fabric
    /// The connection's number (1, 2, ... in the order they were made), as in the log.
    public let id: Int
    public let side: Side
    public let peer: String

    init(fabric: Fabric, id: Int, side: Side, peer: String) {
        self.fabric = fabric
        self.id = id
        self.side = side
        self.peer = peer
    }

    deinit { fabric.close(id, side: side) }

    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(TransportError) -> Int {
        precondition(!buffer.isEmpty, "receive into an empty buffer cannot tell data from the end of the stream")
        return try fabric.receive(id, side: side, peer: peer, into: buffer)
    }

    public func send(_ bytes: UnsafeRawBufferPointer) throws(TransportError) {
        try fabric.send(id, side: side, peer: peer, bytes)
    }

    public func setTimeouts(receive: Duration?, send: Duration?) {
        fabric.setTimeouts(id, side: side, receive: receive, send: send)
    }

    public func close() { fabric.close(id, side: side) }

    /// Cuts the connection once this end has sent `total` bytes on it, counted from its start
    /// (at once if it has sent that many already, after what it sent). The peer receives
    /// exactly those bytes, then ECONNRESET; later sends from either end fail with ECONNRESET. `deliveredStale`: what
    /// the receivers still have to get is held back as by the stale-delivery fault.
    public func cut(afterSending total: Int, deliveredStale: Bool = false) {
        precondition(total >= 0)
        fabric.scheduleCut(id, sender: side, at: total, stale: deliveredStale)
    }
}

/// A virtual listener of a ``SimulatedNetwork``.
public final class SimulatedListener: Listener {
    let fabric: Fabric
    let listenerID: Int
    public let endpoint: Endpoint

    init(fabric: Fabric, listenerID: Int, endpoint: Endpoint) {
        self.fabric = fabric
        self.listenerID = listenerID
        self.endpoint = endpoint
    }

    deinit { fabric.closeListener(listenerID, endpoint: endpoint) }

    public func accept() throws(TransportError) -> any Connection {
        try fabric.accept(listenerID, endpoint: endpoint)
    }

    /// Stops listening; connections not yet accepted are reset.
    public func close() { fabric.closeListener(listenerID, endpoint: endpoint) }
}

/// Two host names, unordered.
struct HostPair: Hashable, CustomStringConvertible {
    let first: String
    let second: String

    init(_ a: String, _ b: String) {
        (first, second) = a <= b ? (a, b) : (b, a)
    }

    var description: String { "\(first) | \(second)" }
}

/// The shared state of a simulated network.
///
/// `@unchecked Sendable`: `condition` guards every `var` here and everything inside the
/// ``Link`` objects; waits on it are timed by the monotonic clock.
final class Fabric: @unchecked Sendable {
    let seed: UInt64
    let queueCapacityBytes: Int
    let condition = ConditionLock()

    var plan: SimulatedNetwork.FaultPlan
    var rng: SplitMix64
    var log: [String] = []
    var listeners: [Endpoint: ListenerState] = [:]
    var nextListenerID = 1
    var links: [Int: Link] = [:]
    var nextLinkID = 1
    var nextPort = SimulatedNetwork.ephemeralPorts.lowerBound
    var partitions: [HostPair: SimulatedNetwork.PartitionMode] = [:]
    /// Connect attempts still to refuse, per endpoint (refuse fault).
    var refusals: [Endpoint: Int] = [:]

    struct ListenerState {
        let id: Int
        var backlog: [Int] = []
    }

    init(seed: UInt64, plan: SimulatedNetwork.FaultPlan, queueCapacityBytes: Int) {
        self.seed = seed
        self.plan = plan
        self.rng = SplitMix64(seed: seed)
        self.queueCapacityBytes = queueCapacityBytes
    }

    func record(_ event: String) { log.append("seed \(seed): \(event)") }

    static func now() -> UInt64 { ConditionLock.monotonicNanoseconds() }

    // MARK: Listening and connecting

    func listen(on endpoint: Endpoint) throws(TransportError) -> SimulatedListener {
        try condition.withLock { () throws(TransportError) -> SimulatedListener in
            var bound = endpoint
            if endpoint.port == 0 {
                guard let port = freePort(host: endpoint.host) else { throw .listenFailed(endpoint, errno: EADDRNOTAVAIL) }
                bound.port = port
            }
            guard listeners[bound] == nil else { throw .listenFailed(bound, errno: EADDRINUSE) }
            let id = nextListenerID
            nextListenerID += 1
            listeners[bound] = ListenerState(id: id)
            return SimulatedListener(fabric: self, listenerID: id, endpoint: bound)
        }
    }

    /// The next ephemeral port not listened on at `host` (lock held).
    private func freePort(host: String) -> UInt16? {
        let ports = SimulatedNetwork.ephemeralPorts
        for _ in 0..<ports.count {
            let port = nextPort
            nextPort = port == ports.upperBound ? ports.lowerBound : port + 1
            if listeners[Endpoint(host: host, port: port)] == nil { return port }
        }
        return nil
    }

    func accept(_ listenerID: Int, endpoint: Endpoint) throws(TransportError) -> SimulatedConnection {
        condition.lock()
        defer { condition.unlock() }
        while true {
            guard let listener = listeners[endpoint], listener.id == listenerID else {
                throw .closed(peer: endpoint.description)
            }
            if let id = listener.backlog.first {
                listeners[endpoint]!.backlog.removeFirst()
                condition.broadcast()
                let link = links[id]!
                return SimulatedConnection(fabric: self, id: id, side: .server, peer: link.clientName)
            }
            condition.wait()
        }
    }

    func closeListener(_ listenerID: Int, endpoint: Endpoint) {
        condition.withLock {
            guard let listener = listeners[endpoint], listener.id == listenerID else { return }
            listeners[endpoint] = nil
            for id in listener.backlog {
                guard let link = links[id] else { continue }
                link.reset(errno: ECONNRESET, discardingQueued: true)
                link.closed[SimulatedConnection.Side.server.rawValue] = true
            }
            condition.broadcast()
        }
    }

    func connect(from host: String, to endpoint: Endpoint, timeout: Duration) throws(TransportError) -> SimulatedConnection {
        condition.lock()
        defer { condition.unlock() }
        let deadline = ConditionLock.deadline(after: timeout)!
        let route = "\(host) -> \(endpoint)"
        if let remaining = refusals[endpoint], remaining > 0 {
            refusals[endpoint] = remaining - 1
            throw .connectFailed(endpoint, errno: ECONNREFUSED)
        }
        if plan.refuseProbability > 0, rng.draw(plan.refuseProbability) {
            let attempts = plan.refusedAttempts.lowerBound + rng.uniform(below: plan.refusedAttempts.count)
            refusals[endpoint] = attempts - 1
            record("connect \(route) refused: unreachable for \(attempts) attempt(s)")
            throw .connectFailed(endpoint, errno: ECONNREFUSED)
        }
        while true {
            switch partitions[HostPair(host, endpoint.host)] {
            case .reset?:
                throw .connectFailed(endpoint, errno: ECONNREFUSED)
            case .silent?:
                if Self.now() >= deadline { throw .timedOut(operation: "connect", peer: endpoint.description) }
                condition.wait(untilMonotonicNanoseconds: deadline)
                continue
            case nil:
                break
            }
            guard let listener = listeners[endpoint] else { throw .connectFailed(endpoint, errno: ECONNREFUSED) }
            if listener.backlog.count >= SimulatedNetwork.listenBacklog {
                if Self.now() >= deadline { throw .timedOut(operation: "connect", peer: endpoint.description) }
                condition.wait(untilMonotonicNanoseconds: deadline)
                continue
            }
            let link = makeLink(from: host, to: endpoint)
            links[link.id] = link
            listeners[endpoint]!.backlog.append(link.id)
            condition.broadcast()
            return SimulatedConnection(fabric: self, id: link.id, side: .client, peer: endpoint.description)
        }
    }

    /// A new connection with its faults drawn from the generator (lock held).
    private func makeLink(from host: String, to endpoint: Endpoint) -> Link {
        let id = nextLinkID
        nextLinkID += 1
        let port = SimulatedNetwork.ephemeralPorts.lowerBound + UInt16((id - 1) % SimulatedNetwork.ephemeralPorts.count)
        let link = Link(
            id: id, clientHost: host, server: endpoint, clientName: Endpoint(host: host, port: port).description,
            seed: rng.next())
        var faults: [String] = []
        if rng.draw(plan.dropProbability) {
            let sender: SimulatedConnection.Side = rng.coin() ? .client : .server
            let offset = plan.dropOffsets.lowerBound + rng.uniform(below: plan.dropOffsets.count)
            let error: Int32? = rng.coin() ? ECONNRESET : nil
            let stale = rng.draw(plan.staleDeliveryProbability)
            link.pipes[sender.rawValue].cutAt = offset
            link.dropEnd = error
            link.dropIsStale = stale
            faults.append(
                "drop after \(offset) bytes \(sender)->\(sender.other), receivers see \(error == nil ? "end of stream" : "ECONNRESET")"
                    + (stale ? ", delivered stale" : ""))
        }
        if rng.draw(plan.delayProbability) {
            let maximum = plan.maximumDelay.nanosecondsForSimulation
            for index in link.pipes.indices { link.pipes[index].maximumDelay = maximum }
            faults.append("chunks delayed up to \(plan.maximumDelay)")
        }
        if !faults.isEmpty { record("conn \(id) \(host) -> \(endpoint): " + faults.joined(separator: "; ")) }
        return link
    }

    // MARK: Partitions

    func partition(_ pair: HostPair, mode: SimulatedNetwork.PartitionMode) {
        condition.withLock {
            partitions[pair] = mode
            record("partition \(pair) (\(mode))")
            if mode == .reset {
                for link in links.values where link.hosts == pair {
                    link.reset(errno: ECONNRESET, discardingQueued: true)
                }
            }
            condition.broadcast()
        }
    }

    func heal(_ pair: HostPair) {
        condition.withLock {
            guard partitions.removeValue(forKey: pair) != nil else { return }
            record("heal \(pair)")
            condition.broadcast()
        }
    }

    func healAll() {
        condition.withLock {
            for pair in partitions.keys.sorted(by: { $0.description < $1.description }) { record("heal \(pair)") }
            partitions.removeAll()
            condition.broadcast()
        }
    }

    /// Whether nothing may cross `link` now (lock held).
    private func isHeld(_ link: Link, now: UInt64) -> Bool {
        if partitions[link.hosts] == .silent { return true }
        if let until = link.staleUntil {
            if now < until { return true }
            link.staleUntil = nil
        }
        return false
    }

    /// `link` delivered bytes: release the stale deliveries of older connections between the
    /// same client host and server endpoint (lock held).
    private func releaseStale(olderThan link: Link) {
        for other in links.values where other.id < link.id && other.staleUntil != nil {
            if other.clientHost == link.clientHost && other.server == link.server { other.staleUntil = nil }
        }
    }

    // MARK: Data

    func receive(
        _ id: Int, side: SimulatedConnection.Side, peer: String, into buffer: UnsafeMutableRawBufferPointer
    ) throws(TransportError) -> Int {
        condition.lock()
        defer { condition.unlock() }
        let deadline = ConditionLock.deadline(after: links[id]?.timeouts[side.rawValue].receive)
        while true {
            guard let link = links[id], !link.closed[side.rawValue] else { throw .closed(peer: peer) }
            let now = Self.now()
            var wake = deadline
            if !isHeld(link, now: now) {
                let incoming = side.other.rawValue
                let count = link.pipes[incoming].read(into: buffer, now: now)
                if count > 0 {
                    releaseStale(olderThan: link)
                    condition.broadcast()
                    return count
                }
                if link.pipes[incoming].queuedBytes == 0, let end = link.pipes[incoming].end {
                    if let code = end { throw .failed(peer: peer, operation: "receive", errno: code) }
                    return 0
                }
                if let ready = link.pipes[incoming].nextDeliveryTime { wake = min(wake ?? ready, ready) }
            } else if let until = link.staleUntil {
                wake = min(wake ?? until, until)
            }
            if let deadline, now >= deadline { throw .timedOut(operation: "receive", peer: peer) }
            condition.wait(untilMonotonicNanoseconds: wake)
        }
    }

    func send(_ id: Int, side: SimulatedConnection.Side, peer: String, _ bytes: UnsafeRawBufferPointer) throws(TransportError) {
        condition.lock()
        defer { condition.unlock() }
        let timeout = links[id]?.timeouts[side.rawValue].send
        var deadline = ConditionLock.deadline(after: timeout)
        var offset = 0
        while offset < bytes.count {
            guard let link = links[id], !link.closed[side.rawValue] else { throw .closed(peer: peer) }
            let outgoing = side.rawValue
            if let code = link.sendFailure[outgoing] { throw .failed(peer: peer, operation: "send", errno: code) }
            if let cut = link.pipes[outgoing].cutAt, link.pipes[outgoing].sentBytes >= cut {
                cutLink(link)
                condition.broadcast()
                continue
            }
            let now = Self.now()
            let space = queueCapacityBytes - link.pipes[outgoing].queuedBytes
            if space > 0 {
                var count = min(bytes.count - offset, space)
                if let cut = link.pipes[outgoing].cutAt { count = min(count, cut - link.pipes[outgoing].sentBytes) }
                link.pipes[outgoing].write(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)]), now: now)
                offset += count
                deadline = ConditionLock.deadline(after: timeout)
                condition.broadcast()
                continue
            }
            if let deadline, now >= deadline { throw .timedOut(operation: "send", peer: peer) }
            condition.wait(untilMonotonicNanoseconds: deadline)
        }
    }

    /// Performs a planned drop or cut of `link` (lock held).
    private func cutLink(_ link: Link) {
        link.reset(errno: link.dropEnd, discardingQueued: false)
        if link.dropIsStale {
            link.staleUntil = Self.now() &+ plan.staleHoldMaximum.nanosecondsForSimulation
        }
    }

    func scheduleCut(_ id: Int, sender: SimulatedConnection.Side, at total: Int, stale: Bool) {
        condition.withLock {
            guard let link = links[id] else { return }
            link.pipes[sender.rawValue].cutAt = total
            link.dropEnd = ECONNRESET
            link.dropIsStale = stale
            record(
                "conn \(id) \(link.clientHost) -> \(link.server): cut after \(total) bytes \(sender)->\(sender.other) by the test"
                    + (stale ? ", delivered stale" : ""))
            if link.pipes[sender.rawValue].sentBytes >= total { cutLink(link) }
            condition.broadcast()
        }
    }

    func setTimeouts(_ id: Int, side: SimulatedConnection.Side, receive: Duration?, send: Duration?) {
        condition.withLock {
            links[id]?.timeouts[side.rawValue] = (receive, send)
            condition.broadcast()
        }
    }

    func close(_ id: Int, side: SimulatedConnection.Side) {
        condition.withLock {
            guard let link = links[id], !link.closed[side.rawValue] else { return }
            link.closed[side.rawValue] = true
            // Our sending direction ends after what is queued (FIN); the peer's sends into a
            // closed receiver fail with EPIPE and whatever it had queued for us is dropped.
            if link.pipes[side.rawValue].end == nil { link.pipes[side.rawValue].end = .some(nil) }
            link.pipes[side.other.rawValue].discardQueued()
            if link.sendFailure[side.other.rawValue] == nil { link.sendFailure[side.other.rawValue] = EPIPE }
            if link.closed.allSatisfy({ $0 }) { links[id] = nil }
            condition.broadcast()
        }
    }
}

/// One connection: two directions (`pipes[sender.rawValue]`) and per-side state. Guarded by
/// the ``Fabric``'s condition.
final class Link {
    let id: Int
    let clientHost: String
    let server: Endpoint
    /// What the server side calls the client ("node-a:49153").
    let clientName: String
    var pipes: [Pipe]
    var closed = [false, false]
    var timeouts: [(receive: Duration?, send: Duration?)] = [(nil, nil), (nil, nil)]
    /// The errno each side's sends fail with from now on (after a cut, reset or peer close).
    var sendFailure: [Int32?] = [nil, nil]
    /// What receivers see after a planned drop: ECONNRESET, or `nil` for the end of stream.
    var dropEnd: Int32? = ECONNRESET
    /// Whether a planned drop holds its remaining deliveries back (stale delivery).
    var dropIsStale = false
    /// Deliveries are held until a newer connection between the same hosts delivers, or until
    /// this monotonic time.
    var staleUntil: UInt64?

    var hosts: HostPair { HostPair(clientHost, server.host) }

    init(id: Int, clientHost: String, server: Endpoint, clientName: String, seed: UInt64) {
        self.id = id
        self.clientHost = clientHost
        self.server = server
        self.clientName = clientName
        var rng = SplitMix64(seed: seed)
        self.pipes = [Pipe(rng: SplitMix64(seed: rng.next())), Pipe(rng: SplitMix64(seed: rng.next()))]
    }

    /// Ends both directions: receivers get what is queued (unless discarded), then `errno`
    /// (`nil`: end of stream); sends from both sides fail with ECONNRESET.
    func reset(errno: Int32?, discardingQueued: Bool) {
        for index in pipes.indices {
            if discardingQueued { pipes[index].discardQueued() }
            if pipes[index].end == nil || discardingQueued { pipes[index].end = .some(errno) }
            if sendFailure[index] == nil { sendFailure[index] = ECONNRESET }
        }
    }
}

/// One direction of a connection: a queue of chunks, each readable from its delivery time on.
struct Pipe {
    struct Chunk {
        var bytes: [UInt8]
        var deliverAt: UInt64
    }

    var chunks: [Chunk] = []
    /// Index of the first chunk not fully read, and how much of it was read.
    var head = 0
    var headOffset = 0
    /// Bytes sent and not yet read.
    var queuedBytes = 0
    /// Bytes taken from the sender so far.
    var sentBytes = 0
    /// The stream is cut when `sentBytes` reaches this.
    var cutAt: Int?
    /// Set when no more bytes will come: `.some(nil)` end of stream, `.some(errno)` an error.
    var end: Int32??
    /// The longest a chunk is held back (0: delivered at once), and the generator of delays.
    var maximumDelay: UInt64 = 0
    var rng: SplitMix64
    var lastDeliverAt: UInt64 = 0

    init(rng: SplitMix64) { self.rng = rng }

    /// When the first unread chunk becomes readable; `nil` when nothing is queued.
    var nextDeliveryTime: UInt64? { head < chunks.count ? chunks[head].deliverAt : nil }

    mutating func write(_ bytes: UnsafeRawBufferPointer, now: UInt64) {
        var deliverAt = now
        if maximumDelay > 0 { deliverAt &+= UInt64(rng.uniform(below: Int(clamping: maximumDelay) &+ 1)) }
        // Never before the previous chunk: a stream is not reordered.
        deliverAt = max(deliverAt, lastDeliverAt)
        lastDeliverAt = deliverAt
        chunks.append(Chunk(bytes: Array(bytes), deliverAt: deliverAt))
        queuedBytes += bytes.count
        sentBytes += bytes.count
    }

    /// Copies readable bytes into `buffer`; returns how many.
    mutating func read(into buffer: UnsafeMutableRawBufferPointer, now: UInt64) -> Int {
        var copied = 0
        while copied < buffer.count, head < chunks.count, chunks[head].deliverAt <= now {
            let count = min(chunks[head].bytes.count - headOffset, buffer.count - copied)
            chunks[head].bytes.withUnsafeBytes { source in
                (buffer.baseAddress! + copied).copyMemory(from: source.baseAddress! + headOffset, byteCount: count)
            }
            copied += count
            headOffset += count
            queuedBytes -= count
            if headOffset == chunks[head].bytes.count {
                head += 1
                headOffset = 0
            }
        }
        if head == chunks.count {
            chunks.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64 && head * 2 >= chunks.count {
            chunks.removeFirst(head)
            head = 0
        }
        return copied
    }

    mutating func discardQueued() {
        chunks.removeAll()
        head = 0
        headOffset = 0
        queuedBytes = 0
    }
}

extension SplitMix64 {
    /// True with probability `probability` (0 ... 1); draws nothing when it is 0.
    fileprivate mutating func draw(_ probability: Double) -> Bool {
        guard probability > 0 else { return false }
        return Double(next() >> 11) / Double(UInt64(1) << 53) < probability
    }
}

extension Duration {
    /// Whole nanoseconds, 0 when negative.
    fileprivate var nanosecondsForSimulation: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 && attoseconds >= 0 else { return 0 }
        return UInt64(seconds) &* 1_000_000_000 &+ UInt64(attoseconds / 1_000_000_000)
    }
}
