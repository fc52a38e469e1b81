import ShipLogReplication
import ShipLogStorage

/// The election on ZooKeeper through its client protocol (docs/FAILOVER.md section 4).
///
/// * Leader: `campaign` opens a session of its own (timeout = the TTL), creates the persistent
///   path of the prefix, then the ephemeral node `P/leader`. The leadership renews by touching
///   its session (an `exists` on its node, which also checks the node is still its own);
///   closing the session (resign) or letting it expire deletes the node.
/// * Members: ephemeral `P/members/<node>` nodes of the service's main session, which every
///   call touches.
/// * Records: persistent `P/<name>` nodes, their version the data version; written by a
///   create (absent) or a setData naming the version.
/// * Waiting: a data watch (or an exists watch when there is no leader) on `P/leader`, on a
///   session of its own that pings while it waits.
///
/// `@unchecked Sendable`: `lock` guards `main`, `published`, `isClosed` and `isWaiting` and
/// serializes the calls on `main`; `watchLock` guards `watcher` and serializes the waits.
final class ZooKeeperCoordinationService: CoordinationService, @unchecked Sendable {
    let config: ElectionConfig
    private let network: TCPNetwork
    private let lock = ConditionLock()
    private let main: ZooKeeperSession
    /// Member paths created in the session with the given ID (updated with setData after).
    private var published: [String: Int64] = [:]
    private var isClosed = false
    /// A wait is in progress: it closes the watch session itself if the service is closed meanwhile.
    private var isWaiting = false
    private let watchLock = ConditionLock()
    private let watcher: ZooKeeperSession

    init(config: ElectionConfig, network: TCPNetwork) {
        self.config = config
        self.network = network
        self.main = ZooKeeperSession(config: config, network: network, policy: .startNew, label: "the member session")
        self.watcher = ZooKeeperSession(config: config, network: network, policy: .startNew, label: "the watch session")
    }

    private var leaderPath: String { ElectionKeys.leader(config.prefix) }

    private func withMain<T>(_ body: (ZooKeeperSession) throws(CoordinationError) -> T) throws(CoordinationError) -> T {
        try lock.withLock { () throws(CoordinationError) -> T in
            guard !isClosed else { throw .closed("the ZooKeeper coordination service \(config)") }
            return try body(main)
        }
    }

    // MARK: - Leader

    func campaign(nodeID: String, value: [UInt8]) throws(CoordinationError) -> (any Leadership)? {
        try ElectionKeys.check(nodeID: nodeID, value: value)
        try withMain { _ throws(CoordinationError) in }
        let session = ZooKeeperSession(config: config, network: network, policy: .fail, label: "the leadership session of \(nodeID)")
        let started = monotonicNanoseconds()
        let deadline = Deadline.after(config.operationTimeout)
        do throws(CoordinationError) {
            try session.connect(deadline: deadline)
            try session.createPersistentPath(config.prefix, deadline: deadline)
            let record = ElectionKeys.leaderRecord(nodeID: nodeID, value: value)
            let code = try session.create(leaderPath, data: record, ephemeral: true, deadline: deadline)
            if code == ZooKeeperCode.noNode {
                throw CoordinationError.rejected(service: session.service, operation: "create \(leaderPath)", reason: "\(config.prefix) vanished")
            }
            if code == ZooKeeperCode.nodeExists {
                // Ours only when a first attempt was applied and its reply lost.
                let stat = try session.exists(leaderPath, watch: false, deadline: deadline)
                if stat?.ephemeralOwner != session.sessionID {
                    session.closeSession(deadline: .after(config.operationTimeout))
                    return nil
                }
            }
        } catch {
            session.closeSession(deadline: .after(config.operationTimeout))
            throw error
        }
        let validUntil = LeaseTiming.validUntil(
            requestStart: started, ttl: config.ttl, serverTTL: session.negotiatedTimeout, margin: config.safetyMargin)
        return ZooKeeperLeadership(nodeID: nodeID, path: leaderPath, session: session, config: config, validUntil: validUntil)
    }

    func leader() throws(CoordinationError) -> (nodeID: String, value: [UInt8])? {
        let deadline = Deadline.after(config.operationTimeout)
        return try withMain { (main) throws(CoordinationError) in
            try decodeLeader(main.getData(leaderPath, watch: false, deadline: deadline)?.data, service: main.service)
        }
    }

    private func decodeLeader(_ data: [UInt8]?, service: String) throws(CoordinationError) -> (nodeID: String, value: [UInt8])? {
        guard let data else { return nil }
        guard let record = ElectionKeys.parseLeaderRecord(data) else {
            throw .protocolError(service: service, detail: "\(leaderPath) does not hold a leader record (node ID, newline, value)")
        }
        return record
    }

