#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Mutual challenge–response authentication for replication connections.
///
/// Every node of a cluster, and every client allowed to connect to it, holds the same
/// ``SharedSecret``. During the handshake each end proves it knows the secret without sending
/// it, and checks that the other end does too.
///
/// ## Exchange
///
/// 1. Each end draws a fresh ``Nonce`` for the connection (``Nonce/random()``) and sends it.
///    No proof can be made before both nonces are known.
/// 2. Each end sends ``proof(secret:role:ownNonce:peerNonce:clusterID:nodeID:)`` made with its
///    own role, its own nonce, the peer's nonce, the cluster ID and its own node ID.
/// 3. Each end checks the peer's proof with
///    ``verify(_:secret:peerRole:peerNonce:ownNonce:clusterID:peerNodeID:)``, passing the role
///    and node ID the peer announced, and drops the connection if it fails. Nothing else may
///    be accepted from a peer before its proof has been verified.
///
/// Which end proves first is up to the handshake; both proofs cover both nonces either way.
///
/// ## The proof
///
///     proof = HMAC-SHA256(secret, transcript)                       32 bytes
///
///     transcript = "shiplog-auth-v1"                                15 ASCII bytes, no prefix
///                  || u32le(n) || role label                        "primary", "follower", "client"
///                  || u32le(32) || prover's nonce
///                  || u32le(32) || verifier's nonce
///                  || u32le(n) || cluster ID
///                  || u32le(n) || prover's node ID
///
/// where `u32le(n)` is the byte count of the field that follows, as a 32-bit little-endian
/// integer, and the role, the first nonce and the node ID are those of the end making the
/// proof. The label comes first and has a fixed length, and every field after it is
/// length-prefixed, so two different sets of fields never produce the same transcript; the
/// label also keeps these MACs apart from any other use of the same secret. The label's
/// `v1` changes if the transcript ever does.
///
/// ## What this guarantees
///
/// - **No replay.** Each proof covers the verifier's own fresh nonce, so a proof recorded on
///   an earlier connection fails on a new one.
/// - **No reflection.** The proofs of the two directions of a connection differ in the order
///   of the nonces (the prover's own always comes first) and, between ends of different roles,
///   in the role label; either difference alone makes them different MACs. So a peer cannot answer a node's challenge by
///   sending back the node's own proof, nor by getting the node to prove over that challenge
///   on a second connection: the node always puts a nonce it drew itself first.
///   ``verify(_:secret:peerRole:peerNonce:ownNonce:clusterID:peerNodeID:)`` also refuses a peer
///   nonce equal to the verifier's own.
/// - **Binding.** A proof is valid only for the cluster ID and the node ID it names, so it
///   cannot vouch for another node, or for another cluster that happens to share the secret.
///
/// ## What it does not
///
/// - It authenticates the handshake only. It neither encrypts nor authenticates the frames
///   that follow, and an attacker who can relay both directions of a connection can let the
///   handshake succeed and then read or alter the stream. Run replication over a trusted
///   network or inside a tunnel (TLS, WireGuard, SSH) where that matters.
/// - Anyone who records a handshake can test guesses of the secret offline. Use a random
///   secret of at least 32 bytes, for example `head -c 32 /dev/urandom | base64 > secret`,
///   not a password.
public enum Authentication {
    /// The domain-separation label at the start of every transcript.
    public static let label = "shiplog-auth-v1"
    /// Bytes in a proof.
    public static let proofByteCount = HMACSHA256.byteCount

    /// The role of the end making a proof, written into the transcript as its ASCII raw value.
    public enum Role: String, Sendable, Hashable, CaseIterable {
        /// The node accepting writes and shipping its log.
        case primary
        /// A node receiving the primary's log.
        case follower
        /// A client of the cluster, not a replica.
        case client
    }

    /// The proof this end sends: HMAC-SHA256 under `secret` of the transcript described on
    /// ``Authentication``.
    ///
    /// - Parameters:
    ///   - role: this end's role.
    ///   - ownNonce: the nonce this end drew for this connection.
    ///   - peerNonce: the nonce the peer sent on this connection.
    ///   - clusterID: the cluster both ends belong to.
    ///   - nodeID: this end's node ID as announced to the peer (may be empty, for a client).
    /// - Returns: ``proofByteCount`` bytes.
    public static func proof(
        secret: SharedSecret, role: Role, ownNonce: Nonce, peerNonce: Nonce, clusterID: [UInt8], nodeID: [UInt8]
    ) -> [UInt8] {
        var mac = secret.keyedMAC
        mac.update(transcript(role: role, proverNonce: ownNonce, verifierNonce: peerNonce, clusterID: clusterID, proverNodeID: nodeID))
        return mac.finalize()
    }

