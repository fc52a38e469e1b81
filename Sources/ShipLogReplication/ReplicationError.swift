public import ShipLogFormat
public import ShipLogProtocol
public import ShipLogStorage

/// Why a replication call failed. Every case names the peer or the setting concerned.
public enum ReplicationError: Error, Sendable, CustomStringConvertible {
    /// A setting is out of range.
    case invalidOptions(String)
    /// The connection failed (connect, receive, send).
    case transport(TransportError)
    /// The peer sent bytes that are not a valid frame or message.
    case protocolViolation(peer: String, ProtocolError)
    /// The peer sent a valid message that is not allowed at this point.
    case unexpectedMessage(peer: String, MessageType, expected: String)
    /// The peer refused or ended the connection (Refuse or Error), with its reason.
    case refused(peer: String, Message.Failure)
    /// The handshake failed on this side (wrong version chosen, bad proof, ...).
    case handshakeFailed(peer: String, reason: String)
    /// The peer closed the connection.
    case connectionClosed(peer: String)
    /// The peer closed the connection in the middle of a frame (at `streamOffset`, with
    /// `bufferedBytes` of the frame received).
    case truncatedStream(peer: String, bufferedBytes: Int, streamOffset: UInt64)
    /// The local log failed or refused the operation.
    case log(LogError)
    /// A request got a failure answer.
    case requestFailed(Message.Failure)
    /// The node or client is shut down.
    case shutDown

    public var description: String {
        switch self {
        case .invalidOptions(let problem): "invalid replication options: \(problem)"
        case .transport(let error): "\(error)"
        case .protocolViolation(let peer, let error): "protocol violation by \(peer): \(error)"
        case .unexpectedMessage(let peer, let type, let expected):
            "protocol violation by \(peer): unexpected \(type.name) (expected \(expected))"
        case .refused(let peer, let failure): "\(peer) refused: \(failure)"
        case .handshakeFailed(let peer, let reason): "handshake with \(peer) failed: \(reason)"
        case .connectionClosed(let peer): "\(peer) closed the connection"
        case .truncatedStream(let peer, let bytes, let offset):
            "\(peer) closed the connection inside the frame at stream offset \(offset) (\(bytes) bytes of it received)"
        case .log(let error): "\(error)"
        case .requestFailed(let failure): "\(failure)"
        case .shutDown: "shut down"
        }
    }
}