    // MARK: - Members

    func publish(nodeID: String, value: [UInt8]) throws(CoordinationError) {
        try ElectionKeys.check(nodeID: nodeID, value: value)
        let path = ElectionKeys.member(config.prefix, nodeID: nodeID)
        let deadline = Deadline.after(config.operationTimeout)
        try withMain { (main) throws(CoordinationError) in
            try main.connect(deadline: deadline)
            if published[path] == main.sessionID, try main.setData(path, data: value, deadline: deadline) != nil { return }
            var code = try main.create(path, data: value, ephemeral: true, deadline: deadline)
            if code == ZooKeeperCode.noNode {
                try main.createPersistentPath(ElectionKeys.members(config.prefix), deadline: deadline)
                code = try main.create(path, data: value, ephemeral: true, deadline: deadline)
            }
            if code == ZooKeeperCode.nodeExists {
                let stat = try main.exists(path, watch: false, deadline: deadline)
                guard let stat, stat.ephemeralOwner == main.sessionID else {
                    let owner = stat.map { "session \(String(sessionID: $0.ephemeralOwner))" } ?? "a node that vanished"
                    throw .rejected(
                        service: main.service, operation: "publish \(path)",
                        reason: "it belongs to \(owner), not to this node's session (is node ID \(nodeID) used twice?)")
                }
                guard try main.setData(path, data: value, deadline: deadline) != nil else {
                    throw .rejected(service: main.service, operation: "publish \(path)", reason: "it vanished while being updated")
                }
            } else if code != ZooKeeperCode.ok {
                throw .rejected(service: main.service, operation: "publish \(path)", reason: ZooKeeperCode.name(code))
            }
            published[path] = main.sessionID
        }
    }

    func members() throws(CoordinationError) -> [(nodeID: String, value: [UInt8])] {
        let parent = ElectionKeys.members(config.prefix)
        let deadline = Deadline.after(config.operationTimeout)
        return try withMain { (main) throws(CoordinationError) in
            guard let names = try main.children(parent, deadline: deadline) else { return [] }
            // Names that are not one escaped node ID are not ours: skipped.
            let nodes = names.compactMap { name in ElectionKeys.unescape(name).map { (name, $0) } }
            guard nodes.count <= CoordinationLimits.membersMax else {
                throw .limitExceeded("\(nodes.count) member records under \(parent) (at most \(CoordinationLimits.membersMax))")
            }
            var records: [(nodeID: String, value: [UInt8])] = []
            for (name, nodeID) in nodes {
                // A record deleted since the listing is skipped.
                if let data = try main.getData(parent + "/" + name, watch: false, deadline: deadline)?.data {
                    records.append((nodeID, data))
                }
            }
            return records.sorted { $0.nodeID < $1.nodeID }
        }
    }

    // MARK: - Records

    func readRecord(_ name: String) throws(CoordinationError) -> VersionedValue? {
        try ElectionKeys.check(recordName: name)
        let path = ElectionKeys.record(config.prefix, name: name)
        let deadline = Deadline.after(config.operationTimeout)
        return try withMain { (main) throws(CoordinationError) -> VersionedValue? in
            guard let (data, stat) = try main.getData(path, watch: false, deadline: deadline) else { return nil }
            return try ElectionKeys.readRecord(data, version: Int64(stat.version), key: path, service: main.service)
        }
    }

    func compareAndSetRecord(_ name: String, value: [UInt8], expectedVersion: Int64?) throws(CoordinationError) -> Int64? {
        try ElectionKeys.check(recordName: name, value: value, expectedVersion: expectedVersion)
        let path = ElectionKeys.record(config.prefix, name: name)
        let deadline = Deadline.after(config.operationTimeout)
        return try withMain { (main) throws(CoordinationError) -> Int64? in
            // Sent once on a fresh connection: a repeat of an applied write whose answer was
            // lost would find NodeExists or BadVersion and report nil wrongly.
            main.disconnect()
            try main.connect(deadline: deadline)
            guard let expectedVersion else { return try createRecord(path, value: value, on: main, deadline: deadline) }
            // Data versions are 32-bit: no node has a larger one (-1 would mean "any version").
            guard let version = Int32(exactly: expectedVersion) else { return nil }
            let stat = try main.setData(path, data: value, version: version, retry: false, deadline: deadline)
            return stat.map { Int64($0.version) }
        }
    }

