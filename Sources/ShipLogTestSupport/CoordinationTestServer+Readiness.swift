#if canImport(Glibc)
import Glibc
import ShipLogReplication

extension CoordinationTestServer {
    /// How often a starting server is asked whether it is ready.
    static let readinessPollInterval: Duration = .milliseconds(100)
    /// How long one readiness exchange may take to connect, and to send or receive each part.
    static let readinessExchangeTimeout: Duration = .seconds(1)
    /// Most bytes of a readiness answer read.
    static let readinessAnswerBytesMax = 64 << 10
    /// Bytes read per receive of a readiness answer.
    static let readinessChunkBytes = 4096

    /// Polls until the server answers (see ``readinessProbe``); throws when it exits or
    /// ``startTimeout`` passes first.
    func waitUntilReady() throws(CoordinationTestServerError) {
        let deadline = ContinuousClock.now + Self.startTimeout
        let (request, expected) = readinessProbe
        var last = "no answer"
        while ContinuousClock.now < deadline {
            guard Glibc.kill(serverPID, 0) == 0 else { throw CoordinationTestServerError("\(backend) exited at start") }
            if let answer = Self.exchange(request, with: endpoint) {
                if answer.contains(expected) { return }
                last = String(answer.prefix(200))
            }
            Self.sleep(for: Self.readinessPollInterval)
        }
        throw CoordinationTestServerError("\(backend) on port \(port) did not answer within \(Self.startTimeout): \(last)")
    }

    /// What a ready server answers: etcd a linearizable range request on its v3 JSON gateway
    /// (the gateway the election client uses; it needs a leader), ZooKeeper the `srvr`
    /// four-letter word with its mode (it is serving sessions).
    private var readinessProbe: (request: String, expected: String) {
        switch backend {
        case .etcd:
            let body = #"{"key":"AA=="}"#
            let request =
                "POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
            return (request, "HTTP/1.1 200")
        case .zookeeper:
            return ("srvr", "Mode: ")
        }
    }

    /// Sends `request` on a new connection and reads until the server closes it; nil when
    /// the exchange fails.
    private static func exchange(_ request: String, with endpoint: Endpoint) -> String? {
        guard let connection = try? TCPNetwork().connect(to: endpoint, timeout: readinessExchangeTimeout) else { return nil }
        defer { connection.close() }
        connection.setTimeouts(receive: readinessExchangeTimeout, send: readinessExchangeTimeout)
        do {
            try connection.send(Array(request.utf8))
            var answer: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: readinessChunkBytes)
            while answer.count < readinessAnswerBytesMax {
                let count = try buffer.withUnsafeMutableBytes { raw in
                    Result { () throws(TransportError) in try connection.receive(into: raw) }
                }.get()
                if count == 0 { break }
                answer += buffer[0..<count]
            }
            return String(decoding: answer, as: UTF8.self)
        } catch {
            return nil
        }
    }
}
#endif
