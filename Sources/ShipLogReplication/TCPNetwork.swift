#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CShipLogSupport
import ShipLogStorage

/// The production ``Network``: POSIX TCP sockets, IPv4 and IPv6, host names resolved with
/// getaddrinfo (which may block on DNS: call it from an ``OwnedThread`` like every other
/// transport call).
///
/// Connections have TCP_NODELAY (frames go out at once; the replication layer batches itself)
/// and SO_KEEPALIVE, and optionally fixed socket buffer sizes (``socketBufferBytes``).
/// Sockets are close-on-exec.
public struct TCPNetwork: Network {
    /// listen(2) backlog: connections the kernel completes before ``TCPListener/accept()``
    /// takes them (the kernel also caps it at net.core.somaxconn).
    public static let listenBacklog: Int32 = 128

    /// SO_SNDBUF and SO_RCVBUF asked for on each connection, in bytes; `nil` leaves the
    /// kernel's autotuning on. Fixing them turns autotuning off, and the kernel caps them at
    /// net.core.wmem_max/rmem_max (often 208 KiB). Over loopback with 1 MiB sends (Linux 6.18,
    /// 2 shared cores, debug build; `measureLoopbackThroughputAndRoundTrip` in TCPNetworkTests)
    /// autotuned buffers gave 3.5-5.2 GB/s and fixed 4 MiB ones 2.6-5.4 GB/s, within the noise;
    /// 100-byte round trips took 12-70 µs at p50. So the default is `nil`;
    /// ``fixedSocketBufferBytes`` is for links with a large bandwidth-delay product and low
    /// `tcp_rmem` limits.
    public static let defaultSocketBufferBytes: Int? = nil

    /// A fixed socket buffer size worth trying on high bandwidth-delay links: 4 MiB.
    public static let fixedSocketBufferBytes = 4 << 20

    /// See ``defaultSocketBufferBytes``.
    public var socketBufferBytes: Int?

    public init(socketBufferBytes: Int? = TCPNetwork.defaultSocketBufferBytes) {
        precondition(socketBufferBytes.map { $0 > 0 } ?? true, "socket buffer size must be positive")
        self.socketBufferBytes = socketBufferBytes
    }

    /// Binds and listens on `endpoint` with SO_REUSEADDR. Port 0 takes a free port, which
    /// ``Listener/endpoint`` reports. Host `""` or `"*"` means every local address.
    /// Throws `.addressInvalid` when the host does not resolve, `.listenFailed` with the errno
    /// of the last address tried otherwise (EADDRINUSE when the port is taken).
    public func listen(on endpoint: Endpoint) throws(TransportError) -> any Listener {
        try TCPListener.open(on: endpoint, network: self)
    }

    /// Connects to the first address of `endpoint` that accepts, within `timeout` in total.
    /// Throws `.connectFailed` with the errno of the last address tried (ECONNREFUSED when
    /// nothing listens), `.timedOut(operation: "connect", ...)` when `timeout` passes.
    public func connect(to endpoint: Endpoint, timeout: Duration) throws(TransportError) -> any Connection {
        try connectTCP(to: endpoint, timeout: timeout)
    }

    /// ``connect(to:timeout:)`` returning the concrete type (for ``TCPConnection/send(gathering:)``).
    public func connectTCP(to endpoint: Endpoint, timeout: Duration) throws(TransportError) -> TCPConnection {
        let deadline = ConditionLock.deadline(after: timeout)!
        let addresses = try SocketAddress.resolve(endpoint, forListening: false)
        var failure = TransportError.connectFailed(endpoint, errno: EADDRNOTAVAIL)
        for address in addresses {
            do {
                let fd = try address.connect(deadline: deadline, endpoint: endpoint)
                configure(connected: fd)
                return TCPConnection(descriptor: fd, peer: endpoint.description)
            } catch {
                failure = error
                if case .timedOut = error { break }
            }
        }
        throw failure
    }

    /// Options of every connected socket, accepted or connected. They cannot fail on a valid
    /// TCP socket; the kernel silently caps buffer sizes.
    func configure(connected fd: Int32) {
        var on: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, size)
        _ = setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, size)
        if let socketBufferBytes {
            var bytes = Int32(clamping: socketBufferBytes)
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, size)
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, size)
        }
    }
}

/// A TCP connection from ``TCPNetwork``. One thread may receive while another sends;
/// ``close()`` from any thread makes both return `.closed`.
///
/// The descriptor is closed only once no call is using it, so a descriptor number is never
/// closed while another thread may still pass it to recv or send (a reused number would read
/// or write some other file).
public final class TCPConnection: Connection {
    /// Most buffers one sendmsg(2) takes (Linux's IOV_MAX).
    public static let gatherBuffersMax = 1024

    public let peer: String
    let socket: SocketDescriptor

