#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ShipLog
import ShipLogProtocol
import ShipLogReplication
import ShipLogStorage
import ShipLogTestSupport
import Testing

/// Three nodes on a ``SimulatedNetwork`` with seeded faults (drops, stale deliveries, delays,
/// refusals, partitions), each on a ``SimulatedFileSystem`` of its own, with power loss of any
/// node, promotions, planned switchovers, and a client appending unique key-value records at
/// commit levels drawn from {flush:1, flush:2, all, local, write:1}; checked against a model of
/// what each acknowledgement promised. Small segments and frequent automatic checkpoints make
/// retention, rejoins across segments and re-seeding happen.
///
/// Crash model (power loss of one machine): the node is cut off the network (reset partitions
/// with every other host), its ``NodePowerCut`` refuses every later file-system call of that
/// incarnation, its simulator crashes (unsynced writes lost, torn or reordered; unsynced
/// directory entries lost; open handles dead), and only then are the dead incarnation's threads
/// stopped (`shutdown()`, whose I/O reaches no disk). A restart opens a new ``KVNode`` on the same
/// simulator. fdatasync takes 1 ms, and events also strike while appends are in flight, so
/// crashes do find unsynced data. A crashed primary is replaced at once by what an election
/// picks: the live node with the highest (epoch, durable LSN, node id), promoted to one epoch
/// above every epoch started so far (`SHIPLOG_FAILSIM_ELECTION=live-members`: above the live
/// nodes' only); the other live nodes `follow(_:)` it; the old primary restarts later as a
/// follower of the primary of that time (rejoining by truncation when it diverged). The client
/// finds the primary again with `connectToPrimary(among:)` and its `knownEpoch`.
///
/// Model checks, after healing and convergence (same last batch CRC everywhere):
/// * each acknowledgement, when it arrives: durable on the primary, and `flush:K` on K other
///   nodes holding that very batch durably;
/// * every write acknowledged at `flush:K`/`all` is on every node (its batch at its LSNs, or,
///   once retention dropped them, its keys and values in the state), unless at some election
///   after it no live node held it durably (FAILOVER.md's documented limit: every acknowledging
///   follower was down; listed in the report);
/// * `local`/`write:1` acknowledgements are lost only if a promotion followed them;
/// * no node holds a key or value the client never sent; all states equal the primary's;
/// * batches byte for byte equal from the newest first LSN on; segment files byte for byte
///   equal among nodes never re-seeded and never crashed with unsynced data (those may roll
///   segments at other LSNs);
/// * epoch histories equal (from the newest first LSN), increasing, each start a promotion's,
///   and no epoch started twice.
///
/// `SHIPLOG_FAILSIM_SEEDS=n` runs seeds 1 ... n (default 20); `SHIPLOG_FAILSIM_SEED=s` replays
/// seed s (thread timing varies, so a replay need not hit the same interleaving);
/// `SHIPLOG_FAILSIM_VERBOSE=1` prints every seed's event log.
@Suite(.serialized) struct FailoverSimulationTests {
    static let seeds: [UInt64] = {
        let environment = ProcessInfo.processInfo.environment
        if let one = environment["SHIPLOG_FAILSIM_SEED"].flatMap(UInt64.init) { return [one] }
        let count = environment["SHIPLOG_FAILSIM_SEEDS"].flatMap(UInt64.init) ?? 20
        return Array(1...max(1, count))
    }()

    @Test(arguments: seeds)
    func crashesAndPromotionsLoseNoAcknowledgedWriteAndInventNoByte(seed: UInt64) throws {
        let simulation = try FailoverSimulation(seed: seed)
        defer { simulation.stopEverything() }
        simulation.run()
        simulation.healAndConverge()
        simulation.checkModel()
        simulation.report()
    }
}

// MARK: - Power cut

/// Sits between one incarnation of a node and its machine's ``SimulatedFileSystem``: after
/// ``cut()`` every call fails with EIO, so a dead incarnation whose threads still run can never
/// reach the disk again. The switch holds its lock across each forwarded directory call, so
/// the cut is atomic with respect to them; handles check it before each call (and die with the
/// simulator's crash anyway). `fdatasync` takes ``syncLatency``, so that a crash can find
/// written but unsynced data, as on a disk.
final class NodePowerCut: FileSystem, @unchecked Sendable {
    // @unchecked: `isOff` is guarded by `lock`.
    let simulator: SimulatedFileSystem
    let syncLatency: Duration
    private let lock = NSLock()
    private var isOff = false

    init(_ simulator: SimulatedFileSystem, syncLatency: Duration) {
        self.simulator = simulator
        self.syncLatency = syncLatency
    }

    /// Refuses every later call.
    func cut() { lock.withLock { isOff = true } }

    var isCut: Bool { lock.withLock { isOff } }

    private func forward<R>(
        _ operation: FileSystemError.Operation, _ path: FilePath, _ body: () throws(FileSystemError) -> R
    ) throws(FileSystemError) -> R {
        lock.lock()
        defer { lock.unlock() }
        if isOff { throw FileSystemError(operation: operation, path: path, errno: EIO) }
        return try body()
    }

    func openFile(at path: FilePath, options: FileOpenOptions) throws(FileSystemError) -> any ShipLogStorage.FileHandle {
        let handle = try forward(.open, path) { () throws(FileSystemError) in try simulator.openFile(at: path, options: options) }
        return PoweredHandle(handle, power: self)
    }

    func contentsOfDirectory(at path: FilePath) throws(FileSystemError) -> [String] {
        try forward(.listDirectory, path) { () throws(FileSystemError) in try simulator.contentsOfDirectory(at: path) }
    }

    func createDirectory(at path: FilePath) throws(FileSystemError) {
        try forward(.createDirectory, path) { () throws(FileSystemError) in try simulator.createDirectory(at: path) }
    }

    func rename(from source: FilePath, to destination: FilePath) throws(FileSystemError) {
        try forward(.rename, source) { () throws(FileSystemError) in try simulator.rename(from: source, to: destination) }
    }

