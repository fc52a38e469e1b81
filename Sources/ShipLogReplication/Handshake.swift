import ShipLogFormat
import ShipLogProtocol

/// One end's side of the handshake of docs/PROTOCOL.md section 6.
struct HandshakeIdentity: Sendable {
    var clusterID: String
    var nodeID: String
    var role: Message.Role
    /// The largest epoch in this end's log (0 for a client that has seen none).
    var epoch: Epoch
    var lastLSN: LSN
    var lastBatchCRC: UInt32
}

/// What the handshake established about the peer.
struct PeerInfo: Sendable {
    var nodeID: String
    var role: Message.Role
    var epoch: Epoch
    var lastLSN: LSN
    var lastBatchCRC: UInt32
    var version: UInt16
    var address: String
}

/// Node ids name followers in status documents and in the replication-slots file, one per
/// line: besides the protocol's 1 ... 64 bytes of UTF-8 they must hold no control characters
/// (docs/PROTOCOL.md 5.1).
enum NodeID {
    /// Why `id` cannot be a node id, or nil.
    static func problem(_ id: String) -> String? {
        if id.isEmpty || id.utf8.count > ProtocolLimits.idBytesMax { return "must be 1 ... \(ProtocolLimits.idBytesMax) bytes" }
        if id.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || (0x80...0x9F).contains($0.value) }) {
            return "must not contain control characters"
        }
        return nil
    }
}

enum Handshake {
    /// The initiator's side (a follower or a client): Hello, HelloAck, both proofs. On return
    /// the receiver accepts full-size frames.
    static func initiate(
        identity: HandshakeIdentity, secret: SharedSecret, sender: MessageSender, receiver: inout MessageReceiver
    ) throws(ReplicationError) -> PeerInfo {
        let peer = sender.peer
        let nonce = try freshNonce()
        try sender.send(
            .hello(
                Message.Hello(
                    clusterID: identity.clusterID, nodeID: identity.nodeID, role: identity.role, epoch: identity.epoch,
                    lastLSN: identity.lastLSN, lastBatchCRC: identity.lastBatchCRC, nonce: nonce.bytes)))
        let ack: Message.HelloAck
        switch try receiver.receive() {
        case .helloAck(let m): ack = m
        case .refuse(let failure), .error(let failure): throw .refused(peer: peer, failure)
        case let other?: throw .unexpectedMessage(peer: peer, other.type, expected: "HelloAck or Refuse")
        case nil: throw .connectionClosed(peer: peer)
        }
        guard ProtocolVersion.supported.contains(ack.version) else {
            sender.fail(Message.Failure(.unsupportedVersion(min: ProtocolVersion.supported.lowerBound, max: ProtocolVersion.supported.upperBound)), refuse: true)
            throw .handshakeFailed(peer: peer, reason: "the responder chose protocol version \(ack.version), outside 1 ... 1")
        }
        guard let peerNonce = Nonce(bytes: ack.nonce) else {
            throw .handshakeFailed(peer: peer, reason: "the responder's nonce is not 32 bytes")
        }
        try sendProof(identity: identity, secret: secret, nonce: nonce, peerNonce: peerNonce, sender: sender)
        let proof: Message.AuthProof
        switch try receiver.receive() {
        case .authProof(let m): proof = m
        case .refuse(let failure), .error(let failure): throw .refused(peer: peer, failure)
        case let other?: throw .unexpectedMessage(peer: peer, other.type, expected: "AuthProof")
        case nil: throw .connectionClosed(peer: peer)
        }
        try verifyProof(proof, of: ack.role, nodeID: ack.nodeID, identity: identity, secret: secret, nonce: nonce, peerNonce: peerNonce, sender: sender)
        receiver.peerAuthenticated()
        return PeerInfo(
            nodeID: ack.nodeID, role: ack.role, epoch: ack.epoch, lastLSN: ack.lastLSN, lastBatchCRC: ack.lastBatchCRC,
            version: ack.version, address: peer)
    }

