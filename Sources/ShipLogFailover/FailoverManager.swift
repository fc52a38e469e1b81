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
/// LSN) campaigns, among the candidates the term record allows (a synchronous level: the last
/// term's synchronous set, seen in sufficient number, ``TermRecord``); the winner writes the
/// next term, with an epoch above the last term's and every epoch any member has published,
/// into the term record by compare-and-set, is promoted to it, and the others follow it. As
/// leader it adds each follower to the term's synchronous set before that follower's
/// acknowledgements count, and takes a follower gone for a TTL out once the others hold every
/// acknowledged write.
public final class FailoverManager<Machine: QueryableStateMachine>: @unchecked Sendable {
    // @unchecked: `leadership`, `stopped`, `events`, `highestObserved`, `notCandidateReason`
    // are guarded by `lock`; `term`, `termUnknown`, `disconnectedSince`, `counted` belong to
    // the loop thread.
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
    /// The highest epoch seen in any member record, leader key or term record so far (guarded by `lock`).
    private var highestObserved = Epoch(0)
    /// As leader (loop thread only): the term record as this node last wrote it, and its version.
    private var term: (record: TermRecord, version: Int64)?
    /// As leader (loop thread only): since when each member of the synchronous set has been
    /// disconnected (monotonic ns).
    private var disconnectedSince: [String: UInt64] = [:]
    /// As leader (loop thread only): an update of the term record failed in transit.
    private var termUnknown = false
    /// As leader (loop thread only): the followers the primary counts toward commit levels.
    private var counted: Set<String> = []
    /// The last reason this node did not campaign, noted once per change.
    private var notCandidateReason: String?
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
                // Every tick: a follower that connected counts only once it is in the set.
                maintainSynchronousSet()
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
        let (term, best) = isBestCandidate()
        guard best else { return }
        campaign(after: term)
    }

    /// Whether this node may campaign: it has the highest (epoch, flushed LSN) of the live
    /// members that may lead (node id breaks ties), so no member has acknowledged a write this
    /// node lacks. Live: listed under the prefix and answering a status request, which gives
    /// its position now. After a term with a synchronous level, only its leader and the members of
    /// its synchronous set may lead, and only once enough of the set is seen (``TermRecord``).
    private func isBestCandidate() -> (term: (record: TermRecord, version: Int64)?, best: Bool) {
        let mine = record()
        let me = node.options.nodeID
        let members: [(nodeID: String, value: [UInt8])]
        let stored: VersionedValue?
        do {
            members = try service.members()
            stored = try service.readRecord(TermRecord.name)
        } catch {
            note("listing members or reading the term record failed: \(error)")
            return (nil, false)
        }
        observe(members)
        var term: (record: TermRecord, version: Int64)?
        if let stored {
            guard let record = TermRecord(decoding: stored.value) else {
                notCandidate("the term record under the prefix is not one this node understands")
                return (nil, false)
            }
            term = (record, stored.version)
            lock.withLock { highestObserved = max(highestObserved, record.epoch) }
        }
        // Member records outlive their node by up to a TTL and lag its position by up to a
        // renewal interval: a node counts as live, with its position, only when it answers.
        var live = [(me, mine)]
        for member in members where member.nodeID != me {
            if let published = MemberRecord(decoding: member.value), let answered = probe(published) { live.append((member.nodeID, answered)) }
        }
        if let record = term?.record, let required = record.candidatesRequired {
            let mayLead = record.synchronousSet.union([record.leader])
            guard mayLead.contains(me) else {
                notCandidate("not in the synchronous set \(record.synchronousSet.sorted()) of epoch \(record.epoch)")
                return (term, false)
            }
            live.removeAll { !mayLead.contains($0.0) }
            let seen = live.filter { record.synchronousSet.contains($0.0) }.count
            // The term's own leader holds every write it acknowledged, whoever else is live.
            guard seen >= required || me == record.leader else {
                notCandidate(
                    "\(seen) of the \(record.synchronousSet.count) members of epoch \(record.epoch)'s synchronous set are live, \(required) needed to be sure of every write acknowledged at \(record.level)")
                return (term, false)
            }
        }
        for (nodeID, other) in live where nodeID != me {
            if (other.epoch, other.flushedLSN.rawValue, nodeID) > (mine.epoch, mine.flushedLSN.rawValue, me) { return (term, false) }
        }
        lock.withLock { notCandidateReason = nil }
        return (term, true)
    }

    /// Asks the node a member record names for its status: its epoch and durable LSN now, or
    /// nil when it does not answer within the operation timeout (dead, stopped, unreachable).
    private func probe(_ published: MemberRecord) -> MemberRecord? {
        guard let endpoint = Endpoint(published.address) else { return nil }
        var options = ClientOptions(nodeID: node.options.nodeID, secret: node.options.secret)
        options.clusterID = node.options.clusterID
        options.connectTimeout = config.operationTimeout
        options.responseTimeout = config.operationTimeout
        guard let client = try? ReplicationClient(connectingTo: endpoint, options: options) else { return nil }
        defer { client.close() }
        guard let text = try? client.status(), let status = try? JSON.parse(text, bytesMax: ProtocolLimits.statusJSONBytesMax),
            let epoch = status["epoch"]?.int64, let durable = status["durable_lsn"]?.int64, epoch >= 0, durable >= 0
        else { return nil }
        return MemberRecord(
            address: published.address, epoch: Epoch(UInt64(epoch)), flushedLSN: LSN(UInt64(durable)),
            isPrimary: status["role"]?.string == "primary")
    }

    private func notCandidate(_ reason: String) {
        let changed = lock.withLock { () -> Bool in
            guard notCandidateReason != reason else { return false }
            notCandidateReason = reason
            return true
        }
        if changed { note("not campaigning: \(reason)") }
    }

    private func campaign(after previous: (record: TermRecord, version: Int64)?) {
        // Above the last term's epoch (the election's counter) and every epoch this node has
        // seen published (isBestCandidate() observed the member list just now): a leader that
        // died after starting its epoch no longer publishes it.
        let highestEpoch = max(observedEpoch, previous?.record.epoch ?? Epoch(0), node.host?.log.epoch ?? Epoch(0))
        let epoch = Epoch(highestEpoch.rawValue + 1)
        let started = monotonicNanoseconds()
        let won: (any Leadership)?
        do { won = try service.campaign(nodeID: node.options.nodeID, value: record().encoded) } catch {
            note("campaign failed: \(error)")
            return
        }
        guard let won else { return }
        lock.withLock { leadership = won }
        // The term record first: it claims the epoch, and no follower counts until it joins
        // the (empty) synchronous set written here.
        let next = TermRecord(epoch: epoch, leader: node.options.nodeID, level: node.options.defaultCommitLevel)
        do {
            guard let version = try service.compareAndSetRecord(TermRecord.name, value: next.encoded, expectedVersion: previous?.version) else {
                loseLeadership("the term record changed since this node read it (another node's term)")
                return
            }
            term = (next, version)
        } catch {
            // It may have been written: harmless, the next winner goes above its epoch.
            loseLeadership("writing the term record failed: \(error)")
            return
        }
        termUnknown = false
        disconnectedSince = [:]
        // A synchronous level counts only the set (empty until followers join it); `local`
        // promises nothing beyond this node, and per-append levels count every follower.
        counted = []
        node.countOnlyFollowers(next.acknowledgementsRequired > 0 ? [] : nil)
        do {
            let (promoted, first) = try node.promote(minimumEpoch: epoch)
            // The lease watch may have given the leadership up while the promotion ran.
            guard lock.withLock({ leadership === won }) else {
                node.fence(reason: "the lease ran out while this node was being promoted")
                note("fenced: the lease ran out while this node was being promoted to epoch \(promoted)")
                return
            }
            note("leader: primary of epoch \(promoted) from LSN \(first), \((monotonicNanoseconds() - started) / 1_000_000) ms after the campaign began")
        } catch {
            note("promotion failed: \(error); resigning")
            loseLeadership("promotion failed")
            return
        }
        // The leader key's value names the new epoch and address.
        do { _ = try won.renew() } catch {}
        publish()
    }

    // MARK: The synchronous set

    /// As leader: adds connected followers to the term record's synchronous set (published
    /// first, counted after), and takes out one that has been disconnected for a TTL (counted
    /// no more first, published after, once the rest of the set holds every acknowledged
    /// write at the level).
    private func maintainSynchronousSet() {
        if termUnknown && !rereadTerm() { return }
        guard let current = term, current.record.acknowledgementsRequired > 0 else { return }
        let now = monotonicNanoseconds()
        let followers = node.acknowledgements.followers
        for nodeID in current.record.synchronousSet {
            if followers[nodeID]?.isConnected == true {
                disconnectedSince[nodeID] = nil
            } else if disconnectedSince[nodeID] == nil {
                disconnectedSince[nodeID] = now
            }
        }
        let expired = Set(disconnectedSince.filter { now &- $0.value >= config.ttl.nanoseconds }.keys)
        count(current.record.synchronousSet.subtracting(expired))
        var next = current.record
        let joining = Set(followers.filter { $0.value.isConnected }.keys).subtracting(current.record.synchronousSet)
        if !joining.isEmpty {
            next.synchronousSet.formUnion(joining)
        } else if let gone = expired.first {
            // It counts no more (above); it may leave once K of the rest hold every write
            // acknowledged so far.
            let (acknowledged, positions) = node.acknowledgements
            let rest = current.record.synchronousSet.subtracting([gone])
            let holding = rest.filter { (positions[$0]?.flushedLSN ?? .zero) >= acknowledged }.count
            guard holding >= current.record.acknowledgementsRequired else { return }
            next.synchronousSet = rest
        } else {
            return
        }
        do {
            guard let version = try service.compareAndSetRecord(TermRecord.name, value: next.encoded, expectedVersion: current.version) else {
                loseLeadership("the term record changed under this leader (another node's term)")
                return
            }
            term = (next, version)
        } catch {
            // Written or not: read it back before the next change (a compare-and-set that
            // failed in transit may have been applied).
            note("updating the synchronous set failed: \(error)")
            termUnknown = true
            return
        }
        disconnectedSince = disconnectedSince.filter { next.synchronousSet.contains($0.key) }
        count(next.synchronousSet.subtracting(expired))
        note("synchronous set of epoch \(next.epoch): \(next.synchronousSet.sorted())")
    }

    /// After a failed update: takes the term record as stored when it is still this node's
    /// term (the update applied or not), loses leadership when it is another's. False when
    /// the record could not be read (try again next tick).
    private func rereadTerm() -> Bool {
        let stored: VersionedValue?
        do { stored = try service.readRecord(TermRecord.name) } catch {
            note("reading the term record back failed: \(error)")
            return false
        }
        guard let stored, let record = TermRecord(decoding: stored.value), let current = term,
            record.epoch == current.record.epoch, record.leader == node.options.nodeID
        else {
            loseLeadership("the term record no longer names this node's term")
            return false
        }
        term = (record, stored.version)
        termUnknown = false
        return true
    }

    /// Makes the primary count exactly `nodeIDs` (a subset of the published set).
    private func count(_ nodeIDs: Set<String>) {
        guard nodeIDs != counted else { return }
        node.countOnlyFollowers(nodeIDs)
        counted = nodeIDs
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