    func removeFile(at path: FilePath) throws(FileSystemError) {
        try forward(.remove, path) { () throws(FileSystemError) in try simulator.removeFile(at: path) }
    }

    func syncDirectory(at path: FilePath) throws(FileSystemError) {
        try forward(.syncDirectory, path) { () throws(FileSystemError) in try simulator.syncDirectory(at: path) }
    }

    func fileExists(at path: FilePath) -> Bool {
        (try? forward(.stat, path) { () throws(FileSystemError) in simulator.fileExists(at: path) }) ?? false
    }
}

/// A handle of a ``NodePowerCut``: refuses every call once the power is cut.
final class PoweredHandle: ShipLogStorage.FileHandle, @unchecked Sendable {
    // @unchecked: immutable; the wrapped handle is thread-safe as the engine uses it.
    let base: any ShipLogStorage.FileHandle
    let power: NodePowerCut

    init(_ base: any ShipLogStorage.FileHandle, power: NodePowerCut) {
        self.base = base
        self.power = power
    }

    var path: FilePath { base.path }

    private func check(_ operation: FileSystemError.Operation) throws(FileSystemError) {
        if power.isCut { throw FileSystemError(operation: operation, path: base.path, errno: EIO) }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, fromAbsoluteOffset offset: Int64) throws(FileSystemError) -> Int {
        try check(.read)
        return try base.read(into: buffer, fromAbsoluteOffset: offset)
    }

    func readBypassingCache(into buffer: UnsafeMutableRawBufferPointer, fromAbsoluteOffset offset: Int64) throws(FileSystemError) -> Int {
        try check(.read)
        return try base.readBypassingCache(into: buffer, fromAbsoluteOffset: offset)
    }

    func write(_ bytes: UnsafeRawBufferPointer, toAbsoluteOffset offset: Int64) throws(FileSystemError) {
        try check(.write)
        try base.write(bytes, toAbsoluteOffset: offset)
    }

    func synchronizeData() throws(FileSystemError) {
        try check(.sync)
        if power.syncLatency > .zero { Thread.sleep(forTimeInterval: Double(power.syncLatency.nanoseconds) / 1e9) }
        try check(.sync)
        try base.synchronizeData()
    }

    func preallocate(fromAbsoluteOffset offset: Int64, length: Int64) throws(FileSystemError) {
        try check(.preallocate)
        try base.preallocate(fromAbsoluteOffset: offset, length: length)
    }

    func truncate(toSize size: Int64) throws(FileSystemError) {
        try check(.truncate)
        try base.truncate(toSize: size)
    }

    func size() throws(FileSystemError) -> Int64 {
        try check(.stat)
        return try base.size()
    }

    func close() { base.close() }
}

// MARK: - The simulation

/// One seed's run: machines, network, client, schedule and model. Driven by one test thread;
/// only ``registry`` is read from the client's completion thread.
final class FailoverSimulation: @unchecked Sendable {
    // @unchecked: every var is used by the test thread only; `registry` is a `Locked`.

    /// Append attempts (bursts of 1 ... `burstAppendsMax` appends) per seed.
    static let attempts = 50
    static let burstAppendsMax = 3
    static let recordsPerAppendMax = 2
    /// Each append's commit-level timeout.
    static let appendTimeout: Duration = .milliseconds(120)
    /// What each fdatasync takes: a window in which a crash finds written, unsynced data.
    static let syncLatency: Duration = .milliseconds(1)
    /// How long the followers get to converge after healing.
    static let convergenceTimeout: Duration = .seconds(30)
    /// How long a planned switchover waits for its candidate to catch up before it is abandoned.
    static let switchoverCatchUpTimeout: Duration = .seconds(1)
    /// Segment size: small, so that segments roll and truncation crosses segment boundaries.
    static let segmentBytesMax: Int64 = 16 << 10
    /// Automatic checkpoints this often (bytes of log), so that rejoins remove checkpoints and
    /// retention drops covered segments.
    static let checkpointIntervalBytes: Int64? = 8 << 10
    /// Value sizes: mostly small, now and then a few KiB (frames a cut can split).
    static let smallValueBytes = 100
    static let largeValueBytes = 3000
    static let clientHost = "app"
    static let directory = FilePath("/node")
    static let port: UInt16 = 7400
    static let levels: [CommitLevel] = [.flush(followers: 1), .flush(followers: 2), .all, .local, .write(followers: 1)]

    /// Which epoch an election promotes to: one above ...
    enum ElectionRule: String {
        /// ... every epoch ever started (the term record's counter in the coordination service,
        /// `FailoverManager.campaign(after:)`): the default.
        case aboveEveryEpochStarted = "all-epochs"
        /// ... the epochs of the live members only (what an election without the term record
        /// would know after a restart, and what an operator promoting by hand may pick):
        /// reuses an epoch, or goes below a down node's, when the node that started
        /// the highest epoch is down. Nodes run with `fencesByEpoch` off, as under
        /// `serve --elect`, so that such a node rejoins (see
        /// `FailoverRegressionTests.returningNodeWithANewerEpochRejoinsAnElectedPrimaryOfAnOlderOne`);
        /// epoch reuses are counted, not failures.
        case aboveLiveMembers = "live-members"
    }

    /// `SHIPLOG_FAILSIM_ELECTION=live-members` replays a seed with the live-members rule.
    static let electionRule = ProcessInfo.processInfo.environment["SHIPLOG_FAILSIM_ELECTION"].flatMap(ElectionRule.init) ?? .aboveEveryEpochStarted

    struct Machine {
        let name: String
        let endpoint: Endpoint
        let disk: SimulatedFileSystem
        var power: NodePowerCut?
        var node: KVNode?
        var crashes = 0
        /// A crash found unsynced data: a segment roll in flight may have left a new segment
        /// (or a seal) behind that the surviving nodes never made, so this node's segment files
        /// may roll at other LSNs from then on (its batches are compared instead).
        var layoutMayDiffer = false
    }