    /// Whether `proof`, received from the peer, is the proof a holder of `secret` in the
    /// peer's announced role and with the peer's announced node ID makes on this connection.
    /// Every parameter is named from this end's point of view: the peer's proof is checked
    /// against the transcript with the peer's role, nonce and node ID in the prover's places.
    ///
    /// The comparison takes time independent of where a wrong proof differs. A proof of the
    /// wrong length, or a peer nonce equal to `ownNonce` (a reflected challenge), fails.
    ///
    /// - Parameters:
    ///   - proof: the bytes the peer sent as its proof.
    ///   - peerRole: the role the peer announced.
    ///   - peerNonce: the nonce the peer sent on this connection.
    ///   - ownNonce: the nonce this end drew for this connection.
    ///   - clusterID: the cluster ID this end expects.
    ///   - peerNodeID: the node ID the peer announced.
    public static func verify(
        _ proof: [UInt8], secret: SharedSecret, peerRole: Role, peerNonce: Nonce, ownNonce: Nonce,
        clusterID: [UInt8], peerNodeID: [UInt8]
    ) -> Bool {
        let expected = Self.proof(
            secret: secret, role: peerRole, ownNonce: peerNonce, peerNonce: ownNonce, clusterID: clusterID,
            nodeID: peerNodeID)
        let matches = constantTimeEquals(proof, expected)
        // Not secret: both nonces crossed the wire in clear.
        return matches && peerNonce != ownNonce
    }

    /// The transcript a proof is the MAC of; see ``Authentication``.
    static func transcript(
        role: Role, proverNonce: Nonce, verifierNonce: Nonce, clusterID: [UInt8], proverNodeID: [UInt8]
    ) -> [UInt8] {
        let roleLabel = Array(role.rawValue.utf8)
        var transcript: [UInt8] = []
        transcript.reserveCapacity(label.utf8.count + 5 * 4 + roleLabel.count + 2 * Nonce.byteCount + clusterID.count + proverNodeID.count)
        transcript.append(contentsOf: label.utf8)
        for field in [roleLabel, proverNonce.bytes, verifierNonce.bytes, clusterID, proverNodeID] {
            precondition(field.count <= Int(UInt32.max), "authentication transcript field too long")
            withUnsafeBytes(of: UInt32(field.count).littleEndian) { transcript.append(contentsOf: $0) }
            transcript.append(contentsOf: field)
        }
        return transcript
    }
}

// MARK: - Shared secret

/// The secret shared by every member of a cluster, from which ``Authentication`` proofs are
/// made. It is 16 to 4096 bytes of anything; 32 or more random bytes are recommended.
///
/// The secret is kept only as a keyed HMAC state, never printed: its `description` and its
/// mirror show the byte count alone. It is deliberately not `Equatable`.
public struct SharedSecret: Sendable, CustomStringConvertible, CustomReflectable {
    /// Fewest bytes accepted.
    public static let minimumByteCount = 16
    /// Most bytes accepted, and the largest secret file that is read.
    public static let maximumByteCount = 4096

    /// HMAC-SHA256 keyed with the secret, not yet fed any message.
    let keyedMAC: HMACSHA256
    /// Bytes in the secret.
    public let byteCount: Int

    /// A secret from bytes already in memory.
    /// - Throws: ``AuthenticationError/secretTooShort(path:byteCount:)`` or
    ///   ``AuthenticationError/secretTooLong(path:byteCount:)``, with a `nil` path.
    public init(bytes: [UInt8]) throws(AuthenticationError) {
        try self.init(validating: bytes, path: nil)
    }

    /// Reads a secret from the file at `path`.
    ///
    /// The secret is the file's bytes, less one trailing line ending (`"\n"` or `"\r\n"`) if
    /// there is one, so that a file written by `echo` or a text editor holds the same secret as
    /// one written without. Only one is removed, and nothing else is trimmed: a binary secret
    /// must not end in a line ending, or every node must strip it the same way (they do, if
    /// they all read it with this initializer).
    ///
    /// - Throws: ``AuthenticationError/secretFileUnreadable(path:errno:)`` if the file cannot be
    ///   opened or read, ``AuthenticationError/secretTooLong(path:byteCount:)`` if the file is
    ///   larger than ``maximumByteCount``, ``AuthenticationError/secretTooShort(path:byteCount:)``
    ///   if what is left after removing the line ending is shorter than ``minimumByteCount``.
    public init(contentsOfFile path: String) throws(AuthenticationError) {
        var bytes = try Self.readSecretFile(path)
        if bytes.last == UInt8(ascii: "\n") {
            bytes.removeLast()
            if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        }
        try self.init(validating: bytes, path: path)
    }

    private init(validating bytes: [UInt8], path: String?) throws(AuthenticationError) {
        guard bytes.count >= Self.minimumByteCount else { throw .secretTooShort(path: path, byteCount: bytes.count) }
        guard bytes.count <= Self.maximumByteCount else { throw .secretTooLong(path: path, byteCount: bytes.count) }
        keyedMAC = HMACSHA256(key: bytes)
        byteCount = bytes.count
    }

    /// The whole file, refusing more than ``maximumByteCount`` bytes without reading them all.
    private static func readSecretFile(_ path: String) throws(AuthenticationError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .secretFileUnreadable(path: path, errno: errno) }
        defer { close(fd) }

