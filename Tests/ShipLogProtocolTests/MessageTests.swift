import Testing
import ShipLogFormat
@testable import ShipLogProtocol

@Suite("Messages")
struct MessageTests {
    // MARK: Round trips

    @Test("every message type round-trips, through the frame decoder and through Frame")
    func roundTripEveryMessage() throws {
        let messages = Wire.sampleMessages()
        #expect(Set(messages.map(\.type)) == Set(MessageType.allCases))
        for message in messages {
            let bytes = try message.encodedFrame()
            #expect(bytes[5] == message.type.rawValue)
            #expect(try Wire.decodeMessage(bytes) == message, "\(message.type)")
            let frame = try message.frame()
            #expect(frame.type == message.type)
            #expect(frame.payload == Array(bytes[16...]))
            #expect(try Message(frame: frame) == message)
            try message.validate()
        }
    }

    @Test("every failure reason round-trips in Refuse, Error, AppendResponse, ReadResponse and QueryResponse")
    func failuresRoundTrip() throws {
        let failures = Wire.sampleFailures()
        #expect(Set(failures.map(\.reason.code)) == Set(1...16))
        for failure in failures {
            for message: Message in [
                .refuse(failure), .error(failure), .appendResponse(.init(requestID: 9, outcome: .failed(failure))),
                .readResponse(.init(requestID: 9, outcome: .failed(failure))),
                .queryResponse(.init(requestID: 9, outcome: .failed(failure))),
            ] {
                #expect(try Wire.decodeMessage(message.encodedFrame()) == message)
            }
        }
    }

    // MARK: Golden bytes

    // The Hello of docs/PROTOCOL.md section 11.2, as printed there.
    static let helloHex = """
        53 4c 52 50 01 01 00 00 43 00 00 00 8e 02 10 1e
        03 00 00 00 00 00 00 00 2b 00 00 00 00 00 00 00
        00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f
        10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f
        a6 11 97 28 01 00 01 00 02 04 70 72 6f 64 04 64
        62 2d 32
        """

    @Test("golden bytes: a Hello laid out by hand from the tables")
    func goldenHello() throws {
        var payload: [UInt8] = []
        payload += Wire.le(UInt64(3))  //  0 epoch
        payload += Wire.le(UInt64(43))  //  8 lastLSN
        payload += Wire.nonce(0)  // 16 nonce, 00 01 ... 1f
        payload += Wire.le(UInt32(0x2897_11A6))  // 48 lastBatchCRC
        payload += Wire.le(UInt16(1))  // 52 versionMin
        payload += Wire.le(UInt16(1))  // 54 versionMax
        payload += [2]  // 56 role: follower
        payload += [4] + Wire.ascii("prod")  // 57 clusterID
        payload += [4] + Wire.ascii("db-2")  // 62 nodeID
        #expect(payload.count == 67)
        let hand = Wire.frame(type: 0x01, payload: payload)
        let message = Message.hello(
            .init(
                versions: 1...1, clusterID: "prod", nodeID: "db-2", role: .follower, epoch: Epoch(3), lastLSN: LSN(43),
                lastBatchCRC: 0x2897_11A6, nonce: Wire.nonce(0)))
        let encoded = try message.encodedFrame()
        #expect(encoded == hand)
        #expect(encoded == Wire.hex(Self.helloHex))
        #expect(try Wire.decodeMessage(hand) == message)
    }

