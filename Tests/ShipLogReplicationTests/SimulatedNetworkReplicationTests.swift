import Foundation
import ShipLog
import ShipLogProtocol
import ShipLogReplication
import ShipLogTestSupport
import Testing

/// A primary, two followers and a client on a ``SimulatedNetwork`` that drops, cuts, delays and
/// refuses connections and partitions hosts on a seeded schedule, while the client appends with
/// flush:1 (reconnecting after connection errors). After healing, the followers' logs must be
/// byte for byte the primary's, their states equal, and every acknowledged record must be
/// where flush:1 promised.
///
/// `SHIPLOG_NET_SEEDS=n` runs seeds 1 ... n (default 20); `SHIPLOG_NET_SEED=s` replays seed s alone.
@Suite(.serialized) struct SimulatedNetworkReplicationTests {
    static let seeds: [UInt64] = {
        let environment = ProcessInfo.processInfo.environment
        if let one = environment["SHIPLOG_NET_SEED"].flatMap(UInt64.init) { return [one] }
        let count = environment["SHIPLOG_NET_SEEDS"].flatMap(UInt64.init) ?? 20
        return Array(1...max(1, count))
    }()
    /// Append attempts per seed.
    static let attempts = 120

    @Test(arguments: seeds)
    func faultyNetworkStillReplicatesEveryAcknowledgedRecordByteForByte(seed: UInt64) throws {
        let cluster = try SimulatedCluster(seed: seed)
        defer { cluster.remove() }
        var schedule = FaultSchedule(seed: seed, cluster: cluster)
        var acknowledged: [(range: LSNRange, records: [[UInt8]])] = []
        var client: ReplicationClient?
        var outcomes: [String: Int] = [:]
        let started = ContinuousClock.now
        for attempt in 0..<Self.attempts {
            schedule.step(attempt)
            // Mostly small records, now and then a few KiB (frames that a cut can split).
            let valueBytes = attempt % 7 == 0 ? 3000 : 20
            let records = (0..<(1 + attempt % 4)).map {
                putRecord("s\(seed)-a\(attempt)-r\($0)", String(repeating: "\(attempt % 10)", count: valueBytes))
            }
            do {
                if client == nil { client = try cluster.client() }
                let result = try client!.append(records, level: .flush(followers: 1), timeout: .milliseconds(400))
                // flush:1 promises the records durable on the primary and on one follower now.
                let last = result.range.last
                #expect(cluster.primary.host!.log.durableLSN >= last, "seed \(seed): acknowledged \(result.range) is not durable on the primary")
                let durable = cluster.followers.map { $0?.host?.log.durableLSN }
                if !durable.contains(where: { ($0 ?? .zero) >= last }) {
                    let written = cluster.followers.map { $0?.host?.log.writtenLSN }
                    Issue.record(
                        """
                        seed \(seed): attempt \(attempt): acknowledged \(result.range) at flush:1 is durable on no follower \
                        (durable \(durable), written \(written)); the primary's view: \(cluster.primary.statusJSON())
                        \(cluster.faultReport(schedule))
                        """)
                }
                #expect(result.range.count == UInt64(records.count))
                acknowledged.append((result.range, records))
                outcomes["appended", default: 0] += 1
            } catch {
                outcomes[Self.kind(of: error), default: 0] += 1
                if Self.isConnectionError(error) {
                    client?.close()
                    client = nil
                }
                Thread.sleep(forTimeInterval: 0.005)
            }
        }
        client?.close()
        print("seed \(seed): \(outcomes), \(cluster.network.log.count) network faults, \(schedule.events.count) scheduled events, \(ContinuousClock.now - started)")
        schedule.healEverything()
        do {
            try cluster.waitForFollowers(timeout: .seconds(30))
        } catch {
            Issue.record("seed \(seed): \(error)\n\(cluster.faultReport(schedule))")
            return
        }
        #expect(acknowledged.count >= Self.attempts / 10, "seed \(seed): only \(acknowledged.count) appends acknowledged: \(outcomes)")

        // Every acknowledged record, at its LSN, on every node.
        for node in [cluster.primary!] + cluster.followers.compactMap({ $0 }) {
            let log = node.host!.log
            var found: [LSN: [UInt8]] = [:]
            try log.forEachRecord(from: log.firstLSN) { lsn, bytes in found[lsn] = Array(bytes) }
            for (range, records) in acknowledged {
                for (offset, record) in records.enumerated() {
                    let lsn = range.first.advanced(by: UInt64(offset))
                    #expect(found[lsn] == record, "seed \(seed): \(node.options.nodeID) lacks acknowledged LSN \(lsn)")
                }
            }
        }
        let expected = contents(of: cluster.primary)
        for follower in cluster.followers.compactMap({ $0 }) {
            #expect(contents(of: follower) == expected, "seed \(seed): \(follower.options.nodeID)'s state differs from the primary's")
        }
        cluster.shutdown()
        for index in cluster.followers.indices {
            let difference = TestCluster.segmentsDiffer(cluster.directory("primary"), cluster.directory("follower-\(index)"))
            #expect(difference == nil, "seed \(seed): follower-\(index): \(difference ?? "")\n\(cluster.faultReport(schedule))")
        }
    }