        var status = stat()
        if fstat(fd, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, status.st_size > maximumByteCount {
            throw .secretTooLong(path: path, byteCount: Int(status.st_size))
        }

        // One byte more than allowed, to tell "exactly the limit" from "over it" for files
        // whose size fstat does not give (pipes, /proc) or that grew since.
        let capacity = maximumByteCount + 1
        var bytes = [UInt8](repeating: 0, count: capacity)
        var count = 0
        var readErrno: Int32 = 0
        bytes.withUnsafeMutableBytes { buffer in
            while count < capacity {
                let n = read(fd, buffer.baseAddress! + count, capacity - count)
                if n > 0 {
                    count += n
                } else if n == 0 {
                    break
                } else if errno != EINTR {
                    readErrno = errno
                    break
                }
            }
        }
        guard readErrno == 0 else { throw .secretFileUnreadable(path: path, errno: readErrno) }
        guard count <= maximumByteCount else { throw .secretTooLong(path: path, byteCount: count) }
        bytes.removeSubrange(count...)
        return bytes
    }

    public var description: String { "SharedSecret(\(byteCount) bytes, redacted)" }

    public var customMirror: Mirror { Mirror(self, children: ["byteCount": byteCount], displayStyle: .struct) }
}

// MARK: - Nonce

/// A 32-byte random challenge, drawn afresh by each end for each connection and never reused.
/// Nonces are public: they travel in clear.
public struct Nonce: Sendable, Hashable, CustomStringConvertible {
    /// Bytes in a nonce.
    public static let byteCount = 32

    /// Exactly ``byteCount`` bytes.
    public let bytes: [UInt8]

    /// A nonce received from the peer; `nil` unless `bytes` holds exactly ``byteCount`` bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        self.bytes = bytes
    }

    /// A fresh nonce from the operating system's cryptographic random number generator:
    /// getrandom(2) (through getentropy(3)), or `/dev/urandom` where that system call is missing.
    /// - Throws: ``AuthenticationError/randomnessUnavailable(errno:)`` if neither works.
    public static func random() throws(AuthenticationError) -> Nonce {
        var bytes = [UInt8](repeating: 0, count: byteCount)
        let failure = bytes.withUnsafeMutableBytes { fillRandom($0) }
        guard failure == 0 else { throw .randomnessUnavailable(errno: failure) }
        return Nonce(bytes: bytes)!
    }

    /// Fills `buffer` (at most 256 bytes) with random bytes; returns 0, or the errno of the
    /// last failure.
    private static func fillRandom(_ buffer: UnsafeMutableRawBufferPointer) -> Int32 {
        precondition(buffer.count <= 256, "getentropy(3) returns at most 256 bytes")
        if getentropy(buffer.baseAddress, buffer.count) == 0 { return 0 }

        // Kernels before 3.17 have no getrandom(2).
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        var filled = 0
        while filled < buffer.count {
            let n = read(fd, buffer.baseAddress! + filled, buffer.count - filled)
            if n > 0 {
                filled += n
            } else if n == 0 {
                return EIO
            } else if errno != EINTR {
                return errno
            }
        }
        return 0
    }

    /// Lowercase hexadecimal.
    public var description: String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(2 * bytes.count)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

// MARK: - Errors

/// Why a shared secret could not be loaded, or a nonce drawn.
public enum AuthenticationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The secret file could not be opened or read.
    case secretFileUnreadable(path: String, errno: Int32)
    /// The secret is shorter than ``SharedSecret/minimumByteCount`` (counted after the trailing
    /// line ending of a file is removed). `path` is `nil` for a secret given as bytes.
    case secretTooShort(path: String?, byteCount: Int)
    /// The secret, or its file, is larger than ``SharedSecret/maximumByteCount``. `byteCount`
    /// is the size found, or a lower bound on it when a file's size could not be known in
    /// advance. `path` is `nil` for a secret given as bytes.
    case secretTooLong(path: String?, byteCount: Int)
    /// Neither getrandom(2) nor `/dev/urandom` produced random bytes.
    case randomnessUnavailable(errno: Int32)

    public var description: String {
        switch self {
        case .secretFileUnreadable(let path, let code):
            return "cannot read shared secret file '\(path)': \(Self.describe(errno: code))"
        case .secretTooShort(let path, let count):
            let minimum = SharedSecret.minimumByteCount
            guard let path else { return "shared secret is \(count) bytes; at least \(minimum) are required" }
            return "shared secret file '\(path)' holds \(count) bytes (not counting one trailing newline); "
                + "at least \(minimum) are required"
        case .secretTooLong(let path, _):
            let maximum = SharedSecret.maximumByteCount
            guard let path else { return "shared secret is larger than the \(maximum)-byte limit" }
            return "shared secret file '\(path)' is larger than the \(maximum)-byte limit for a shared secret"
        case .randomnessUnavailable(let code):
            return "cannot get random bytes from getrandom(2) or /dev/urandom: \(Self.describe(errno: code))"
        }
    }

    private static func describe(errno code: Int32) -> String {
        guard let message = strerror(code) else { return "errno \(code)" }
        return "\(String(cString: message)) (errno \(code))"
    }
}
