public import ShipLogFormat
import ShipLogProtocol
public import ShipLogReplication
public import ShipLogStateMachine
import ShipLogStorage

/// What a node publishes about itself under the election prefix (`members/NODE`), and what
/// the leader key holds: enough for the others to pick a candidate and to find the primary.
public struct MemberRecord: Sendable, Hashable {
    /// Where clients and followers reach the node (`host:port`).
    public var address: String
    public var epoch: Epoch
    /// Every LSN up to this is durable on the node.
    public var flushedLSN: LSN
    public var isPrimary: Bool

    public init(address: String, epoch: Epoch, flushedLSN: LSN, isPrimary: Bool) {
        self.address = address
        self.epoch = epoch
        self.flushedLSN = flushedLSN
        self.isPrimary = isPrimary
    }

    /// `shiplog-member 1 ADDRESS EPOCH FLUSHED ROLE`, UTF-8, one line.
    public var encoded: [UInt8] {
        Array("shiplog-member 1 \(address) \(epoch.rawValue) \(flushedLSN.rawValue) \(isPrimary ? "primary" : "follower")".utf8)
    }

    /// Parses ``encoded``; nil for anything else.
    public init?(decoding bytes: [UInt8]) {
        guard bytes.count <= 512, let text = String(validating: bytes, as: UTF8.self) else { return nil }
        let parts = text.split(separator: " ")
        guard parts.count == 6, parts[0] == "shiplog-member", parts[1] == "1", Endpoint(String(parts[2])) != nil,
            let epoch = UInt64(parts[3]), let flushed = UInt64(parts[4]), parts[5] == "primary" || parts[5] == "follower"
        else { return nil }
        self.init(address: String(parts[2]), epoch: Epoch(epoch), flushedLSN: LSN(flushed), isPrimary: parts[5] == "primary")
    }
}

/// Runs a node's side of leader election through a coordination service, as Patroni does
/// (docs/FAILOVER.md): the leader holds a lease-bound key and renews it well inside the TTL;
/// it fences itself (stops accepting appends) before the lease could have expired when it
/// cannot renew. When there is no leader, the live member with the highest (epoch, flushed
/// LSN) campaigns; the winner is promoted to a new epoch above every epoch any member has
/// published, and the others follow it.
public final class FailoverManager<Machine: QueryableStateMachine>: @unchecked Sendable {
    // @unchecked: `leadership`, `stopped`, `events` are guarded by `lock`.
    public let node: ReplicaNode<Machine>
    public let service: any CoordinationService
    /// This node's address as the others reach it.
    public let advertised: Endpoint
    public let config: ElectionConfig
    private let lock = ConditionLock()
    private var leadership: (any Leadership)?
    private var stopped = false
    private var thread: OwnedThread?
    private var leaseWatch: OwnedThread?
    private var events: [String] = []
    /// The highest epoch seen in any member record or leader key so far (guarded by `lock`).
    private var highestObserved = Epoch(0)
    /// How often the loop looks at the lease, between renewals.
    static var tick: Duration { .milliseconds(50) }
    /// Events kept for the status page and tests.
    static var eventsMax: Int { 256 }

    public init(node: ReplicaNode<Machine>, service: any CoordinationService, advertised: Endpoint, config: ElectionConfig) {
        self.node = node
        self.service = service
        self.advertised = advertised
        self.config = config
    }

    public func start() {
        let thread = OwnedThread.start(name: "shiplog-elect") { [self] in run() }
        let leaseWatch = OwnedThread.start(name: "shiplog-lease") { [self] in watchLease() }
        lock.withLock {
            self.thread = thread
            self.leaseWatch = leaseWatch
        }
    }

    /// Stops the loop; a leader resigns so another node can take over at once.
    public func stop() {
        let threads = lock.withLock { () -> [OwnedThread] in
            stopped = true
            return [self.thread, self.leaseWatch].compactMap { $0 }
        }
        lock.broadcast()
        for thread in threads { thread.join() }
        let held = lock.withLock { () -> (any Leadership)? in
            let held = leadership
            leadership = nil
            return held
        }
        held?.resign()
    }