    /// An append the primary answered `appended`.
    struct Acknowledgement {
        var keys: [String]
        var records: [[UInt8]]
        var range: LSNRange
        var epoch: Epoch
        var level: CommitLevel
        var primary: String
        var attempt: Int
        /// Promotions that had happened when it was acknowledged.
        var promotionsBefore: Int
        /// Nodes other than the acknowledging primary that held it durably (durableLSN at or past
        /// its last LSN) when the acknowledgement arrived.
        var durableFollowers: [String]
        /// Why losing it is allowed (every node holding it was down at an election), if it is.
        var exemption: String?

        var requiresFollowers: Bool {
            switch level {
            case .flush, .apply, .all: true
            case .local, .write: false
            }
        }
    }

    let seed: UInt64
    var rng: SplitMix64
    let network: SimulatedNetwork
    var machines: [Machine] = []
    var primary = 0
    /// Nodes by name, for the completion thread (a crashed node's entry is removed).
    let registry = Locked<[String: KVNode]>([:])
    var client: ReplicationClient?
    var clientIsStale = false
    var knownEpoch = Epoch(0)
    /// Set when a node crashes while a burst is in flight.
    var crashedDuringBurst = false
    var sequence = 0
    var sent: [String: [UInt8]] = [:]
    var acknowledged: [Acknowledgement] = []
    var outcomes: [String: Int] = [:]
    var events: [String] = []
    var problems: [String] = []
    var promotions: [(epoch: Epoch, firstLSN: LSN, node: String, attempt: Int)] = []
    /// Promotions to an epoch another promotion had started (only with ``ElectionRule/aboveLiveMembers``).
    var epochReuses = 0
    var partitions: [(a: String, b: String, mode: SimulatedNetwork.PartitionMode, healAt: Int)] = []
    var restarts: [(index: Int, at: Int)] = []
    let started = ContinuousClock.now

    init(seed: UInt64) throws {
        self.seed = seed
        rng = SplitMix64(seed: seed ^ 0xFA11_0E55)
        network = SimulatedNetwork(seed: seed, plan: Self.plan)
        for index in 0..<3 {
            let name = "n\(index)"
            machines.append(Machine(name: name, endpoint: Endpoint(host: name, port: Self.port), disk: SimulatedFileSystem(seed: seed &* 31 &+ UInt64(index))))
        }
        try start(0, role: .primary)
        for index in 1..<3 { try start(index, role: .follower(primary: machines[0].endpoint)) }
        guard eventually(within: .seconds(20), { machines[0].node!.connectedFollowerCount == 2 }) else {
            throw ClusterError("seed \(seed): the followers did not connect")
        }
    }

    static var plan: SimulatedNetwork.FaultPlan {
        var plan = SimulatedNetwork.FaultPlan()
        plan.dropProbability = 0.15
        plan.dropOffsets = 0...(16 << 10)
        plan.staleDeliveryProbability = 0.2
        plan.delayProbability = 0.3
        plan.maximumDelay = .milliseconds(2)
        plan.refuseProbability = 0.05
        return plan
    }

    func options(_ name: String) -> ReplicationOptions {
        var options = ReplicationOptions(nodeID: name, secret: testSecret)
        options.keepaliveInterval = .milliseconds(100)
        options.replicationTimeout = .milliseconds(800)
        options.handshakeTimeout = .milliseconds(800)
        options.reconnectBackoffMin = .milliseconds(10)
        options.reconnectBackoffMax = .milliseconds(100)
        options.peers = machines.filter { $0.name != name }.map(\.endpoint)
        // Epochs fence with the default rule; with live-members, as under `serve --elect`, the
        // lease is what fences.
        options.fencesByEpoch = Self.electionRule == .aboveEveryEpochStarted
        return options
    }

    static func machineOptions() -> StateMachineOptions {
        var options = TestCluster.defaultMachineOptions()
        options.log.segmentBytesMax = segmentBytesMax
        options.checkpointIntervalBytes = checkpointIntervalBytes
        return options
    }

    var live: [Int] { machines.indices.filter { machines[$0].node != nil } }
    var primaryNode: KVNode { machines[primary].node! }

    func note(_ attempt: Int, _ text: String) { events.append("\(attempt == Int.max ? "end" : "a\(attempt)"): \(text)") }

    func problem(_ text: String) { problems.append(text) }

    // MARK: Machines

    func start(_ index: Int, role: ReplicaRole) throws(ReplicationError) {
        let power = NodePowerCut(machines[index].disk, syncLatency: Self.syncLatency)
        let name = machines[index].name
        let node = try KVNode(
            directory: Self.directory, role: role, listen: machines[index].endpoint, options: options(name),
            stateMachineOptions: Self.machineOptions(), network: network.host(name), fileSystem: power
        ) { KeyValueStateMachine() }
        machines[index].power = power
        machines[index].node = node
        registry.withLock { $0[name] = node }
    }

    /// Power loss of machine `index` (see the suite's doc comment for the model).
    func crash(_ index: Int, at attempt: Int) {
        let name = machines[index].name
        let others = machines.map(\.name).filter { $0 != name } + [Self.clientHost]
        for other in others { network.partition(name, other, mode: .reset) }
        let node = machines[index].node
        let log = node?.host?.log
        let position = "written \(log?.writtenLSN ?? .zero), durable \(log?.durableLSN ?? .zero), epoch \(log?.epoch ?? Epoch(0))"
        machines[index].power?.cut()
        let unsynced = machines[index].disk.hasUnsyncedChanges
        machines[index].disk.crash(seed: seed &* 1_000_003 &+ UInt64(events.count))
        machines[index].crashes += 1
        if unsynced { machines[index].layoutMayDiffer = true }
        registry.withLock { $0[name] = nil }
        node?.shutdown()
        machines[index].node = nil
        machines[index].power = nil
        for other in others {
            if let scheduled = partitions.first(where: { Set([$0.a, $0.b]) == Set([name, other]) }) {
                network.partition(name, other, mode: scheduled.mode)
            } else {
                network.heal(name, other)
            }
        }
        note(attempt, "crash \(name)\(index == primary ? " (primary)" : "") at \(position), unsynced data \(unsynced ? "dropped or torn" : "none")")
    }

