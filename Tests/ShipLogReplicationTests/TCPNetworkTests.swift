#if canImport(Glibc)
import Glibc
#endif
import ShipLogStorage
import Testing
@testable import ShipLogReplication

/// A value behind a pthread mutex. Tests use it instead of `Mutex`, whose futex ThreadSanitizer
/// does not see (it reports false races on everything `Mutex` guards).
final class Locked<Value>: @unchecked Sendable {
    private let lock = ConditionLock()
    private var value: Value  // guarded by `lock`

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// Calls made from test threads; the helpers below are shared with SimulatedNetworkTests.
enum TransportTesting {
    /// The error `body` throws, or nil.
    static func error(_ body: () throws -> Void) -> TransportError? {
        do {
            try body()
            return nil
        } catch let error as TransportError {
            return error
        } catch {
            Issue.record("not a TransportError: \(error)")
            return nil
        }
    }

    /// Receives exactly `count` bytes (fewer only at the end of the stream).
    static func receive(_ count: Int, from connection: any Connection) throws(TransportError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let received = try receive(into: &bytes, at: filled, from: connection)
            if received == 0 { break }
            filled += received
        }
        return Array(bytes[..<filled])
    }

    /// One receive into `bytes[offset...]`.
    static func receive(into bytes: inout [UInt8], at offset: Int = 0, from connection: any Connection)
        throws(TransportError) -> Int
    {
        try bytes.withUnsafeMutableBytes { raw in
            let tail = UnsafeMutableRawBufferPointer(rebasing: raw[offset...])
            return Result { () throws(TransportError) in try connection.receive(into: tail) }
        }.get()
    }

    /// Echoes everything received until the end of the stream, then closes.
    static func echo(_ connection: any Connection) {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            guard let count = try? receive(into: &buffer, from: connection), count > 0 else { break }
            guard (try? connection.send(Array(buffer[..<count]))) != nil else { break }
        }
        connection.close()
    }

    /// Runs `body` on an owned thread and hands back its result on `value()`.
    final class Background<T: Sendable>: Sendable {
        let outcome = Locked<Result<T, TransportError>?>(nil)
        let thread = Locked<OwnedThread?>(nil)

        init(_ name: String = "test", _ body: @escaping @Sendable () throws -> T) {
            let outcome = self.outcome
            let thread = OwnedThread.start(name: name) {
                let result: Result<T, TransportError>
                do {
                    result = .success(try body())
                } catch {
                    result = .failure(error as! TransportError)
                }
                outcome.withLock { $0 = result }
            }
            self.thread.withLock { $0 = thread }
        }

        func value() -> Result<T, TransportError> {
            thread.withLock { $0 }!.join()
            return outcome.withLock { $0 }!
        }

        var isFinished: Bool { thread.withLock { $0 }!.isFinished }
    }

    /// A word-wise hash of a stream (8-byte words; the stream length must be a multiple of 8).
    struct StreamHash {
        var value: UInt64 = 0xCBF2_9CE4_8422_2325
        mutating func add(_ bytes: UnsafeRawBufferPointer) {
            precondition(bytes.count % 8 == 0)
            for offset in stride(from: 0, to: bytes.count, by: 8) {
                value = (value ^ bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* 0x100_0000_01B3
            }
        }
    }

    /// `count` pseudo-random bytes from `seed`.
    static func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { raw in
            for offset in stride(from: 0, to: count - count % 8, by: 8) {
                state &+= 0x9E37_79B9_7F4A_7C15
                raw.storeBytes(of: state ^ (state >> 29), toByteOffset: offset, as: UInt64.self)
            }
        }
        return bytes
    }
}

@Suite(.serialized) struct TCPNetworkTests {
    let network = TCPNetwork()
    let loopback = Endpoint(host: "127.0.0.1", port: 0)

    /// A connected pair: (client side, server side).
    func connectedPair(_ network: TCPNetwork = TCPNetwork(), host: String = "127.0.0.1") throws(TransportError)
        -> (client: any Connection, server: any Connection, listener: any Listener)
    {
        let listener = try network.listen(on: Endpoint(host: host, port: 0))
        let accepting = TransportTesting.Background { try listener.accept() }
        let client = try network.connect(to: listener.endpoint, timeout: .seconds(5))
        let server = try accepting.value().get()
        return (client, server, listener)
    }

