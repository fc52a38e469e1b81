import Foundation
import ShipLog
import ShipLogProtocol
import ShipLogReplication
import ShipLogTestSupport
import Testing

/// Deterministic reproductions of what ``FailoverSimulationTests`` found: each failover problem
/// as a short sequence of promotions and restarts on a fault-free ``SimulatedNetwork`` (fixed
/// endpoints across restarts). Open ones are wrapped in `withKnownIssue`: when the cause is
/// fixed the test reports that the known issue no longer occurs, and the wrapper should go.
@Suite(.serialized) struct FailoverRegressionTests {
    /// A replication timeout long enough that a silently partitioned follower stays connected
    /// (in the primary's view) for the whole of an append's commit timeout.
    static let replicationTimeout: Duration = .seconds(10)
    static let commitTimeout: Duration = .milliseconds(600)
    /// How long a primary may take to move its slots' retention hold (it refreshes it about
    /// once a second while statuses arrive).
    static let retentionHoldRefreshSeconds = 1.3
    /// Small segments, so that a few records seal some and retention can drop them.
    static let smallSegmentBytes: Int64 = 16 << 10

    /// A former primary keeps the replication slots of its old term, with the durable LSNs its
    /// followers had then. When it is promoted again after rejoining by truncation, those LSNs
    /// name records of an abandoned history; counted as flushed positions (they were, before
    /// ReplicaNode.loadSlotsIntoTracker started them at zero), they confirmed a flush:1 append
    /// of the new epoch by a follower that never received it: here "b", which is down.
    @Test func reelectedFormerPrimaryDoesNotCountStaleSlotPositionsAsFlushedFollowers() throws {
        let cluster = try ThreeNodes("stale-slot")
        defer { cluster.remove() }
        try cluster.append(5, level: .flush(followers: 2), to: "a")
        cluster.stop("c")
        try cluster.append(20, level: .flush(followers: 1), to: "a")  // LSNs 6 ... 25 on a and b; a's slot of b: 25
        cluster.stop("a")
        cluster.stop("b")
        // c (LSNs 1 ... 5) is elected alone: epoch 2 from LSN 6; a rejoins it, truncating after 5.
        try cluster.start("c", following: "a")
        let (epoch2, first2) = try cluster.node("c").promote(minimumEpoch: Epoch(2))
        #expect(first2 == LSN(6))
        try cluster.append(2, level: .local, to: "c", knownEpoch: epoch2)
        try cluster.start("a", following: "c")
        try cluster.waitUntilCaughtUp(["a"], with: "c")
        cluster.stop("c")
        // a is elected again: epoch 3 from LSN 9. c follows it, then stops hearing from it.
        let (epoch3, first3) = try cluster.node("a").promote(minimumEpoch: Epoch(3))
        #expect(first3 == LSN(9))
        try cluster.start("c", following: "a")
        try cluster.waitUntilCaughtUp(["c"], with: "a")
        cluster.network.partition("a", "c", mode: .silent)
        let slotOfB = (try StatusDocument(of: cluster.node("a")).follower("b")?["flushed_lsn"] as? Int) ?? 0
        let client = try cluster.client(of: "a", knownEpoch: epoch3)
        defer { client.close() }
        let result = Result { () throws(ReplicationError) in
            try client.append([putRecord("new", "only on a")], level: .flush(followers: 1), timeout: Self.commitTimeout)
        }
        guard case .failure(.requestFailed(let failure)) = result, case .commitTimedOut = failure.reason else {
            Issue.record(
                "flush:1 write answered \(result) although no follower holds LSN 10 (c is partitioned, b is down); a's tracker says b flushed \(slotOfB), from epoch 1")
            return
        }
    }

    /// `all` waits for every follower of the replica set, and the replica set is the primary's
    /// replication slots. A follower promoted for the first time has none: `all` must not then
    /// be confirmed by the primary's own fdatasync (it was, before CommitTracker refused `all`
    /// with an empty replica set), or promoting the other follower, alive all along, loses it.
    @Test func freshlyPromotedPrimaryDoesNotConfirmAllWithNoFollowerHoldingTheWrite() throws {
        let cluster = try ThreeNodes("all-empty")
        defer { cluster.remove() }
        try cluster.append(3, level: .flush(followers: 2), to: "a")
        cluster.stop("a")
        cluster.network.partition("b", "c", mode: .silent)
        let (epoch, _) = try cluster.node("b").promote(minimumEpoch: Epoch(2))
        try cluster.node("c").follow(cluster.endpoint("b"))
        let client = try cluster.client(of: "b", knownEpoch: epoch)
        defer { client.close() }
        let result = Result { () throws(ReplicationError) in
            try client.append([putRecord("all", "acknowledged")], level: .all, timeout: Self.commitTimeout)
        }
        guard case .success(let appended) = result else { return }
        // b dies; c (alive throughout, never sent the write) is the only candidate.
        cluster.stop("b")
        cluster.network.healAll()
        let (_, first) = try cluster.node("c").promote(minimumEpoch: Epoch(epoch.rawValue + 1))
        Issue.record("`all` write \(appended.range) was confirmed by b while c, alive, lacked it; c's new epoch starts at LSN \(first), so the write is gone")
    }