    /// Restarts machine `index` as a follower of the current primary.
    func restart(_ index: Int, at attempt: Int) {
        let target = machines[primary].endpoint
        do {
            try start(index, role: .follower(primary: target))
            let log = machines[index].node!.host!.log
            note(attempt, "restart \(machines[index].name) as follower of \(machines[primary].name): recovered written \(log.writtenLSN), epoch \(log.epoch)")
        } catch {
            problem("restarting \(machines[index].name) after a crash failed: \(error)")
            note(attempt, "restart \(machines[index].name) FAILED: \(error)")
        }
    }

    // MARK: Elections

    /// What an election would compare: (epoch, durable LSN, node id).
    func electionKey(_ index: Int) -> (UInt64, UInt64, String) {
        let log = machines[index].node?.host?.log
        return (log?.epoch.rawValue ?? 0, log?.durableLSN.rawValue ?? 0, machines[index].name)
    }

    /// Whether `node` holds `ack` (durably, if asked): its batch at the same LSNs, epoch and
    /// records; or, once retention dropped those LSNs (a checkpoint covers them), its keys with
    /// their values in the node's state.
    static func holds(_ node: KVNode?, _ ack: Acknowledgement, durably: Bool, sent: [String: [UInt8]] = [:]) -> Bool {
        guard let host = node?.host else { return false }
        let log = host.log
        func inState() -> Bool {
            guard ack.range.last < log.firstLSN, !ack.keys.isEmpty else { return false }
            return host.withMachine { machine, _ in ack.keys.allSatisfy { machine.tree[Array($0.utf8)] == sent[$0] } }
        }
        if ack.range.first < log.firstLSN { return inState() }
        if durably && log.durableLSN < ack.range.last { return false }
        guard log.writtenLSN >= ack.range.last else { return false }
        var records: [[UInt8]] = []
        do {
            guard let batch = try log.batch(containing: ack.range.first), batch.lsnRange == ack.range, batch.header.epoch == ack.epoch else {
                return ack.range.first < log.firstLSN ? inState() : false
            }
            try log.forEachRecord(from: ack.range.first, through: ack.range.last) { _, bytes in records.append(Array(bytes)) }
        } catch {
            // Retention (after an automatic checkpoint) may have dropped the segment meanwhile.
            return inState()
        }
        return records == ack.records
    }

    /// Promotes the election's winner among the live nodes other than `excluded`; the others
    /// follow it. Acknowledged writes that no candidate holds become exempt (FAILOVER.md's limit).
    func elect(excluding excluded: Int, at attempt: Int, reason: String) -> Bool {
        let candidates = live.filter { $0 != excluded }
        guard let winner = candidates.max(by: { electionKey($0) < electionKey($1) }) else { return false }
        for index in acknowledged.indices where acknowledged[index].requiresFollowers && acknowledged[index].exemption == nil {
            let ack = acknowledged[index]
            if Self.holds(machines[winner].node, ack, durably: true, sent: sent) { continue }
            let holders = candidates.filter { Self.holds(machines[$0].node, ack, durably: true, sent: sent) }.map { machines[$0].name }
            if holders.isEmpty {
                acknowledged[index].exemption = "no live node held it durably at the election of a\(attempt) (candidates \(candidates.map { machines[$0].name }))"
            } else {
                problem("the election rule picked \(machines[winner].name) \(electionKey(winner)), which lacks \(ack.level) write \(ack.range) held durably by \(holders)")
            }
        }
        var highest = candidates.compactMap { machines[$0].node?.host?.log.epoch.rawValue }.max() ?? 0
        if Self.electionRule == .aboveEveryEpochStarted { highest = max(highest, promotions.map(\.epoch.rawValue).max() ?? 0) }
        let node = machines[winner].node!
        do {
            let (epoch, first) = try node.promote(minimumEpoch: Epoch(highest + 1))
            if let previous = promotions.first(where: { $0.epoch == epoch }) {
                epochReuses += 1
                if Self.electionRule == .aboveEveryEpochStarted {
                    problem(
                        "epoch \(epoch) started twice: by \(previous.node) at LSN \(previous.firstLSN) (a\(previous.attempt)) and by \(machines[winner].name) at LSN \(first) (a\(attempt))")
                }
                note(attempt, "epoch \(epoch) reused (started by \(previous.node) at LSN \(previous.firstLSN))")
            }
            promotions.append((epoch, first, machines[winner].name, attempt))
            note(attempt, "\(reason): promote \(machines[winner].name) \(electionKey(winner)) to epoch \(epoch) from LSN \(first)")
        } catch {
            problem("promoting \(machines[winner].name) failed: \(error)")
            return false
        }
        primary = winner
        for other in candidates where other != winner {
            do {
                try machines[other].node!.follow(machines[winner].endpoint)
            } catch {
                problem("\(machines[other].name).follow(\(machines[winner].name)) failed: \(error)")
            }
        }
        clientIsStale = true
        return true
    }

    /// The primary loses power; the election replaces it; it restarts later as a follower.
    func failOver(at attempt: Int) {
        let old = primary
        crash(old, at: attempt)
        if elect(excluding: old, at: attempt, reason: "failover") {
            restarts.append((old, attempt + 1 + rng.uniform(below: 10)))
        } else {
            // Nobody to elect: the old primary comes back as the primary.
            do {
                try start(old, role: .primary)
                note(attempt, "no live candidate: \(machines[old].name) restarts as the primary")
            } catch {
                problem("restarting the only node \(machines[old].name) failed: \(error)")
            }
        }
    }

