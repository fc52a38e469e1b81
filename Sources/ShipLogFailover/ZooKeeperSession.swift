import ShipLogReplication
import ShipLogStorage

/// One ZooKeeper session over one TCP connection, reconnected (and the session resumed with
/// its ID and password) when the connection fails. Requests are sent one at a time and their
/// replies awaited on the caller's thread; watch notifications met meanwhile are kept in
/// ``events``. Not thread-safe: its owner serializes calls.
final class ZooKeeperSession {
    /// What happens when the server says the session expired.
    enum ExpiryPolicy {
        /// Fail with `.sessionExpired`, for good (a leadership: its ephemeral node is gone).
        case fail
        /// Start a new session at once (the service's own sessions: member records are
        /// re-created by the next publish).
        case startNew
    }

    /// The password of a session not yet established (16 zero bytes).
    static let emptyPassword = [UInt8](repeating: 0, count: 16)
    /// Longest session password accepted from a server, in bytes (ZooKeeper's are 16).
    static let passwordBytesMax = 64

    let config: ElectionConfig
    let network: TCPNetwork
    let policy: ExpiryPolicy
    /// What the session is for, in messages ("the leadership session of node-a").
    let label: String

    private var connection: ServiceConnection?
    private var endpointIndex = 0
    private(set) var sessionID: Int64 = 0
    private var password = ZooKeeperSession.emptyPassword
    /// The session timeout the server chose.
    private(set) var negotiatedTimeout: Duration = .zero
    /// The newest transaction ID seen, sent when resuming (a server behind it refuses us).
    private var lastZxid: Int64 = 0
    private var nextXid: Int32 = 1
    private var expiredError: CoordinationError?
    /// Watch notifications received and not yet taken.
    var events: [ZooKeeperWatchEvent] = []

    init(config: ElectionConfig, network: TCPNetwork, policy: ExpiryPolicy, label: String) {
        self.config = config
        self.network = network
        self.policy = policy
        self.label = label
    }

    deinit { connection?.close() }

    /// The service as messages name it.
    var service: String { connection?.service ?? config.serviceName(config.endpoints[endpointIndex]) }

    // MARK: - Connecting

    /// Connects when not connected: resumes the session, or starts one (and with
    /// ``ExpiryPolicy/startNew`` starts a new one when the old one expired).
    func connect(deadline: Deadline) throws(CoordinationError) {
        if let expiredError { throw expiredError }
        guard connection == nil else { return }
        for _ in 0..<2 {
            let (opened, index) = try ServiceConnection.open(
                to: config.endpoints, startingAt: endpointIndex, config: config, network: network, deadline: deadline)
            endpointIndex = index
            do throws(CoordinationError) {
                if try handshake(opened, deadline: deadline) {
                    connection = opened
                    return
                }
            } catch {
                opened.close()
                throw error
            }
            opened.close()
            // The server said the session expired.
            let error = CoordinationError.sessionExpired("\(label) (\(String(sessionID: sessionID))) expired on \(opened.service)")
            guard policy == .startNew else {
                expiredError = error
                throw error
            }
            sessionID = 0
            password = Self.emptyPassword
        }
        throw .protocolError(service: service, detail: "\(label): a new session was reported expired at once")
    }

    /// ConnectRequest and ConnectResponse. False when the server reports the session expired.
    private func handshake(_ opened: ServiceConnection, deadline: Deadline) throws(CoordinationError) -> Bool {
        let requested = Int32(clamping: config.ttl.nanoseconds / 1_000_000)
        var request = JuteWriter()
        request.int32(0)  // protocolVersion
        request.int64(lastZxid)
        request.int32(requested)
        request.int64(sessionID)
        request.buffer(password)
        request.bool(false)  // readOnly: a read-only server must not hold our session
        try opened.send(request.framed, deadline: deadline, what: "sending the ConnectRequest of \(label)")
        let frame = try opened.readFrame(
            bytesMax: CoordinationLimits.zooKeeperFrameBytesMax, deadline: deadline, what: "reading the ConnectResponse of \(label)")
        var reader = JuteReader(frame, service: opened.service, what: "ConnectResponse of \(label)")
        _ = try reader.int32("protocolVersion")
        let timeout = try reader.int32("timeOut")
        let id = try reader.int64("sessionId")
        let newPassword = try reader.buffer("passwd", bytesMax: Self.passwordBytesMax)
        guard timeout > 0 else { return false }
        guard timeout >= requested else {
            throw .invalidConfig(
                "\(opened.service) negotiated a session timeout of \(timeout) ms, below the TTL of \(requested) ms "
                    + "(raise the server's maxSessionTimeout, or lower the TTL)")
        }
        if sessionID != 0 && id != sessionID {
            throw .protocolError(
                service: opened.service,
                detail: "resuming session \(String(sessionID: sessionID)) returned session \(String(sessionID: id))")
        }
        sessionID = id
        password = newPassword
        negotiatedTimeout = .milliseconds(Int64(timeout))
        return true
    }

    /// Closes the connection, keeping the session (the next call resumes it).
    func disconnect() {
        connection?.close()
        connection = nil
    }

    /// Ends the session (its ephemeral nodes are deleted at once) and the connection. Best
    /// effort within `deadline`: a session that cannot be closed expires by its timeout.
    func closeSession(deadline: Deadline) {
        if sessionID != 0 && expiredError == nil {
            _ = try? call(.closeSession, JuteWriter(), deadline: deadline, what: "closing \(label)", retry: false)
        }
        disconnect()
        expiredError = .closed(label)
    }

