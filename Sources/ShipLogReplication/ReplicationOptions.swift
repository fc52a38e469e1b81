public import ShipLogFormat
public import ShipLogProtocol
public import ShipLogStorage

/// What a primary does when an append's commit level is not confirmed within its timeout.
public enum CommitTimeoutPolicy: String, Sendable, Hashable, CaseIterable {
    /// Answer `commitTimedOut(first...last)`: the records are in the primary's log and will
    /// still replicate, but the client learns they may not survive a failover (PostgreSQL's
    /// behaviour, minus the hang: a client never waits forever).
    case fail
    /// Answer `appendedDegraded` and run asynchronously until enough followers catch up
    /// (MySQL semi-synchronous replication's `rpl_semi_sync_master_timeout`): appends asking
    /// for a follower level are answered once durable locally, flagged as degraded, and the
    /// primary reports `degraded: true` in its status until the level is met again.
    case degrade
}

/// Tunables of a replicating node. Every duration and size has its unit in its name or type.
public struct ReplicationOptions: Sendable {
    /// The cluster this node belongs to; peers of another cluster are refused.
    public var clusterID = "shiplog"
    /// This node's name, 1 ... 64 bytes of UTF-8; a primary keys its replication slots by the
    /// followers' node ids.
    public var nodeID: String
    /// The shared secret of the cluster (HMAC-SHA256 challenge-response, docs/PROTOCOL.md 6.4).
    public var secret: SharedSecret

    /// Commit level of appends that do not ask for one (a request with `timeoutMillis` 0 and
    /// the CLI's default).
    public var defaultCommitLevel: CommitLevel = .local
    /// How long an append waits for its commit level when the request names no timeout.
    public var commitTimeout: Duration = .seconds(10)
    public var commitTimeoutPolicy: CommitTimeoutPolicy = .fail

    /// Bytes a primary sends a follower beyond its last acknowledgement (docs/PROTOCOL.md 7.5).
    public var followerWindowBytes = 64 << 20
    /// A primary with nothing to ship sends a Keepalive this often; a follower sends a status at
    /// least this often.
    public var keepaliveInterval: Duration = .seconds(1)
    /// A peer silent for this long is disconnected (PostgreSQL's `wal_sender_timeout`).
    public var replicationTimeout: Duration = .seconds(10)
    /// The handshake must complete within this; an unauthenticated peer cannot hold a
    /// connection longer.
    public var handshakeTimeout: Duration = .seconds(5)
    /// A follower reconnects after a failure, waiting from the minimum, doubling up to the
    /// maximum (with jitter).
    public var reconnectBackoffMin: Duration = .milliseconds(50)
    public var reconnectBackoffMax: Duration = .seconds(2)
    /// A replication slot holds back retention for its follower, but never more than this many
    /// bytes of log: a follower further behind must re-seed from a checkpoint.
    public var slotRetainedBytesMax: Int64 = 16 << 30
    /// Connections a node serves at once; more are refused with `overloaded`.
    public var connectionsMax = 1024
    /// Requests one client connection may have in flight; the node stops reading from a
    /// connection that has this many unanswered.
    public var clientRequestsInFlightMax = 4096
    /// The other nodes of the cluster: a follower that cannot reach its primary asks them which
    /// one is the primary of the highest epoch (after a failover) and follows that one.
    public var peers: [Endpoint] = []
    /// Whether epochs fence (docs/PROTOCOL.md 6.1): a primary that meets an authenticated peer
    /// of a newer epoch stops accepting appends, and a follower refuses a primary older than
    /// its own epoch. A node whose role a leader election decides turns it off: the leader
    /// lease is what fences there, and a node that comes back with an epoch nobody else saw
    /// (it was promoted and died before shipping it) must rejoin the elected primary, not
    /// fence it.
    public var fencesByEpoch = true
    /// A primary that starts fenced accepts no append until it is unfenced (a node run by a
    /// leader election starts so, and is unfenced only once it holds the leader lease).
    public var fencedAtStart = false
    /// How a follower syncs what it receives. `.immediate` (the default) makes `flush:K` mean
    /// fdatasynced on K followers.
    public var followerDurability: Durability = .immediate

    public init(nodeID: String, secret: SharedSecret) {
        self.nodeID = nodeID
        self.secret = secret
    }

    /// Checks every field; the error names the field.
    public func validate() throws(ReplicationError) {
        func check(_ condition: Bool, _ problem: @autoclosure () -> String) throws(ReplicationError) {
            if !condition { throw .invalidOptions(problem()) }
        }
        try check(!clusterID.isEmpty && clusterID.utf8.count <= ProtocolLimits.idBytesMax, "clusterID must be 1 ... 64 bytes")
        if let problem = NodeID.problem(nodeID) { throw .invalidOptions("nodeID \(problem)") }
        try check(followerWindowBytes >= 1 << 16, "followerWindowBytes must be at least 65536, got \(followerWindowBytes)")
        try check(keepaliveInterval > .zero, "keepaliveInterval must be positive")
        try check(replicationTimeout > keepaliveInterval, "replicationTimeout must exceed keepaliveInterval")
        try check(handshakeTimeout > .zero, "handshakeTimeout must be positive")
        try check(commitTimeout > .zero && commitTimeout <= .milliseconds(Int(ProtocolLimits.requestWaitMillisMax)),
            "commitTimeout must be 1 ms ... 600 s")
        try check(reconnectBackoffMin > .zero && reconnectBackoffMax >= reconnectBackoffMin,
            "reconnectBackoffMin must be positive and at most reconnectBackoffMax")
        try check(slotRetainedBytesMax > 0, "slotRetainedBytesMax must be positive")
        try check(connectionsMax >= 1, "connectionsMax must be at least 1")
        try check(clientRequestsInFlightMax >= 1, "clientRequestsInFlightMax must be at least 1")
    }
}

/// Hard limits of the replication layer (beyond the protocol's own, `ProtocolLimits`).
public enum ReplicationLimits {
    /// Bytes read from a socket per receive call.
    public static let receiveChunkBytes = 256 << 10
    /// Batch bytes put into one Batches frame at most (the window may allow less).
    public static let batchesFrameBytesTarget = 4 << 20
    /// Snapshot bytes per SnapshotChunk.
    public static let snapshotChunkBytes = ProtocolLimits.snapshotChunkBytesMax
    /// Batch bytes one ReadResponse carries when the request asks for the default (0).
    public static let readResponseBytesDefault = 1 << 20
    /// Queued response bytes per client connection above which the node stops reading requests
    /// from it until the client has read some.
    public static let clientOutboundBytesMax = 64 << 20
}
