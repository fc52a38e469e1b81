import Glibc
import ShipLog
import Synchronization

/// A primary and its followers in this process, over loopback TCP, each with its own
/// directory under `root` (`primary`, `follower-0`, ...), running the counting state machine.
/// A follower can be shut down and restarted on its directory (the kill-and-catch-up phase).
final class BenchCluster: Sendable {
    typealias Node = ReplicaNode<RecordCountingStateMachine>

    /// How long the followers may take to connect to the primary.
    static let connectTimeout: Duration = .seconds(10)
    /// Keepalives between the nodes (short, so that a restarted follower is noticed quickly).
    static let keepaliveInterval: Duration = .milliseconds(200)

    let root: String
    let secret: SharedSecret
    let primary: Node
    /// `nil` while a follower is shut down.
    private let followerNodes: Mutex<[Node?]>

    /// Starts the primary on an ephemeral loopback port, then `followerCount` followers, and
    /// waits until all of them stream from the primary.
    init(root: String, followerCount: Int, secret: SharedSecret) throws {
        precondition(followerCount >= 0)
        self.root = root
        self.secret = secret
        primary = try Node(
            directory: FilePath(root + "/primary"), role: .primary, listen: Endpoint(host: "127.0.0.1", port: 0),
            options: Self.options("primary", secret: secret), stateMachineOptions: Self.machineOptions
        ) { RecordCountingStateMachine() }
        followerNodes = Mutex([])
        do {
            for index in 0..<followerCount {
                let follower = try startFollower(index)
                followerNodes.withLock { $0.append(follower) }
            }
            try waitForConnectedFollowers(followerCount)
        } catch {
            shutdown()
            throw error
        }
    }

    /// A new secret of random bytes, for one benchmark's cluster and clients.
    static func randomSecret() throws -> SharedSecret {
        try SharedSecret(bytes: (0..<32).map { _ in UInt8.random(in: 0...255) })
    }

    var followerCount: Int { followerNodes.withLock { $0.count } }

    /// The followers' logs; `nil` for a follower that is shut down.
    var followerLogs: [Log?] { followerNodes.withLock { $0.map { $0?.host?.log } } }

    /// The primary's log.
    func primaryLog() throws -> Log {
        guard let host = primary.host else { throw CommandError("the benchmark's primary at \(root)/primary is not open") }
        return host.log
    }

    /// Shuts follower `index` down (its connection closes; its directory stays).
    func stopFollower(_ index: Int) {
        let node = followerNodes.withLock { nodes -> Node? in
            defer { nodes[index] = nil }
            return nodes[index]
        }
        node?.shutdown()
    }

    /// Starts follower `index` again on its directory; it reconnects and catches up.
    func restartFollower(_ index: Int) throws {
        let node = try startFollower(index)
        followerNodes.withLock { $0[index] = node }
    }

    /// Waits until `count` followers stream from the primary.
    func waitForConnectedFollowers(_ count: Int, timeout: Duration = BenchCluster.connectTimeout) throws {
        let deadline = MonotonicClock.now() + timeout.nanoseconds
        while primary.connectedFollowerCount < count {
            guard MonotonicClock.now() < deadline else {
                throw CommandError("\(count) followers did not connect to the benchmark's primary at \(root) within \(timeout)")
            }
            usleep(1000)
        }
    }

    func shutdown() {
        let nodes = followerNodes.withLock { $0 }
        for follower in nodes { follower?.shutdown() }
        primary.shutdown()
    }

    private func startFollower(_ index: Int) throws -> Node {
        guard let endpoint = primary.listenEndpoint else { throw CommandError("the benchmark's primary is not listening") }
        return try Node(
            directory: FilePath(root + "/follower-\(index)"), role: .follower(primary: endpoint), listen: nil,
            options: Self.options("follower-\(index)", secret: secret), stateMachineOptions: Self.machineOptions
        ) { RecordCountingStateMachine() }
    }

    static func options(_ node: String, secret: SharedSecret) -> ReplicationOptions {
        var options = ReplicationOptions(nodeID: node, secret: secret)
        options.keepaliveInterval = keepaliveInterval
        return options
    }

    /// No automatic checkpoints: the recovery phase replays the whole log.
    static var machineOptions: StateMachineOptions {
        var machine = StateMachineOptions()
        machine.checkpointIntervalBytes = nil
        return machine
    }
}

/// Measures how long each follower takes to make durable what the primary had written:
/// every sample records the primary's written LSN with the time; when a follower's durable
/// LSN passes it, the elapsed time is one lag observation. Also keeps the worst current lag
/// (the age of the oldest sample some follower has not reached) as a time series.
final class LagSampler: @unchecked Sendable {
    // @unchecked: `pending`, `lag` and `points` are touched only by the sampling thread, and
    // read after it is joined.
    /// One point of ``series`` per this interval.
    static let seriesInterval: Duration = .milliseconds(100)

    private let primary: Log
    private let followers: @Sendable () -> [Log?]
    private var pending: [[(lsn: LSN, at: UInt64)]] = []
    private var lastDurable: [LSN] = []
    private var lag = Histogram()
    private var points: [SeriesPoint] = []
    private let start: UInt64

    /// - Parameter followers: the followers' logs now (`nil` for one that is down; the count
    ///   must not change).
    init(primary: Log, followers: @escaping @Sendable () -> [Log?]) {
        self.primary = primary
        self.followers = followers
        self.start = MonotonicClock.now()
    }

    convenience init(primary: Log, followers: [Log]) {
        self.init(primary: primary, followers: { followers })
    }

    var histogram: Histogram { lag }
    /// Worst current follower lag in milliseconds over time (seconds since the sampler was made).
    var series: [SeriesPoint] { points }

    func run(interval: Duration, until stop: AtomicFlag) {
        var windowEnd = MonotonicClock.now() + Self.seriesInterval.nanoseconds
        var worstInWindow: UInt64 = 0
        while !stop.isSet {
            let now = MonotonicClock.now()
            worstInWindow = max(worstInWindow, sample(at: now))
            if now >= windowEnd {
                points.append(SeriesPoint(seconds: Double(now &- start) / 1e9, value: Double(worstInWindow) / 1e6))
                worstInWindow = 0
                windowEnd = now + Self.seriesInterval.nanoseconds
            }
            usleep(UInt32(max(1, interval.nanoseconds / 1000)))
        }
    }

    /// Takes one sample; returns the worst current lag in nanoseconds.
    private func sample(at now: UInt64) -> UInt64 {
        let written = primary.writtenLSN
        let logs = followers()
        if pending.count < logs.count {
            pending += Array(repeating: [], count: logs.count - pending.count)
            lastDurable += Array(repeating: .zero, count: logs.count - lastDurable.count)
        }
        var worst: UInt64 = 0
        for (index, follower) in logs.enumerated() {
            // A follower that is down keeps its last durable LSN and falls behind.
            let durable = follower?.durableLSN ?? lastDurable[index]
            lastDurable[index] = durable
            var consumed = 0
            for sample in pending[index] {
                guard sample.lsn <= durable else { break }
                lag.record(now &- sample.at)
                consumed += 1
            }
            pending[index].removeFirst(consumed)
            if written > durable, pending[index].last?.lsn != written { pending[index].append((written, now)) }
            if let oldest = pending[index].first { worst = max(worst, now &- oldest.at) }
        }
        return worst
    }
}
