import ShipLogReplication

/// A minimal HTTP/1.1 client for etcd's JSON gateway: POST requests with JSON bodies over one
/// kept-alive connection, responses with Content-Length or chunked bodies (trailers skipped),
/// everything size-capped. Not thread-safe: its owner serializes calls.
final class HTTPClient {
    let config: ElectionConfig
    let network: TCPNetwork
    private var connection: ServiceConnection?
    /// The endpoint to try first when connecting: the last one that worked.
    private var endpointIndex = 0

    init(config: ElectionConfig, network: TCPNetwork) {
        self.config = config
        self.network = network
    }

    deinit { connection?.close() }

    /// A response: its status and whole body.
    struct Response {
        var status: Int
        var body: [UInt8]
        /// The service that answered (`etcd at HOST:PORT`).
        var service: String
    }

    /// POSTs `body` (JSON) to `path` and reads the whole response before `deadline`. A request
    /// on a kept-alive connection that the server had closed (no byte of a response) is sent
    /// once more on a new connection.
    func post(_ path: String, body: [UInt8], deadline: Deadline) throws(CoordinationError) -> Response {
        var retried = false
        while true {
            let reused = connection != nil
            let current = try connected(deadline: deadline)
            let what = "POST \(path)"
            let receivedBefore = current.receivedBytes
            do {
                try current.send(Self.request(path: path, body: body, host: current.endpoint), deadline: deadline, what: "sending \(what)")
                let head = try HTTPResponseHead.read(from: current, deadline: deadline, what: "reading the response to \(what)")
                var reader = try HTTPBodyReader(head: head, service: current.service, what: what)
                var responseBody: [UInt8] = []
                while let piece = try reader.next(
                    from: current, deadline: deadline, bytesMax: CoordinationLimits.httpBodyBytesMax - responseBody.count)
                {
                    responseBody += piece
                }
                if !head.keepAlive { close() }
                return Response(status: head.status, body: responseBody, service: current.service)
            } catch {
                let nothingReceived = current.receivedBytes == receivedBefore && !current.lastFailureWasTimeout
                close()
                guard reused, nothingReceived, !retried, deadline.remaining != nil else { throw error }
                retried = true
            }
        }
    }

    /// Closes the connection (the next call connects again).
    func close() {
        connection?.close()
        connection = nil
    }

    private func connected(deadline: Deadline) throws(CoordinationError) -> ServiceConnection {
        if let connection { return connection }
        let (opened, index) = try ServiceConnection.open(
            to: config.endpoints, startingAt: endpointIndex, config: config, network: network, deadline: deadline)
        endpointIndex = index
        connection = opened
        return opened
    }

    /// Opens a connection of its own for a streamed response (a watch), sends the request and
    /// reads the response head before `deadline`.
    func openStream(_ path: String, body: [UInt8], deadline: Deadline) throws(CoordinationError) -> HTTPStream {
        let (stream, index) = try ServiceConnection.open(
            to: config.endpoints, startingAt: endpointIndex, config: config, network: network, deadline: deadline)
        endpointIndex = index
        do {
            try stream.send(Self.request(path: path, body: body, host: stream.endpoint), deadline: deadline, what: "sending POST \(path)")
            let head = try HTTPResponseHead.read(from: stream, deadline: deadline, what: "reading the response to POST \(path)")
            let reader = try HTTPBodyReader(head: head, service: stream.service, what: "POST \(path)")
            return HTTPStream(connection: stream, head: head, reader: reader, what: "the stream of POST \(path)")
        } catch {
            stream.close()
            throw error
        }
    }

    static func request(path: String, body: [UInt8], host: Endpoint) -> [UInt8] {
        let head = "POST \(path) HTTP/1.1\r\nHost: \(host)\r\nContent-Type: application/json\r\n"
            + "Accept: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
        return Array(head.utf8) + body
    }
}