    /// Creates the persistent node of a record (and the prefix when missing). Returns its data
    /// version, 0, or nil when the node exists already.
    private func createRecord(_ path: String, value: [UInt8], on main: ZooKeeperSession, deadline: Deadline)
        throws(CoordinationError) -> Int64?
    {
        var code = try main.create(path, data: value, ephemeral: false, retry: false, deadline: deadline)
        if code == ZooKeeperCode.noNode {
            try main.createPersistentPath(config.prefix, deadline: deadline)
            code = try main.create(path, data: value, ephemeral: false, retry: false, deadline: deadline)
        }
        switch code {
        case ZooKeeperCode.ok: return 0
        case ZooKeeperCode.nodeExists: return nil
        default: throw .rejected(service: main.service, operation: "create \(path)", reason: "\(config.prefix) vanished")
        }
    }

    // MARK: - Waiting

    func waitForLeaderChange(from current: String?, timeout: Duration)
        throws(CoordinationError) -> (nodeID: String, value: [UInt8])?
    {
        let deadline = Deadline.after(timeout)
        return try watchLock.withLock { () throws(CoordinationError) -> (nodeID: String, value: [UInt8])? in
            try withMain { _ throws(CoordinationError) in isWaiting = true }
            defer {
                if lock.withLock({ isWaiting = false; return isClosed }) {
                    watcher.closeSession(deadline: .after(config.operationTimeout))
                }
            }
            while true {
                let step = Deadline.after(config.operationTimeout)
                watcher.events.removeAll()
                let leader: (nodeID: String, value: [UInt8])?
                if let (data, _) = try watcher.getData(leaderPath, watch: true, deadline: step) {
                    leader = try decodeLeader(data, service: watcher.service)
                } else if try watcher.exists(leaderPath, watch: true, deadline: step) != nil {
                    continue  // created between the two reads: read it
                } else {
                    leader = nil
                }
                if leader?.nodeID != current || deadline.remaining == nil { return leader }
                guard try watcher.awaitEvent(until: deadline, pingInterval: config.renewInterval) else { return leader }
            }
        }
    }

    // MARK: - Closing

    /// Does not wait for a wait in progress: that wait ends by its timeout and then closes the
    /// watch session.
    func close() {
        let waiting = lock.withLock {
            guard !isClosed else { return true }
            isClosed = true
            main.closeSession(deadline: .after(config.operationTimeout))
            return isWaiting
        }
        guard !waiting else { return }
        watchLock.withLock { watcher.closeSession(deadline: .after(config.operationTimeout)) }
    }
}

/// Leadership on ZooKeeper: an ephemeral node of a session of its own.
///
/// `@unchecked Sendable`: `ioLock` serializes renew and resign and guards `session`; the
/// validity has a lock of its own, never held during I/O.
final class ZooKeeperLeadership: Leadership, @unchecked Sendable {
    let nodeID: String
    private let path: String
    private let config: ElectionConfig
    private let ioLock = ConditionLock()
    private let session: ZooKeeperSession
    private let validity: LeadershipValidity

    init(nodeID: String, path: String, session: ZooKeeperSession, config: ElectionConfig, validUntil: UInt64) {
        self.nodeID = nodeID
        self.path = path
        self.session = session
        self.config = config
        self.validity = LeadershipValidity(validUntil: validUntil)
    }

    var validUntil: UInt64 { validity.validUntil }

    func renew() throws(CoordinationError) {
        try ioLock.withLock { () throws(CoordinationError) in
            if let end = validity.end { throw end }
            let started = monotonicNanoseconds()
            do throws(CoordinationError) {
                let stat = try session.exists(path, watch: false, deadline: .after(config.operationTimeout))
                guard let stat, stat.ephemeralOwner == session.sessionID else {
                    let holder = stat.map { "now belongs to session \(String(sessionID: $0.ephemeralOwner))" } ?? "was deleted"
                    throw CoordinationError.leaseLost(
                        "\(path) \(holder); \(nodeID) held it with session \(String(sessionID: session.sessionID))")
                }
            } catch {
                if error.isFinal { validity.ended(error) }
                throw error
            }
            let validUntil = LeaseTiming.validUntil(
                requestStart: started, ttl: config.ttl, serverTTL: session.negotiatedTimeout, margin: config.safetyMargin)
            validity.extend(to: validUntil)
        }
    }

    func resign() {
        let first = validity.resign(nodeID: nodeID)
        ioLock.withLock {
            if first {
                session.closeSession(deadline: .after(config.operationTimeout))
            } else {
                session.disconnect()
            }
        }
    }
}