    /// A planned switchover: fence the primary, let the best follower catch up, promote it, and
    /// demote the old primary to follow it.
    func switchOver(at attempt: Int) {
        let old = primary
        let followers = live.filter { $0 != old }
        guard followers.count == 2 else { return }
        let oldNode = machines[old].node!
        oldNode.fence(reason: "switchover")
        guard let target = oldNode.host?.log.writtenLSN else { return }
        let caughtUp = eventually(within: Self.switchoverCatchUpTimeout) {
            followers.contains { (machines[$0].node!.host?.log.durableLSN ?? .zero) >= target }
        }
        guard caughtUp else {
            oldNode.unfence()
            note(attempt, "switchover abandoned: no follower reached LSN \(target)")
            return
        }
        guard elect(excluding: old, at: attempt, reason: "switchover") else {
            oldNode.unfence()
            return
        }
        do {
            try oldNode.demote(toFollowerOf: machines[primary].endpoint)
            note(attempt, "demote \(machines[old].name) to follow \(machines[primary].name)")
        } catch {
            problem("demoting \(machines[old].name) failed: \(error)")
        }
    }

    // MARK: Schedule

    /// Heals what is due, restarts what is due, and maybe draws one event.
    func step(_ attempt: Int) {
        for partition in partitions where partition.healAt <= attempt {
            network.heal(partition.a, partition.b)
            note(attempt, "heal \(partition.a)|\(partition.b)")
        }
        partitions.removeAll { $0.healAt <= attempt }
        let due = restarts.filter { $0.at <= attempt }
        restarts.removeAll { $0.at <= attempt }
        for restart in due { self.restart(restart.index, at: attempt) }
        guard rng.chance(1, in: 8) else { return }
        drawEvent(attempt)
    }

    func drawEvent(_ attempt: Int) {
        let names = machines.map(\.name)
        switch rng.uniform(below: 11) {
        case 0, 1, 2:
            let a = rng.uniform(below: 3)
            let b = (a + 1 + rng.uniform(below: 2)) % 3
            let mode: SimulatedNetwork.PartitionMode = rng.coin() ? .reset : .silent
            partition(names[a], names[b], mode: mode, until: attempt + 2 + rng.uniform(below: 15), at: attempt)
        case 3:
            // The client and one node (reset only: a silent one would hang a request).
            partition(Self.clientHost, names[rng.uniform(below: 3)], mode: .reset, until: attempt + 1 + rng.uniform(below: 4), at: attempt)
        case 4, 5:
            let followers = live.filter { $0 != primary }
            guard !followers.isEmpty else { return }
            let index = followers[rng.uniform(below: followers.count)]
            crash(index, at: attempt)
            restarts.append((index, attempt + 2 + rng.uniform(below: 12)))
        case 6, 7, 8:
            guard live.count >= 2 else { return }
            failOver(at: attempt)
        case 9:
            switchOver(at: attempt)
        default:
            return
        }
    }

    func partition(_ a: String, _ b: String, mode: SimulatedNetwork.PartitionMode, until healAt: Int, at attempt: Int) {
        guard !partitions.contains(where: { Set([$0.a, $0.b]) == Set([a, b]) }) else { return }
        network.partition(a, b, mode: mode)
        partitions.append((a, b, mode, healAt))
        note(attempt, "partition \(a)|\(b) \(mode) until a\(healAt)")
    }

    // MARK: Client

    func connectClient() -> ReplicationClient? {
        var options = ClientOptions(nodeID: "app", secret: testSecret)
        options.connectTimeout = .milliseconds(300)
        options.responseTimeout = .seconds(2)
        options.knownEpoch = knownEpoch
        guard let client = ReplicationClient.connectToPrimary(
            among: machines.map(\.endpoint), options: options, network: network.host(Self.clientHost))
        else { return nil }
        knownEpoch = max(knownEpoch, client.epoch)
        return client
    }

    func dropClient() {
        client?.close()
        client = nil
        clientIsStale = false
    }

    /// The value of key `seq`: letters drawn from the seed and the sequence number (LZ4 finds
    /// little to compress, so the log grows enough for checkpoints and segment retention).
    func value(for seq: Int) -> String {
        var mix = SplitMix64(seed: seed &* 0x9E37_79B9 &+ UInt64(seq))
        let size = mix.chance(1, in: 8) ? Self.largeValueBytes : Self.smallValueBytes
        let letters = (0..<size).map { _ in Character(UnicodeScalar(UInt8(97 + mix.uniform(below: 26)))) }
        return "v\(seed)-\(seq)-" + String(letters)
    }

    typealias Answer = (
        result: Result<AppendResult, ReplicationError>, durableFollowers: [String], writtenFollowers: [String], primaryDurable: LSN?
    )