    /// Rejoin truncates after the divergence point and removes every checkpoint past it
    /// (FollowerLink.rejoin). When retention had already dropped segments on the strength of
    /// those checkpoints, the truncated log started after LSNs no remaining checkpoint covered:
    /// reopening the host failed ("no usable checkpoint covers LSNs the log no longer holds"),
    /// the node was left without a host, and every later restart failed the same way. It only
    /// takes a former primary whose last two checkpoints are newer than what its successor got.
    /// Such a node must start over (and be streamed or re-seeded) instead.
    @Test func rejoinBelowTheCheckpointsThatAllowedRetentionStartsOverInsteadOfLeavingALogThatCannotOpen() throws {
        var machine = TestCluster.defaultMachineOptions()
        machine.log.segmentBytesMax = Self.smallSegmentBytes
        let cluster = try ThreeNodes("rejoin-checkpoints", machineOptions: machine)
        defer { cluster.remove() }
        // Common history until a's third segment has just begun: two sealed segments behind it.
        let log = cluster.node("a").host!.log
        while log.segments.count < 3 || log.writtenLSN.rawValue - log.segments.last!.baseLSN.rawValue > 2 {
            try cluster.append(1, level: .flush(followers: 2), to: "a", valueBytes: 1000)
        }
        let common = log.writtenLSN
        // The primary refreshes its slots' retention hold about once a second of statuses.
        Thread.sleep(forTimeInterval: Self.retentionHoldRefreshSeconds)
        cluster.stop("b")
        cluster.stop("c")
        // a alone: two checkpoints past the common history; retention drops the sealed segments.
        for _ in 0..<2 {
            try cluster.append(1, level: .local, to: "a", valueBytes: 1000)
            _ = try cluster.node("a").host!.checkpoint()
        }
        let firstRetained = log.firstLSN
        try #require(firstRetained > LSN.first && firstRetained <= common, "retention kept LSNs from \(firstRetained); the common history ends at \(common)")
        cluster.stop("a")
        // b (which has the common history) is elected; a comes back as its follower.
        try cluster.start("b", following: "a")
        let (epoch, _) = try cluster.node("b").promote(minimumEpoch: Epoch(2))
        try cluster.append(1, level: .local, to: "b", knownEpoch: epoch, valueBytes: 1000)
        try cluster.start("a", following: "b")
        let rejoined = eventually(within: .seconds(10)) {
            cluster.node("a").host?.log.lastBatchCRC == cluster.node("b").host!.log.lastBatchCRC
        }
        let error = (try? StatusDocument(of: cluster.node("a")))?.object["last_error"] as? String ?? "?"
        #expect(rejoined, "a did not rejoin b after truncating to LSN \(common) (first retained LSN \(firstRetained)): \(error)")
        #expect(contents(of: cluster.node("a")) == contents(of: cluster.node("b")))
        // And it opens again.
        cluster.stop("a")
        try cluster.start("a", following: "b")
        try cluster.waitUntilCaughtUp(["a"], with: "b")
        // Starting over leaves no segment (LogRecovery.truncate after LSN 0): the first batch
        // received creates segment 1 with its own timestamp as createdAt, as on every other node.
        cluster.stop("a")
        cluster.stop("b")
        let difference = TestCluster.segmentsDiffer(cluster.directory("b"), cluster.directory("a"))
        #expect(difference == nil, "a's segment files after starting over: \(difference ?? "")")
    }

