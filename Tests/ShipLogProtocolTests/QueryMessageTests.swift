import Testing
import ShipLogFormat
@testable import ShipLogProtocol

/// QueryRequest (0x26), QueryResponse (0x27), the failure `queryFailed` (15) and AppendResponse's
/// outcome 2, `appendedDegraded` (docs/PROTOCOL.md sections 6.5, 8.3, 8.6 and 11.3-11.5).
@Suite("Query messages and degraded appends")
struct QueryMessageTests {
    // MARK: Golden bytes (docs/PROTOCOL.md section 11), laid out by hand from the tables

    static let queryRequestHex = """
        53 4c 52 50 01 26 00 00 12 00 00 00 87 9e d0 37
        07 00 00 00 00 00 00 00 06 00 00 00 67 65 74 20
        6b 31
        """

    static let queryResponseHex = """
        53 4c 52 50 01 27 00 00 17 00 00 00 be 68 91 3d
        07 00 00 00 00 00 00 00 00 2b 00 00 00 00 00 00
        00 02 00 00 00 76 31
        """

    static let appendedDegradedHex = """
        53 4c 52 50 01 21 00 00 21 00 00 00 9e 1d cc 78
        09 00 00 00 00 00 00 00 02 2c 00 00 00 00 00 00
        00 2e 00 00 00 00 00 00 00 03 00 00 00 00 00 00
        00
        """

    /// The payloads of the worked examples, field by field from the tables.
    static let queryRequestPayload: [UInt8] =
        Wire.le(UInt64(7))  //  0 requestID
        + Wire.le(UInt32(6))  //  8 queryLength
        + Wire.ascii("get k1")  // 12 query

    static let queryResponsePayload: [UInt8] =
        Wire.le(UInt64(7))  //  0 requestID
        + [0]  //  8 outcome: result
        + Wire.le(UInt64(43))  //  9 appliedLSN
        + Wire.le(UInt32(2))  // 17 resultLength
        + Wire.ascii("v1")  // 21 result

    static let appendedDegradedPayload: [UInt8] =
        Wire.le(UInt64(9))  //  0 requestID
        + [2]  //  8 outcome: appendedDegraded
        + Wire.le(UInt64(44))  //  9 firstLSN
        + Wire.le(UInt64(46))  // 17 lastLSN
        + Wire.le(UInt64(3))  // 25 epoch

    static let queryRequest = Message.queryRequest(.init(requestID: 7, query: Wire.ascii("get k1")))
    static let queryResponse = Message.queryResponse(.init(requestID: 7, outcome: .result(appliedLSN: LSN(43), Wire.ascii("v1"))))
    static let appendedDegraded = Message.appendResponse(
        .init(requestID: 9, outcome: .appendedDegraded(LSNRange(first: LSN(44), last: LSN(46)), epoch: Epoch(3))))

    @Test("golden bytes: a QueryRequest laid out by hand matches the encoder and section 11.3")
    func goldenQueryRequest() throws {
        #expect(Self.queryRequestPayload.count == 18)
        let hand = Wire.frame(type: 0x26, payload: Self.queryRequestPayload)
        let encoded = try Self.queryRequest.encodedFrame()
        #expect(encoded == hand)
        #expect(encoded == Wire.hex(Self.queryRequestHex))
        #expect(try Wire.decodeMessage(hand) == Self.queryRequest)
    }

    @Test("golden bytes: a QueryResponse laid out by hand matches the encoder and section 11.4")
    func goldenQueryResponse() throws {
        #expect(Self.queryResponsePayload.count == 23)
        let hand = Wire.frame(type: 0x27, payload: Self.queryResponsePayload)
        let encoded = try Self.queryResponse.encodedFrame()
        #expect(encoded == hand)
        #expect(encoded == Wire.hex(Self.queryResponseHex))
        #expect(try Wire.decodeMessage(hand) == Self.queryResponse)
    }

    @Test("golden bytes: appendedDegraded is appended's layout with outcome 2 (section 11.5)")
    func goldenAppendedDegraded() throws {
        #expect(Self.appendedDegradedPayload.count == 33)
        let hand = Wire.frame(type: 0x21, payload: Self.appendedDegradedPayload)
        let encoded = try Self.appendedDegraded.encodedFrame()
        #expect(encoded == hand)
        #expect(encoded == Wire.hex(Self.appendedDegradedHex))
        #expect(try Wire.decodeMessage(hand) == Self.appendedDegraded)
        // The same 24 bytes as `appended`: only the outcome byte differs, so a client can never
        // mistake one for the other.
        let appended = Message.appendResponse(.init(requestID: 9, outcome: .appended(LSNRange(first: LSN(44), last: LSN(46)), epoch: Epoch(3))))
        var appendedPayload = Self.appendedDegradedPayload
        appendedPayload[8] = 0
        #expect(try appended.frame().payload == appendedPayload)
        #expect(try Wire.decodeMessage(Wire.frame(type: 0x21, payload: appendedPayload)) == appended)
    }