    @Test func echoRoundTripReturnsTheSameBytes() throws {
        let listener = try network.listen(on: loopback)
        defer { listener.close() }
        #expect(listener.endpoint.host == "127.0.0.1")
        #expect(listener.endpoint.port != 0)
        let server = TransportTesting.Background { TransportTesting.echo(try listener.accept()) }
        let client = try network.connect(to: listener.endpoint, timeout: .seconds(5))
        let message = Array("hello, follower".utf8)
        try client.send(message)
        #expect(try TransportTesting.receive(message.count, from: client) == message)
        client.close()
        _ = server.value()
    }

    @Test func echoWorksOverIPv6AndThroughHostNames() throws {
        for host in ["::1", "localhost"] {
            let listener: any Listener
            do { listener = try network.listen(on: Endpoint(host: host, port: 0)) } catch {
                // No IPv6 loopback in this environment.
                continue
            }
            defer { listener.close() }
            if host == "::1" {
                #expect(listener.endpoint.host == "::1")
                #expect(listener.endpoint.description == "[::1]:\(listener.endpoint.port)")
            }
            let server = TransportTesting.Background { TransportTesting.echo(try listener.accept()) }
            let client = try network.connect(to: Endpoint(host: host, port: listener.endpoint.port), timeout: .seconds(5))
            try client.send([1, 2, 3])
            #expect(try TransportTesting.receive(3, from: client) == [1, 2, 3])
            client.close()
            _ = server.value()
        }
    }

    @Test func gatheringSendDeliversThePartsInOrder() throws {
        let listener = try network.listen(on: loopback)
        defer { listener.close() }
        let accepting = TransportTesting.Background { try listener.accept() }
        let client = try TCPNetwork().connectTCP(to: listener.endpoint, timeout: .seconds(5))
        let server = try accepting.value().get()
        let header: [UInt8] = [0xAA, 0xBB, 0xCC]
        let payload = TransportTesting.pseudoRandomBytes(3 << 20, seed: 7)
        let empty: [UInt8] = []
        let reader = TransportTesting.Background {
            try TransportTesting.receive(header.count + payload.count, from: server)
        }
        try header.withUnsafeBytes { h in
            try payload.withUnsafeBytes { p in
                try empty.withUnsafeBytes { e in try client.send(gathering: [h, e, p]) }
            }
        }
        #expect(try reader.value().get() == header + payload)
        client.close()
        server.close()
    }

    @Test func sixtyFourMebibytesCrossBothWaysAtOnceWithMatchingHashes() throws {
        let (client, server, listener) = try connectedPair()
        defer { listener.close() }
        let total = 64 << 20
        let chunk = 1 << 20
        @Sendable func pump(_ connection: any Connection, seed: UInt64) -> TransportTesting.Background<UInt64> {
            TransportTesting.Background("pump") { () throws -> UInt64 in
                var hash = TransportTesting.StreamHash()
                var sent = 0
                var block = TransportTesting.pseudoRandomBytes(chunk, seed: seed)
                while sent < total {
                    block.withUnsafeMutableBytes { raw in raw.storeBytes(of: UInt64(sent), as: UInt64.self) }
                    block.withUnsafeBytes { hash.add($0) }
                    try connection.send(block)
                    sent += chunk
                }
                return hash.value
            }
        }
        @Sendable func drain(_ connection: any Connection) -> TransportTesting.Background<UInt64> {
            TransportTesting.Background("drain") { () throws -> UInt64 in
                var hash = TransportTesting.StreamHash()
                var received = 0
                while received < total {
                    let block = try TransportTesting.receive(chunk, from: connection)
                    guard block.count == chunk else { throw TransportError.failed(peer: "test", operation: "short stream", errno: 0) }
                    block.withUnsafeBytes { hash.add($0) }
                    received += chunk
                }
                return hash.value
            }
        }
        let clientSends = pump(client, seed: 1)
        let serverSends = pump(server, seed: 2)
        let serverReceives = drain(server)
        let clientReceives = drain(client)
        let sentByClient = try clientSends.value().get()
        let sentByServer = try serverSends.value().get()
        #expect(try serverReceives.value().get() == sentByClient)
        #expect(try clientReceives.value().get() == sentByServer)
        client.close()
        server.close()
    }

    @Test func peerClosingIsReportedAsZeroBytes() throws {
        let (client, server, listener) = try connectedPair()
        defer { listener.close() }
        try client.send([42])
        client.close()
        #expect(try TransportTesting.receive(2, from: server) == [42])
        var byte: UInt8 = 0
        #expect(try withUnsafeMutableBytes(of: &byte) { try server.receive(into: $0) } == 0)
        server.close()
    }

