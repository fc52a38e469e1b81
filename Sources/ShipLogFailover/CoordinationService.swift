public import ShipLogReplication

/// A coordination service that elects one leader among ShipLog nodes and lists its members
/// (etcd or ZooKeeper; a Consul backend would be a third, see docs/FAILOVER.md).
///
/// Every call blocks the calling thread (call from an `OwnedThread`, never from Swift's
/// cooperative pool) for at most ``ElectionConfig/operationTimeout``, except
/// ``waitForLeaderChange(from:timeout:)``, which waits up to its timeout. Calls from several
/// threads are safe; calls of one kind are serialized.
///
/// Keys under the prefix P (docs/FAILOVER.md section 2): `P/leader` holds the leader's node ID,
/// a newline and its value; `P/members/<node>` holds each member's record, `<node>` being the
/// node ID percent-encoded; `P/<name>` is a persistent record (the term record `P/term`),
/// bound to no lease or session and changed only by compare-and-set.
public protocol CoordinationService: AnyObject, Sendable {
    /// The configuration the service was made with.
    var config: ElectionConfig { get }

    /// Tries once to take leadership: creates the leader key with `value`, bound to a new
    /// lease (etcd) or session (ZooKeeper) of the configured TTL, only if no leader key exists.
    /// Returns a ``Leadership`` when won, nil when another holds it (leaving nothing behind:
    /// the lease or session made for the attempt is revoked or closed).
    func campaign(nodeID: String, value: [UInt8]) throws(CoordinationError) -> (any Leadership)?

    /// The current leader's node ID and value, nil when there is none.
    func leader() throws(CoordinationError) -> (nodeID: String, value: [UInt8])?

    /// Publishes this node's member record (its address, epoch, flushed LSN: opaque bytes)
    /// under `P/members/<node>`, bound to this service's own lease or session so it disappears
    /// when the node dies. Call again to update, and at least every
    /// ``ElectionConfig/renewInterval``: each call also keeps the record's lease or session
    /// alive, and the record disappears about a TTL after the last call that reached the service.
    func publish(nodeID: String, value: [UInt8]) throws(CoordinationError)

    /// Every published member record (at most ``CoordinationLimits/membersMax``), ordered by node ID.
    func members() throws(CoordinationError) -> [(nodeID: String, value: [UInt8])]

    /// Blocks until the leader is no longer the node `current` (nil: no leader) or `timeout`
    /// passes, and returns the leader at that moment (nil when there is none). Returns at once
    /// when the leader already differs from `current`. etcd: a watch on the leader key through
    /// the gateway's `/v3/watch` stream; ZooKeeper: a data watch on the leader node.
    func waitForLeaderChange(from current: String?, timeout: Duration)
        throws(CoordinationError) -> (nodeID: String, value: [UInt8])?

    /// Reads the persistent record `P/<name>` (not bound to any lease or session: it survives
    /// every node); nil when it does not exist. `name`: one path component, [a-z0-9-]+.
    ///
    /// Throws `.invalidArgument` for a name that is not 1 ... ``CoordinationLimits/recordNameBytesMax``
    /// bytes of `[a-z0-9-]`, or that is `leader` or `members` (keys the election uses), and
    /// `.limitExceeded` when the record holds more than ``CoordinationLimits/valueBytesMax`` bytes.
    func readRecord(_ name: String) throws(CoordinationError) -> VersionedValue?

    /// Writes `P/<name>` = `value` only if its version is still `expectedVersion` (nil: only if
    /// the record does not exist yet). Returns the new version, or nil when the comparison
    /// failed (another writer changed or created it first) and nothing was written.
    ///
    /// The request goes out once, on a fresh connection, and is never repeated: so nil always
    /// means the comparison failed. A thrown error (`.unreachable` when the answer was lost)
    /// leaves the outcome unknown: read the record again. `.invalidArgument` for a name as in
    /// ``readRecord(_:)``, a value over ``CoordinationLimits/valueBytesMax`` bytes or a negative
    /// `expectedVersion` (never a version this service returns).
    func compareAndSetRecord(_ name: String, value: [UInt8], expectedVersion: Int64?) throws(CoordinationError) -> Int64?

