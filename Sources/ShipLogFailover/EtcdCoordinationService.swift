import ShipLogReplication
import ShipLogStorage

/// The election on etcd v3 through its JSON gateway (docs/FAILOVER.md section 3).
///
/// * Leader: `campaign` grants a lease of the TTL and runs one transaction on `P/leader`:
///   if its create revision is 0 (no such key), put the leader record bound to the lease,
///   else read the key. The leadership keeps the lease alive (`/v3/lease/keepalive`); revoking
///   the lease (resign) or letting it expire deletes the key.
/// * Members: `P/members/<node>` bound to the service's member lease, refreshed by `publish`.
/// * Records: `P/<name>` bound to no lease, its version the key's mod revision; written by a
///   transaction comparing the mod revision (or the create revision with 0: absent).
/// * Waiting: a watch on `P/leader` (`/v3/watch`, newline-delimited JSON over a chunked
///   response) from the revision after the read that saw the current leader, so no change in
///   between is missed.
///
/// `@unchecked Sendable`: `lock` guards `client`, `memberLease` and `isClosed` and serializes
/// the calls made on `client`.
final class EtcdCoordinationService: CoordinationService, @unchecked Sendable {
    let config: ElectionConfig
    private let network: TCPNetwork
    private let lock = ConditionLock()
    private let client: EtcdClient
    private var memberLease: Int64?
    private var isClosed = false

    init(config: ElectionConfig, network: TCPNetwork) {
        self.config = config
        self.network = network
        self.client = EtcdClient(config: config, http: HTTPClient(config: config, network: network))
    }

    private var leaderKey: String { ElectionKeys.leader(config.prefix) }

    /// The TTL asked of etcd: whole seconds, rounded up (the leadership's deadline uses the
    /// configured TTL when it is shorter).
    private var ttlSeconds: Int64 {
        let (seconds, attoseconds) = config.ttl.components
        return seconds + (attoseconds > 0 ? 1 : 0)
    }

    /// Runs `body` with the shared client under the lock; `.closed` once closed.
    private func withClient<T>(_ body: (EtcdClient) throws(CoordinationError) -> T) throws(CoordinationError) -> T {
        try lock.withLock { () throws(CoordinationError) -> T in
            guard !isClosed else { throw .closed("the etcd coordination service \(config)") }
            return try body(client)
        }
    }

    private func checkOpen() throws(CoordinationError) {
        try withClient { _ throws(CoordinationError) in }
    }

    // MARK: - Leader

    func campaign(nodeID: String, value: [UInt8]) throws(CoordinationError) -> (any Leadership)? {
        try ElectionKeys.check(nodeID: nodeID, value: value)
        try checkOpen()
        let own = EtcdClient(config: config, http: HTTPClient(config: config, network: network))
        let started = monotonicNanoseconds()
        let deadline = Deadline.after(config.operationTimeout)
        let grant: (id: Int64, ttlSeconds: Int64)
        do throws(CoordinationError) {
            grant = try own.grantLease(ttlSeconds: ttlSeconds, deadline: deadline)
        } catch {
            own.close()
            throw error
        }
        let record = ElectionKeys.leaderRecord(nodeID: nodeID, value: value)
        do throws(CoordinationError) {
            if let existing = try own.createIfAbsent(key: leaderKey, value: record, lease: grant.id, deadline: deadline),
                existing.lease != grant.id
            {
                try? own.revoke(lease: grant.id, deadline: .after(config.operationTimeout))
                own.close()
                return nil
            }
        } catch {
            // The transaction may have been applied with its answer lost: revoking the lease
            // deletes the key if so.
            try? own.revoke(lease: grant.id, deadline: .after(config.operationTimeout))
            own.close()
            throw error
        }
        let validUntil = LeaseTiming.validUntil(
            requestStart: started, ttl: config.ttl, serverTTL: .seconds(grant.ttlSeconds), margin: config.safetyMargin)
        return EtcdLeadership(nodeID: nodeID, key: leaderKey, lease: grant.id, client: own, config: config, validUntil: validUntil)
    }

    func leader() throws(CoordinationError) -> (nodeID: String, value: [UInt8])? {
        let deadline = Deadline.after(config.operationTimeout)
        return try withClient { (client) throws(CoordinationError) in
            try decodeLeader(client.get(key: leaderKey, deadline: deadline).keyValue)
        }
    }

    /// The leader record of the leader key, nil when there is no key.
    private func decodeLeader(_ keyValue: EtcdClient.KeyValue?) throws(CoordinationError) -> (nodeID: String, value: [UInt8])? {
        guard let keyValue else { return nil }
        guard let record = ElectionKeys.parseLeaderRecord(keyValue.value) else {
            throw .protocolError(service: "etcd \(config)", detail: "\(leaderKey) does not hold a leader record (node ID, newline, value)")
        }
        return record
    }

    // MARK: - Members