    @Test func connectToAClosedPortFailsWithECONNREFUSED() throws {
        let listener = try network.listen(on: loopback)
        let endpoint = listener.endpoint
        listener.close()
        let error = TransportTesting.error { _ = try network.connect(to: endpoint, timeout: .seconds(5)) }
        #expect(error == .connectFailed(endpoint, errno: ECONNREFUSED))
    }

    @Test func unresolvableHostIsAnInvalidAddress() {
        let error = TransportTesting.error {
            _ = try network.connect(to: Endpoint(host: "no-such-host.invalid", port: 1), timeout: .seconds(5))
        }
        guard case .addressInvalid(let address, _) = error else {
            Issue.record("expected addressInvalid, got \(String(describing: error))")
            return
        }
        #expect(address == "no-such-host.invalid:1")
    }

    /// Linux drops SYNs to a listener whose accept queue is full, so the connect hangs; that
    /// is the only black hole available without a network.
    @Test func connectToAListenerWithAFullBacklogTimesOut() throws {
        let address = try SocketAddress.resolve(loopback, forListening: true)[0]
        let fd = try address.listen(backlog: 0, endpoint: loopback)
        defer { close(fd) }
        let endpoint = SocketAddress.endpoint(of: fd, peer: false)!
        var connections: [any Connection] = []
        defer { for connection in connections { connection.close() } }
        var timedOut: TransportError?
        for _ in 0..<8 {
            let started = ConditionLock.monotonicNanoseconds()
            do {
                connections.append(try network.connect(to: endpoint, timeout: .milliseconds(200)))
            } catch {
                timedOut = error
                let elapsed = ConditionLock.monotonicNanoseconds() - started
                #expect(elapsed >= 190_000_000 && elapsed < 2_000_000_000, "\(elapsed) ns")
                break
            }
        }
        #expect(timedOut == .timedOut(operation: "connect", peer: endpoint.description))
    }

    @Test func receiveWithNothingArrivingTimesOut() throws {
        let (client, server, listener) = try connectedPair()
        defer { listener.close() }
        client.setTimeouts(receive: .milliseconds(100), send: nil)
        let started = ConditionLock.monotonicNanoseconds()
        let error = TransportTesting.error { _ = try TransportTesting.receive(1, from: client) }
        #expect(error == .timedOut(operation: "receive", peer: client.peer))
        #expect(ConditionLock.monotonicNanoseconds() - started >= 90_000_000)
        // Still usable after a timeout.
        try server.send([9])
        #expect(try TransportTesting.receive(1, from: client) == [9])
        client.close()
        server.close()
    }

    @Test func sendToAPeerThatStoppedReadingTimesOut() throws {
        let (client, server, listener) = try connectedPair()
        defer { listener.close() }
        client.setTimeouts(receive: nil, send: .milliseconds(100))
        let block = [UInt8](repeating: 1, count: 1 << 20)
        let error = TransportTesting.error {
            for _ in 0..<1024 { try client.send(block) }
        }
        #expect(error == .timedOut(operation: "send", peer: client.peer))
        client.close()
        server.close()
    }

    @Test func closeFromAnotherThreadUnblocksABlockedReceive() throws {
        let (client, server, listener) = try connectedPair()
        defer { listener.close() }
        let receiving = TransportTesting.Background { try TransportTesting.receive(1, from: client) }
        usleep(100_000)
        #expect(!receiving.isFinished)
        client.close()
        #expect(receiving.value().failure == .closed(peer: client.peer))
        // Calls after close fail the same way; close is idempotent.
        #expect(TransportTesting.error { try client.send([1]) } == .closed(peer: client.peer))
        client.close()
        server.close()
    }

    @Test func closeFromAnotherThreadUnblocksABlockedSend() throws {
        let (client, server, listener) = try connectedPair()
        defer { listener.close() }
        let sending = TransportTesting.Background {
            let block = [UInt8](repeating: 1, count: 1 << 20)
            for _ in 0..<1024 { try client.send(block) }
        }
        usleep(300_000)
        #expect(!sending.isFinished)
        client.close()
        #expect(sending.value().failure == .closed(peer: client.peer))
        server.close()
    }

    @Test func closeFromAnotherThreadUnblocksABlockedAccept() throws {
        let listener = try network.listen(on: loopback)
        let accepting = TransportTesting.Background { _ = try listener.accept() }
        usleep(100_000)
        #expect(!accepting.isFinished)
        listener.close()
        #expect(accepting.value().failure == .closed(peer: listener.endpoint.description))
        listener.close()
    }

