import Glibc
import ShipLogReplication
import ShipLogStorage
import Testing

@testable import ShipLogFailover

/// A loopback server that answers each connection with `respond`, one connection at a time.
final class FakeServer: @unchecked Sendable {
    let listener: any Listener
    private var thread: OwnedThread?

    init(respond: @escaping @Sendable (any Connection) -> Void) throws {
        listener = try TCPNetwork().listen(on: Endpoint(host: "127.0.0.1", port: 0))
        let listener = self.listener
        thread = OwnedThread.start(name: "fake-server") {
            while let connection = try? listener.accept() {
                respond(connection)
                connection.close()
            }
        }
    }

    func url(_ backend: ElectionConfig.Backend) -> String { "\(backend.rawValue)://127.0.0.1:\(listener.endpoint.port)/fake" }

    func close() {
        listener.close()
        thread?.join()
    }

    /// Receives what the client sent first (a request or a ConnectRequest fits in one receive).
    static func receiveRequest(_ connection: any Connection) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        connection.setTimeouts(receive: .seconds(5), send: .seconds(5))
        let count = buffer.withUnsafeMutableBytes { (try? connection.receive(into: $0)) ?? 0 }
        return Array(buffer[..<count])
    }

    static func send(_ text: String, _ connection: any Connection) { try? connection.send(Array(text.utf8)) }
}

@Suite struct HostileServerTests {
    /// The error `body` throws, recorded as an issue when it throws none or another type.
    func error(_ body: () throws -> Void) -> CoordinationError? {
        do {
            try body()
            Issue.record("no error")
            return nil
        } catch let error as CoordinationError {
            return error
        } catch {
            Issue.record("not a CoordinationError: \(error)")
            return nil
        }
    }

    func isProtocolError(_ error: CoordinationError?, mentioning text: String) -> Bool {
        guard case .protocolError(_, let detail) = error else { return false }
        return detail.contains(text)
    }

    @Test func etcdBodyLengthBeyondTheLimitIsRefusedBeforeReadingIt() async throws {
        try await onOwnedThread {
            let server = try FakeServer { connection in
                _ = FakeServer.receiveRequest(connection)
                FakeServer.send("HTTP/1.1 200 OK\r\nContent-Length: 4294967296\r\n\r\n{", connection)
                usleep(200_000)
            }
            defer { server.close() }
            let service = try makeCoordinationService(server.url(.etcd), ttl: .seconds(3))
            defer { service.close() }
            let failure = error { _ = try service.leader() }
            #expect(isProtocolError(failure, mentioning: "exceeds"), "\(String(describing: failure))")
        }
    }