    // MARK: Round trips

    @Test("queries and results round-trip at every size class, up to their limits")
    func roundTripsUpToTheLimits() throws {
        var rng = WireRNG(seed: 26)
        let messages: [Message] = [
            .queryRequest(.init(requestID: 0, query: [])),
            .queryRequest(.init(requestID: .max, query: [0])),
            .queryRequest(.init(requestID: 3, query: rng.bytes(1000))),
            .queryRequest(.init(requestID: 4, query: rng.bytes(ProtocolLimits.queryBytesMax))),
            .queryResponse(.init(requestID: 0, outcome: .result(appliedLSN: .zero, []))),
            .queryResponse(.init(requestID: .max, outcome: .result(appliedLSN: LSN(.max), rng.bytes(300)))),
            .queryResponse(.init(requestID: 5, outcome: .result(appliedLSN: LSN(1), rng.bytes(ProtocolLimits.queryResultBytesMax)))),
            .queryResponse(.init(requestID: 6, outcome: .failed(.init(.queryFailed, text: "key of 300 bytes exceeds 256")))),
            .queryResponse(.init(requestID: 7, outcome: .failed(.init(.queryFailed)))),
            .queryResponse(.init(requestID: 8, outcome: .failed(.init(.overloaded, text: "too many queries")))),
            .appendResponse(.init(requestID: 1, outcome: .appendedDegraded(LSNRange(first: LSN(1), last: LSN(1)), epoch: Epoch(1)))),
            .appendResponse(.init(requestID: .max, outcome: .appendedDegraded(LSNRange(first: LSN(5), last: LSN(.max)), epoch: Epoch(.max)))),
        ]
        for message in messages {
            try message.validate()
            let bytes = try message.encodedFrame()
            #expect(bytes[5] == message.type.rawValue)
            #expect(try Wire.decodeMessage(bytes) == message, "\(message.type)")
            #expect(try Message(frame: message.frame()) == message)
            // Fed in small random pieces, as from a socket.
            var chunks = WireRNG(seed: UInt64(bytes.count))
            let frames = try Wire.decodeAll(bytes) { _ in Int.random(in: 1...70_000, using: &chunks) }
            #expect(try frames.map { try $0.message() } == [message])
        }
    }

    // MARK: Truncations and trailing bytes

    /// One field of a payload as its table lays it out: name, payload offset, size.
    typealias Field = (name: String, offset: Int, size: Int)

    /// Every strict prefix of `payload` must fail on the field it cuts, with `needed` the field's
    /// size and `available` what is left of it; one byte more must fail as trailing bytes.
    static func expectEveryTruncationRejected(type: MessageType, payload: [UInt8], fields: [Field]) {
        #expect(fields.last.map { $0.offset + $0.size } == payload.count, "the field table covers the payload")
        for length in 0..<payload.count {
            let field = fields.first { $0.offset + $0.size > length }!
            let expected = ProtocolError.truncatedMessage(
                type, field: field.name, payloadOffset: field.offset, needed: field.size, available: length - field.offset, streamOffset: 0)
            let error = MessageTests.error(type.rawValue, Array(payload.prefix(length)))
            #expect(error == expected, "\(type.name) cut to \(length) bytes: \(String(describing: error))")
        }
        #expect(MessageTests.error(type.rawValue, payload) == nil, "\(type.name): the whole payload is valid")
        let extended = MessageTests.error(type.rawValue, payload + [0])
        #expect(extended == .trailingBytes(type, count: 1, payloadOffset: payload.count, streamOffset: 0))
    }

    @Test("a QueryRequest cut anywhere is refused on the field it cuts, never read as a shorter query")
    func queryRequestTruncations() {
        Self.expectEveryTruncationRejected(
            type: .queryRequest, payload: Self.queryRequestPayload,
            fields: [("requestID", 0, 8), ("queryLength", 8, 4), ("query", 12, 6)])
    }

    @Test("a QueryResponse result cut anywhere is refused on the field it cuts")
    func queryResponseResultTruncations() {
        Self.expectEveryTruncationRejected(
            type: .queryResponse, payload: Self.queryResponsePayload,
            fields: [("requestID", 0, 8), ("outcome", 8, 1), ("appliedLSN", 9, 8), ("resultLength", 17, 4), ("result", 21, 2)])
    }