    /// A descriptor closed while another thread is inside recv or send could be reused by an
    /// unrelated open and then read or written. Races close against both, many times.
    @Test func closeRacingReceiveAndSendNeverHangsOrCrashes() throws {
        let listener = try network.listen(on: loopback)
        defer { listener.close() }
        for round in 0..<100 {
            let accepting = TransportTesting.Background { try listener.accept() }
            let client = try network.connect(to: listener.endpoint, timeout: .seconds(5))
            let server = try accepting.value().get()
            let receiving = TransportTesting.Background { _ = try TransportTesting.receive(1, from: client) }
            let sending = TransportTesting.Background {
                let block = [UInt8](repeating: 0, count: 256 << 10)
                while true { try client.send(block) }
            }
            if round % 2 == 0 { usleep(UInt32(round * 20)) }
            let closing = TransportTesting.Background { client.close() }
            client.close()
            _ = closing.value()
            #expect(receiving.value().failure == .closed(peer: client.peer))
            #expect(sending.value().failure == .closed(peer: client.peer))
            server.close()
        }
    }

    @Test func listenOnATakenPortFailsWithEADDRINUSE() throws {
        let listener = try network.listen(on: loopback)
        defer { listener.close() }
        let error = TransportTesting.error { _ = try network.listen(on: listener.endpoint) }
        #expect(error == .listenFailed(listener.endpoint, errno: EADDRINUSE))
    }

    @Test func peerThatResetsIsReportedAsECONNRESETOrEndOfStream() throws {
        let (client, server, listener) = try connectedPair()
        defer { listener.close() }
        (client as! TCPConnection).abort()
        let error = TransportTesting.error {
            let bytes = try TransportTesting.receive(1, from: server)
            #expect(bytes.isEmpty)
        }
        if let error { #expect(error == .failed(peer: server.peer, operation: "receive", errno: ECONNRESET)) }
        // Sending into the reset connection fails with EPIPE or ECONNRESET, never SIGPIPE.
        let sendError = TransportTesting.error {
            for _ in 0..<8 { try server.send([UInt8](repeating: 0, count: 64 << 10)) }
        }
        guard case .failed(_, "send", let code) = sendError else {
            Issue.record("expected a send failure, got \(String(describing: sendError))")
            return
        }
        #expect(code == EPIPE || code == ECONNRESET)
        server.close()
    }

    /// Prints loopback throughput with 1 MiB sends (autotuned and fixed 4 MiB socket buffers)
    /// and the round-trip time of 100-byte messages. No assertions on the figures.
    @Test func measureLoopbackThroughputAndRoundTrip() throws {
        for bufferBytes in [nil, TCPNetwork.fixedSocketBufferBytes] as [Int?] {
            let (client, server, listener) = try connectedPair(TCPNetwork(socketBufferBytes: bufferBytes))
            let total = 512 << 20
            let chunk = [UInt8](repeating: 7, count: 1 << 20)
            let draining = TransportTesting.Background { () throws -> Int in
                var buffer = [UInt8](repeating: 0, count: 1 << 20)
                var received = 0
                while true {
                    let count = try TransportTesting.receive(into: &buffer, from: server)
                    if count == 0 { return received }
                    received += count
                }
            }
            let started = ConditionLock.monotonicNanoseconds()
            for _ in 0..<(total / chunk.count) { try client.send(chunk) }
            client.close()
            let received = try draining.value().get()
            let seconds = Double(ConditionLock.monotonicNanoseconds() - started) / 1e9
            #expect(received == total)
            let label = bufferBytes.map { "\($0 >> 20) MiB buffers" } ?? "autotuned buffers"
            print("TCP loopback, 1 MiB sends, \(label): \(Int(Double(total) / seconds / 1e6)) MB/s")
            server.close()
            listener.close()
        }

        let (client, server, listener) = try connectedPair()
        defer { listener.close() }
        let echoing = TransportTesting.Background { TransportTesting.echo(server) }
        let message = [UInt8](repeating: 3, count: 100)
        var samples: [UInt64] = []
        for _ in 0..<2000 {
            let started = ConditionLock.monotonicNanoseconds()
            try client.send(message)
            _ = try TransportTesting.receive(message.count, from: client)
            samples.append(ConditionLock.monotonicNanoseconds() - started)
        }
        samples.sort()
        let (p50, p99) = (samples[samples.count / 2] / 1000, samples[samples.count * 99 / 100] / 1000)
        print("TCP loopback round trip, 100 bytes: p50 \(p50) µs, p99 \(p99) µs")
        client.close()
        _ = echoing.value()
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