    func publish(nodeID: String, value: [UInt8]) throws(CoordinationError) {
        try ElectionKeys.check(nodeID: nodeID, value: value)
        let key = ElectionKeys.member(config.prefix, nodeID: nodeID)
        let deadline = Deadline.after(config.operationTimeout)
        try withClient { (client) throws(CoordinationError) in
            if let lease = memberLease, try client.keepAlive(lease: lease, deadline: deadline) == nil {
                memberLease = nil
            }
            for _ in 0..<2 {
                let lease: Int64
                if let existing = memberLease {
                    lease = existing
                } else {
                    lease = try client.grantLease(ttlSeconds: ttlSeconds, deadline: deadline).id
                    memberLease = lease
                }
                if try client.put(key: key, value: value, lease: lease, deadline: deadline) { return }
                memberLease = nil  // expired between the keepalive and the put
            }
            throw .leaseLost("the member lease for \(key) expired twice in one publish")
        }
    }

    func members() throws(CoordinationError) -> [(nodeID: String, value: [UInt8])] {
        let parent = ElectionKeys.members(config.prefix) + "/"
        let deadline = Deadline.after(config.operationTimeout)
        let (keyValues, more) = try withClient { (client) throws(CoordinationError) in
            try client.list(prefix: parent, limit: CoordinationLimits.membersMax, deadline: deadline)
        }
        if more {
            throw .limitExceeded("more than \(CoordinationLimits.membersMax) member records under \(parent)")
        }
        var records: [(nodeID: String, value: [UInt8])] = []
        for keyValue in keyValues {
            // Keys that are not one escaped node ID directly under the parent are not ours: skipped.
            guard let key = String(validating: keyValue.key, as: UTF8.self), key.hasPrefix(parent),
                let nodeID = ElectionKeys.unescape(String(key.dropFirst(parent.count)))
            else { continue }
            records.append((nodeID, keyValue.value))
        }
        return records.sorted { $0.nodeID < $1.nodeID }
    }

    // MARK: - Records

    func readRecord(_ name: String) throws(CoordinationError) -> VersionedValue? {
        try ElectionKeys.check(recordName: name)
        let key = ElectionKeys.record(config.prefix, name: name)
        let deadline = Deadline.after(config.operationTimeout)
        return try withClient { (client) throws(CoordinationError) -> VersionedValue? in
            guard let keyValue = try client.get(key: key, deadline: deadline).keyValue else { return nil }
            return try ElectionKeys.readRecord(keyValue.value, version: keyValue.modRevision, key: key, service: "etcd \(config)")
        }
    }

    func compareAndSetRecord(_ name: String, value: [UInt8], expectedVersion: Int64?) throws(CoordinationError) -> Int64? {
        try ElectionKeys.check(recordName: name, value: value, expectedVersion: expectedVersion)
        let key = ElectionKeys.record(config.prefix, name: name)
        let deadline = Deadline.after(config.operationTimeout)
        return try withClient { (client) throws(CoordinationError) -> Int64? in
            // No key has mod revision 0, and comparing with 0 would match an absent key.
            if expectedVersion == 0 { return nil }
            return try client.compareAndPut(key: key, value: value, modRevision: expectedVersion, deadline: deadline)
        }
    }

    // MARK: - Waiting

    func waitForLeaderChange(from current: String?, timeout: Duration)
        throws(CoordinationError) -> (nodeID: String, value: [UInt8])?
    {
        let deadline = Deadline.after(timeout)
        let (revision, keyValue) = try withClient { (client) throws(CoordinationError) in
            try client.get(key: leaderKey, deadline: .after(config.operationTimeout))
        }
        var leader = try decodeLeader(keyValue)
        guard leader?.nodeID == current, deadline.remaining != nil else { return leader }
        let request = JSON.object([
            "create_request": .object([
                "key": .string(Base64.encode(leaderKey)), "start_revision": .string(String(revision + 1)),
            ])
        ])
        let http = HTTPClient(config: config, network: network)
        let stream: HTTPStream
        do {
            stream = try http.openStream(
                "/v3/watch", body: request.encoded, deadline: Deadline.after(config.operationTimeout).earlier(than: deadline))
        } catch {
            if deadline.remaining == nil { return leader }  // the caller's timeout, not the service, ended it
            throw error
        }
        defer { stream.close() }
        let service = stream.connection.service
        guard stream.head.status == 200 else {
            throw .rejected(service: service, operation: "watch \(leaderKey)", reason: "HTTP \(stream.head.status)")
        }
        while true {
            let line: [UInt8]?
            do throws(CoordinationError) {
                line = try stream.nextLine(deadline: deadline, bytesMax: CoordinationLimits.watchMessageBytesMax)
            } catch {
                if stream.timedOut { return leader }
                throw error
            }
            guard let line else { throw .unreachable(service: service, reason: "the watch stream on \(leaderKey) ended") }
            let message: JSON
            do {
                message = try JSON.parse(line[...], bytesMax: CoordinationLimits.watchMessageBytesMax)
            } catch {
                throw .protocolError(service: service, detail: "watch on \(leaderKey): \(error)")
            }
            if let error = message["error"] {
                throw .rejected(service: service, operation: "watch \(leaderKey)", reason: error["message"]?.string ?? "stream error")
            }
            guard let result = message["result"] else {
                throw .protocolError(service: service, detail: "watch on \(leaderKey): a message without result")
            }
            if result["canceled"]?.bool == true {
                // Compacted past our revision, or cancelled by the server: read the key again.
                return try self.leader()
            }
            for event in result["events"]?.array ?? [] {
                if event["type"]?.string == "DELETE" {
                    leader = nil
                } else {
                    guard let kv = event["kv"] else {
                        throw .protocolError(service: service, detail: "watch on \(leaderKey): an event without kv")
                    }
                    leader = try decodeLeader(EtcdClient.keyValue(kv, service))
                }
            }
            if leader?.nodeID != current { return leader }
        }
    }