    /// A rejoin whose truncation fails halfway (here the disk refuses to create the quarantine
    /// directory) closed the node's log and never opened it again: the node answered "shut
    /// down" to everything, and a promotion said the node was shutting down. The log is now
    /// opened again after a failed change (each change is crash-safe), the link says why the
    /// rejoin failed and tries again, reads keep working, and the rejoin succeeds once the
    /// disk does.
    @Test func rejoinThatFailsHalfwayReopensTheLogAndSucceedsOnceTheDiskWorks() throws {
        let cluster = try ThreeNodes("rejoin-disk-fault")
        defer { cluster.remove() }
        try cluster.append(3, level: .flush(followers: 2), to: "a")
        cluster.stop("b")
        cluster.stop("c")
        try cluster.append(2, level: .local, to: "a")  // LSNs 4 and 5: a's divergent suffix
        cluster.stop("a")
        try cluster.start("b", following: "a")
        let (epoch, _) = try cluster.node("b").promote(minimumEpoch: Epoch(2))
        try cluster.append(1, level: .local, to: "b", knownEpoch: epoch)

        let disk = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        let quarantine = cluster.directory("a").appending("quarantine").string
        let fault = disk.inject(Fault(.createDirectory, .fromCall(0), effect: .fail(errno: EIO), where: { $0.string.hasPrefix(quarantine) }))
        try cluster.start("a", following: "b", fileSystem: disk)
        let failedOnce = eventually(within: .seconds(5)) { disk.timesFired(fault) >= 2 }
        #expect(failedOnce, "the rejoin tried to quarantine a's suffix (and was retried)")
        // The link retries every few milliseconds: poll rather than look once.
        var lastError = ""
        let saysWhy = eventually(within: .seconds(5)) {
            lastError = (try? StatusDocument(of: cluster.node("a")))?.object["last_error"] as? String ?? ""
            return lastError.contains("rejoin failed") && lastError.contains("EIO")
        }
        #expect(saysWhy, "a says why its rejoin failed: \(lastError)")
        let serves = eventually(within: .seconds(5)) {
            guard let reader = try? cluster.client(of: "a") else { return false }
            defer { reader.close() }
            return (try? reader.read(from: LSN(1)))?.lastLSN == LSN(5)
        }
        #expect(serves, "a's log is open again and still serves LSNs 1 ... 5 until it can cut its suffix")

        disk.removeFault(fault)
        try cluster.waitUntilCaughtUp(["a"], with: "b")
        #expect(cluster.node("a").host?.log.lastBatchCRC == cluster.node("b").host?.log.lastBatchCRC)
    }

    /// A promotion to one above the epochs the promoter knows of reuses an epoch, or takes one
    /// below a down node's, when the node that started the highest epoch is down and the
    /// promoter never saw it: an operator promoting by hand, or an election without a counter
    /// of its own (elections now take their epochs from the term record, see
    /// `FailoverProcessTests.nodeReturningAloneAfterOthersLedGetsAnEpochAboveEveryEarlierTerm`).
    /// With epochs fencing, the node that comes back would refuse to follow a primary older
    /// than its own epoch and the cluster would never converge; with `fencesByEpoch` off (as
    /// under an election) it must rejoin by truncation, told apart by the CRC chain.
    @Test func returningNodeWithANewerEpochRejoinsAnElectedPrimaryOfAnOlderOne() throws {
        let cluster = try ThreeNodes("live-epochs", fencesByEpoch: false)
        defer { cluster.remove() }
        try cluster.append(3, level: .flush(followers: 2), to: "a")
        cluster.stop("c")
        cluster.stop("a")
        // b alone: epoch 1 + 1 = 2. a rejoins b and learns epoch 2.
        try cluster.node("b").promote(minimumEpoch: cluster.liveMembersRule())
        try cluster.start("a", following: "b")
        try cluster.waitUntilCaughtUp(["a"], with: "b")
        cluster.stop("b")
        // a alone: epoch 2 + 1 = 3.
        let (epoch3, _) = try cluster.node("a").promote(minimumEpoch: cluster.liveMembersRule())
        try cluster.append(2, level: .local, to: "a", knownEpoch: epoch3)
        cluster.stop("a")
        // c alone, restarted at epoch 1: the rule gives epoch 2 again, below a's 3.
        try cluster.start("c", following: "a")
        let (reused, _) = try cluster.node("c").promote(minimumEpoch: cluster.liveMembersRule())
        try cluster.append(1, level: .local, to: "c", knownEpoch: reused)
        try cluster.start("a", following: "c")
        let rejoined = eventually(within: .seconds(5)) {
            cluster.node("c").connectedFollowerCount == 1
                && cluster.node("a").host?.log.lastBatchCRC == cluster.node("c").host?.log.lastBatchCRC
        }
        let error = (try? StatusDocument(of: cluster.node("a")))?.object["last_error"] as? String ?? "?"
        #expect(rejoined, "a (epoch \(epoch3)) never follows c (epoch \(reused)): \(error)")
        #expect(cluster.node("c").fencing == nil, "c was fenced: \(cluster.node("c").fencing ?? "")")
        #expect(reused <= epoch3, "the scenario reuses an epoch: c was promoted to \(reused), a had \(epoch3)")
    }
}