    /// One burst of appends, answered before the next attempt; an event may strike while they
    /// are in flight.
    func appendBurst(_ attempt: Int) {
        if clientIsStale { dropClient() }
        if client == nil { client = connectClient() }
        guard let client else {
            outcomes["no primary found", default: 0] += 1
            Thread.sleep(forTimeInterval: 0.01)
            return
        }
        let answers = Locked<[Int: Answer]>([:])
        crashedDuringBurst = false
        var submitted: [(id: Int, keys: [String], records: [[UInt8]], level: CommitLevel)] = []
        let primaryName = client.nodeID
        let registry = self.registry
        for id in 0..<(1 + rng.uniform(below: Self.burstAppendsMax)) {
            let level = Self.levels[rng.uniform(below: Self.levels.count)]
            var keys: [String] = []
            var records: [[UInt8]] = []
            for _ in 0..<(1 + rng.uniform(below: Self.recordsPerAppendMax)) {
                sequence += 1
                let key = "k\(sequence)"
                let value = value(for: sequence)
                sent[key] = Array(value.utf8)
                keys.append(key)
                records.append(putRecord(key, value))
            }
            submitted.append((id, keys, records, level))
            let batchRecords = records
            client.submitAppend(records, level: level, timeout: Self.appendTimeout) { result in
                // What the acknowledgement can be checked against, read as it arrives.
                var durable: [String] = []
                var written: [String] = []
                var primaryDurable: LSN?
                if case .success(let appended) = result {
                    // A follower counts when it holds this very batch durably (not another
                    // history's batch at the same LSNs).
                    let probe = Acknowledgement(
                        keys: [], records: batchRecords, range: appended.range, epoch: appended.epoch, level: level, primary: primaryName,
                        attempt: attempt, promotionsBefore: 0, durableFollowers: [])
                    for (name, node) in registry.withLock({ $0 }) {
                        if name == primaryName {
                            primaryDurable = node.host?.log.durableLSN
                        } else if Self.holds(node, probe, durably: false) {
                            written.append(name)
                            if Self.holds(node, probe, durably: true) { durable.append(name) }
                        }
                    }
                }
                answers.withLock { $0[id] = (result, durable.sorted(), written.sorted(), primaryDurable) }
            }
        }
        if rng.chance(1, in: 8) {
            note(attempt, "event while \(submitted.count) appends are in flight")
            let crashes = machines.map(\.crashes).reduce(0, +)
            drawEvent(attempt)
            crashedDuringBurst = machines.map(\.crashes).reduce(0, +) > crashes
        }
        let answered = eventually(within: Self.appendTimeout + .seconds(5)) { answers.withLock { $0.count } == submitted.count }
        if !answered {
            problem("a\(attempt): \(submitted.count - answers.withLock { $0.count }) appends to \(primaryName) got no answer within \(Self.appendTimeout + .seconds(5))")
        }
        let all = answers.withLock { $0 }
        var reconnect = false
        for append in submitted {
            guard let answer = all[append.id] else { continue }
            switch answer.result {
            case .success(let appended):
                outcomes["appended \(append.level)", default: 0] += 1
                knownEpoch = max(knownEpoch, appended.epoch)
                let ack = Acknowledgement(
                    keys: append.keys, records: append.records, range: appended.range, epoch: appended.epoch, level: append.level,
                    primary: primaryName, attempt: attempt, promotionsBefore: promotions.count, durableFollowers: answer.durableFollowers)
                checkAtAcknowledgement(
                    ack, writtenFollowers: answer.writtenFollowers, primaryDurable: answer.primaryDurable, degraded: appended.degraded)
                acknowledged.append(ack)
            case .failure(let error):
                outcomes[Self.kind(of: error), default: 0] += 1
                if Self.needsReconnect(error) { reconnect = true }
            }
        }
        if reconnect { dropClient() }
    }

    /// What the acknowledgement promised must hold when it arrives.
    /// What the acknowledgement promised must hold when it arrives: durable on the primary;
    /// `flush:K` durable and `write:K` written on K other nodes (this very batch); `all` durable
    /// on at least one (its replica set is never empty). A node that crashed while the burst was
    /// in flight may have left the registry before the answer was read: then a shortfall is
    /// only noted.
    func checkAtAcknowledgement(_ ack: Acknowledgement, writtenFollowers: [String], primaryDurable: LSN?, degraded: Bool) {
        if degraded { problem("\(ack.range) answered appendedDegraded under policy fail") }
        if let primaryDurable, primaryDurable < ack.range.last {
            problem("a\(ack.attempt): \(ack.level) write \(ack.range) acknowledged by \(ack.primary) before it was durable there (durable \(primaryDurable))")
        }
        let shortfall: String?
        switch ack.level {
        case .flush(let k) where ack.durableFollowers.count < k: shortfall = "durable on only \(ack.durableFollowers)"
        case .write(let k) where writtenFollowers.count < k: shortfall = "written on only \(writtenFollowers)"
        case .all where ack.durableFollowers.isEmpty: shortfall = "durable on no other node"
        default: shortfall = nil
        }
        guard let shortfall else { return }
        let text = "a\(ack.attempt): \(ack.level) write \(ack.range) acknowledged by \(ack.primary) in epoch \(ack.epoch), \(shortfall)"
        if crashedDuringBurst { note(ack.attempt, text + " (a node crashed meanwhile)") } else { problem(text) }
    }

    static func needsReconnect(_ error: ReplicationError) -> Bool {
        guard case .requestFailed(let failure) = error else { return true }
        switch failure.reason {
        case .commitTimedOut, .commitUnavailable: return false
        default: return true
        }
    }

    static func kind(of error: ReplicationError) -> String {
        switch error {
        case .requestFailed(let failure):
            switch failure.reason {
            case .commitTimedOut: return "commitTimedOut"
            case .commitUnavailable: return "commitUnavailable"
            case .notPrimary: return "notPrimary"
            case .shuttingDown: return "shuttingDown"
            case .logFailed: return "logFailed"
            default: return "failed(\(failure.reason))"
            }
        case .transport: return "transport"
        case .refused: return "refused"
        case .connectionClosed: return "closed"
        case .shutDown: return "shutDown"
        default: return "other"
        }
    }

    // MARK: Run

    func run() {
        for attempt in 0..<Self.attempts {
            step(attempt)
            appendBurst(attempt)
        }
        dropClient()
    }

    /// Ends every fault, restarts every node, and waits until the followers hold and applied
    /// everything the primary wrote.
    func healAndConverge() {
        network.plan = .none
        network.healAll()
        partitions.removeAll()
        restarts.removeAll()
        for index in live where machines[index].node?.host == nil {
            // A failed rejoin or re-seed leaves a node without a host; its reopen says why.
            problem("\(machines[index].name) runs without an open log (a rejoin or re-seed failed to reopen it): \(describe(index))")
            machines[index].node?.shutdown()
            machines[index].node = nil
            registry.withLock { $0[machines[index].name] = nil }
        }
        for index in machines.indices where machines[index].node == nil { restart(index, at: Int.max) }
        if let fencing = primaryNode.fencing {
            problem("the final primary \(machines[primary].name) is fenced: \(fencing)")
            primaryNode.unfence()
        }
        note(Int.max, "heal everything")
        guard let primaryLog = primaryNode.host?.log else {
            return problem("the final primary \(machines[primary].name) has no open log: \(describe(primary))")
        }
        let target = primaryLog.writtenLSN
        let targetCRC = primaryLog.lastBatchCRC
        let followers = live.filter { $0 != primary }
        let caughtUp = eventually(within: Self.convergenceTimeout) {
            followers.allSatisfy {
                guard let host = machines[$0].node?.host else { return false }
                return host.appliedLSN >= target && host.log.durableLSN >= target && host.log.lastBatchCRC == targetCRC
            }
        }
        if !caughtUp {
            problem(
                "the followers did not converge on \(machines[primary].name)'s LSN \(target) within \(Self.convergenceTimeout): "
                    + followers.map { describe($0) }.joined(separator: "; "))
        }
    }