    // MARK: - Requests

    /// Sends one request and returns its reply's error code and a reader at its body. A
    /// connection that fails (not by the deadline) is reconnected and the request sent once
    /// more: callers make every request safe to repeat (a create that finds its own node).
    /// With `retry` false it is sent once and a failure thrown (a conditional write, whose
    /// repeat could not tell its own applied first attempt from another writer's).
    func call(
        _ operation: ZooKeeperOperation, _ body: JuteWriter, deadline: Deadline, what: String, retry: Bool = true
    ) throws(CoordinationError) -> (code: Int32, reply: JuteReader) {
        var attempt = 0
        while true {
            attempt += 1
            let wasConnected = connection != nil
            try connect(deadline: deadline)
            let current = connection!
            let xid = operation == .ping ? ZooKeeperXid.ping : takeXid()
            var request = JuteWriter()
            request.int32(xid)
            request.int32(operation.rawValue)
            do throws(CoordinationError) {
                try current.send((request.bytes + body.bytes).framedBytes, deadline: deadline, what: "sending \(what)")
                while true {
                    let (replyXid, code, reader) = try readReply(current, deadline: deadline, what: "awaiting the reply to \(what)")
                    guard replyXid == xid else { continue }
                    if code == ZooKeeperCode.sessionExpired { throw try expired(current) }
                    return (code, reader)
                }
            } catch {
                disconnect()
                // A fresh session replaces an expired one for `.startNew`: worth one more try too.
                let renewedSession = policy == .startNew && { if case .sessionExpired = error { true } else { false } }()
                let again = retry && attempt == 1 && !current.lastFailureWasTimeout
                    && ((wasConnected && !error.isFinal) || renewedSession)
                guard again, deadline.remaining != nil else { throw error }
            }
        }
    }

    /// A session-expired reply: final for ``ExpiryPolicy/fail``; a fresh session next time otherwise.
    private func expired(_ current: ServiceConnection) throws(CoordinationError) -> CoordinationError {
        let error = CoordinationError.sessionExpired("\(label) (\(String(sessionID: sessionID))) expired on \(current.service)")
        if policy == .fail {
            expiredError = error
        } else {
            sessionID = 0
            password = Self.emptyPassword
        }
        return error
    }

    private func takeXid() -> Int32 {
        let xid = nextXid
        nextXid = nextXid == .max ? 1 : nextXid + 1
        return xid
    }

    /// Reads one reply frame: its xid, error code and body. Notifications are kept in
    /// ``events`` and ping replies passed through (the caller skips what is not its own).
    private func readReply(_ current: ServiceConnection, deadline: Deadline, what: String)
        throws(CoordinationError) -> (xid: Int32, code: Int32, reader: JuteReader)
    {
        let frame = try current.readFrame(bytesMax: CoordinationLimits.zooKeeperFrameBytesMax, deadline: deadline, what: what)
        var reader = JuteReader(frame, service: current.service, what: what)
        let xid = try reader.int32("reply xid")
        let zxid = try reader.int64("reply zxid")
        let code = try reader.int32("reply err")
        if zxid > lastZxid { lastZxid = zxid }
        if xid == ZooKeeperXid.notification {
            let type = try reader.int32("event type")
            let state = try reader.int32("event state")
            let path = try reader.string("event path", bytesMax: CoordinationLimits.zooKeeperFrameBytesMax)
            events.append(ZooKeeperWatchEvent(type: type, state: state, path: path))
        } else if xid != ZooKeeperXid.ping && xid <= 0 {
            throw .protocolError(service: current.service, detail: "\(what): a reply with xid \(xid)")
        }
        return (xid, code, reader)
    }

    /// Waits until a watch notification arrives (true) or `deadline` passes (false), pinging
    /// every `pingInterval` to keep the session alive meanwhile.
    func awaitEvent(until deadline: Deadline, pingInterval: Duration) throws(CoordinationError) -> Bool {
        try connect(deadline: .after(config.operationTimeout))
        var nextPing = Deadline.after(pingInterval)
        while events.isEmpty {
            guard deadline.remaining != nil, let current = connection else { return false }
            if nextPing.remaining == nil {
                var ping = JuteWriter()
                ping.int32(ZooKeeperXid.ping)
                ping.int32(ZooKeeperOperation.ping.rawValue)
                do throws(CoordinationError) {
                    try current.send(ping.framed, deadline: .after(config.operationTimeout), what: "pinging \(label)")
                } catch {
                    disconnect()
                    throw error
                }
                nextPing = .after(pingInterval)
            }
            do throws(CoordinationError) {
                _ = try readReply(current, deadline: deadline.earlier(than: nextPing), what: "awaiting a watch on \(label)")
            } catch {
                if current.lastFailureWasTimeout { continue }
                disconnect()
                throw error
            }
        }
        return true
    }
}

extension Array where Element == UInt8 {
    /// The bytes behind a 4-byte big-endian length prefix.
    var framedBytes: [UInt8] {
        var prefix = JuteWriter()
        prefix.int32(Int32(count))
        return prefix.bytes + self
    }
}

extension CoordinationError {
    /// Errors a retry cannot help.
    var isFinal: Bool {
        switch self {
        case .sessionExpired, .leaseLost, .closed, .invalidConfig, .invalidArgument, .protocolError: true
        default: false
        }
    }
}
