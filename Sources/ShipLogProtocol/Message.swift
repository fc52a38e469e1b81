import ShipLogFormat

/// Every message of protocol version 1 (docs/PROTOCOL.md sections 5-8), typed.
///
/// `Message(frame:)` decodes and checks a frame's payload; ``encodedFrame()`` checks the message
/// against the same rules and returns the frame's bytes, so an encoder never produces a message
/// its decoder would reject.
public enum Message: Hashable, Sendable {
    case hello(Hello)
    case helloAck(HelloAck)
    case refuse(Failure)
    case authProof(AuthProof)
    case error(Failure)
    case startStream(StartStream)
    case batches(Batches)
    case keepalive(Keepalive)
    case followerStatus(FollowerStatus)
    case snapshotChunk(SnapshotChunk)
    case snapshotAck(SnapshotAck)
    case appendRequest(AppendRequest)
    case appendResponse(AppendResponse)
    case readRequest(ReadRequest)
    case readResponse(ReadResponse)
    case statusRequest(StatusRequest)
    case statusResponse(StatusResponse)
    case queryRequest(QueryRequest)
    case queryResponse(QueryResponse)
    case promoteRequest(PromoteRequest)
    case promoteResponse(PromoteResponse)

    /// The type code the message travels under.
    public var type: MessageType {
        switch self {
        case .hello: .hello
        case .helloAck: .helloAck
        case .refuse: .refuse
        case .authProof: .authProof
        case .error: .error
        case .startStream: .startStream
        case .batches: .batches
        case .keepalive: .keepalive
        case .followerStatus: .followerStatus
        case .snapshotChunk: .snapshotChunk
        case .snapshotAck: .snapshotAck
        case .appendRequest: .appendRequest
        case .appendResponse: .appendResponse
        case .readRequest: .readRequest
        case .readResponse: .readResponse
        case .statusRequest: .statusRequest
        case .statusResponse: .statusResponse
        case .queryRequest: .queryRequest
        case .queryResponse: .queryResponse
        case .promoteRequest: .promoteRequest
        case .promoteResponse: .promoteResponse
        }
    }

    /// Decodes a frame's payload. Every length is checked against what is left and against its
    /// limit before it is used; every field against its range; the payload must be consumed
    /// exactly (except `Hello`, whose trailing extension bytes are ignored). Errors name the
    /// field and its offset, and the frame's stream offset when the frame came from a decoder.
    public init(frame: Frame) throws(ProtocolError) {
        guard frame.flags == 0 else {
            throw .invalidField(
                frame.type, field: "flags", problem: "frame flags \(ProtocolError.hex(frame.flags)) are not defined in version 1",
                payloadOffset: nil, streamOffset: frame.streamOffset)
        }
        self = try Self.decode(frame)
    }

    /// The message as one frame's bytes, header and CRC included.
    public func encodedFrame() throws(ProtocolError) -> [UInt8] {
        switch self {
        case .hello(let m): try Self.encode(m, as: .hello)
        case .helloAck(let m): try Self.encode(m, as: .helloAck)
        case .refuse(let m): try Self.encode(m, as: .refuse)
        case .authProof(let m): try Self.encode(m, as: .authProof)
        case .error(let m): try Self.encode(m, as: .error)
        case .startStream(let m): try Self.encode(m, as: .startStream)
        case .batches(let m): try Self.encode(m, as: .batches)
        case .keepalive(let m): try Self.encode(m, as: .keepalive)
        case .followerStatus(let m): try Self.encode(m, as: .followerStatus)
        case .snapshotChunk(let m): try Self.encode(m, as: .snapshotChunk)
        case .snapshotAck(let m): try Self.encode(m, as: .snapshotAck)
        case .appendRequest(let m): try Self.encode(m, as: .appendRequest)
        case .appendResponse(let m): try Self.encode(m, as: .appendResponse)
        case .readRequest(let m): try Self.encode(m, as: .readRequest)
        case .readResponse(let m): try Self.encode(m, as: .readResponse)
        case .statusRequest(let m): try Self.encode(m, as: .statusRequest)
        case .statusResponse(let m): try Self.encode(m, as: .statusResponse)
        case .queryRequest(let m): try Self.encode(m, as: .queryRequest)
        case .queryResponse(let m): try Self.encode(m, as: .queryResponse)
        case .promoteRequest(let m): try Self.encode(m, as: .promoteRequest)
        case .promoteResponse(let m): try Self.encode(m, as: .promoteResponse)
        }
    }

    /// The message as a ``Frame`` (payload only; no stream offset).
    public func frame() throws(ProtocolError) -> Frame {
        let bytes = try encodedFrame()
        return Frame(type: type, payload: Array(bytes[Frame.headerByteCount...]))
    }