    @Test("a QueryResponse failure cut anywhere is refused on the field it cuts")
    func queryResponseFailureTruncations() throws {
        let payload = try Message.queryResponse(.init(requestID: 7, outcome: .failed(.init(.queryFailed, text: "bad key")))).frame().payload
        #expect(payload == Wire.le(UInt64(7)) + [1] + Wire.le(UInt16(15)) + Wire.le(UInt16(7)) + Wire.ascii("bad key"))
        Self.expectEveryTruncationRejected(
            type: .queryResponse, payload: payload,
            fields: [("requestID", 0, 8), ("outcome", 8, 1), ("code", 9, 2), ("text", 11, 2), ("text", 13, 7)])
    }

    @Test("an appendedDegraded response cut anywhere is refused on the field it cuts")
    func appendedDegradedTruncations() {
        Self.expectEveryTruncationRejected(
            type: .appendResponse, payload: Self.appendedDegradedPayload,
            fields: [("requestID", 0, 8), ("outcome", 8, 1), ("firstLSN", 9, 8), ("lastLSN", 17, 8), ("epoch", 25, 8)])
    }

    // MARK: Hostile lengths and values

    /// The field and payload offset of an `invalidField` error, or `nil` for any other outcome.
    static func invalidField(_ type: UInt8, _ payload: [UInt8]) -> (String, Int?)? {
        guard case .invalidField(_, let field, _, let offset, _)? = MessageTests.error(type, payload) else { return nil }
        return (field, offset)
    }

    @Test("a query length over queryBytesMax is refused from its 4 bytes, before the query is copied")
    func oversizeQueryLength() throws {
        let requestID = Wire.le(UInt64(1))
        // Claimed but absent: the limit is checked first, so this is no truncation.
        #expect(Self.invalidField(0x26, requestID + Wire.le(UInt32.max))! == ("queryLength", 8))
        #expect(Self.invalidField(0x26, requestID + Wire.le(UInt32(ProtocolLimits.queryBytesMax + 1)))! == ("queryLength", 8))
        // Claimed and present: still one byte over.
        let over = [UInt8](repeating: 0x61, count: ProtocolLimits.queryBytesMax + 1)
        #expect(Self.invalidField(0x26, requestID + Wire.le(UInt32(over.count)) + over)! == ("queryLength", 8))
        // Exactly the limit is accepted.
        let atLimit = Array(over.dropLast())
        #expect(try Wire.decodeMessage(Wire.frame(type: 0x26, payload: requestID + Wire.le(UInt32(atLimit.count)) + atLimit))
            == .queryRequest(.init(requestID: 1, query: atLimit)))
        let description = MessageTests.error(0x26, requestID + Wire.le(UInt32.max))!.description
        #expect(description.contains("QueryRequest.queryLength") && description.contains("queryBytesMax"))
    }

    @Test("a result length over queryResultBytesMax is refused from its 4 bytes, before the result is copied")
    func oversizeResultLength() throws {
        let fixed = Wire.le(UInt64(1)) + [0] + Wire.le(UInt64(43))
        #expect(Self.invalidField(0x27, fixed + Wire.le(UInt32.max))! == ("resultLength", 17))
        #expect(Self.invalidField(0x27, fixed + Wire.le(UInt32(ProtocolLimits.queryResultBytesMax + 1)))! == ("resultLength", 17))
        let over = [UInt8](repeating: 0x62, count: ProtocolLimits.queryResultBytesMax + 1)
        #expect(Self.invalidField(0x27, fixed + Wire.le(UInt32(over.count)) + over)! == ("resultLength", 17))
        let atLimit = Array(over.dropLast())
        #expect(try Wire.decodeMessage(Wire.frame(type: 0x27, payload: fixed + Wire.le(UInt32(atLimit.count)) + atLimit))
            == .queryResponse(.init(requestID: 1, outcome: .result(appliedLSN: LSN(43), atLimit))))
    }

    @Test("unknown outcomes and failure codes are refused, not skipped")
    func unknownOutcomesAndCodes() {
        // QueryResponse has outcomes 0 and 1 only; AppendResponse 0, 1 and 2.
        #expect(Self.invalidField(0x27, Wire.le(UInt64(1)) + [2] + Wire.le(UInt64(43)) + Wire.le(UInt32(0)))! == ("outcome", 8))
        #expect(Self.invalidField(0x21, Wire.le(UInt64(1)) + [3] + Wire.le(UInt64(1)) + Wire.le(UInt64(1)) + Wire.le(UInt64(1)))! == ("outcome", 8))
        // Failure code 15 is queryFailed and 16 roleChangeRefused (no detail); 17 is unknown in version 1.
        #expect(MessageTests.error(0x27, Wire.le(UInt64(1)) + [1] + Wire.le(UInt16(15)) + Wire.le(UInt16(0))) == nil)
        #expect(MessageTests.error(0x03, Wire.le(UInt16(15)) + Wire.le(UInt16(0))) == nil)
        #expect(Self.invalidField(0x27, Wire.le(UInt64(1)) + [1] + Wire.le(UInt16(17)) + Wire.le(UInt16(0)))! == ("code", 9))
        #expect(Message.Failure.Reason.queryFailed.code == 15)
        #expect(Message.Failure(.queryFailed, text: "bad key").description == "query failed: bad key")
    }

    @Test("an appendedDegraded range that is empty, starts at LSN 0 or names epoch 0 is refused")
    func hostileAppendedDegraded() {
        func degraded(first: UInt64, last: UInt64, epoch: UInt64) -> [UInt8] {
            Wire.le(UInt64(1)) + [2] + Wire.le(first) + Wire.le(last) + Wire.le(epoch)
        }
        #expect(Self.invalidField(0x21, degraded(first: 5, last: 4, epoch: 1))! == ("lastLSN", 17))
        #expect(Self.invalidField(0x21, degraded(first: 0, last: 4, epoch: 1))! == ("firstLSN", 9))
        #expect(Self.invalidField(0x21, degraded(first: 1, last: 4, epoch: 0))! == ("epoch", 25))
    }

    @Test("the new message types have the codes of section 4 and fit one frame at their limits")
    func codesAndLimits() {
        #expect(MessageType.queryRequest.rawValue == 0x26)
        #expect(MessageType.queryResponse.rawValue == 0x27)
        #expect(MessageType.promoteRequest.rawValue == 0x28 && MessageType.promoteResponse.rawValue == 0x29)
        #expect(MessageType(rawValue: 0x2A) == nil)
        #expect(MessageType.queryRequest.description == "QueryRequest (0x26)")
        #expect(ProtocolLimits.queryBytesMax == 65_536)
        #expect(ProtocolLimits.queryResultBytesMax == 4_194_304)
        // A result as large as the largest record fits, as does a maximal failure.
        #expect(ProtocolLimits.queryResultBytesMax == FormatLimits.recordBytesMax)
        #expect(16 + Message.QueryResponse.resultFixedByteCount + ProtocolLimits.queryResultBytesMax <= ProtocolLimits.frameBytesMax)
    }
}