/// A streamed response: newline-delimited JSON messages (grpc-gateway's server streams).
final class HTTPStream {
    let connection: ServiceConnection
    let head: HTTPResponseHead
    private var reader: HTTPBodyReader
    private var pending: [UInt8] = []
    private let what: String

    init(connection: ServiceConnection, head: HTTPResponseHead, reader: HTTPBodyReader, what: String) {
        self.connection = connection
        self.head = head
        self.reader = reader
        self.what = what
    }

    deinit { connection.close() }

    /// The next non-empty line of the body (at most `bytesMax` bytes), nil at the end of the
    /// body. A deadline that passes throws `.unreachable` with ``timedOut`` set.
    func nextLine(deadline: Deadline, bytesMax: Int) throws(CoordinationError) -> [UInt8]? {
        while true {
            if let newline = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) { continue }
                return line
            }
            guard pending.count <= bytesMax else {
                throw .protocolError(service: connection.service, detail: "\(what): a message longer than \(bytesMax) bytes")
            }
            guard let piece = try reader.next(from: connection, deadline: deadline, bytesMax: bytesMax + 1 - pending.count) else {
                return pending.isEmpty ? nil : pending
            }
            pending += piece
        }
    }

    /// Whether the last failure was the deadline passing.
    var timedOut: Bool { connection.lastFailureWasTimeout }

    func close() { connection.close() }
}

/// The status line and the headers that matter of an HTTP/1.1 response.
struct HTTPResponseHead {
    /// Most header lines read.
    static let headerLinesMax = 100

    var status: Int
    var contentLength: Int?
    var chunked: Bool
    var keepAlive: Bool

    static func read(from connection: ServiceConnection, deadline: Deadline, what: String) throws(CoordinationError) -> HTTPResponseHead {
        var budget = CoordinationLimits.httpHeadBytesMax
        let statusLine = try connection.readLine(bytesMax: budget, deadline: deadline, what: what)
        budget -= statusLine.count
        let parts = statusLine.split(separator: 0x20, maxSplits: 2, omittingEmptySubsequences: true)
        guard parts.count >= 2, parts[0].starts(with: Array("HTTP/1.".utf8)), parts[1].count == 3,
            let status = Int(String(decoding: parts[1], as: UTF8.self)), status >= 100
        else {
            throw .protocolError(service: connection.service, detail: "\(what): not an HTTP/1.x status line: \(printable(statusLine))")
        }
        var head = HTTPResponseHead(status: status, contentLength: nil, chunked: false, keepAlive: parts[0].elementsEqual(Array("HTTP/1.1".utf8)))
        for _ in 0...headerLinesMax {
            let line = try connection.readLine(bytesMax: max(0, budget), deadline: deadline, what: what)
            budget -= line.count + 2
            guard budget >= 0 else {
                throw .protocolError(
                    service: connection.service, detail: "\(what): response head exceeds \(CoordinationLimits.httpHeadBytesMax) bytes")
            }
            if line.isEmpty { return try head.checked(service: connection.service, what: what) }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
                throw .protocolError(service: connection.service, detail: "\(what): malformed header line \(printable(line))")
            }
            let name = String(decoding: line[..<colon], as: UTF8.self).lowercased()
            let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingSpaces.lowercased()
            switch name {
            case "content-length":
                guard let length = Int(value), length >= 0, head.contentLength == nil || head.contentLength == length else {
                    throw .protocolError(service: connection.service, detail: "\(what): bad Content-Length \"\(value)\"")
                }
                head.contentLength = length
            case "transfer-encoding":
                guard value == "chunked" else {
                    throw .protocolError(service: connection.service, detail: "\(what): unsupported Transfer-Encoding \"\(value)\"")
                }
                head.chunked = true
            case "connection":
                if value == "close" { head.keepAlive = false }
            default:
                break
            }
        }
        throw .protocolError(service: connection.service, detail: "\(what): more than \(headerLinesMax) header lines")
    }

    private func checked(service: String, what: String) throws(CoordinationError) -> HTTPResponseHead {
        if chunked && contentLength != nil {
            throw .protocolError(service: service, detail: "\(what): both Content-Length and chunked encoding")
        }
        if !chunked && contentLength == nil {
            throw .protocolError(service: service, detail: "\(what): response without Content-Length or chunked encoding")
        }
        if let contentLength, contentLength > CoordinationLimits.httpBodyBytesMax {
            throw .protocolError(
                service: service, detail: "\(what): body of \(contentLength) bytes exceeds \(CoordinationLimits.httpBodyBytesMax) bytes")
        }
        return self
    }

    static func printable(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.prefix(80).map { $0 >= 0x20 && $0 < 0x7F ? $0 : UInt8(ascii: "?") }, as: UTF8.self).debugDescription
    }
}

