#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import ShipLog
import ShipLogProtocol
import ShipLogReplication
import ShipLogTestSupport
import Testing

/// How a node ended a connection, as a peer reading from it saw it.
enum ConnectionEnd: Hashable, CustomStringConvertible {
    /// The node closed its side (end of stream).
    case closed
    /// A transport error (ECONNRESET, ...).
    case failed(String)
    /// Nothing more arrived within the receive timeout: the node kept the connection open.
    case stillOpen
    /// The node sent bytes that are not a valid frame.
    case invalid(String)

    var description: String {
        switch self {
        case .closed: "closed"
        case .failed(let error): "failed: \(error)"
        case .stillOpen: "still open"
        case .invalid(let error): "invalid frame from the node: \(error)"
        }
    }
}

/// A peer of a node driven by hand over a raw connection: it sends whatever bytes, frames or
/// messages a test wants (valid or not) and decodes what the node answers. For tests that play
/// a hostile, broken or stalled follower or client.
final class RawPeer: @unchecked Sendable {
    // @unchecked: used by one test thread at a time.
    let connection: any Connection
    let nonce: Nonce
    private var decoder = FrameDecoder()
    private var buffer = [UInt8](repeating: 0, count: 64 << 10)

    /// Connects to `endpoint`; receives give up after `receiveTimeout`.
    convenience init(connectingTo endpoint: Endpoint, network: any Network = TCPNetwork(), receiveTimeout: Duration = .seconds(10)) throws {
        try self.init(connection: network.connect(to: endpoint, timeout: .seconds(5)), receiveTimeout: receiveTimeout)
    }

    /// Drives a connection made or accepted elsewhere.
    init(connection: any Connection, receiveTimeout: Duration = .seconds(10)) throws {
        self.connection = connection
        connection.setTimeouts(receive: receiveTimeout, send: .seconds(10))
        nonce = try Nonce.random()
    }

    deinit { connection.close() }

    func send(bytes: [UInt8]) throws { try connection.send(bytes) }

    func send(_ message: Message) throws { try connection.send(try message.encodedFrame()) }

    /// The next message from the node; `nil` at the end of the stream.
    func receive() throws -> Message? {
        while true {
            if let message = try decoder.nextMessage() { return message }
            let capacity = min(buffer.count, decoder.freeCapacity)
            let connection = connection
            let count = try buffer.withUnsafeMutableBytes { raw in
                try connection.receive(into: UnsafeMutableRawBufferPointer(rebasing: raw[..<capacity]))
            }
            if count == 0 {
                if decoder.bufferedByteCount > 0 {
                    throw ClusterError("the node closed the connection inside a frame (\(decoder.bufferedByteCount) bytes of it received)")
                }
                return nil
            }
            buffer.withUnsafeBytes { raw in decoder.append(UnsafeRawBufferPointer(rebasing: raw[..<count])) }
        }
    }

    /// Reads until the node ends the connection (or the receive timeout passes): every message
    /// it sent, and how it ended.
    func receiveUntilEnd() -> (messages: [Message], end: ConnectionEnd) {
        var messages: [Message] = []
        while true {
            do {
                guard let message = try receive() else { return (messages, .closed) }
                messages.append(message)
            } catch let error as TransportError {
                if case .timedOut = error { return (messages, .stillOpen) }
                return (messages, .failed("\(error)"))
            } catch {
                return (messages, .invalid("\(error)"))
            }
        }
    }

    // MARK: Handshake

    /// Sends a Hello as `role` and returns the node's answer (HelloAck, or Refuse).
    func hello(
        role: Message.Role, nodeID: String, clusterID: String = "shiplog", epoch: Epoch = Epoch(0), lastLSN: LSN = .zero,
        lastBatchCRC: UInt32 = 0
    ) throws -> Message? {
        try send(
            .hello(
                Message.Hello(
                    clusterID: clusterID, nodeID: nodeID, role: role, epoch: epoch, lastLSN: lastLSN, lastBatchCRC: lastBatchCRC,
                    nonce: nonce.bytes)))
        return try receive()
    }

    /// Sends this end's AuthProof, made with `secret` (the right one or not), for the HelloAck
    /// `ack` of a Hello sent as `role` and `nodeID`.
    func prove(_ ack: Message.HelloAck, role: Message.Role, nodeID: String, secret: SharedSecret, clusterID: String = "shiplog") throws {
        let peerNonce = try #require(Nonce(bytes: ack.nonce))
        try send(
            .authProof(
                Message.AuthProof(
                    proof: Authentication.proof(
                        secret: secret, role: Self.authRole(role), ownNonce: nonce, peerNonce: peerNonce,
                        clusterID: Array(clusterID.utf8), nodeID: Array(nodeID.utf8)))))
    }