    static func isConnectionError(_ error: any Error) -> Bool {
        guard let error = error as? ReplicationError else { return true }
        switch error {
        case .requestFailed: return false
        default: return true
        }
    }

    static func kind(of error: any Error) -> String {
        guard let error = error as? ReplicationError else { return "\(type(of: error))" }
        switch error {
        case .requestFailed(let failure): return "failed(\(failure.reason.code))"
        case .transport: return "transport"
        case .refused: return "refused"
        case .connectionClosed: return "closed"
        default: return "other"
        }
    }
}

/// A primary and two followers, each on its own host of one ``SimulatedNetwork``.
final class SimulatedCluster: @unchecked Sendable {
    // @unchecked: used by one test thread.
    let scratch: ScratchDirectory
    let network: SimulatedNetwork
    let primaryEndpoint = Endpoint(host: "primary", port: 7400)
    var primary: KVNode!
    var followers: [KVNode?] = []
    static let clientHost = "app"

    init(seed: UInt64, followers count: Int = 2) throws {
        scratch = ScratchDirectory("simnet-\(seed)")
        network = SimulatedNetwork(seed: seed, plan: Self.plan)
        primary = try KVNode(
            directory: directory("primary"), role: .primary, listen: primaryEndpoint, options: Self.options("primary"),
            stateMachineOptions: TestCluster.defaultMachineOptions(), network: network.host("primary")
        ) { KeyValueStateMachine() }
        for index in 0..<count { followers.append(try startFollower(index)) }
        try waitForConnections(count)
    }

    static var plan: SimulatedNetwork.FaultPlan {
        var plan = SimulatedNetwork.FaultPlan()
        plan.dropProbability = 0.3
        plan.dropOffsets = 0...(16 << 10)
        plan.staleDeliveryProbability = 0.3
        plan.delayProbability = 0.3
        plan.maximumDelay = .milliseconds(2)
        plan.refuseProbability = 0.1
        return plan
    }

    static func options(_ nodeID: String) -> ReplicationOptions {
        var options = ReplicationOptions(nodeID: nodeID, secret: testSecret)
        options.keepaliveInterval = .milliseconds(100)
        options.replicationTimeout = .milliseconds(800)
        options.handshakeTimeout = .milliseconds(800)
        options.reconnectBackoffMin = .milliseconds(10)
        options.reconnectBackoffMax = .milliseconds(100)
        return options
    }

    func directory(_ name: String) -> FilePath { FilePath(scratch.path + "/" + name) }

    func startFollower(_ index: Int) throws -> KVNode {
        let name = "follower-\(index)"
        return try KVNode(
            directory: directory(name), role: .follower(primary: primaryEndpoint), listen: Endpoint(host: name, port: 7400),
            options: Self.options(name), stateMachineOptions: TestCluster.defaultMachineOptions(), network: network.host(name)
        ) { KeyValueStateMachine() }
    }

    func client() throws -> ReplicationClient {
        var options = ClientOptions(nodeID: "app", secret: testSecret)
        options.connectTimeout = .milliseconds(500)
        options.responseTimeout = .seconds(5)
        return try ReplicationClient(connectingTo: primaryEndpoint, options: options, network: network.host(Self.clientHost))
    }

    func waitForConnections(_ count: Int, timeout: Duration = .seconds(20)) throws {
        guard eventually(within: timeout, { primary.connectedFollowerCount >= count }) else {
            throw ClusterError("\(primary.connectedFollowerCount) of \(count) followers connected after \(timeout)")
        }
    }