    /// Removes this node's member record (revokes its lease or closes its session) and closes
    /// the connections. Leaderships won through this service are not resigned: resign them
    /// first. A ``waitForLeaderChange(from:timeout:)`` in progress is not interrupted (it ends
    /// by its timeout). Later calls throw `.closed`. Idempotent.
    func close()
}

/// A persistent record's bytes and the version a compare-and-set must name.
public struct VersionedValue: Sendable, Hashable {
    public var value: [UInt8]
    /// etcd: the key's mod_revision; ZooKeeper: the node's data version. Opaque to callers.
    public var version: Int64

    public init(value: [UInt8], version: Int64) {
        self.value = value
        self.version = version
    }
}

/// Leadership won by ``CoordinationService/campaign(nodeID:value:)``: a lease (etcd) or a
/// session (ZooKeeper) of its own, with its own connection, so renewing never waits behind
/// the service's other calls.
public protocol Leadership: AnyObject, Sendable {
    /// The node ID the leadership was won for.
    var nodeID: String { get }

    /// Renews the lease or session and checks the leader key still belongs to it. Throws
    /// `.leaseLost` or `.sessionExpired` when it is certainly gone (final), `.unreachable` when
    /// the service could not confirm it within the operation timeout (a later renew may still
    /// succeed while the lease lives). On success ``validUntil`` moves forward.
    func renew() throws(CoordinationError)

    /// Monotonic deadline (nanoseconds, `ShipLogStorage.monotonicNanoseconds()`) before which
    /// this node is certainly still the leader: the start of the last successful renewal's
    /// request (or of the campaign) + the TTL - ``ElectionConfig/safetyMargin``. 0 once lost
    /// or resigned. The node must stop acting as leader before it.
    var validUntil: UInt64 { get }

    /// Gives leadership up at once: revokes the lease (etcd) or closes the session (ZooKeeper),
    /// which deletes the leader key, then closes the connection. Best effort within the
    /// operation timeout (if the service cannot be reached the key expires with its TTL).
    /// Idempotent.
    func resign()
}

/// The coordination service an election URL names (`etcd://HOST:PORT[/prefix]` or
/// `zookeeper://HOST:PORT[/path]`), with the timing derived from `ttl`. Nothing is connected
/// until the first call.
public func makeCoordinationService(_ url: String, ttl: Duration = CoordinationLimits.ttlDefault)
    throws(CoordinationError) -> any CoordinationService
{
    try makeCoordinationService(config: ElectionConfig(url: url, ttl: ttl))
}

/// The coordination service for `config` (validated first), connecting over `network`.
public func makeCoordinationService(config: ElectionConfig, network: TCPNetwork = TCPNetwork())
    throws(CoordinationError) -> any CoordinationService
{
    try config.validate()
    switch config.backend {
    case .etcd: return EtcdCoordinationService(config: config, network: network)
    case .zookeeper: return ZooKeeperCoordinationService(config: config, network: network)
    }
}

// MARK: - Shared by the backends

/// The key layout under the prefix, the leader record's encoding and argument checks.
enum ElectionKeys {
    /// The leader key (etcd) or node (ZooKeeper).
    static func leader(_ prefix: String) -> String { prefix + "/leader" }
    /// The parent of the member records.
    static func members(_ prefix: String) -> String { prefix + "/members" }
    /// One node's member record.
    static func member(_ prefix: String, nodeID: String) -> String { members(prefix) + "/" + escape(nodeID) }
    /// A persistent record (checked with ``check(recordName:)``).
    static func record(_ prefix: String, name: String) -> String { prefix + "/" + name }

    /// Names a record cannot take: the leader key and the members' parent live there.
    static let reservedRecordNames: Set<String> = ["leader", "members"]

    /// The leader key's value: the node ID, a newline (never part of a node ID), the value.
    static func leaderRecord(nodeID: String, value: [UInt8]) -> [UInt8] {
        Array(nodeID.utf8) + [0x0A] + value
    }

    /// Splits a leader record; nil when it is not one.
    static func parseLeaderRecord(_ bytes: [UInt8]) -> (nodeID: String, value: [UInt8])? {
        guard let newline = bytes.firstIndex(of: 0x0A) else { return nil }
        guard let nodeID = String(validating: bytes[..<newline], as: UTF8.self), nodeIDProblem(nodeID) == nil else { return nil }
        return (nodeID, Array(bytes[(newline + 1)...]))
    }