    /// A node's status document, or why there is none.
    func describe(_ index: Int) -> String {
        guard let node = machines[index].node else { return "\(machines[index].name): down" }
        return node.statusJSON()
    }

    // MARK: Model

    func checkModel() {
        let nodes = live.map { (machines[$0].name, machines[$0].node!) }
        guard nodes.count == 3 else { return problem("only \(nodes.map(\.0)) are running at the end") }
        for index in machines.indices where machines[index].node?.host == nil {
            return problem("\(machines[index].name) has no open log at the end: \(describe(index))")
        }
        let states = nodes.map { ($0.0, contents(of: $0.1)) }
        // No wrong bytes: every key and value was sent by the client.
        for (name, state) in states {
            for (key, value) in state {
                let text = String(decoding: key, as: UTF8.self)
                guard let expected = sent[text] else {
                    problem("\(name) holds key \(text.debugDescription) that the client never sent")
                    continue
                }
                if value != expected { problem("\(name) holds the wrong value for \(text) (\(value.count) bytes, expected \(expected.count))") }
            }
        }
        let primaryState = contents(of: primaryNode)
        for (name, state) in states where state != primaryState {
            problem("\(name)'s key-value state differs from the primary \(machines[primary].name)'s (\(state.count) vs \(primaryState.count) keys)")
        }
        // Acknowledged writes.
        var lostAcrossPromotion = 0
        var exempted = 0
        for ack in acknowledged {
            let present = nodes.map { Self.holds($0.1, ack, durably: true, sent: sent) }
            let valuesPresent = ack.keys.allSatisfy { primaryState[Array($0.utf8)] == sent[$0] }
            if present.allSatisfy({ $0 }) && valuesPresent { continue }
            if present.contains(true) && !present.allSatisfy({ $0 }) {
                problem("\(ack.level) write \(ack.range) (epoch \(ack.epoch)) is on \(zip(nodes, present).filter { $0.1 }.map { $0.0.0 }) only")
                continue
            }
            if ack.requiresFollowers {
                if let exemption = ack.exemption {
                    exempted += 1
                    if case .all = ack.level, ack.durableFollowers.isEmpty {
                        // FailoverRegressionTests.freshlyPromotedPrimaryConfirmsAllWithNoFollowerHoldingTheWrite
                        outcomes["lost all confirmed with no follower", default: 0] += 1
                    }
                    note(ack.attempt, "\(ack.level) write \(ack.range) lost, allowed: \(exemption)")
                } else {
                    problem("\(ack.level) write \(ack.range) (keys \(ack.keys)) acknowledged by \(ack.primary) in epoch \(ack.epoch) at a\(ack.attempt), durable then on \(ack.durableFollowers), is lost")
                }
            } else if promotions.count > ack.promotionsBefore {
                lostAcrossPromotion += 1
            } else {
                problem("\(ack.level) write \(ack.range) acknowledged by \(ack.primary) in epoch \(ack.epoch) at a\(ack.attempt) is lost without a promotion after it")
            }
        }
        outcomes["lost local/write:1 across a promotion"] = lostAcrossPromotion
        outcomes["lost flush/all with every holder down"] = exempted
        checkEpochHistories(nodes)
        checkBatches(nodes)
        firstLSNs = nodes.map { name, node in
            let checkpoints = (try? machines.first { $0.name == name }!.disk.contentsOfDirectory(at: Self.directory.appending("checkpoints")))?.count ?? 0
            return "\(name): \(node.host!.log.firstLSN)/\(node.host!.log.writtenLSN) ckpt \(checkpoints) \(node.host!.lastCheckpointError.map { "\($0)" } ?? "")"
        }
    }

    /// Each node's first retained LSN (retention after checkpoints), read before the final shutdown.
    var firstLSNs: [String] = []
    /// Re-seeds from a checkpoint: the `quarantine/reseed-*` entries on every disk.
    var reseeds: Int {
        machines.map { machine in
            ((try? machine.disk.contentsOfDirectory(at: Self.directory.appending("quarantine"))) ?? []).filter { $0.hasPrefix("reseed-") }.count
        }.reduce(0, +)
    }

    /// The nodes whose segment files were compared byte for byte.
    var segmentFilesCompared: [String] = []

    /// Rejoins by truncation: the `quarantine/rejoin-*` entries on every disk.
    var rejoins: Int {
        machines.map { machine in
            ((try? machine.disk.contentsOfDirectory(at: Self.directory.appending("quarantine"))) ?? []).filter { $0.hasPrefix("rejoin-") }.count
        }.reduce(0, +)
    }

    /// The epoch histories must agree from the newest first LSN of the nodes on (a re-seeded or
    /// retention-trimmed log knows its history only from its first LSN: its first entry names
    /// the epoch in force there), and every epoch start must be one of the promotions.
    func checkEpochHistories(_ nodes: [(String, KVNode)]) {
        let from = nodes.map { $0.1.host!.log.firstLSN }.max()!
        let histories = nodes.map { name, node -> (String, [EpochStart]) in
            let log = node.host!.log
            let history = log.epochHistory
            let inForce = history.last { $0.firstLSN <= from }.map { EpochStart(epoch: $0.epoch, firstLSN: from) }
            return (name, (inForce.map { [$0] } ?? []) + history.filter { $0.firstLSN > from })
        }
        let reference = histories[0].1
        for (name, history) in histories.dropFirst() where history != reference {
            problem("epoch histories from LSN \(from) differ: \(histories[0].0) \(reference) vs \(name) \(history)")
        }
        for (earlier, later) in zip(reference, reference.dropFirst()) where !(earlier.epoch < later.epoch && earlier.firstLSN < later.firstLSN) {
            problem("epoch history \(reference) does not increase at \(earlier) -> \(later)")
        }
        for start in reference.dropFirst() {
            let matching = promotions.filter { $0.epoch == start.epoch }
            if !matching.contains(where: { $0.firstLSN == start.firstLSN }) {
                problem("\(start) in the final history matches promotions \(matching.map { "\($0.node) at \($0.firstLSN)" })")
            }
        }
    }