    /// Waits until every follower has applied and made durable everything the primary wrote.
    func waitForFollowers(timeout: Duration) throws {
        let target = primary.host!.log.writtenLSN
        let caughtUp = eventually(within: timeout) {
            followers.allSatisfy { ($0?.host?.appliedLSN ?? .zero) >= target && ($0?.host?.log.durableLSN ?? .zero) >= target }
        }
        guard caughtUp else {
            let positions = followers.map { "\($0?.host?.appliedLSN ?? .zero)/\($0?.host?.log.durableLSN ?? .zero)" }
            let errors = followers.map { (try? StatusDocument(of: $0!))?.object["last_error"] as? String ?? "?" }
            throw ClusterError("followers did not catch up with LSN \(target) in \(timeout): applied/durable \(positions), last errors \(errors)")
        }
    }

    /// The faults drawn and the schedule's events, for a failure message.
    func faultReport(_ schedule: FaultSchedule) -> String {
        let faults = network.log
        return "schedule: \(schedule.events.joined(separator: "; "))\nnetwork faults (\(faults.count), last 30):\n"
            + faults.suffix(30).joined(separator: "\n")
    }

    func shutdown() {
        for follower in followers { follower?.shutdown() }
        primary?.shutdown()
    }

    func remove() {
        shutdown()
        scratch.remove()
    }
}

/// Partitions and follower restarts drawn from a seed, one decision per append attempt;
/// every partition heals after a few attempts.
struct FaultSchedule {
    var rng: SplitMix64
    let cluster: SimulatedCluster
    /// Active partitions: the pair, and the attempt at which it heals.
    var partitions: [(a: String, b: String, healAt: Int)] = []
    /// A stopped follower and the attempt at which it starts again.
    var stopped: [(index: Int, restartAt: Int)] = []
    var events: [String] = []

    init(seed: UInt64, cluster: SimulatedCluster) {
        rng = SplitMix64(seed: seed ^ 0x5EED_FA17)
        self.cluster = cluster
    }

    mutating func step(_ attempt: Int) {
        for partition in partitions where partition.healAt <= attempt {
            cluster.network.heal(partition.a, partition.b)
            events.append("\(attempt): heal \(partition.a)|\(partition.b)")
        }
        partitions.removeAll { $0.healAt <= attempt }
        for stop in stopped where stop.restartAt <= attempt {
            restart(stop.index, at: attempt)
        }
        stopped.removeAll { $0.restartAt <= attempt }
        guard rng.chance(1, in: 8) else { return }
        let follower = "follower-\(rng.uniform(below: cluster.followers.count))"
        switch rng.uniform(below: 4) {
        case 0, 1:
            // Primary and one follower; silent partitions outlast the replication timeout now and then.
            let mode: SimulatedNetwork.PartitionMode = rng.coin() ? .reset : .silent
            partition("primary", follower, mode: mode, until: attempt + 2 + rng.uniform(below: 20), at: attempt)
        case 2:
            // The client and the primary (reset only: a silent one would hang a request).
            partition(SimulatedCluster.clientHost, "primary", mode: .reset, until: attempt + 1 + rng.uniform(below: 5), at: attempt)
        default:
            let index = rng.uniform(below: cluster.followers.count)
            guard stopped.isEmpty, cluster.followers[index] != nil else { return }
            cluster.followers[index]!.shutdown()
            cluster.followers[index] = nil
            stopped.append((index, attempt + 2 + rng.uniform(below: 15)))
            events.append("\(attempt): stop follower-\(index)")
        }
    }

    private mutating func partition(_ a: String, _ b: String, mode: SimulatedNetwork.PartitionMode, until healAt: Int, at attempt: Int) {
        guard !partitions.contains(where: { Set([$0.a, $0.b]) == Set([a, b]) }) else { return }
        cluster.network.partition(a, b, mode: mode)
        partitions.append((a, b, healAt))
        events.append("\(attempt): partition \(a)|\(b) \(mode) until \(healAt)")
    }

    private mutating func restart(_ index: Int, at attempt: Int) {
        do {
            cluster.followers[index] = try cluster.startFollower(index)
            events.append("\(attempt): start follower-\(index)")
        } catch {
            Issue.record("restarting follower-\(index): \(error)")
        }
    }

    /// Ends every fault: no more drawn faults, no partitions, every follower running.
    mutating func healEverything() {
        cluster.network.plan = .none
        cluster.network.healAll()
        partitions.removeAll()
        for stop in stopped { restart(stop.index, at: Int.max) }
        stopped.removeAll()
        events.append("end: heal everything")
    }
}