    init(descriptor: Int32, peer: String) {
        self.socket = SocketDescriptor(descriptor)
        self.peer = peer
    }

    deinit { socket.close() }

    /// recv(2), retried on EINTR. `buffer` must not be empty (0 means end of stream).
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(TransportError) -> Int {
        precondition(!buffer.isEmpty, "receive into an empty buffer cannot tell data from the end of the stream")
        return try socket.using(peer: peer) { (fd) throws(TransportError) -> Int in
            while true {
                let count = recv(fd, buffer.baseAddress, buffer.count, 0)
                if count > 0 { return count }
                if count == 0 {
                    // shutdown(2) by close() looks like the peer's FIN.
                    if socket.isClosing { throw .closed(peer: peer) }
                    return 0
                }
                let code = errno
                if code == EINTR { continue }
                throw socket.error(code, operation: "receive", peer: peer)
            }
        }
    }

    /// send(2) with MSG_NOSIGNAL until every byte is taken, retried on EINTR.
    public func send(_ bytes: UnsafeRawBufferPointer) throws(TransportError) {
        guard !bytes.isEmpty else { return }
        try socket.using(peer: peer) { (fd) throws(TransportError) in
            var offset = 0
            while offset < bytes.count {
                let count = Glibc.send(fd, bytes.baseAddress! + offset, bytes.count - offset, shiplog_net_send_flags())
                if count >= 0 {
                    offset += count
                    continue
                }
                let code = errno
                if code == EINTR { continue }
                throw socket.error(code, operation: "send", peer: peer)
            }
        }
    }

    /// send(2) with MSG_DONTWAIT: takes what the socket buffer has room for now, without
    /// blocking. Returns the bytes taken (0 when the buffer is full).
    public func trySend(_ bytes: UnsafeRawBufferPointer) throws(TransportError) -> Int {
        guard !bytes.isEmpty else { return 0 }
        return try socket.using(peer: peer) { (fd) throws(TransportError) -> Int in
            while true {
                let count = Glibc.send(fd, bytes.baseAddress!, bytes.count, shiplog_net_send_flags() | Int32(MSG_DONTWAIT))
                if count >= 0 { return count }
                let code = errno
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK { return 0 }
                throw socket.error(code, operation: "send", peer: peer)
            }
        }
    }

    /// Sends the buffers in order as one byte stream with sendmsg(2), without copying them
    /// into one buffer (a frame header and a large payload). Same errors as ``send(_:)``.
    public func send(gathering parts: [UnsafeRawBufferPointer]) throws(TransportError) {
        var vectorArray: [iovec] = []
        vectorArray.reserveCapacity(parts.count)
        for part in parts where !part.isEmpty {
            vectorArray.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: part.baseAddress!), iov_len: part.count))
        }
        guard !vectorArray.isEmpty else { return }
        try socket.using(peer: peer) { (fd) throws(TransportError) in
            var first = 0
            while first < vectorArray.count {
                let batch = min(vectorArray.count - first, Self.gatherBuffersMax)
                let count = vectorArray.withUnsafeMutableBufferPointer { vectors in
                    var message = msghdr()
                    message.msg_iov = vectors.baseAddress! + first
                    message.msg_iovlen = batch
                    return sendmsg(fd, &message, shiplog_net_send_flags())
                }
                if count < 0 {
                    let code = errno
                    if code == EINTR { continue }
                    throw socket.error(code, operation: "send", peer: peer)
                }
                var sent = count
                while sent > 0 {
                    if sent >= vectorArray[first].iov_len {
                        sent -= vectorArray[first].iov_len
                        first += 1
                    } else {
                        vectorArray[first].iov_base += sent
                        vectorArray[first].iov_len -= sent
                        sent = 0
                    }
                }
            }
        }
    }

    /// SO_RCVTIMEO and SO_SNDTIMEO (microsecond resolution; a send times out only when a
    /// whole timeout passes without any byte taken). Ignored once closed.
    public func setTimeouts(receive: Duration?, send: Duration?) {
        _ = try? socket.using(peer: peer) { (fd) throws(TransportError) in
            // Duration.zero must still mean "at once", not "no timeout" (0 for the socket).
            _ = shiplog_net_set_timeout(fd, 1, receive.map { Int64(clamping: max(1, $0.nanoseconds)) } ?? 0)
            _ = shiplog_net_set_timeout(fd, 0, send.map { Int64(clamping: max(1, $0.nanoseconds)) } ?? 0)
        }
    }

    /// shutdown(SHUT_RDWR) at once, close(2) when the last call using the descriptor returns.
    public func close() { socket.close() }

    /// Closes with a reset (RST, through SO_LINGER 0) instead of an orderly end of stream: the
    /// peer's calls fail with ECONNRESET and unsent bytes are discarded. For a peer that broke
    /// the protocol. With no call in progress no FIN is sent first; otherwise like ``close()``.
    public func abort() { socket.close(abortive: true) }
}