/// Nodes "a" (the first primary), "b" and "c" on a fault-free ``SimulatedNetwork``, each in a
/// directory of its own, started and stopped by name.
final class ThreeNodes: @unchecked Sendable {
    // @unchecked: used by one test thread.
    let scratch: ScratchDirectory
    let network = SimulatedNetwork(seed: 0)
    private var nodes: [String: KVNode] = [:]
    static let port: UInt16 = 7400
    private var appended = 0

    let machineOptions: StateMachineOptions
    let fencesByEpoch: Bool

    init(_ label: String, machineOptions: StateMachineOptions = TestCluster.defaultMachineOptions(), fencesByEpoch: Bool = true) throws {
        scratch = ScratchDirectory(label)
        self.machineOptions = machineOptions
        self.fencesByEpoch = fencesByEpoch
        nodes["a"] = try open("a", role: .primary)
        for name in ["b", "c"] { try start(name, following: "a") }
        guard eventually(within: .seconds(10), { nodes["a"]!.connectedFollowerCount == 2 }) else {
            throw ClusterError("the followers did not connect to a")
        }
    }

    func endpoint(_ name: String) -> Endpoint { Endpoint(host: name, port: Self.port) }

    func directory(_ name: String) -> FilePath { FilePath(scratch.path + "/" + name) }

    func node(_ name: String) -> KVNode { nodes[name]! }

    private func open(_ name: String, role: ReplicaRole, fileSystem: any FileSystem = PosixFileSystem()) throws -> KVNode {
        var options = ReplicationOptions(nodeID: name, secret: testSecret)
        options.keepaliveInterval = .milliseconds(100)
        options.replicationTimeout = FailoverRegressionTests.replicationTimeout
        options.handshakeTimeout = .milliseconds(800)
        options.reconnectBackoffMin = .milliseconds(10)
        options.reconnectBackoffMax = .milliseconds(100)
        options.fencesByEpoch = fencesByEpoch
        return try KVNode(
            directory: directory(name), role: role, listen: endpoint(name), options: options,
            stateMachineOptions: machineOptions, network: network.host(name), fileSystem: fileSystem
        ) { KeyValueStateMachine() }
    }

    func start(_ name: String, following primary: String, fileSystem: any FileSystem = PosixFileSystem()) throws {
        nodes[name] = try open(name, role: .follower(primary: endpoint(primary)), fileSystem: fileSystem)
    }

    func stop(_ name: String) {
        nodes[name]?.shutdown()
        nodes[name] = nil
    }

    /// One above the highest epoch of the running nodes: what an operator promoting by hand sees.
    func liveMembersRule() -> Epoch {
        Epoch((nodes.values.compactMap { $0.host?.log.epoch.rawValue }.max() ?? 0) + 1)
    }

    func client(of name: String, knownEpoch: Epoch = Epoch(0)) throws(ReplicationError) -> ReplicationClient {
        var options = ClientOptions(nodeID: "app", secret: testSecret)
        options.knownEpoch = knownEpoch
        return try ReplicationClient(connectingTo: endpoint(name), options: options, network: network.host("app"))
    }

    /// Appends `count` one-record batches to `name` at `level`, each value `valueBytes` of
    /// pseudo-random letters (LZ4 leaves them about that size) when asked.
    func append(_ count: Int, level: CommitLevel, to name: String, knownEpoch: Epoch = Epoch(0), valueBytes: Int = 0) throws {
        let client = try client(of: name, knownEpoch: knownEpoch)
        defer { client.close() }
        for _ in 0..<count {
            appended += 1
            var rng = SplitMix64(seed: UInt64(appended))
            let letters = String((0..<valueBytes).map { _ in Character(UnicodeScalar(UInt8(97 + rng.uniform(below: 26)))) })
            _ = try client.append([putRecord("k\(appended)", "v\(appended)" + letters)], level: level, timeout: .seconds(10))
        }
    }

    /// Waits until every node in `names` holds, durably and applied, exactly `primary`'s log.
    func waitUntilCaughtUp(_ names: [String], with primary: String) throws {
        let log = node(primary).host!.log
        let caughtUp = eventually(within: .seconds(10)) {
            names.allSatisfy { name in
                guard let host = nodes[name]?.host else { return false }
                return host.log.durableLSN >= log.writtenLSN && host.appliedLSN >= log.writtenLSN && host.log.lastBatchCRC == log.lastBatchCRC
            }
        }
        guard caughtUp else { throw ClusterError("\(names) did not catch up with \(primary) at LSN \(log.writtenLSN)") }
    }

    func remove() {
        for name in nodes.keys.sorted() { stop(name) }
        scratch.remove()
    }
}
