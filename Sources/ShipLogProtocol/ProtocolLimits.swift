import ShipLogFormat

/// Hard limits of protocol version 1 (docs/PROTOCOL.md section 9). Every length, count and size
/// read from a peer is checked against these before anything is allocated from it. Each name says
/// its unit.
public enum ProtocolLimits {
    /// The fixed frame header, in bytes.
    public static let frameHeaderBytes = 16
    /// Room for a message's own fields around the batches it carries, in bytes.
    public static let messageOverheadBytesMax = 4096
    /// The largest whole frame (header and payload), in bytes: one maximal batch
    /// (`FormatLimits.batchBytesMax`) plus ``messageOverheadBytesMax``. 16,847,185 bytes.
    public static let frameBytesMax = FormatLimits.batchBytesMax + messageOverheadBytesMax
    /// The largest frame payload, in bytes: ``frameBytesMax`` minus the header. 16,847,169 bytes.
    public static let framePayloadBytesMax = frameBytesMax - frameHeaderBytes
    /// The frame size limit a receiver SHOULD set on its decoder until the peer has authenticated,
    /// in bytes: every handshake message fits (the largest, a `Refuse`, is at most 1,300 bytes).
    public static let handshakeFrameBytesMax = 4096

    /// The longest cluster id or node id, in bytes of UTF-8 (ids are 1 ... 64 bytes).
    public static let idBytesMax = 64
    /// The longest human-readable text of a refusal or error, in bytes of UTF-8.
    public static let reasonBytesMax = 1024
    /// The longest address hint in a `notPrimary` failure (`host:port`), in bytes of UTF-8.
    public static let addressBytesMax = 255
    /// The size of an authentication nonce, in bytes (exact).
    public static let authNonceBytes = 32
    /// The size of an authentication proof (an HMAC-SHA256), in bytes (exact).
    public static let authProofBytes = 32

    /// The most batches one `Batches` or `ReadResponse` message may carry, in batches.
    public static let batchesPerFrameMax = 65_536
    /// The largest record block of one `AppendRequest`, in bytes: it must fit one batch.
    public static let appendRecordBlockBytesMax = FormatLimits.batchUncompressedBytesMax
    /// The most followers a commit level can wait for (`write:K`, `flush:K`, `apply:K`), in followers.
    public static let commitFollowersMax = 255
    /// The longest wait a request may ask for (`AppendRequest.timeoutMillis`,
    /// `ReadRequest.waitMillis`), in milliseconds (10 minutes).
    public static let requestWaitMillisMax: UInt32 = 600_000

    /// The largest data part of one `SnapshotChunk`, in bytes (1 MiB).
    public static let snapshotChunkBytesMax = 1 << 20
    /// The largest snapshot (checkpoint file) that can be transferred, in bytes (1 TiB).
    public static let snapshotBytesMax: UInt64 = 1 << 40
    /// The longest JSON text of a `StatusResponse`, in bytes of UTF-8 (64 KiB).
    public static let statusJSONBytesMax = 65_536

    /// The longest query of a `QueryRequest`, in bytes (64 KiB). The bytes are the state
    /// machine's encoding; the codec checks only their length, before copying them.
    public static let queryBytesMax = 65_536
    /// The longest result of a `QueryResponse`, in bytes (4 MiB). A state machine keeps its
    /// results within it; a node whose result would be longer answers `queryFailed` instead.
    public static let queryResultBytesMax = 1 << 22
}