/// A listening TCP socket from ``TCPNetwork/listen(on:)``.
public final class TCPListener: Listener {
    public let endpoint: Endpoint
    let socket: SocketDescriptor
    let network: TCPNetwork

    private init(descriptor: Int32, endpoint: Endpoint, network: TCPNetwork) {
        self.socket = SocketDescriptor(descriptor)
        self.endpoint = endpoint
        self.network = network
    }

    deinit { socket.close() }

    static func open(on endpoint: Endpoint, network: TCPNetwork) throws(TransportError) -> TCPListener {
        var failure = TransportError.listenFailed(endpoint, errno: EADDRNOTAVAIL)
        for address in try SocketAddress.resolve(endpoint, forListening: true) {
            do {
                let fd = try address.listen(backlog: TCPNetwork.listenBacklog, endpoint: endpoint)
                let bound = SocketAddress.endpoint(of: fd, peer: false) ?? endpoint
                return TCPListener(descriptor: fd, endpoint: bound, network: network)
            } catch {
                failure = error
            }
        }
        throw failure
    }

    /// accept4(2) (close-on-exec), retried on EINTR and ECONNABORTED (a peer that gave up while
    /// queued).
    public func accept() throws(TransportError) -> any Connection {
        try acceptTCP()
    }

    /// ``accept()`` returning the concrete type.
    public func acceptTCP() throws(TransportError) -> TCPConnection {
        let name = endpoint.description
        return try socket.using(peer: name) { (fd) throws(TransportError) -> TCPConnection in
            while true {
                let connected = shiplog_net_accept(fd)
                if connected >= 0 {
                    if socket.isClosing {
                        Glibc.close(connected)
                        throw .closed(peer: name)
                    }
                    network.configure(connected: connected)
                    let peer = SocketAddress.endpoint(of: connected, peer: true)?.description ?? "peer of \(name)"
                    return TCPConnection(descriptor: connected, peer: peer)
                }
                let code = errno
                if code == EINTR || code == ECONNABORTED { continue }
                throw socket.error(code, operation: "accept", peer: name)
            }
        }
    }

    /// Stops listening; a blocked ``accept()`` returns `.closed` (shutdown(2) of a listening
    /// socket wakes accept on Linux; the descriptor is closed once accept has returned).
    public func close() { socket.close() }
}

/// A socket descriptor shared by the threads using one connection or listener.
///
/// Every call runs inside ``using(peer:_:)``, which counts it. ``close()`` shuts the socket down
/// (waking blocked calls) and closes the descriptor right away only when no call is inside;
/// otherwise the last call to leave closes it.
///
/// `@unchecked Sendable`: `lock` (a pthread mutex, which ThreadSanitizer understands) guards
/// `users`, `closing` and `released`; shutdown(2) runs under it so that it never meets a
/// descriptor that was already closed.
final class SocketDescriptor: @unchecked Sendable {
    let fd: Int32
    private let lock = ConditionLock()
    private var users = 0
    private var closing = false
    private var released = false

    init(_ fd: Int32) {
        precondition(fd >= 0)
        self.fd = fd
    }

    var isClosing: Bool { lock.withLock { closing } }

    /// Runs `body` with the descriptor; throws `.closed(peer:)` once closed.
    func using<T>(peer: String, _ body: (Int32) throws(TransportError) -> T) throws(TransportError) -> T {
        let entered = lock.withLock {
            guard !closing else { return false }
            users += 1
            return true
        }
        guard entered else { throw .closed(peer: peer) }
        defer { leave() }
        return try body(fd)
    }

    private func leave() {
        let closeNow = lock.withLock {
            users -= 1
            assert(users >= 0)
            guard closing, users == 0, !released else { return false }
            released = true
            return true
        }
        if closeNow { _ = Glibc.close(fd) }
    }

    /// The error for a failed call: `.closed` when it failed because of ``close()``,
    /// `.timedOut` for EAGAIN (SO_RCVTIMEO/SO_SNDTIMEO), `.failed` otherwise.
    func error(_ code: Int32, operation: String, peer: String) -> TransportError {
        if isClosing { return .closed(peer: peer) }
        if code == EAGAIN || code == EWOULDBLOCK { return .timedOut(operation: operation, peer: peer) }
        return .failed(peer: peer, operation: operation, errno: code)
    }

    /// Idempotent, callable from any thread. `abortive`: SO_LINGER 0 (close sends RST), and no
    /// shutdown (FIN) first unless a call is blocked on the descriptor and must be woken.
    func close(abortive: Bool = false) {
        let closeNow = lock.withLock {
            guard !closing else { return false }
            closing = true
            if abortive { _ = shiplog_net_set_abortive_close(fd) }
            if !abortive || users > 0 { _ = shutdown(fd, Int32(SHUT_RDWR)) }
            guard users == 0 else { return false }
            released = true
            return true
        }
        if closeNow { _ = Glibc.close(fd) }
    }
}