    /// The responder's side: checks the Hello (version, cluster, then `admit` for the
    /// node-specific checks such as epoch fencing), answers, and verifies the initiator's proof
    /// before proving itself. Refuses (and closes) on the first failure.
    static func respond(
        identity: HandshakeIdentity, secret: SharedSecret, sender: MessageSender, receiver: inout MessageReceiver
    ) throws(ReplicationError) -> PeerInfo {
        let peer = sender.peer
        let hello: Message.Hello
        switch try receiveAnswering(&receiver, sender) {
        case .hello(let m): hello = m
        case let other?:
            sender.fail(Message.Failure(.protocolViolation, text: "expected Hello, got \(other.type.name)"))
            throw .unexpectedMessage(peer: peer, other.type, expected: "Hello")
        case nil: throw .connectionClosed(peer: peer)
        }
        guard let version = ProtocolVersion.negotiate(peerMin: hello.versions.lowerBound, peerMax: hello.versions.upperBound) else {
            let supported = ProtocolVersion.supported
            sender.fail(Message.Failure(.unsupportedVersion(min: supported.lowerBound, max: supported.upperBound)), refuse: true)
            throw .handshakeFailed(peer: peer, reason: "no protocol version in common (peer speaks \(hello.versions))")
        }
        if let problem = NodeID.problem(hello.nodeID) {
            sender.fail(Message.Failure(.protocolViolation, text: "node id \(problem)"), refuse: true)
            throw .handshakeFailed(peer: peer, reason: "the peer's node id \(problem)")
        }
        guard hello.clusterID == identity.clusterID else {
            sender.fail(Message.Failure(.wrongCluster, text: "this node belongs to cluster \(identity.clusterID)"), refuse: true)
            throw .handshakeFailed(peer: peer, reason: "peer belongs to cluster \(hello.clusterID), not \(identity.clusterID)")
        }
        let nonce = try freshNonce()
        guard let peerNonce = Nonce(bytes: hello.nonce) else {
            throw .handshakeFailed(peer: peer, reason: "the initiator's nonce is not 32 bytes")
        }
        try sender.send(
            .helloAck(
                Message.HelloAck(
                    version: version, nodeID: identity.nodeID, role: identity.role, epoch: identity.epoch,
                    lastLSN: identity.lastLSN, lastBatchCRC: identity.lastBatchCRC, nonce: nonce.bytes)))
        let proof: Message.AuthProof
        switch try receiveAnswering(&receiver, sender) {
        case .authProof(let m): proof = m
        case .refuse(let failure), .error(let failure): throw .refused(peer: peer, failure)
        case let other?:
            sender.fail(Message.Failure(.authFailed, text: "expected AuthProof, got \(other.type.name)"), refuse: true)
            throw .unexpectedMessage(peer: peer, other.type, expected: "AuthProof")
        case nil: throw .connectionClosed(peer: peer)
        }
        try verifyProof(proof, of: hello.role, nodeID: hello.nodeID, identity: identity, secret: secret, nonce: nonce, peerNonce: peerNonce, sender: sender)
        try sendProof(identity: identity, secret: secret, nonce: nonce, peerNonce: peerNonce, sender: sender)
        receiver.peerAuthenticated()
        return PeerInfo(
            nodeID: hello.nodeID, role: hello.role, epoch: hello.epoch, lastLSN: hello.lastLSN,
            lastBatchCRC: hello.lastBatchCRC, version: version, address: peer)
    }

    /// Receives the next message; bytes that are not a valid frame or message are answered
    /// with Error `protocolViolation` naming the problem before the error is thrown
    /// (docs/PROTOCOL.md 2), so a misconfigured peer learns why it was dropped.
    private static func receiveAnswering(_ receiver: inout MessageReceiver, _ sender: MessageSender) throws(ReplicationError) -> Message? {
        do {
            return try receiver.receive()
        } catch {
            if case .protocolViolation(_, let problem) = error {
                sender.fail(Message.Failure(.protocolViolation, text: String(describing: problem).prefix(ProtocolLimits.reasonBytesMax).description))
            }
            throw error
        }
    }

    /// Sends this end's proof (docs/PROTOCOL.md 6.4).
    private static func sendProof(
        identity: HandshakeIdentity, secret: SharedSecret, nonce: Nonce, peerNonce: Nonce, sender: MessageSender
    ) throws(ReplicationError) {
        try sender.send(
            .authProof(
                Message.AuthProof(
                    proof: Authentication.proof(
                        secret: secret, role: authRole(identity.role), ownNonce: nonce, peerNonce: peerNonce,
                        clusterID: Array(identity.clusterID.utf8), nodeID: Array(identity.nodeID.utf8)))))
    }

    /// Checks the peer's proof; a wrong one is refused with `authFailed` and the connection closed.
    private static func verifyProof(
        _ proof: Message.AuthProof, of role: Message.Role, nodeID: String, identity: HandshakeIdentity, secret: SharedSecret,
        nonce: Nonce, peerNonce: Nonce, sender: MessageSender
    ) throws(ReplicationError) {
        guard
            Authentication.verify(
                proof.proof, secret: secret, peerRole: authRole(role), peerNonce: peerNonce, ownNonce: nonce,
                clusterID: Array(identity.clusterID.utf8), peerNodeID: Array(nodeID.utf8))
        else {
            sender.fail(Message.Failure(.authFailed, text: "wrong proof: \(nodeID) does not hold the cluster secret"), refuse: true)
            throw .handshakeFailed(peer: sender.peer, reason: "authentication failed: \(role) \(nodeID) does not hold the cluster secret")
        }
    }

    private static func authRole(_ role: Message.Role) -> Authentication.Role {
        switch role {
        case .primary: .primary
        case .follower: .follower
        case .client: .client
        }
    }

    private static func freshNonce() throws(ReplicationError) -> Nonce {
        do { return try Nonce.random() } catch {
            throw .handshakeFailed(peer: "self", reason: "cannot draw a nonce: \(error)")
        }
    }
}
