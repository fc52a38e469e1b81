#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The byte-stream transport replication runs on: TCP sockets in production
// (`TCPNetwork`), a seeded fault-injecting in-process network in tests
// (`ShipLogTestSupport.SimulatedNetwork`). Every call may block: they are made only from
// threads the replication layer owns (`OwnedThread`), never from Swift's cooperative pool.

/// A host and a port, written `host:port` (`[v6]:port` for IPv6 literals).
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    /// A host name or an IP address literal (without brackets).
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT` or `[V6]:PORT`; `nil` when the text is not of that shape or the port
    /// is not 0 ... 65535.
    public init?(_ text: String) {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            hostPart = text[text.index(after: text.startIndex)..<close]
            portPart = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        guard !hostPart.isEmpty, !portPart.isEmpty, portPart.count <= 5, portPart.allSatisfy({ $0 >= "0" && $0 <= "9" }),
            let port = Int(portPart), port <= Int(UInt16.max)
        else { return nil }
        self.init(host: String(hostPart), port: UInt16(port))
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Why a transport call failed. Every case names the peer or address concerned.
public enum TransportError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The host could not be resolved or is not an address this transport can use.
    case addressInvalid(String, reason: String)
    /// bind/listen failed (`errno`), e.g. the port is taken (EADDRINUSE).
    case listenFailed(Endpoint, errno: Int32)
    /// No connection could be made (`errno`: ECONNREFUSED, ENETUNREACH, ...).
    case connectFailed(Endpoint, errno: Int32)
    /// A connect, receive or send took longer than its timeout.
    case timedOut(operation: String, peer: String)
    /// The connection or listener was closed by this side (``Connection/close()``).
    case closed(peer: String)
    /// The connection failed: reset by the peer, or an I/O error (`errno`).
    case failed(peer: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case .addressInvalid(let address, let reason): "invalid address \(address): \(reason)"
        case .listenFailed(let endpoint, let code): "cannot listen on \(endpoint): \(Self.errnoText(code))"
        case .connectFailed(let endpoint, let code): "cannot connect to \(endpoint): \(Self.errnoText(code))"
        case .timedOut(let operation, let peer): "\(operation) with \(peer) timed out"
        case .closed(let peer): "connection with \(peer) closed"
        case .failed(let peer, let operation, let code): "\(operation) with \(peer) failed: \(Self.errnoText(code))"
        }
    }

    static func errnoText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return "\(String(cString: text)) (errno \(code))"
    }
}

/// One bidirectional byte stream. Safe to use from two threads at once: one receiving, one
/// sending; ``close()`` from any thread unblocks both.
public protocol Connection: AnyObject, Sendable {
    /// The other end, for messages (`127.0.0.1:40312`).
    var peer: String { get }
    /// Blocks until at least one byte has arrived and copies up to `buffer.count` bytes into
    /// `buffer`. Returns 0 at the end of the stream (the peer closed its sending side).
    /// Throws `.timedOut` when the receive timeout passes with nothing received.
    func receive(into buffer: UnsafeMutableRawBufferPointer) throws(TransportError) -> Int
    /// Blocks until every byte of `bytes` has been handed to the transport. Throws `.timedOut`
    /// when the send timeout passes without progress (the peer stopped reading).
    func send(_ bytes: UnsafeRawBufferPointer) throws(TransportError)
    /// Hands as many bytes of `bytes` to the transport as it takes without blocking, and
    /// returns their count (0 when it would block). A transport without non-blocking sends
    /// returns 0 (the default), and callers then send from a thread of their own.
    func trySend(_ bytes: UnsafeRawBufferPointer) throws(TransportError) -> Int
    /// How long ``receive(into:)`` and ``send(_:)`` may block without progress; `nil`: forever.
    func setTimeouts(receive: Duration?, send: Duration?)
    /// Closes both directions. Calls blocked in ``receive(into:)`` or ``send(_:)`` on other
    /// threads return at once with `.closed`. Idempotent.
    func close()
}

/// A listening socket.
public protocol Listener: AnyObject, Sendable {
    /// The address actually bound (with the port chosen when port 0 was asked for).
    var endpoint: Endpoint { get }
    /// Blocks until a peer connects. After ``close()`` (from any thread) throws `.closed`.
    func accept() throws(TransportError) -> any Connection
    /// Stops listening; a blocked ``accept()`` returns `.closed`. Idempotent.
    func close()
}

/// Makes listeners and connections.
public protocol Network: Sendable {
    func listen(on endpoint: Endpoint) throws(TransportError) -> any Listener
    func connect(to endpoint: Endpoint, timeout: Duration) throws(TransportError) -> any Connection
}

extension Connection {
    public func trySend(_ bytes: UnsafeRawBufferPointer) throws(TransportError) -> Int { 0 }

    /// Sends every byte of `bytes`.
    public func send(_ bytes: [UInt8]) throws(TransportError) {
        try bytes.withUnsafeBytes { raw in Result { () throws(TransportError) in try send(raw) } }.get()
    }
}