/// One resolved socket address (a sockaddr_in or sockaddr_in6).
struct SocketAddress {
    /// The longest numeric host text (INET6_ADDRSTRLEN, with the NUL).
    static let numericHostBytesMax = 46

    var family: Int32
    var bytes: [UInt8]

    /// getaddrinfo for TCP. Passive for listening: an empty host or `*` means any address.
    static func resolve(_ endpoint: Endpoint, forListening: Bool) throws(TransportError) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | (forListening ? AI_PASSIVE : 0)
        let anyHost = endpoint.host.isEmpty || endpoint.host == "*"
        if anyHost && !forListening {
            throw .addressInvalid(endpoint.description, reason: "no host to connect to")
        }
        var list: UnsafeMutablePointer<addrinfo>?
        let result = getaddrinfo(anyHost ? nil : endpoint.host, String(endpoint.port), &hints, &list)
        guard result == 0 else {
            let reason = result == EAI_SYSTEM ? TransportError.errnoText(errno) : String(cString: gai_strerror(result))
            throw .addressInvalid(endpoint.description, reason: reason)
        }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var node = list
        while let info = node?.pointee {
            node = info.ai_next
            guard info.ai_family == AF_INET || info.ai_family == AF_INET6, let address = info.ai_addr else { continue }
            let bytes = Array(UnsafeRawBufferPointer(start: address, count: Int(info.ai_addrlen)))
            addresses.append(SocketAddress(family: info.ai_family, bytes: bytes))
        }
        guard !addresses.isEmpty else {
            throw .addressInvalid(endpoint.description, reason: "no IPv4 or IPv6 address")
        }
        return addresses
    }

    /// The numeric address of `fd`'s peer or local side.
    static func endpoint(of fd: Int32, peer: Bool) -> Endpoint? {
        var host = [CChar](repeating: 0, count: numericHostBytesMax)
        var port: UInt16 = 0
        guard shiplog_net_socket_address(fd, peer ? 1 : 0, &host, host.count, &port) == 0 else { return nil }
        let text = host.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return Endpoint(host: text, port: port)
    }

    private func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        bytes.withUnsafeBytes { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
    }

    /// A new close-on-exec TCP socket for this address family.
    private func makeSocket(nonBlocking: Bool) -> Int32 {
        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        return socket(family, type, 0)
    }

    /// socket + SO_REUSEADDR + bind + listen: the descriptor; `.listenFailed` with the errno of
    /// the step that failed.
    func listen(backlog: Int32, endpoint: Endpoint) throws(TransportError) -> Int32 {
        let fd = makeSocket(nonBlocking: false)
        guard fd >= 0 else { throw .listenFailed(endpoint, errno: errno) }
        var on: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        let bound = withSockaddr { address, length in bind(fd, address, length) }
        guard bound == 0, Glibc.listen(fd, backlog) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw .listenFailed(endpoint, errno: code)
        }
        return fd
    }

    /// A non-blocking connect, polled until `deadline` (monotonic nanoseconds), then switched
    /// back to blocking mode.
    func connect(deadline: UInt64, endpoint: Endpoint) throws(TransportError) -> Int32 {
        let fd = makeSocket(nonBlocking: true)
        guard fd >= 0 else { throw .connectFailed(endpoint, errno: errno) }
        let started = withSockaddr { address, length in Glibc.connect(fd, address, length) }
        if started != 0 {
            let code = errno
            guard code == EINPROGRESS || code == EINTR else {
                Glibc.close(fd)
                throw .connectFailed(endpoint, errno: code)
            }
            if let failure = Self.waitUntilConnected(fd, deadline: deadline, endpoint: endpoint) {
                Glibc.close(fd)
                throw failure
            }
        }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
        return fd
    }

    /// Polls for writability until `deadline`, then reads SO_ERROR. `nil` when connected.
    private static func waitUntilConnected(_ fd: Int32, deadline: UInt64, endpoint: Endpoint) -> TransportError? {
        while true {
            let now = ConditionLock.monotonicNanoseconds()
            guard now < deadline else { return .timedOut(operation: "connect", peer: endpoint.description) }
            let milliseconds = Int32(clamping: (deadline - now + 999_999) / 1_000_000)
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&entry, 1, milliseconds)
            if ready < 0 {
                let code = errno
                if code == EINTR { continue }
                return .connectFailed(endpoint, errno: code)
            }
            if ready == 0 { continue }
            var code: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length) == 0 else {
                return .connectFailed(endpoint, errno: errno)
            }
            return code == 0 ? nil : .connectFailed(endpoint, errno: code)
        }
    }
}