@Suite("Promote messages")
struct PromoteMessageTests {
    @Test func goldenPromoteRequestAndResponse() throws {
        let request = try Message.promoteRequest(.init(requestID: 7, minimumEpoch: Epoch(3))).encodedFrame()
        #expect(Array(request[0..<12]) == [0x53, 0x4c, 0x52, 0x50, 0x01, 0x28, 0x00, 0x00, 16, 0, 0, 0])
        #expect(Array(request[16...]) == [7, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0])
        let response = try Message.promoteResponse(.init(requestID: 7, outcome: .promoted(epoch: Epoch(4), firstLSN: LSN(1201)))).encodedFrame()
        #expect(response[5] == 0x29)
        #expect(Array(response[16...]) == [7, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0xB1, 0x04, 0, 0, 0, 0, 0, 0])
    }

    @Test func everyTruncationOfAPromoteMessageIsRejected() throws {
        for message in [
            Message.promoteRequest(.init(requestID: 7, minimumEpoch: Epoch(3))),
            Message.promoteResponse(.init(requestID: 7, outcome: .promoted(epoch: Epoch(4), firstLSN: LSN(1201)))),
        ] {
            let frame = try message.frame()
            for cut in 0..<frame.payload.count {
                #expect(throws: ProtocolError.self) { try Message(frame: Frame(type: frame.type, payload: Array(frame.payload[..<cut]))) }
            }
            #expect(throws: ProtocolError.self) { try Message(frame: Frame(type: frame.type, payload: frame.payload + [0])) }
        }
    }

    @Test func promotedWithEpochOrLSNZeroIsRejected() {
        #expect(throws: ProtocolError.self) { try Message.promoteResponse(.init(requestID: 1, outcome: .promoted(epoch: Epoch(0), firstLSN: LSN(1)))).encodedFrame() }
        #expect(throws: ProtocolError.self) { try Message.promoteResponse(.init(requestID: 1, outcome: .promoted(epoch: Epoch(1), firstLSN: LSN(0)))).encodedFrame() }
    }
}