    /// Every node's batches, from the newest first LSN of the nodes on, byte for byte the
    /// primary's (independent of segment layout, which a re-seed changes).
    func checkBatches(_ nodes: [(String, KVNode)]) {
        let from = nodes.map { $0.1.host!.log.firstLSN }.max()!
        func batches(_ node: KVNode) -> [[UInt8]] {
            var cursor = node.host!.log.batches(from: from)
            var all: [[UInt8]] = []
            do {
                while let batch = try cursor.next() { all.append(Array(batch.bytes)) }
            } catch {
                problem("reading \(node.options.nodeID)'s log from LSN \(from): \(error)")
            }
            return all
        }
        let reference = batches(primaryNode)
        for (name, node) in nodes where node !== primaryNode {
            let mine = batches(node)
            guard mine != reference else { continue }
            let index = zip(mine, reference).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(mine.count, reference.count)
            problem("\(name)'s batches from LSN \(from) differ from the primary's at batch \(index) (\(mine.count) vs \(reference.count) batches)")
        }
    }

    /// Shuts every node down cleanly and compares their segment files byte for byte.
    func compareSegments() {
        for index in machines.indices { machines[index].node?.shutdown() }
        registry.withLock { $0.removeAll() }
        let files = machines.map { machine -> (String, [String: [UInt8]]) in
            let names = ((try? machine.disk.contentsOfDirectory(at: Self.directory)) ?? []).filter { $0.hasSuffix(".seg") }
            var contents: [String: [UInt8]] = [:]
            for name in names { contents[name] = machine.disk.contents(at: Self.directory.appending(name)) }
            return (machine.name, contents)
        }
        // A re-seeded log starts at the checkpoint's batch, and a crash that found unsynced
        // data may have left a segment roll half done, so such nodes' segments roll elsewhere:
        // segment files are compared among the other nodes (batches: checkBatches).
        let reseeded = Set(machines.filter { machine in
            ((try? machine.disk.contentsOfDirectory(at: Self.directory.appending("quarantine"))) ?? []).contains { $0.hasPrefix("reseed-") }
        }.map(\.name))
        let excluded = reseeded.union(machines.filter(\.layoutMayDiffer).map(\.name))
        let compared = files.filter { !excluded.contains($0.0) }
        segmentFilesCompared = compared.map(\.0)
        guard let (referenceName, reference) = compared.first else { return }
        for (name, segments) in files where name != referenceName && !excluded.contains(name) {
            // Retention runs on each node after its own checkpoints: a segment one node dropped
            // must precede every segment that node kept.
            for (holder, other, missing) in [(referenceName, name, Set(reference.keys).subtracting(segments.keys)), (name, referenceName, Set(segments.keys).subtracting(reference.keys))] {
                let kept = (holder == referenceName ? segments : reference).keys
                for segment in missing where kept.contains(where: { $0 < segment }) {
                    let layout = files.map { name, segments in "\(name) " + segments.keys.sorted().map { "\($0.prefix(while: { $0 != "." }).drop(while: { $0 == "0" })):\(segments[$0]!.count)B" }.joined(separator: ",") }
                    problem("\(segment) of \(holder) is missing on \(other), which kept older segments \(kept.sorted()); layouts \(layout)")
                }
            }
            for (segment, bytes) in reference {
                guard let other = segments[segment], other != bytes else { continue }
                let offset = zip(bytes, other).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(bytes.count, other.count)
                let headers = [bytes, other].map { (try? SegmentHeader.decode(Array($0.prefix(SegmentHeader.byteCount)))).map { "\($0)" } ?? "?" }
                problem("\(segment) of \(name) differs from \(referenceName)'s at byte \(offset) (sizes \(other.count), \(bytes.count); headers \(headers[1]) vs \(headers[0]))")
            }
        }
    }

    func report() {
        compareSegments()
        print("failover seed \(seed): \(promotions.count) promotions (\(epochReuses) reusing an epoch), \(rejoins) rejoins, \(reseeds) reseeds, segment files compared on \(segmentFilesCompared), logs (first/written LSN, checkpoints) \(firstLSNs), \(machines.map(\.crashes).reduce(0, +)) crashes, \(acknowledged.count) acknowledged, \(outcomes.sorted { $0.key < $1.key }), \(network.log.count) network faults, \(ContinuousClock.now - started)")
        if ProcessInfo.processInfo.environment["SHIPLOG_FAILSIM_VERBOSE"] != nil {
            print(events.map { "  " + $0 }.joined(separator: "\n"))
        }
        guard !problems.isEmpty else { return }
        Issue.record(Comment(rawValue: failureReport()))
    }

    func failureReport() -> String {
        """
            failover simulation seed \(seed) (replay: SHIPLOG_FAILSIM_SEED=\(seed)): \(problems.count) problems:
            \(problems.map { "  - " + $0 }.joined(separator: "\n"))
            events:
            \(events.map { "  " + $0 }.joined(separator: "\n"))
            network faults (last 30 of \(network.log.count)):
            \(network.log.suffix(30).joined(separator: "\n"))
            """
    }

    func stopEverything() {
        client?.close()
        client = nil
        for index in machines.indices {
            machines[index].node?.shutdown()
            machines[index].node = nil
        }
        registry.withLock { $0.removeAll() }
    }
}
