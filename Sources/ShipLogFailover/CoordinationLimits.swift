/// Limits of the coordination layer, each with its unit. Everything read from a coordination
/// service is checked against them before anything is allocated for it.
public enum CoordinationLimits {
    /// Shortest lease or session TTL accepted: 1 s (etcd's lease TTLs are whole seconds, and
    /// ZooKeeper's minimum session timeout is two ticks).
    public static let ttlMin: Duration = .seconds(1)
    /// Longest lease or session TTL accepted: 60 s.
    public static let ttlMax: Duration = .seconds(60)
    /// The TTL when none is given: 5 s.
    public static let ttlDefault: Duration = .seconds(5)
    /// Smallest safety margin, as a fraction of the TTL: 1/100 (a clock-rate allowance far
    /// beyond real crystal drift, which is below 1/10,000).
    public static let safetyMarginMinDivisor: Int64 = 100
    /// Longest node ID, in bytes (as the replication handshake's node IDs).
    public static let nodeIDBytesMax = 64
    /// Longest persistent record name (``CoordinationService/readRecord(_:)``), in bytes.
    public static let recordNameBytesMax = 64
    /// Largest value a node stores under the prefix (a member record, the leader's value or a persistent record), in bytes.
    public static let valueBytesMax = 16 << 10
    /// Most member records ``CoordinationService/members()`` returns.
    public static let membersMax = 256
    /// Longest prefix (etcd key prefix or ZooKeeper path), in bytes.
    public static let prefixBytesMax = 256
    /// Most endpoints in one election URL.
    public static let endpointsMax = 16
    /// Longest election URL, in bytes.
    public static let urlBytesMax = 4096
    /// Largest HTTP response head (status line and headers) from the etcd gateway, in bytes.
    public static let httpHeadBytesMax = 16 << 10
    /// Largest HTTP response body from the etcd gateway, in bytes: ``membersMax`` records of
    /// ``valueBytesMax`` in base64 with their JSON fit well inside it.
    public static let httpBodyBytesMax = 8 << 20
    /// Largest single message of an etcd watch stream, in bytes.
    public static let watchMessageBytesMax = 1 << 20
    /// Largest ZooKeeper frame accepted, in bytes (the server's own default jute.maxbuffer is
    /// just under 1 MiB).
    public static let zooKeeperFrameBytesMax = 1 << 20
    /// Bytes asked for per recv(2).
    public static let receiveChunkBytes = 64 << 10
}
