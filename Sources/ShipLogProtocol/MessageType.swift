/// The message type code in byte 5 of every frame header (docs/PROTOCOL.md section 4).
///
/// Codes are grouped by purpose: 0x01-0x0F handshake and connection, 0x10-0x1F replication
/// (primary and follower), 0x20-0x2F client requests. 0x00 is never a type, so zero-filled bytes
/// can never pass for a frame.
public enum MessageType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Initiator → responder: versions, cluster and node ids, role, log position, nonce.
    case hello = 0x01
    /// Responder → initiator: the chosen version, the responder's id, log position and nonce.
    case helloAck = 0x02
    /// Either side, during the handshake or in answer to `StartStream`: why the connection is
    /// refused. The sender closes the connection after it.
    case refuse = 0x03
    /// Either side: the 32-byte HMAC-SHA256 proof of the shared secret.
    case authProof = 0x04
    /// Either side, any time: a fatal error. The sender closes the connection after it.
    case error = 0x05

    /// Follower → primary: start shipping from this LSN.
    case startStream = 0x10
    /// Primary → follower: one or more batches, byte for byte as stored (PostgreSQL `w`).
    case batches = 0x11
    /// Primary → follower: the primary's positions, optionally asking for a status (PostgreSQL `k`).
    case keepalive = 0x12
    /// Follower → primary: written, flushed and applied LSNs (PostgreSQL `r`).
    case followerStatus = 0x13
    /// Primary → follower: a piece of a checkpoint file, to re-seed a follower.
    case snapshotChunk = 0x14
    /// Follower → primary: how much of a snapshot the follower has stored.
    case snapshotAck = 0x15

    /// Client → primary: records to append, with the commit level to wait for.
    case appendRequest = 0x20
    /// Primary → client: the LSNs assigned, or why the append failed.
    case appendResponse = 0x21
    /// Client → any node: read batches from an LSN.
    case readRequest = 0x22
    /// Node → client: batches, or why not.
    case readResponse = 0x23
    /// Client → any node: ask for the node's status.
    case statusRequest = 0x24
    /// Node → client: the node's status as JSON text.
    case statusResponse = 0x25
    /// Client → any node: a read of the node's state machine (opaque query bytes).
    case queryRequest = 0x26
    /// Node → client: the query's result and the applied LSN it reflects, or why not.
    case queryResponse = 0x27
    /// Operator → a follower: become the primary of a new epoch.
    case promoteRequest = 0x28
    /// The node → operator: promoted (the new epoch and its first LSN), or why not.
    case promoteResponse = 0x29

    /// The name used in docs/PROTOCOL.md and in error descriptions.
    public var name: String {
        switch self {
        case .hello: "Hello"
        case .helloAck: "HelloAck"
        case .refuse: "Refuse"
        case .authProof: "AuthProof"
        case .error: "Error"
        case .startStream: "StartStream"
        case .batches: "Batches"
        case .keepalive: "Keepalive"
        case .followerStatus: "FollowerStatus"
        case .snapshotChunk: "SnapshotChunk"
        case .snapshotAck: "SnapshotAck"
        case .appendRequest: "AppendRequest"
        case .appendResponse: "AppendResponse"
        case .readRequest: "ReadRequest"
        case .readResponse: "ReadResponse"
        case .statusRequest: "StatusRequest"
        case .statusResponse: "StatusResponse"
        case .queryRequest: "QueryRequest"
        case .queryResponse: "QueryResponse"
        case .promoteRequest: "PromoteRequest"
        case .promoteResponse: "PromoteResponse"
        }
    }

    public var description: String { "\(name) (0x\(String(rawValue, radix: 16)))" }
}