    @Test("Hello ignores extension bytes after nodeID (room for later versions)")
    func helloExtension() throws {
        let hello = Message.Hello(
            clusterID: "prod", nodeID: "db-2", role: .follower, epoch: Epoch(3), lastLSN: LSN(43), lastBatchCRC: 1, nonce: Wire.nonce(0))
        let payload = try Message.hello(hello).frame().payload
        let extended = Wire.frame(type: 0x01, payload: payload + [9, 9, 9, 9])
        #expect(try Wire.decodeMessage(extended) == .hello(hello))
        // Every other message must be consumed exactly.
        let keepalive = try Message.keepalive(.init(writtenLSN: LSN(1), flushedLSN: LSN(1), timestamp: 0, replyRequested: false)).frame()
        #expect(throws: ProtocolError.trailingBytes(.keepalive, count: 1, payloadOffset: 25, streamOffset: 0)) {
            try Wire.decodeMessage(Wire.frame(type: 0x12, payload: keepalive.payload + [0]))
        }
    }

    // MARK: Hostile payloads inside frames whose CRC is valid

    /// Decodes `payload` as a frame of `type` (with a valid CRC) and returns the error.
    static func error(_ type: UInt8, _ payload: [UInt8]) -> ProtocolError? {
        do {
            _ = try Wire.decodeMessage(Wire.frame(type: type, payload: payload))
            return nil
        } catch {
            return error
        }
    }

    /// The field an error names, and its payload offset.
    static func field(_ error: ProtocolError?) -> (String, Int?)? {
        switch error {
        case .invalidField(_, let field, _, let offset, _)?: (field, offset)
        case .truncatedMessage(_, let field, let offset, _, _, _)?: (field, offset)
        case .invalidBatch(_, let index, let offset, _, _)?: ("batches[\(index)]", offset)
        case .trailingBytes(_, _, let offset, _)?: ("(end)", offset)
        default: nil
        }
    }

    static func helloPrefix(role: UInt8 = 2, versionMin: UInt16 = 1, versionMax: UInt16 = 1) -> [UInt8] {
        Wire.le(UInt64(3)) + Wire.le(UInt64(43)) + Wire.nonce(0) + Wire.le(UInt32(1)) + Wire.le(versionMin) + Wire.le(versionMax) + [role]
    }

    @Test("hostile lengths and values in handshake messages are rejected, naming field and offset")
    func hostileHandshake() {
        let hello = Self.helloPrefix()
        #expect(Self.field(Self.error(0x01, hello + [65] + [UInt8](repeating: 0x61, count: 65) + [1, 0x6E]))! == ("clusterID", 57))
        #expect(Self.field(Self.error(0x01, hello + [0] + [1, 0x6E]))! == ("clusterID", 57))
        #expect(Self.field(Self.error(0x01, hello + [255] + [0x61, 0x61]))! == ("clusterID", 57))
        #expect(Self.field(Self.error(0x01, hello + [1, 0x61] + [64, 0x6E, 0x6E, 0x6E]))! == ("nodeID", 60))
        #expect(Self.field(Self.error(0x01, hello + [1, 0xFF] + [1, 0x6E]))! == ("clusterID", 58))  // not UTF-8
        #expect(Self.field(Self.error(0x01, Array(hello.prefix(20))))! == ("nonce", 16))
        #expect(Self.field(Self.error(0x01, Self.helloPrefix(role: 9) + [1, 0x61, 1, 0x6E]))! == ("role", 56))
        #expect(Self.field(Self.error(0x01, Self.helloPrefix(role: 0) + [1, 0x61, 1, 0x6E]))! == ("role", 56))
        #expect(Self.field(Self.error(0x01, Self.helloPrefix(versionMin: 2, versionMax: 1) + [1, 0x61, 1, 0x6E]))! == ("versionMax", 54))
        #expect(Self.field(Self.error(0x01, Self.helloPrefix(versionMin: 0, versionMax: 1) + [1, 0x61, 1, 0x6E]))! == ("versionMin", 52))
        // lastBatchCRC without a last LSN.
        let empty = Wire.le(UInt64(0)) + Wire.le(UInt64(0)) + Wire.nonce(0) + Wire.le(UInt32(5)) + Wire.le(UInt16(1)) + Wire.le(UInt16(1)) + [3, 1, 0x61, 1, 0x6E]
        #expect(Self.field(Self.error(0x01, empty))! == ("lastBatchCRC", 48))

        #expect(Self.field(Self.error(0x04, Wire.nonce(0) + [0]))! == ("(end)", 32))
        #expect(Self.field(Self.error(0x04, Array(Wire.nonce(0).prefix(31))))! == ("proof", 0))

        // Refuse: a text length far over 1 KiB, a text cut short, an unknown code, bad details.
        #expect(Self.field(Self.error(0x03, Wire.le(UInt16(2)) + Wire.le(UInt16(0xFFFF)) + [0x61]))! == ("text", 2))
        #expect(Self.field(Self.error(0x03, Wire.le(UInt16(2)) + Wire.le(UInt16(1025)) + [UInt8](repeating: 0x61, count: 1025)))! == ("text", 2))
        #expect(Self.field(Self.error(0x03, Wire.le(UInt16(2)) + Wire.le(UInt16(10)) + [0x61, 0x62, 0x63]))! == ("text", 4))
        #expect(Self.field(Self.error(0x03, Wire.le(UInt16(99)) + Wire.le(UInt16(0))))! == ("code", 0))
        #expect(Self.field(Self.error(0x05, Wire.le(UInt16(0)) + Wire.le(UInt16(0))))! == ("code", 0))
        #expect(Self.field(Self.error(0x03, Wire.le(UInt16(4)) + [3, 0xC3, 0x28, 0x61] + Wire.le(UInt16(0))))! == ("detail", 3))
        #expect(Self.field(Self.error(0x03, Wire.le(UInt16(1)) + Wire.le(UInt16(3)) + Wire.le(UInt16(2)) + Wire.le(UInt16(0))))! == ("detail", 2))
        #expect(Self.field(Self.error(0x03, Wire.le(UInt16(5)) + Wire.le(UInt64(0)) + Wire.le(UInt32(1)) + Wire.le(UInt16(0))))! == ("detail", 2))
        #expect(Self.field(Self.error(0x03, Wire.le(UInt16(6)) + Wire.le(UInt64(0)) + Wire.le(UInt16(0))))! == ("detail", 2))
        #expect(Self.field(Self.error(0x03, Wire.le(UInt16(9)) + Wire.le(UInt64(5)) + Wire.le(UInt64(4)) + Wire.le(UInt16(0))))! == ("detail", 2))
        #expect(Self.field(Self.error(0x03, Wire.le(UInt16(11)) + Wire.le(UInt64(5)) + Wire.le(UInt64(3)) + Wire.le(UInt16(0))))! == ("detail", 2))
        #expect(Self.field(Self.error(0x03, Wire.le(UInt16(11)) + Wire.le(UInt64(0)) + Wire.le(UInt64(0)) + Wire.le(UInt16(0))))! == ("detail", 2))
        #expect(Self.field(Self.error(0x03, Wire.le(UInt16(3))))! == ("text", 2))
    }

    @Test("hostile counts and lengths in replication messages are rejected before allocation")
    func hostileReplication() {
        let fixed = Wire.le(UInt64(100)) + Wire.le(UInt64(50)) + Wire.le(UInt64(0))
        let batches = Wire.batches(count: 2)
        let bytes0 = batches[0].bytes
        let bytes1 = batches[1].bytes

        #expect(Self.field(Self.error(0x11, fixed + Wire.le(UInt32.max)))! == ("batchCount", 24))
        #expect(Self.field(Self.error(0x11, fixed + Wire.le(UInt32(65_537)) + bytes0))! == ("batchCount", 24))
        #expect(Self.field(Self.error(0x11, fixed + Wire.le(UInt32(0))))! == ("batchCount", 24))
        #expect(Self.field(Self.error(0x11, fixed + Wire.le(UInt32(2)) + bytes0))! == ("batches[1]", 28 + bytes0.count))
        #expect(Self.field(Self.error(0x11, fixed + Wire.le(UInt32(1)) + bytes0 + [0]))! == ("(end)", 28 + bytes0.count))
        #expect(Self.field(Self.error(0x11, fixed + Wire.le(UInt32(1)) + bytes0.dropLast()))! == ("batches[0]", 28))
        #expect(Self.field(Self.error(0x11, Wire.le(UInt64(1)) + Wire.le(UInt64(2)) + Wire.le(UInt64(0)) + Wire.le(UInt32(1)) + bytes0))! == ("flushedLSN", 8))
        // writtenLSN before the last LSN shipped.
        #expect(Self.field(Self.error(0x11, Wire.le(UInt64(2)) + Wire.le(UInt64(0)) + Wire.le(UInt64(0)) + Wire.le(UInt32(1)) + bytes0))! == ("writtenLSN", 0))

        // A batch header with a valid batchCRC and an absurd storedLength.
        var hostile = bytes0
        hostile.replaceSubrange(24..<28, with: Wire.le(UInt32(0xFFFF_FFF0)))
        hostile.replaceSubrange(4..<8, with: Wire.le(Wire.crc32c(hostile[8..<64])))
        let hostileError = Self.error(0x11, fixed + Wire.le(UInt32(1)) + hostile)
        guard case .invalidBatch(.batches, 0, 28, .lengthOutOfRange, 0)? = hostileError else {
            Issue.record("expected lengthOutOfRange, got \(String(describing: hostileError))")
            return
        }
        // A payload bit flip inside a batch (the frame CRC recomputed): the batch's own CRC catches it.
        var flipped = bytes0
        flipped[70] ^= 0x10
        guard case .invalidBatch(.batches, 0, 28, .payloadChecksumMismatch, _)? = Self.error(0x11, fixed + Wire.le(UInt32(1)) + flipped) else {
            Issue.record("expected payloadChecksumMismatch")
            return
        }
        // Batches out of order, or one that does not chain.
        #expect(Self.field(Self.error(0x11, fixed + Wire.le(UInt32(2)) + bytes1 + bytes0))! == ("batches[1]", 28 + bytes1.count))
        let other = Wire.batches(count: 1, firstLSN: 4, previousCRC: 0xBAD, seed: 3)[0].bytes
        #expect(Self.field(Self.error(0x11, fixed + Wire.le(UInt32(2)) + bytes0 + other))! == ("batches[1]", 28 + bytes0.count))
        // Epochs going back.
        let epoch2 = Wire.batches(count: 1, epoch: 2)[0]
        let epoch1 = Wire.batches(count: 1, firstLSN: 4, previousCRC: epoch2.header.batchCRC, epoch: 1)[0]
        #expect(Self.field(Self.error(0x11, fixed + Wire.le(UInt32(2)) + epoch2.bytes + epoch1.bytes))! == ("batches[1]", 28 + epoch2.bytes.count))
        // ReadResponse: the same batch rules, up to 65,536 batches, possibly none.
        #expect(Self.field(Self.error(0x23, Wire.le(UInt64(1)) + [0] + Wire.le(UInt64(9)) + Wire.le(UInt32.max)))! == ("batchCount", 17))
        #expect(Self.field(Self.error(0x23, Wire.le(UInt64(1)) + [2]))! == ("outcome", 8))

        // Keepalive, FollowerStatus, StartStream, snapshots.
        let keepalive = Wire.le(UInt64(5)) + Wire.le(UInt64(5)) + Wire.le(UInt64(0))
        #expect(Self.field(Self.error(0x12, keepalive + [2]))! == ("replyRequested", 24))
        #expect(Self.field(Self.error(0x12, keepalive))! == ("replyRequested", 24))
        #expect(Self.field(Self.error(0x12, Wire.le(UInt64(5)) + Wire.le(UInt64(6)) + Wire.le(UInt64(0)) + [0]))! == ("flushedLSN", 8))
        #expect(Self.field(Self.error(0x13, Wire.le(UInt64(5)) + Wire.le(UInt64(5)) + Wire.le(UInt64(6)) + Wire.le(UInt64(0))))! == ("appliedLSN", 16))
        #expect(Self.field(Self.error(0x10, Wire.le(UInt64(0))))! == ("fromLSN", 0))
        #expect(Self.field(Self.error(0x10, [1, 2, 3]))! == ("fromLSN", 0))
        let chunk = Wire.le(UInt64(40)) + Wire.le(UInt64(10)) + Wire.le(UInt64(8)) + Wire.le(UInt32(0))
        #expect(Self.field(Self.error(0x14, chunk + [1, 2, 3]))! == ("offset", 16))
        #expect(Self.field(Self.error(0x14, chunk))! == ("data", 28))
        #expect(Self.field(Self.error(0x14, Wire.le(UInt64(40)) + Wire.le(UInt64.max) + Wire.le(UInt64(0)) + Wire.le(UInt32(0)) + [1]))! == ("totalBytes", 8))
        #expect(Self.field(Self.error(0x14, Wire.le(UInt64(40)) + Wire.le(UInt64(10)) + Wire.le(UInt64.max) + Wire.le(UInt32(0)) + [1]))! == ("offset", 16))
        #expect(Self.field(Self.error(0x15, Wire.le(UInt64(0)) + Wire.le(UInt64(0))))! == ("snapshotLSN", 0))
    }

    @Test("hostile client requests are rejected")
    func hostileClient() {
        func append(count: UInt32, kind: UInt8 = 0, followers: UInt8 = 0, timeout: UInt32 = 0, block: [UInt8]) -> [UInt8] {
            Wire.le(UInt64(1)) + Wire.le(count) + Wire.le(timeout) + [kind, followers] + block
        }
        #expect(Self.field(Self.error(0x20, append(count: .max, block: [0])))! == ("recordCount", 8))
        #expect(Self.field(Self.error(0x20, append(count: 0, block: [])))! == ("recordCount", 8))
        #expect(Self.field(Self.error(0x20, append(count: 1, block: [0x80, 0x80, 0x80, 0x80, 0x10])))! == ("recordBlock", 18))  // varint over 32 bits
        #expect(Self.field(Self.error(0x20, append(count: 1, block: [0xE8, 0x07, 1, 2, 3])))! == ("recordBlock", 18))  // 1000 bytes claimed
        #expect(Self.field(Self.error(0x20, append(count: 1, block: [0x80, 0x80, 0x80, 0x04])))! == ("recordBlock", 18))  // 8 MiB > recordBytesMax
        #expect(Self.field(Self.error(0x20, append(count: 1, block: [1, 7, 0])))! == ("recordBlock", 18))  // trailing byte
        #expect(Self.field(Self.error(0x20, append(count: 2, block: [1, 7])))! == ("recordBlock", 18))
        #expect(Self.field(Self.error(0x20, append(count: 1, kind: 1, followers: 0, block: [0])))! == ("commitKind", 16))
        #expect(Self.field(Self.error(0x20, append(count: 1, kind: 0, followers: 1, block: [0])))! == ("commitKind", 16))
        #expect(Self.field(Self.error(0x20, append(count: 1, kind: 6, block: [0])))! == ("commitKind", 16))
        #expect(Self.field(Self.error(0x20, append(count: 1, kind: 5, followers: 1, block: [0])))! == ("commitKind", 16))
        #expect(Self.field(Self.error(0x20, append(count: 1, timeout: 600_001, block: [0])))! == ("timeoutMillis", 12))
        let big = append(count: 1, block: [0x80, 0x80, 0x80, 0x08] + [UInt8](repeating: 0, count: ProtocolLimits.appendRecordBlockBytesMax - 3))
        #expect(Self.field(Self.error(0x20, big))! == ("recordBlock", 18))
        // A non-minimal varint is accepted (docs/FORMAT.md section 7), and kept as sent.
        let lenient = try? Wire.decodeMessage(Wire.frame(type: 0x20, payload: append(count: 1, block: [0x81, 0x00, 7])))
        guard case .appendRequest(let request)? = lenient else {
            Issue.record("non-minimal varint refused")
            return
        }
        #expect(request.records == [[7]])
        #expect(request.recordBlock == [0x81, 0x00, 7])

        #expect(Self.field(Self.error(0x21, Wire.le(UInt64(1)) + [0] + Wire.le(UInt64(5)) + Wire.le(UInt64(4)) + Wire.le(UInt64(1))))! == ("lastLSN", 17))
        #expect(Self.field(Self.error(0x21, Wire.le(UInt64(1)) + [0] + Wire.le(UInt64(0)) + Wire.le(UInt64(4)) + Wire.le(UInt64(1))))! == ("firstLSN", 9))
        #expect(Self.field(Self.error(0x21, Wire.le(UInt64(1)) + [0] + Wire.le(UInt64(1)) + Wire.le(UInt64(4)) + Wire.le(UInt64(0))))! == ("epoch", 25))
        #expect(Self.field(Self.error(0x22, Wire.le(UInt64(1)) + Wire.le(UInt64(0)) + Wire.le(UInt32(0)) + Wire.le(UInt32(0))))! == ("fromLSN", 8))
        #expect(Self.field(Self.error(0x22, Wire.le(UInt64(1)) + Wire.le(UInt64(1)) + Wire.le(UInt32(0)) + Wire.le(UInt32.max)))! == ("waitMillis", 20))
        #expect(Self.field(Self.error(0x24, Wire.le(UInt64(1)) + [0]))! == ("(end)", 8))
        #expect(Self.field(Self.error(0x25, Wire.le(UInt64(1)) + [0x7B, 0xC0, 0x7D]))! == ("json", 8))
        #expect(Self.field(Self.error(0x25, Wire.le(UInt64(1)) + [UInt8](repeating: 0x20, count: 65_537)))! == ("json", 8))
    }

    @Test("message errors locate the field in the stream and describe it")
    func errorsNameTheirPlace() throws {
        let good = try Message.statusRequest(.init(requestID: 1)).encodedFrame()
        let bad = Wire.frame(type: 0x01, payload: Self.helloPrefix() + [65] + [UInt8](repeating: 0x61, count: 65) + [1, 0x6E])
        var decoder = FrameDecoder()
        decoder.append(contentsOf: good + bad)
        #expect(try decoder.nextMessage() == .statusRequest(.init(requestID: 1)))
        do {
            _ = try decoder.nextMessage()
            Issue.record("accepted a 65-byte cluster id")
        } catch {
            guard case .invalidField(.hello, "clusterID", _, 57, let at) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(at == UInt64(good.count))
            let text = error.description
            #expect(text.contains("Hello.clusterID"))
            #expect(text.contains("stream offset \(good.count + 16 + 57)"))
            #expect(text.contains("payload offset 57"))
            #expect(text.contains("64"))
        }
    }

    // MARK: Encoding refuses what decoding would refuse

    @Test("the encoder refuses invalid messages")
    func encoderValidates() {
        let nonce = Wire.nonce(0)
        let batches = Wire.batches(count: 2)
        let invalid: [Message] = [
            .hello(.init(versions: 0...1, clusterID: "c", nodeID: "n", role: .follower, epoch: Epoch(1), lastLSN: LSN(1), lastBatchCRC: 1, nonce: nonce)),
            .hello(.init(clusterID: "", nodeID: "n", role: .follower, epoch: Epoch(1), lastLSN: LSN(1), lastBatchCRC: 1, nonce: nonce)),
            .hello(.init(clusterID: String(repeating: "é", count: 33), nodeID: "n", role: .follower, epoch: Epoch(1), lastLSN: LSN(1), lastBatchCRC: 1, nonce: nonce)),
            .hello(.init(clusterID: "c", nodeID: "n", role: .follower, epoch: Epoch(1), lastLSN: LSN(1), lastBatchCRC: 1, nonce: Array(nonce.prefix(31)))),
            .hello(.init(clusterID: "c", nodeID: "n", role: .follower, epoch: Epoch(0), lastLSN: LSN(1), lastBatchCRC: 1, nonce: nonce)),
            .helloAck(.init(version: 0, nodeID: "n", role: .primary, epoch: Epoch(1), lastLSN: .zero, lastBatchCRC: 0, nonce: nonce)),
            .helloAck(.init(version: 1, nodeID: String(repeating: "n", count: 65), role: .primary, epoch: Epoch(1), lastLSN: .zero, lastBatchCRC: 0, nonce: nonce)),
            .authProof(.init(proof: nonce + [0])),
            .refuse(.init(.wrongCluster, text: String(repeating: "x", count: 1025))),
            .refuse(.init(.notPrimary(primaryAddress: String(repeating: "a", count: 256)))),
            .error(.init(.unsupportedVersion(min: 2, max: 1))),
            .error(.init(.staleEpoch(current: Epoch(0)))),
            .startStream(.init(fromLSN: .zero)),
            .batches(.init(writtenLSN: LSN(100), flushedLSN: .zero, timestamp: 0, batches: [])),
            .batches(.init(writtenLSN: LSN(100), flushedLSN: LSN(101), timestamp: 0, batches: batches)),
            .batches(.init(writtenLSN: LSN(5), flushedLSN: .zero, timestamp: 0, batches: batches)),
            .batches(.init(writtenLSN: LSN(100), flushedLSN: .zero, timestamp: 0, batches: batches.reversed())),
            .batches(.init(writtenLSN: LSN(100), flushedLSN: .zero, timestamp: 0, batches: [batches[0], batches[0]])),
            .keepalive(.init(writtenLSN: LSN(1), flushedLSN: LSN(2), timestamp: 0, replyRequested: false)),
            .followerStatus(.init(writtenLSN: LSN(1), flushedLSN: LSN(1), appliedLSN: LSN(2), timestamp: 0)),
            .snapshotChunk(.init(snapshotLSN: LSN(1), totalBytes: 3, offset: 2, runningCRC: 0, data: [1, 2])),
            .snapshotChunk(.init(snapshotLSN: LSN(1), totalBytes: 3, offset: 0, runningCRC: 0, data: [])),
            .snapshotChunk(.init(snapshotLSN: .zero, totalBytes: 3, offset: 0, runningCRC: 0, data: [1])),
            .snapshotAck(.init(snapshotLSN: LSN(1), bytesStored: ProtocolLimits.snapshotBytesMax + 1)),
            .appendRequest(.init(requestID: 1, commitLevel: .local, records: [])),
            .appendRequest(.init(requestID: 1, commitLevel: .write(followers: 0), records: [[1]])),
            .appendRequest(.init(requestID: 1, commitLevel: .flush(followers: 256), records: [[1]])),
            .appendRequest(.init(requestID: 1, commitLevel: .local, timeoutMillis: 600_001, records: [[1]])),
            .appendRequest(.init(requestID: 1, commitLevel: .local, recordBlock: [5, 1], recordCount: 1)),
            .appendRequest(.init(requestID: 1, commitLevel: .local, records: [[UInt8](repeating: 0, count: FormatLimits.recordBytesMax + 1)])),
            .appendResponse(.init(requestID: 1, outcome: .appended(LSNRange(first: .zero, last: LSN(1)), epoch: Epoch(1)))),
            .readRequest(.init(requestID: 1, fromLSN: .zero)),
            .readResponse(.init(requestID: 1, outcome: .batches(lastLSN: LSN(2), batches))),
            .statusResponse(.init(requestID: 1, json: String(repeating: " ", count: 65_537))),
            .appendResponse(.init(requestID: 1, outcome: .appendedDegraded(LSNRange(first: .zero, last: LSN(1)), epoch: Epoch(1)))),
            .appendResponse(.init(requestID: 1, outcome: .appendedDegraded(LSNRange(first: LSN(1), last: LSN(1)), epoch: Epoch(0)))),
            .queryRequest(.init(requestID: 1, query: [UInt8](repeating: 0, count: ProtocolLimits.queryBytesMax + 1))),
            .queryResponse(.init(requestID: 1, outcome: .result(appliedLSN: LSN(1), [UInt8](repeating: 0, count: ProtocolLimits.queryResultBytesMax + 1)))),
            .queryResponse(.init(requestID: 1, outcome: .failed(.init(.queryFailed, text: String(repeating: "x", count: 1025))))),
        ]
        for message in invalid {
            #expect(throws: ProtocolError.self, "\(message.type)") { try message.encodedFrame() }
            #expect(throws: ProtocolError.self, "\(message.type)") { try message.validate() }
        }
    }

    // MARK: Pieces

    @Test("commit levels parse and print as local, write:K, flush:K, apply:K, all")
    func commitLevels() {
        let levels: [CommitLevel] = [.local, .write(followers: 1), .flush(followers: 2), .apply(followers: 255), .all]
        for level in levels { #expect(CommitLevel(level.description) == level) }
        #expect(CommitLevel("flush:2") == .flush(followers: 2))
        for bad in ["", "write", "write:", "write:0", "write:256", "flush:-1", "flush:+2", "apply:x", "any:1", "local:1", "all:2", "write:1:2"] {
            #expect(CommitLevel(bad) == nil, "\(bad)")
        }
    }

    @Test("version negotiation picks the highest common version")
    func negotiation() {
        #expect(ProtocolVersion.negotiate(peerMin: 1, peerMax: 1) == 1)
        #expect(ProtocolVersion.negotiate(peerMin: 1, peerMax: 7) == 1)
        #expect(ProtocolVersion.negotiate(peerMin: 2, peerMax: 7) == nil)
        #expect(ProtocolVersion.negotiate(peerMin: 2, peerMax: 7, supported: 1...3) == 3)
        #expect(ProtocolVersion.negotiate(peerMin: 3, peerMax: 2, supported: 1...3) == nil)
    }

    @Test("snapshot chunks carry a running CRC of the file so far")
    func snapshotRunningCRC() throws {
        var rng = WireRNG(seed: 11)
        let file = rng.bytes(10_000)
        var crc: UInt32 = 0
        var offset = 0
        var received: [UInt8] = []
        var receivedCRC: UInt32 = 0
        while offset < file.count {
            let n = min(3000, file.count - offset)
            let chunk = Message.SnapshotChunk(
                snapshotLSN: LSN(40), totalBytes: UInt64(file.count), offset: UInt64(offset), crcBefore: crc,
                data: Array(file[offset..<offset + n]))
            crc = chunk.runningCRC
            offset += n
            guard case .snapshotChunk(let got) = try Wire.decodeMessage(Message.snapshotChunk(chunk).encodedFrame()) else {
                Issue.record("not a chunk")
                return
            }
            #expect(got.offset == UInt64(received.count))
            #expect(got.continues(crcBefore: receivedCRC))
            #expect(!got.continues(crcBefore: receivedCRC ^ 1))
            received += got.data
            receivedCRC = got.runningCRC
            #expect(got.isLast == (offset == file.count))
        }
        #expect(received == file)
        #expect(receivedCRC == Wire.crc32c(file))
    }

    @Test("AppendRequest carries its records as a record block")
    func appendRecords() throws {
        let records: [[UInt8]] = [[], [1, 2, 3], [UInt8](repeating: 7, count: 200), Array("x".utf8)]
        let request = Message.AppendRequest(requestID: 42, commitLevel: .flush(followers: 2), timeoutMillis: 5000, records: records)
        #expect(request.recordCount == 4)
        #expect(request.recordBlock == [0] + [3, 1, 2, 3] + [0xC8, 0x01] + [UInt8](repeating: 7, count: 200) + [1, 0x78])
        #expect(request.records == records)
        guard case .appendRequest(let decoded) = try Wire.decodeMessage(Message.appendRequest(request).encodedFrame()) else {
            Issue.record("not an AppendRequest")
            return
        }
        #expect(decoded == request)
        // The block is what a BatchBuilder would build: the primary can store the records as one batch.
        var builder = BatchBuilder()
        decoded.forEachRecord { try! builder.append($0) }
        var encoded = builder.encode(codec: .none)
        encoded.seal(baseLSN: LSN(1), epoch: Epoch(1), previousBatchCRC: 0, syncedThrough: .zero, timestamp: 0)
        #expect(Array(encoded.bytes[64...]) == request.recordBlock)
        // An invalid block built in code is refused by the encoder, and iterating it stops short.
        let broken = Message.AppendRequest(requestID: 1, commitLevel: .local, recordBlock: [1, 7, 9, 0xFF], recordCount: 3)
        #expect(broken.records == [[7]])
        #expect(throws: ProtocolError.self) { try Message.appendRequest(broken).encodedFrame() }
    }

    @Test("roles are named as the authentication transcript names them")
    func roles() {
        #expect(Message.Role.allCases.map(\.name) == ["primary", "follower", "client"])
        #expect(Message.Role.allCases.map(\.rawValue) == [1, 2, 3])
    }
}