    /// Checks every field against the specification without encoding.
    public func validate() throws(ProtocolError) {
        switch self {
        case .hello(let m): try m.validate()
        case .helloAck(let m): try m.validate()
        case .refuse(let m): try m.validate(as: .refuse)
        case .authProof(let m): try m.validate()
        case .error(let m): try m.validate(as: .error)
        case .startStream(let m): try m.validate()
        case .batches(let m): try m.validate()
        case .keepalive(let m): try m.validate()
        case .followerStatus(let m): try m.validate()
        case .snapshotChunk(let m): try m.validate()
        case .snapshotAck(let m): try m.validate()
        case .appendRequest(let m): try m.validate()
        case .appendResponse(let m): try m.validate()
        case .readRequest(let m): try m.validate()
        case .readResponse(let m): try m.validate()
        case .statusRequest(let m): try m.validate()
        case .statusResponse(let m): try m.validate()
        case .queryRequest(let m): try m.validate()
        case .queryResponse(let m): try m.validate()
        case .promoteRequest(let m): try m.validate()
        case .promoteResponse(let m): try m.validate()
        }
    }

    private static func encode<M: MessageBody>(_ message: M, as type: MessageType) throws(ProtocolError) -> [UInt8] {
        try message.validate(as: type)
        var writer = MessageWriter(payloadCapacity: message.payloadCapacity)
        message.write(to: &writer)
        return try writer.frame(type: type)
    }

    private static func decode(_ frame: Frame) throws(ProtocolError) -> Message {
        switch frame.type {
        case .hello: .hello(try read(Hello.self, frame))
        case .helloAck: .helloAck(try read(HelloAck.self, frame))
        case .refuse: .refuse(try read(Failure.self, frame))
        case .authProof: .authProof(try read(AuthProof.self, frame))
        case .error: .error(try read(Failure.self, frame))
        case .startStream: .startStream(try read(StartStream.self, frame))
        case .batches: .batches(try read(Batches.self, frame))
        case .keepalive: .keepalive(try read(Keepalive.self, frame))
        case .followerStatus: .followerStatus(try read(FollowerStatus.self, frame))
        case .snapshotChunk: .snapshotChunk(try read(SnapshotChunk.self, frame))
        case .snapshotAck: .snapshotAck(try read(SnapshotAck.self, frame))
        case .appendRequest: .appendRequest(try read(AppendRequest.self, frame))
        case .appendResponse: .appendResponse(try read(AppendResponse.self, frame))
        case .readRequest: .readRequest(try read(ReadRequest.self, frame))
        case .readResponse: .readResponse(try read(ReadResponse.self, frame))
        case .statusRequest: .statusRequest(try read(StatusRequest.self, frame))
        case .statusResponse: .statusResponse(try read(StatusResponse.self, frame))
        case .queryRequest: .queryRequest(try read(QueryRequest.self, frame))
        case .queryResponse: .queryResponse(try read(QueryResponse.self, frame))
        case .promoteRequest: .promoteRequest(try read(PromoteRequest.self, frame))
        case .promoteResponse: .promoteResponse(try read(PromoteResponse.self, frame))
        }
    }

    /// Parses (structure: lengths, truncation, UTF-8, batches), requires the payload to be
    /// consumed, then validates (ranges and relations between fields), locating any error.
    private static func read<M: MessageBody>(_: M.Type, _ frame: Frame) throws(ProtocolError) -> M {
        var reader = MessageReader(type: frame.type, payload: frame.payload)
        do {
            let message = try M.read(from: &reader)
            try reader.end()
            try message.validate(as: frame.type)
            return message
        } catch {
            let fieldReader = reader
            throw error.withPayloadOffset { fieldReader.offset(of: $0) }.located(inFrameAt: frame.streamOffset)
        }
    }
}

/// One message's payload: its rules, its encoder and its decoder.
protocol MessageBody: Hashable, Sendable {
    /// Checks every field (docs/PROTOCOL.md "valid if and only if", the conditions that are not
    /// about the payload's structure).
    func validate() throws(ProtocolError)
    /// The same, naming `type`, the type the message travels under, in errors (a `Failure`
    /// travels as `Refuse` or `Error`).
    func validate(as type: MessageType) throws(ProtocolError)
    /// Writes the payload; only called after `validate`.
    func write(to writer: inout MessageWriter)
    /// Reads the payload's fields, checking structure; `validate` runs afterwards.
    static func read(from reader: inout MessageReader) throws(ProtocolError) -> Self
    /// Bytes to reserve for the payload.
    var payloadCapacity: Int { get }
}

extension MessageBody {
    var payloadCapacity: Int { 64 }
    func validate(as type: MessageType) throws(ProtocolError) { try validate() }
}