    // MARK: - Closing

    func close() {
        lock.withLock {
            guard !isClosed else { return }
            isClosed = true
            if let lease = memberLease {
                try? client.revoke(lease: lease, deadline: .after(config.operationTimeout))
                memberLease = nil
            }
            client.close()
        }
    }
}

/// Leadership on etcd: a lease of its own and its own connection.
///
/// `@unchecked Sendable`: `ioLock` serializes renew and resign and guards `client`; the
/// validity has a lock of its own, never held during I/O, so ``validUntil`` never waits for a
/// renewal in progress.
final class EtcdLeadership: Leadership, @unchecked Sendable {
    let nodeID: String
    private let key: String
    private let lease: Int64
    private let config: ElectionConfig
    private let ioLock = ConditionLock()
    private let client: EtcdClient
    private let validity: LeadershipValidity

    init(nodeID: String, key: String, lease: Int64, client: EtcdClient, config: ElectionConfig, validUntil: UInt64) {
        self.nodeID = nodeID
        self.key = key
        self.lease = lease
        self.client = client
        self.config = config
        self.validity = LeadershipValidity(validUntil: validUntil)
    }

    var validUntil: UInt64 { validity.validUntil }

    func renew() throws(CoordinationError) {
        try ioLock.withLock { () throws(CoordinationError) in
            if let end = validity.end { throw end }
            let started = monotonicNanoseconds()
            let deadline = Deadline.after(config.operationTimeout)
            guard let ttl = try client.keepAlive(lease: lease, deadline: deadline) else {
                throw validity.ended(.leaseLost("lease \(lease) holding \(key) for \(nodeID) expired or was revoked"))
            }
            let current = try client.get(key: key, deadline: deadline).keyValue
            guard let current, current.lease == lease else {
                let holder = current.map { "now bound to lease \($0.lease)" } ?? "deleted"
                throw validity.ended(.leaseLost("\(key) was \(holder); \(nodeID) held it with lease \(lease)"))
            }
            let validUntil = LeaseTiming.validUntil(
                requestStart: started, ttl: config.ttl, serverTTL: .seconds(ttl), margin: config.safetyMargin)
            validity.extend(to: validUntil)
        }
    }

    func resign() {
        let first = validity.resign(nodeID: nodeID)
        ioLock.withLock {
            if first { try? client.revoke(lease: lease, deadline: .after(config.operationTimeout)) }
            client.close()
        }
    }
}

/// A leadership's validity, shared by the backends: the monotonic deadline before which it
/// certainly holds, and the final error once it ended (then the deadline is 0).
///
/// `@unchecked Sendable`: both are guarded by `lock`, which is never held during I/O.
final class LeadershipValidity: @unchecked Sendable {
    private let lock = ConditionLock()
    private var deadline: UInt64
    private var finalError: CoordinationError?

    init(validUntil: UInt64) { deadline = validUntil }

    var validUntil: UInt64 { lock.withLock { deadline } }

    /// The error that ended the leadership, nil while it may hold.
    var end: CoordinationError? { lock.withLock { finalError } }

    /// Moves the deadline forward to `validUntil` (never back), unless the leadership ended.
    func extend(to validUntil: UInt64) {
        lock.withLock { if finalError == nil { deadline = max(deadline, validUntil) } }
    }

    /// Records `error` as final (the first one stays) and drops the deadline to 0; returns it.
    @discardableResult
    func ended(_ error: CoordinationError) -> CoordinationError {
        lock.withLock {
            if finalError == nil { finalError = error }
            deadline = 0
        }
        return error
    }

    /// Ends the leadership as resigned; true when it had not ended before.
    func resign(nodeID: String) -> Bool {
        lock.withLock {
            guard finalError == nil else { return false }
            finalError = .closed("the leadership of \(nodeID) (resigned)")
            deadline = 0
            return true
        }
    }
}

/// The deadline rule shared by the backends.
enum LeaseTiming {
    /// `requestStart` + the shorter of the configured and the server's TTL - `margin`: the
    /// server starts (or restarts) the TTL only once it has the request, after `requestStart`.
    static func validUntil(requestStart: UInt64, ttl: Duration, serverTTL: Duration, margin: Duration) -> UInt64 {
        let effective = min(ttl, serverTTL).nanoseconds
        let marginNanoseconds = margin.nanoseconds
        return effective > marginNanoseconds ? requestStart + (effective - marginNanoseconds) : requestStart
    }
}