    /// Whether this node holds the leader key now.
    public var isLeader: Bool { lock.withLock { leadership != nil } }

    /// What the manager did, oldest first (promotions, demotions, lost leases).
    public var history: [String] { lock.withLock { events } }

    private func note(_ text: String) {
        lock.withLock {
            events.append(text)
            if events.count > Self.eventsMax { events.removeFirst(events.count - Self.eventsMax) }
        }
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    private var observedEpoch: Epoch { lock.withLock { highestObserved } }

    private func observe(_ records: [(nodeID: String, value: [UInt8])]) {
        let highest = records.compactMap { MemberRecord(decoding: $0.value)?.epoch }.max() ?? Epoch(0)
        lock.withLock { highestObserved = max(highestObserved, highest) }
    }

    // MARK: The loop

    private func run() {
        var nextRenewal: UInt64 = 0
        var nextPublish: UInt64 = 0
        while !isStopped {
            let now = monotonicNanoseconds()
            if let held = lock.withLock({ leadership }) {
                if now >= held.validUntil {
                    loseLeadership("the lease could not be renewed before it ran out")
                } else if now >= nextRenewal {
                    do {
                        try held.renew()
                        nextRenewal = monotonicNanoseconds() &+ config.renewInterval.nanoseconds
                    } catch {
                        if error.meansLeadershipLost {
                            loseLeadership("the lease is gone: \(error)")
                        } else {
                            note("renewal failed: \(error)")
                        }
                        nextRenewal = monotonicNanoseconds() &+ Self.tick.nanoseconds * 4
                    }
                }
            } else if now >= nextRenewal {
                followOrCampaign()
                nextRenewal = monotonicNanoseconds() &+ Self.tick.nanoseconds * 4
            }
            if now >= nextPublish {
                publish()
                nextPublish = monotonicNanoseconds() &+ config.renewInterval.nanoseconds
            }
            lock.withLock {
                if !stopped { lock.wait(untilMonotonicNanoseconds: monotonicNanoseconds() &+ Self.tick.nanoseconds) }
            }
        }
    }

    /// Fences the node when its lease's `validUntil` passes, whatever the loop is blocked in:
    /// a renewal retried late, or a publish to an unreachable service, can each take
    /// `operationTimeout` and together end after `validUntil`, up to and past the lease's end
    /// on the service, while another node may already have been elected.
    private func watchLease() {
        while true {
            let (stop, held) = lock.withLock { (stopped, leadership) }
            if stop { return }
            let now = monotonicNanoseconds()
            var wake = now &+ Self.tick.nanoseconds
            if let held {
                let deadline = held.validUntil
                if now >= deadline {
                    loseLeadership("the lease could not be renewed before it ran out", ifStill: held)
                    continue
                }
                wake = min(wake, deadline)
            }
            lock.withLock {
                if !stopped { lock.wait(untilMonotonicNanoseconds: wake) }
            }
        }
    }

    private func record() -> MemberRecord {
        let log = node.host?.log
        let primary: Bool
        if case .primary = node.role { primary = true } else { primary = false }
        return MemberRecord(
            address: advertised.description, epoch: log?.epoch ?? Epoch(0), flushedLSN: log?.durableLSN ?? .zero, isPrimary: primary)
    }

    private func publish() {
        do { try service.publish(nodeID: node.options.nodeID, value: record().encoded) } catch {
            note("publishing this member failed: \(error)")
        }
        // Remember the newest epoch anyone publishes, for a campaign after its node is gone.
        if let members = try? service.members() { observe(members) }
    }

    /// Without the lease: a primary fences itself; a follower follows the leader, or
    /// campaigns when there is none and it is the best candidate.
    private func followOrCampaign() {
        if case .primary = node.role {
            node.fence(reason: "this node does not hold the leader lease")
        }
        let leader: (nodeID: String, value: [UInt8])?
        do { leader = try service.leader() } catch {
            note("reading the leader failed: \(error)")
            return
        }
        if let leader {
            observe([leader])
            guard leader.nodeID != node.options.nodeID else { return }
            guard let record = MemberRecord(decoding: leader.value), let endpoint = Endpoint(record.address) else {
                note("the leader key of \(leader.nodeID) holds no address this node understands")
                return
            }
            follow(endpoint, leader: leader.nodeID)
            return
        }
        guard isBestCandidate() else { return }
        campaign()
    }

    /// Whether this node has the highest (epoch, flushed LSN) of the live members (node id
    /// breaks ties), so no member has acknowledged a write this node lacks.
    private func isBestCandidate() -> Bool {
        let mine = record()
        let members: [(nodeID: String, value: [UInt8])]
        do { members = try service.members() } catch {
            note("listing members failed: \(error)")
            return false
        }
        observe(members)
        for member in members where member.nodeID != node.options.nodeID {
            guard let other = MemberRecord(decoding: member.value) else { continue }
            if (other.epoch, other.flushedLSN.rawValue, member.nodeID) > (mine.epoch, mine.flushedLSN.rawValue, node.options.nodeID) {
                return false
            }
        }
        return true
    }

    private func campaign() {
        let published = ((try? service.members()) ?? []).compactMap { MemberRecord(decoding: $0.value)?.epoch }.max() ?? Epoch(0)
        // Above every epoch this node has seen published, not only the live members' (a
        // leader that died after starting its epoch no longer publishes it).
        let highestEpoch = max(published, observedEpoch, node.host?.log.epoch ?? Epoch(0))
        let started = monotonicNanoseconds()
        let won: (any Leadership)?
        do { won = try service.campaign(nodeID: node.options.nodeID, value: record().encoded) } catch {
            note("campaign failed: \(error)")
            return
        }
        guard let won else { return }
        lock.withLock { leadership = won }
        // Every leadership term is a new epoch, above every epoch a member has published: a
        // node that leads again after others led gets no older epoch than theirs.
        do {
            let (epoch, first) = try node.promote(minimumEpoch: Epoch(highestEpoch.rawValue + 1))
            // The lease watch may have given the leadership up while the promotion ran.
            guard lock.withLock({ leadership === won }) else {
                node.fence(reason: "the lease ran out while this node was being promoted")
                note("fenced: the lease ran out while this node was being promoted to epoch \(epoch)")
                return
            }
            note("leader: primary of epoch \(epoch) from LSN \(first), \((monotonicNanoseconds() - started) / 1_000_000) ms after the campaign began")
        } catch {
            note("promotion failed: \(error); resigning")
            loseLeadership("promotion failed")
            return
        }
        // The leader key's value names the new epoch and address.
        do { _ = try won.renew() } catch {}
        publish()
    }

    private func follow(_ endpoint: Endpoint, leader: String) {
        switch node.role {
        case .primary:
            do {
                try node.demote(toFollowerOf: endpoint)
                note("demoted: following \(leader) at \(endpoint)")
            } catch {
                note("demotion failed: \(error)")
            }
        case .follower(let current):
            guard current != endpoint else { return }
            do {
                try node.follow(endpoint)
                note("following \(leader) at \(endpoint)")
            } catch {
                note("following \(leader) failed: \(error)")
            }
        }
    }

    /// Fences the node and resigns the leadership held (only `expected`, when given: the lease
    /// watch must not drop a leadership won since it looked).
    private func loseLeadership(_ reason: String, ifStill expected: (any Leadership)? = nil) {
        let held = lock.withLock { () -> (any Leadership)? in
            guard let held = leadership, expected.map({ $0 === held }) ?? true else { return nil }
            leadership = nil
            return held
        }
        guard expected == nil || held != nil else { return }
        node.fence(reason: reason)
        held?.resign()
        note("fenced: \(reason)")
    }
}
