import ShipLogReplication
import ShipLogStorage

/// A point on the monotonic clock (`ShipLogStorage.monotonicNanoseconds()`) by which a call must end.
struct Deadline: Sendable {
    var nanoseconds: UInt64

    static func after(_ duration: Duration) -> Deadline {
        Deadline(nanoseconds: ConditionLock.deadline(after: duration) ?? .max)
    }

    /// The time left; nil once passed.
    var remaining: Duration? {
        let now = monotonicNanoseconds()
        return now < nanoseconds ? .nanoseconds(Int64(clamping: nanoseconds - now)) : nil
    }

    func earlier(than other: Deadline) -> Deadline { nanoseconds <= other.nanoseconds ? self : other }
}

/// One TCP connection to a coordination service with a read buffer; every call ends by a
/// ``Deadline``. Not thread-safe: its owner serializes calls (one lock per connection).
final class ServiceConnection {
    /// The service as errors name it (`etcd at 127.0.0.1:2379`).
    let service: String
    let endpoint: Endpoint
    private let connection: any Connection
    private var buffer: [UInt8] = []
    private var readOffset = 0
    private var chunk = [UInt8](repeating: 0, count: CoordinationLimits.receiveChunkBytes)

    private init(connection: any Connection, endpoint: Endpoint, service: String) {
        self.connection = connection
        self.endpoint = endpoint
        self.service = service
    }

    deinit { connection.close() }

    /// Connects to the first of `endpoints` (from `first` on, wrapping) that accepts before
    /// `deadline`. Returns the connection and the index of its endpoint.
    static func open(
        to endpoints: [Endpoint], startingAt first: Int, config: ElectionConfig, network: TCPNetwork, deadline: Deadline
    ) throws(CoordinationError) -> (ServiceConnection, Int) {
        precondition(!endpoints.isEmpty)
        var failure = CoordinationError.unreachable(
            service: config.serviceName(endpoints[first % endpoints.count]), reason: "no time left to connect")
        for step in 0..<endpoints.count {
            let index = (first + step) % endpoints.count
            let endpoint = endpoints[index]
            let service = config.serviceName(endpoint)
            guard let remaining = deadline.remaining else { break }
            do {
                let connection = try network.connect(to: endpoint, timeout: remaining)
                return (ServiceConnection(connection: connection, endpoint: endpoint, service: service), index)
            } catch {
                failure = .unreachable(service, error)
            }
        }
        throw failure
    }

    func close() { connection.close() }

    /// Whether the last failure was the deadline passing (for callers that wait for an event
    /// until a deadline and take the deadline as an answer, not a failure).
    private(set) var lastFailureWasTimeout = false
    /// Bytes received over the connection's life.
    private(set) var receivedBytes = 0

    /// Bytes received and not yet consumed.
    var bufferedCount: Int { buffer.count - readOffset }

    /// Sends every byte of `bytes` before `deadline`.
    func send(_ bytes: [UInt8], deadline: Deadline, what: String) throws(CoordinationError) {
        lastFailureWasTimeout = false
        guard let remaining = deadline.remaining else { throw timedOut(what) }
        connection.setTimeouts(receive: remaining, send: remaining)
        do {
            try connection.send(bytes)
        } catch {
            throw transportFailure(error, what: what)
        }
    }

    /// Consumes exactly `count` bytes, receiving until they are there. `count` must already be
    /// checked against a limit by the caller.
    func read(exactly count: Int, deadline: Deadline, what: String) throws(CoordinationError) -> [UInt8] {
        while bufferedCount < count { try fill(deadline: deadline, what: what) }
        let bytes = Array(buffer[readOffset..<readOffset + count])
        readOffset += count
        return bytes
    }

    /// Consumes one CRLF-terminated line (returned without the CRLF) of at most `bytesMax` bytes.
    func readLine(bytesMax: Int, deadline: Deadline, what: String) throws(CoordinationError) -> ArraySlice<UInt8> {
        var scanned = readOffset
        while true {
            while scanned + 1 < buffer.count {
                if buffer[scanned] == 0x0D && buffer[scanned + 1] == 0x0A {
                    let line = buffer[readOffset..<scanned]
                    readOffset = scanned + 2
                    return line
                }
                scanned += 1
            }
            guard buffer.count - readOffset <= bytesMax + 1 else {
                throw .protocolError(service: service, detail: "\(what): a line longer than \(bytesMax) bytes")
            }
            let consumed = readOffset
            try fill(deadline: deadline, what: what)
            scanned -= consumed - readOffset  // fill may have compacted the buffer
        }
    }

    /// Consumes one frame with a 4-byte big-endian length prefix (ZooKeeper's framing), its
    /// length checked against `bytesMax` before anything is allocated for it. Nothing is
    /// consumed until the whole frame is there, so a deadline passing midway loses nothing.
    func readFrame(bytesMax: Int, deadline: Deadline, what: String) throws(CoordinationError) -> [UInt8] {
        while bufferedCount < 4 { try fill(deadline: deadline, what: what) }
        var length: UInt32 = 0
        for index in 0..<4 { length = length << 8 | UInt32(buffer[readOffset + index]) }
        guard length <= UInt32(bytesMax) else {
            throw .protocolError(service: service, detail: "\(what): frame of \(Int32(bitPattern: length)) bytes (at most \(bytesMax))")
        }
        while bufferedCount < 4 + Int(length) { try fill(deadline: deadline, what: what) }
        let frame = Array(buffer[(readOffset + 4)..<(readOffset + 4 + Int(length))])
        readOffset += 4 + Int(length)
        return frame
    }

    /// One receive before `deadline`; the peer closing the connection is an error here.
    private func fill(deadline: Deadline, what: String) throws(CoordinationError) {
        lastFailureWasTimeout = false
        guard let remaining = deadline.remaining else { throw timedOut(what) }
        if readOffset > 0 && readOffset >= buffer.count / 2 {
            buffer.removeSubrange(0..<readOffset)
            readOffset = 0
        }
        connection.setTimeouts(receive: remaining, send: remaining)
        let received: Int
        do {
            received = try chunk.withUnsafeMutableBytes { raw in
                Result { () throws(TransportError) in try connection.receive(into: raw) }
            }.get()
        } catch {
            throw transportFailure(error, what: what)
        }
        guard received > 0 else {
            throw .unreachable(service: service, reason: "the server closed the connection while \(what)")
        }
        receivedBytes += received
        buffer.append(contentsOf: chunk[0..<received])
    }

    private func timedOut(_ what: String) -> CoordinationError {
        lastFailureWasTimeout = true
        return .unreachable(service: service, reason: "timed out \(what)")
    }

    private func transportFailure(_ error: TransportError, what: String) -> CoordinationError {
        if case .timedOut = error { return timedOut(what) }
        return .unreachable(service: service, reason: "\(error) (\(what))")
    }

}