    @Test func etcdChunkLargerThanTheLimitIsRefused() async throws {
        try await onOwnedThread {
            let server = try FakeServer { connection in
                _ = FakeServer.receiveRequest(connection)
                FakeServer.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffff\r\n{", connection)
                usleep(200_000)
            }
            defer { server.close() }
            let service = try makeCoordinationService(server.url(.etcd), ttl: .seconds(3))
            defer { service.close() }
            let failure = error { _ = try service.leader() }
            #expect(isProtocolError(failure, mentioning: "limit"), "\(String(describing: failure))")
        }
    }

    @Test func etcdNonHTTPAnswerIsAProtocolError() async throws {
        try await onOwnedThread {
            let server = try FakeServer { connection in
                _ = FakeServer.receiveRequest(connection)
                FakeServer.send("SSH-2.0-OpenSSH_9.2\r\n\r\n", connection)
            }
            defer { server.close() }
            let service = try makeCoordinationService(server.url(.etcd), ttl: .seconds(3))
            defer { service.close() }
            let failure = error { _ = try service.leader() }
            #expect(isProtocolError(failure, mentioning: "status line"), "\(String(describing: failure))")
        }
    }

    @Test func etcdChunkedAnswerWithTrailersIsDecoded() async throws {
        try await onOwnedThread {
            let body = #"{"header":{"revision":"7"},"kvs":[{"key":"L2Zha2UvbGVhZGVy","value":"bm9kZS14CmFkZHI=","lease":"5"}]}"#
            let half = body.utf8.count / 2
            let first = String(decoding: Array(body.utf8)[..<half], as: UTF8.self)
            let second = String(decoding: Array(body.utf8)[half...], as: UTF8.self)
            let server = try FakeServer { connection in
                _ = FakeServer.receiveRequest(connection)
                let response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + String(first.utf8.count, radix: 16) + ";ext=1\r\n" + first + "\r\n"
                    + String(second.utf8.count, radix: 16) + "\r\n" + second + "\r\n"
                    + "0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n"
                FakeServer.send(response, connection)
                usleep(200_000)
            }
            defer { server.close() }
            let service = try makeCoordinationService(server.url(.etcd), ttl: .seconds(3))
            defer { service.close() }
            let leader = try #require(try service.leader())
            #expect(leader.nodeID == "node-x")
            #expect(leader.value == Array("addr".utf8))
        }
    }

    @Test func etcdErrorStatusIsReportedWithTheServersMessage() async throws {
        try await onOwnedThread {
            let server = try FakeServer { connection in
                _ = FakeServer.receiveRequest(connection)
                let body = #"{"error":"etcdserver: permission denied","message":"etcdserver: permission denied","code":7}"#
                FakeServer.send("HTTP/1.1 403 Forbidden\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)", connection)
                usleep(200_000)
            }
            defer { server.close() }
            let service = try makeCoordinationService(server.url(.etcd), ttl: .seconds(3))
            defer { service.close() }
            let failure = error { _ = try service.leader() }
            guard case .rejected(_, _, let reason) = failure else {
                Issue.record("unexpected \(String(describing: failure))")
                return
            }
            #expect(reason.contains("permission denied") && reason.contains("403"))
        }
    }

    @Test func silentServerMakesCallsFailWithinTheOperationTimeout() async throws {
        try await onOwnedThread {
            let server = try FakeServer { connection in
                _ = FakeServer.receiveRequest(connection)
                usleep(2_500_000)
            }
            defer { server.close() }
            for backend in ElectionConfig.Backend.allCases {
                let service = try makeCoordinationService(server.url(backend), ttl: .seconds(3))
                defer { service.close() }
                let started = now()
                let failure = error { _ = try service.leader() }
                guard case .unreachable(_, let reason) = failure else {
                    Issue.record("\(backend): unexpected \(String(describing: failure))")
                    continue
                }
                #expect(reason.contains("timed out"))
                #expect(seconds(started, now()) < 1.5, "\(backend) took \(seconds(started, now())) s for a 1 s operation timeout")
            }
        }
    }

    @Test func zooKeeperFrameLengthBeyondTheLimitIsRefusedBeforeReadingIt() async throws {
        try await onOwnedThread {
            let server = try FakeServer { connection in
                _ = FakeServer.receiveRequest(connection)
                try? connection.send([0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])
                usleep(200_000)
            }
            defer { server.close() }
            let service = try makeCoordinationService(server.url(.zookeeper), ttl: .seconds(3))
            defer { service.close() }
            let failure = error { _ = try service.leader() }
            #expect(isProtocolError(failure, mentioning: "frame of 2147483647 bytes"), "\(String(describing: failure))")
        }
    }

    @Test func zooKeeperNegotiatingAShorterSessionThanTheTTLIsAConfigurationError() async throws {
        try await onOwnedThread {
            let server = try FakeServer { connection in
                _ = FakeServer.receiveRequest(connection)
                var response = JuteWriter()
                response.int32(0)
                response.int32(2000)  // ms, below the 3 s TTL asked for
                response.int64(0x1234)
                response.buffer([UInt8](repeating: 7, count: 16))
                response.bool(false)
                try? connection.send(response.framed)
                usleep(200_000)
            }
            defer { server.close() }
            let service = try makeCoordinationService(server.url(.zookeeper), ttl: .seconds(3))
            defer { service.close() }
            let failure = error { _ = try service.leader() }
            guard case .invalidConfig(let message) = failure else {
                Issue.record("unexpected \(String(describing: failure))")
                return
            }
            #expect(message.contains("2000 ms"))
        }
    }

    @Test func zooKeeperTruncatedReplyIsAProtocolError() async throws {
        try await onOwnedThread {
            let server = try FakeServer { connection in
                _ = FakeServer.receiveRequest(connection)
                var response = JuteWriter()
                response.int32(0)
                response.int32(3000)
                response.int64(0x1234)
                response.buffer([UInt8](repeating: 7, count: 16))
                response.bool(false)
                try? connection.send(response.framed)
                _ = FakeServer.receiveRequest(connection)
                var reply = JuteWriter()
                reply.int32(1)  // xid of the first request
                reply.int64(5)
                reply.int32(0)
                reply.int32(1000)  // a data buffer of 1000 bytes that is not there
                try? connection.send(reply.framed)
                usleep(200_000)
            }
            defer { server.close() }
            let service = try makeCoordinationService(server.url(.zookeeper), ttl: .seconds(3))
            defer { service.close() }
            let failure = error { _ = try service.leader() }
            #expect(isProtocolError(failure, mentioning: "ends inside"), "\(String(describing: failure))")
        }
    }
}