    /// Why `nodeID` cannot be a node ID, or nil: 1 ... 64 bytes without control characters
    /// (the replication handshake's rule).
    static func nodeIDProblem(_ nodeID: String) -> String? {
        if nodeID.isEmpty || nodeID.utf8.count > CoordinationLimits.nodeIDBytesMax {
            return "node ID must be 1 ... \(CoordinationLimits.nodeIDBytesMax) bytes (got \(nodeID.utf8.count))"
        }
        if nodeID.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || (0x80...0x9F).contains($0.value) }) {
            return "node ID \"\(nodeID.debugDescription)\" contains control characters"
        }
        return nil
    }

    /// Checks a node ID and a value given to campaign or publish.
    static func check(nodeID: String, value: [UInt8]) throws(CoordinationError) {
        if let problem = nodeIDProblem(nodeID) { throw .invalidArgument(problem) }
        guard value.count <= CoordinationLimits.valueBytesMax else {
            throw .invalidArgument("value of \(value.count) bytes for node \(nodeID) exceeds \(CoordinationLimits.valueBytesMax) bytes")
        }
    }

    /// Checks a record name: 1 ... ``CoordinationLimits/recordNameBytesMax`` bytes of
    /// `[a-z0-9-]`, not one of ``reservedRecordNames``.
    static func check(recordName name: String) throws(CoordinationError) {
        guard !name.isEmpty, name.utf8.count <= CoordinationLimits.recordNameBytesMax else {
            throw .invalidArgument("record name must be 1 ... \(CoordinationLimits.recordNameBytesMax) bytes (got \(name.utf8.count))")
        }
        let allowed = name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x7A) || byte == UInt8(ascii: "-")
        }
        guard allowed else { throw .invalidArgument("record name \(name.debugDescription) may hold only a-z, 0-9 and -") }
        guard !reservedRecordNames.contains(name) else {
            throw .invalidArgument("record name \"\(name)\" is reserved for the election's own keys")
        }
    }

    /// Checks the arguments of a compare-and-set of a record.
    static func check(recordName name: String, value: [UInt8], expectedVersion: Int64?) throws(CoordinationError) {
        try check(recordName: name)
        guard value.count <= CoordinationLimits.valueBytesMax else {
            throw .invalidArgument("value of \(value.count) bytes for record \(name) exceeds \(CoordinationLimits.valueBytesMax) bytes")
        }
        if let expectedVersion, expectedVersion < 0 {
            throw .invalidArgument("expected version \(expectedVersion) of record \(name) is negative (no record has one)")
        }
    }

    /// A record read from `service`, refused when it is larger than any value this layer writes.
    static func readRecord(_ value: [UInt8], version: Int64, key: String, service: String) throws(CoordinationError) -> VersionedValue {
        guard value.count <= CoordinationLimits.valueBytesMax else {
            throw .limitExceeded("\(key) on \(service) holds \(value.count) bytes (at most \(CoordinationLimits.valueBytesMax))")
        }
        return VersionedValue(value: value, version: version)
    }

    /// A node ID as one key or path component: bytes other than ASCII letters, digits and
    /// `-_.~` percent-encoded, and a name of dots only encoded whole (ZooKeeper refuses `.` and `..`).
    static func escape(_ nodeID: String) -> String {
        let bytes = Array(nodeID.utf8)
        let dotsOnly = bytes.allSatisfy { $0 == UInt8(ascii: ".") }
        var out = ""
        for byte in bytes {
            let plain = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "~")
                || (byte == UInt8(ascii: ".") && !dotsOnly)
            if plain {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 0x0F, radix: 16, uppercase: true)
            }
        }
        return out
    }

    /// The node ID an escaped component stands for; nil when it is not a valid escape of one.
    static func unescape(_ component: String) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(component.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                    let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
                else { return nil }
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        guard let nodeID = String(validating: bytes, as: UTF8.self), nodeIDProblem(nodeID) == nil,
            escape(nodeID) == component
        else { return nil }
        return nodeID
    }
}