    /// The whole handshake as an initiator holding `secret`, checking the node's proof. Returns
    /// the node's HelloAck.
    @discardableResult
    func authenticate(
        role: Message.Role, nodeID: String, secret: SharedSecret = testSecret, epoch: Epoch = Epoch(0), lastLSN: LSN = .zero,
        lastBatchCRC: UInt32 = 0
    ) throws -> Message.HelloAck {
        let answer = try hello(role: role, nodeID: nodeID, epoch: epoch, lastLSN: lastLSN, lastBatchCRC: lastBatchCRC)
        guard case .helloAck(let ack) = answer else { throw ClusterError("expected HelloAck, got \(String(describing: answer))") }
        try prove(ack, role: role, nodeID: nodeID, secret: secret)
        let proof = try receive()
        guard case .authProof(let theirs) = proof else { throw ClusterError("expected the node's AuthProof, got \(String(describing: proof))") }
        let peerNonce = try #require(Nonce(bytes: ack.nonce))
        let valid = Authentication.verify(
            theirs.proof, secret: secret, peerRole: Self.authRole(ack.role), peerNonce: peerNonce, ownNonce: nonce,
            clusterID: Array("shiplog".utf8), peerNodeID: Array(ack.nodeID.utf8))
        guard valid else { throw ClusterError("the node's proof does not verify") }
        return ack
    }

    /// The responder's side of the handshake, as node `nodeID` in `role` holding `secret`: waits
    /// for a Hello, answers HelloAck, takes the initiator's proof without checking it, and proves
    /// itself. Returns the Hello.
    @discardableResult
    func respond(nodeID: String, role: Message.Role = .primary, secret: SharedSecret = testSecret) throws -> Message.Hello {
        let first = try receive()
        guard case .hello(let hello) = first else { throw ClusterError("expected Hello, got \(String(describing: first))") }
        try send(
            .helloAck(
                Message.HelloAck(
                    version: ProtocolVersion.v1, nodeID: nodeID, role: role, epoch: Epoch(1), lastLSN: .zero, lastBatchCRC: 0,
                    nonce: nonce.bytes)))
        let second = try receive()
        guard case .authProof = second else { throw ClusterError("expected AuthProof, got \(String(describing: second))") }
        let peerNonce = try #require(Nonce(bytes: hello.nonce))
        try send(
            .authProof(
                Message.AuthProof(
                    proof: Authentication.proof(
                        secret: secret, role: Self.authRole(role), ownNonce: nonce, peerNonce: peerNonce,
                        clusterID: Array(hello.clusterID.utf8), nodeID: Array(nodeID.utf8)))))
        return hello
    }

    static func authRole(_ role: Message.Role) -> Authentication.Role {
        switch role {
        case .primary: .primary
        case .follower: .follower
        case .client: .client
        }
    }

    /// A frame header (16 bytes) announcing `payloadLength` bytes of a message of type `type`,
    /// with a CRC over the header alone (right only for an empty payload).
    static func frameHeader(type: UInt8, payloadLength: UInt32) -> [UInt8] {
        var header: [UInt8] = Array("SLRP".utf8) + [Frame.version, type, 0, 0]
        withUnsafeBytes(of: payloadLength.littleEndian) { header.append(contentsOf: $0) }
        let crc = CRC32C.checksum(header)
        withUnsafeBytes(of: crc.littleEndian) { header.append(contentsOf: $0) }
        return header
    }
}

/// A secret the cluster does not use.
let wrongSecret = try! SharedSecret(bytes: Array(repeating: 0xA5, count: 32))

// MARK: - Status document

/// A node's status document (docs/PROTOCOL.md 8.5), parsed.
struct StatusDocument {
    let text: String
    let object: [String: Any]

    init(_ text: String) throws {
        self.text = text
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw ClusterError("the status document is not a JSON object: \(text)")
        }
        self.object = object
    }

    init(of node: KVNode) throws { try self.init(node.statusJSON()) }

    /// The node ids of the primary's `followers`.
    var followerIDs: [String] {
        ((object["followers"] as? [[String: Any]]) ?? []).compactMap { $0["node_id"] as? String }
    }

    func follower(_ nodeID: String) -> [String: Any]? {
        ((object["followers"] as? [[String: Any]]) ?? []).first { ($0["node_id"] as? String) == nodeID }
    }
}

// MARK: - Process measurements

enum ProcessProbe {
    /// Resident set size of this process, in bytes (/proc/self/statm).
    static func residentBytes() -> Int {
        statm(field: 1) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Virtual size of this process, in bytes (/proc/self/statm).
    static func virtualBytes() -> Int {
        statm(field: 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Threads of this process now (/proc/self/task).
    static func threadCount() -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []).count
    }

    private static func statm(field: Int) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        return fields.count > field ? Int(fields[field]) ?? 0 : 0
    }
}

/// Polls `condition` every few milliseconds until it holds or `timeout` passes; whether it held.
func eventually(within timeout: Duration, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        Thread.sleep(forTimeInterval: 0.01)
    }
}

/// Pseudo-random bytes (incompressible), from a seed.
func noiseBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { raw in
        var offset = 0
        while offset + 8 <= raw.count {
            raw.storeBytes(of: rng.next(), toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < raw.count {
            raw[offset] = UInt8(truncatingIfNeeded: rng.next())
            offset += 1
        }
    }
    return bytes
}

/// A value set by one thread and looked at by another.
final class Outcome<T: Sendable>: Sendable {
    private let storage = Mutex<T?>(nil)

    func set(_ value: T) { storage.withLock { $0 = value } }

    var value: T? { storage.withLock { $0 } }
}