/// Reads a response body piece by piece: a Content-Length body at once, a chunked body one
/// chunk at a time (trailers are read and ignored).
struct HTTPBodyReader {
    /// Longest chunk-size line accepted (hex size and extensions).
    static let chunkLineBytesMax = 256

    private var remainingLength: Int?
    private let chunked: Bool
    private var finished = false
    private let service: String
    private let what: String

    init(head: HTTPResponseHead, service: String, what: String) throws(CoordinationError) {
        self.chunked = head.chunked
        self.remainingLength = head.contentLength
        self.service = service
        self.what = what
    }

    /// The next piece of the body (at most `bytesMax` bytes are accepted in it), nil at its end.
    mutating func next(from connection: ServiceConnection, deadline: Deadline, bytesMax: Int) throws(CoordinationError) -> [UInt8]? {
        guard !finished else { return nil }
        if !chunked {
            let length = remainingLength ?? 0
            finished = true
            guard length <= bytesMax else { throw tooLarge(length) }
            return length == 0 ? nil : try connection.read(exactly: length, deadline: deadline, what: "reading the body of \(what)")
        }
        let line = try connection.readLine(bytesMax: Self.chunkLineBytesMax, deadline: deadline, what: "reading a chunk of \(what)")
        let sizeText = String(decoding: line.prefix(while: { $0 != UInt8(ascii: ";") }), as: UTF8.self).trimmingSpaces
        guard !sizeText.isEmpty, sizeText.count <= 8, let size = Int(sizeText, radix: 16), size >= 0 else {
            throw .protocolError(service: service, detail: "\(what): bad chunk size line \(HTTPResponseHead.printable(line))")
        }
        if size == 0 {
            try skipTrailers(connection: connection, deadline: deadline)
            finished = true
            return nil
        }
        guard size <= bytesMax else { throw tooLarge(size) }
        let data = try connection.read(exactly: size, deadline: deadline, what: "reading a chunk of \(what)")
        let end = try connection.read(exactly: 2, deadline: deadline, what: "reading a chunk of \(what)")
        guard end == [0x0D, 0x0A] else {
            throw .protocolError(service: service, detail: "\(what): chunk of \(size) bytes not followed by CRLF")
        }
        return data
    }

    private func skipTrailers(connection: ServiceConnection, deadline: Deadline) throws(CoordinationError) {
        for _ in 0...HTTPResponseHead.headerLinesMax {
            let line = try connection.readLine(
                bytesMax: CoordinationLimits.httpHeadBytesMax, deadline: deadline, what: "reading the trailers of \(what)")
            if line.isEmpty { return }
        }
        throw .protocolError(service: service, detail: "\(what): more than \(HTTPResponseHead.headerLinesMax) trailer lines")
    }

    private func tooLarge(_ size: Int) -> CoordinationError {
        .protocolError(service: service, detail: "\(what): body exceeds its limit (a piece of \(size) bytes)")
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        let scalars = unicodeScalars
        let start = scalars.firstIndex { $0 != " " && $0 != "\t" } ?? scalars.endIndex
        let end = scalars.lastIndex { $0 != " " && $0 != "\t" }.map { scalars.index(after: $0) } ?? start
        return String(scalars[start..<max(start, end)])
    }
}
