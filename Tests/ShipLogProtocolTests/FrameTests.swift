import Testing
import ShipLogFormat
@testable import ShipLogProtocol

// MARK: - Helpers shared with MessageTests, written from docs/PROTOCOL.md independently of the
// encoders under test.

/// SplitMix64: a tiny seedable generator, so every random test is reproducible.
struct WireRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) } }
}

enum Wire {
    /// The bit-at-a-time CRC-32C of docs/FORMAT.md section 3.
    static func crc32c<S: Sequence>(_ bytes: S, continuing crc: UInt32 = 0) -> UInt32 where S.Element == UInt8 {
        var c = ~crc
        for byte in bytes {
            c ^= UInt32(byte)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        }
        return ~c
    }

    static func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        (0..<(T.bitWidth / 8)).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }

    static func ascii(_ s: String) -> [UInt8] { Array(s.utf8) }

    /// A frame laid out by hand from the header table (docs/PROTOCOL.md section 3.1).
    static func frame(type: UInt8, payload: [UInt8], flags: UInt16 = 0, version: UInt8 = 1, length: UInt32? = nil) -> [UInt8] {
        var header = ascii("SLRP") + [version, type] + le(flags) + le(length ?? UInt32(payload.count))
        precondition(header.count == 12)
        header += le(crc32c(payload, continuing: crc32c(header)))
        return header + payload
    }

    static func hex(_ s: String) -> [UInt8] {
        s.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { UInt8($0, radix: 16)! }
    }

    static func nonce(_ start: UInt8) -> [UInt8] { (0..<32).map { start &+ UInt8($0) } }

    /// `count` chained batches from `firstLSN`, as a primary would ship them.
    static func batches(
        count: Int, firstLSN: UInt64 = 1, previousCRC: UInt32 = 0, epoch: UInt64 = 1, recordsPerBatch: Int = 3,
        recordBytes: Int = 7, codec: CompressionCodec = .none, seed: UInt64 = 1
    ) -> [Batch] {
        var rng = WireRNG(seed: seed)
        var result: [Batch] = []
        var lsn = firstLSN
        var previous = previousCRC
        for i in 0..<count {
            var builder = BatchBuilder()
            for r in 0..<recordsPerBatch {
                try! builder.append(codec == .lz4 ? [UInt8](repeating: UInt8(r), count: recordBytes) : rng.bytes(recordBytes))
            }
            var encoded = builder.encode(codec: codec)
            let header = encoded.seal(
                baseLSN: LSN(lsn), epoch: Epoch(epoch), previousBatchCRC: previous, syncedThrough: LSN(lsn - 1),
                timestamp: 1_700_000_000_000_000_000 + UInt64(i))
            result.append(Batch(verifiedHeader: header, bytes: encoded.bytes))
            lsn += UInt64(recordsPerBatch)
            previous = header.batchCRC
        }
        return result
    }

    /// At least one message of every type, and every variant of every field with choices.
    static func sampleMessages() -> [Message] {
        let chain = batches(count: 3)
        let last = chain.last!.lsnRange.last
        let lz4 = batches(
            count: 2, firstLSN: last.rawValue + 1, previousCRC: chain.last!.header.batchCRC, epoch: 2, recordBytes: 100, codec: .lz4, seed: 9)
        var messages: [Message] = [
            .hello(
                .init(
                    versions: 1...3, clusterID: "prod", nodeID: "db-2", role: .follower, epoch: Epoch(3), lastLSN: LSN(43),
                    lastBatchCRC: 0x2897_11A6, nonce: nonce(0))),
            .hello(
                .init(
                    clusterID: String(repeating: "c", count: 64), nodeID: "é-client-✓", role: .client, epoch: Epoch(0),
                    lastLSN: .zero, lastBatchCRC: 0, nonce: nonce(0xF0))),
            .helloAck(.init(version: 1, nodeID: "db-1", role: .primary, epoch: Epoch(3), lastLSN: LSN(50), lastBatchCRC: 7, nonce: nonce(32))),
            .authProof(.init(proof: nonce(0x80))),
            .startStream(.init(fromLSN: LSN(44))),
            .batches(.init(writtenLSN: last, flushedLSN: LSN(2), timestamp: 99, batches: chain)),
            .batches(.init(writtenLSN: LSN(1000), flushedLSN: LSN(1000), timestamp: 1, batches: Array(chain.prefix(1)) + [])),
            .batches(.init(writtenLSN: lz4.last!.lsnRange.last, flushedLSN: .zero, timestamp: 5, batches: lz4)),
            .keepalive(.init(writtenLSN: LSN(43), flushedLSN: LSN(40), timestamp: 1_700_000_000_000_001_000, replyRequested: true)),
            .keepalive(.init(writtenLSN: .zero, flushedLSN: .zero, timestamp: 0, replyRequested: false)),
            .followerStatus(.init(writtenLSN: LSN(43), flushedLSN: LSN(41), appliedLSN: LSN(42), timestamp: 12345)),
            .snapshotChunk(.init(snapshotLSN: LSN(40), totalBytes: 10, offset: 0, crcBefore: 0, data: [1, 2, 3, 4])),
            .snapshotChunk(.init(snapshotLSN: LSN(40), totalBytes: 10, offset: 4, runningCRC: 0xDEAD_BEEF, data: [5, 6, 7, 8, 9, 10])),
            .snapshotAck(.init(snapshotLSN: LSN(40), bytesStored: 10)),
            .appendRequest(.init(requestID: 1, commitLevel: .local, records: [[], [1], Array("hello".utf8)])),
            .appendRequest(.init(requestID: 2, commitLevel: .write(followers: 1), timeoutMillis: 250, records: [[7]])),
            .appendRequest(.init(requestID: 3, commitLevel: .flush(followers: 2), records: [[UInt8](repeating: 9, count: 300)])),
            .appendRequest(.init(requestID: 4, commitLevel: .apply(followers: 255), timeoutMillis: 600_000, records: [[1], [2]])),
            .appendRequest(.init(requestID: .max, commitLevel: .all, records: [[0]])),
            .appendRequest(.init(requestID: 5, commitLevel: nil, records: [[3]])),
            .appendResponse(.init(requestID: 1, outcome: .appended(LSNRange(first: LSN(44), last: LSN(46)), epoch: Epoch(3)))),
            .appendResponse(.init(requestID: 2, outcome: .appendedDegraded(LSNRange(first: LSN(47), last: LSN(47)), epoch: Epoch(3)))),
            .readRequest(.init(requestID: 5, fromLSN: LSN(1), maxBytes: 65536, waitMillis: 1000)),
            .readResponse(.init(requestID: 5, outcome: .batches(lastLSN: LSN(100), chain))),
            .readResponse(.init(requestID: 6, outcome: .batches(lastLSN: .zero, []))),
            .statusRequest(.init(requestID: 7)),
            .statusResponse(.init(requestID: 7, json: #"{"role":"primary","lastLSN":43,"name":"ü"}"#)),
            .statusResponse(.init(requestID: 8, json: "")),
            .queryRequest(.init(requestID: 9, query: Array("get k1".utf8))),
            .queryRequest(.init(requestID: 10, query: [])),
            .queryResponse(.init(requestID: 9, outcome: .result(appliedLSN: LSN(43), Array("v1".utf8)))),
            .queryResponse(.init(requestID: 10, outcome: .result(appliedLSN: .zero, []))),
            .promoteRequest(.init(requestID: 11)),
            .promoteRequest(.init(requestID: 12, minimumEpoch: Epoch(9))),
            .promoteResponse(.init(requestID: 11, outcome: .promoted(epoch: Epoch(4), firstLSN: LSN(1201)))),
            .promoteResponse(.init(requestID: 12, outcome: .failed(Message.Failure(.notPrimary(primaryAddress: ""), text: "already the primary")))),
        ]
        for (i, failure) in sampleFailures().enumerated() {
            messages.append(i % 2 == 0 ? .refuse(failure) : .error(failure))
            messages.append(.appendResponse(.init(requestID: UInt64(100 + i), outcome: .failed(failure))))
            messages.append(.readResponse(.init(requestID: UInt64(200 + i), outcome: .failed(failure))))
            messages.append(.queryResponse(.init(requestID: UInt64(300 + i), outcome: .failed(failure))))
        }
        return messages
    }

    /// Every failure reason, with and without text.
    static func sampleFailures() -> [Message.Failure] {
        [
            .init(.unsupportedVersion(min: 1, max: 1), text: "this node speaks protocol version 1 only"),
            .init(.wrongCluster, text: "cluster is \"prod\""),
            .init(.authFailed),
            .init(.notPrimary(primaryAddress: "10.0.0.7:7400"), text: "follower"),
            .init(.notPrimary(primaryAddress: "")),
            .init(.diverged(lsn: LSN(40), batchCRC: 0x1234_ABCD), text: "your batch ending at 40 differs"),
            .init(.diverged(lsn: .zero, batchCRC: 0)),
            .init(.staleEpoch(current: Epoch(4))),
            .init(.shuttingDown, text: String(repeating: "x", count: 1024)),
            .init(.protocolViolation, text: "Batches before StartStream"),
            .init(.commitTimedOut(LSNRange(first: LSN(44), last: LSN(46))), text: "flush:2 not confirmed in 5000 ms"),
            .init(.commitUnavailable, text: "1 follower connected, flush:2 asked"),
            .init(.lsnOutOfRange(first: LSN(1000), last: LSN(2000))),
            .init(.lsnOutOfRange(first: LSN(1), last: .zero)),
            .init(.logFailed, text: "fdatasync failed: EIO"),
            .init(.overloaded),
            .init(.internalError, text: "ünïcødé ✓"),
            .init(.queryFailed, text: "unknown operation 0x7f"),
            .init(.roleChangeRefused, text: "already the primary"),
        ]
    }

    /// Frames the decoder yields from `bytes` fed in chunks of the sizes `chunk` returns.
    static func decodeAll(
        _ bytes: [UInt8], limit: Int = ProtocolLimits.frameBytesMax, chunk: (Int) -> Int
    ) throws(ProtocolError) -> [Frame] {
        var decoder = FrameDecoder(frameBytesLimit: limit)
        var frames: [Frame] = []
        var offset = 0
        while offset < bytes.count {
            let n = min(max(1, min(chunk(bytes.count - offset), decoder.freeCapacity)), bytes.count - offset)
            decoder.append(contentsOf: Array(bytes[offset..<offset + n]))
            offset += n
            #expect(decoder.bufferedByteCount <= limit)
            #expect(decoder.storage.capacity <= limit + 8192)  // malloc rounds up to pages
            while let frame = try decoder.next() { frames.append(frame) }
        }
        return frames
    }

    /// The error the decoder raises on `bytes`, or `nil` when it raises none.
    static func decoderError(_ bytes: [UInt8], limit: Int = ProtocolLimits.frameBytesMax) -> ProtocolError? {
        do {
            _ = try decodeAll(bytes, limit: limit) { $0 }
            return nil
        } catch {
            return error
        }
    }

    /// Decodes one frame's bytes all the way to a message.
    static func decodeMessage(_ bytes: [UInt8]) throws(ProtocolError) -> Message {
        var decoder = FrameDecoder()
        decoder.append(contentsOf: bytes)
        guard let message = try decoder.nextMessage() else {
            throw .invalidField(.error, field: "test", problem: "no whole frame", payloadOffset: nil, streamOffset: nil)
        }
        #expect(try decoder.next() == nil)
        return message
    }
}

// MARK: - Frame tests

@Suite("Frames and the incremental decoder")
struct FrameTests {
    // The Keepalive of docs/PROTOCOL.md section 11.1, as printed there.
    static let keepaliveHex = """
        53 4c 52 50 01 12 00 00 19 00 00 00 b0 84 1d ec
        2b 00 00 00 00 00 00 00 28 00 00 00 00 00 00 00
        e8 03 2a 36 fe 9c 97 17 01
        """

    @Test("golden bytes: a Keepalive frame laid out by hand from the tables")
    func goldenKeepalive() throws {
        var payload: [UInt8] = []
        payload += Wire.le(UInt64(43))  //  0 writtenLSN
        payload += Wire.le(UInt64(40))  //  8 flushedLSN
        payload += Wire.le(UInt64(1_700_000_000_000_001_000))  // 16 timestamp
        payload += [1]  // 24 replyRequested
        #expect(payload.count == 25)
        var header: [UInt8] = Wire.ascii("SLRP")  // 0 magic
        header += [1]  // 4 version
        header += [0x12]  // 5 type Keepalive
        header += Wire.le(UInt16(0))  // 6 flags
        header += Wire.le(UInt32(25))  // 8 payloadLength
        header += Wire.le(Wire.crc32c(header + payload))  // 12 frameCRC over bytes 0..<12 ++ payload
        let hand = header + payload

        let message = Message.keepalive(.init(writtenLSN: LSN(43), flushedLSN: LSN(40), timestamp: 1_700_000_000_000_001_000, replyRequested: true))
        let encoded = try message.encodedFrame()
        #expect(encoded == hand)
        #expect(encoded == Wire.hex(Self.keepaliveHex))
        #expect(try Wire.decodeMessage(hand) == message)
        // The CRC is also the bit-at-a-time one of the header's first 12 bytes continued over the payload.
        #expect(Wire.crc32c(payload, continuing: Wire.crc32c(hand[0..<12])) == 0xEC1D_84B0)
    }

    @Test("frame header constants match the specification")
    func constants() {
        #expect(Frame.magic == 0x5052_4C53)
        #expect(Wire.le(Frame.magic) == Wire.ascii("SLRP"))
        #expect(Frame.headerByteCount == 16)
        #expect(ProtocolLimits.frameBytesMax == 16_847_185)
        #expect(ProtocolLimits.frameBytesMax == FormatLimits.batchBytesMax + 4096)
        // One maximal batch fits in a Batches or a ReadResponse frame.
        #expect(16 + Message.Batches.fixedByteCount + FormatLimits.batchBytesMax <= ProtocolLimits.frameBytesMax)
        #expect(16 + 21 + FormatLimits.batchBytesMax <= ProtocolLimits.frameBytesMax)
        #expect(16 + Message.AppendRequest.fixedByteCount + ProtocolLimits.appendRecordBlockBytesMax <= ProtocolLimits.frameBytesMax)
        #expect(16 + Message.SnapshotChunk.fixedByteCount + ProtocolLimits.snapshotChunkBytesMax <= ProtocolLimits.frameBytesMax)
        #expect(16 + 8 + ProtocolLimits.statusJSONBytesMax <= ProtocolLimits.frameBytesMax)
        #expect(16 + Message.QueryRequest.fixedByteCount + ProtocolLimits.queryBytesMax <= ProtocolLimits.frameBytesMax)
        #expect(16 + Message.QueryResponse.resultFixedByteCount + ProtocolLimits.queryResultBytesMax <= ProtocolLimits.frameBytesMax)
        for type in MessageType.allCases { #expect(type.rawValue != 0) }
        #expect(Set(MessageType.allCases.map(\.rawValue)).count == MessageType.allCases.count)
    }

    @Test("the largest handshake messages fit handshakeFrameBytesMax")
    func handshakeLimit() throws {
        let longest = String(repeating: "é", count: 32)  // 64 bytes
        let hello = Message.hello(
            .init(clusterID: longest, nodeID: longest, role: .follower, epoch: Epoch(1), lastLSN: LSN(1), lastBatchCRC: 1, nonce: Wire.nonce(0)))
        let refuse = Message.refuse(
            .init(.notPrimary(primaryAddress: String(repeating: "a", count: 255)), text: String(repeating: "t", count: 1024)))
        let ack = Message.helloAck(.init(version: 1, nodeID: longest, role: .primary, epoch: Epoch(1), lastLSN: .zero, lastBatchCRC: 0, nonce: Wire.nonce(1)))
        #expect(try hello.encodedFrame().count == 16 + 59 + 128)
        #expect(try refuse.encodedFrame().count == 1300)
        for message in [hello, refuse, ack, .authProof(.init(proof: Wire.nonce(2)))] {
            let bytes = try message.encodedFrame()
            #expect(bytes.count <= ProtocolLimits.handshakeFrameBytesMax)
            let frames = try Wire.decodeAll(bytes, limit: ProtocolLimits.handshakeFrameBytesMax) { $0 }
            #expect(try frames.map { try $0.message() } == [message])
        }
    }

    static func sampleStream() throws -> (bytes: [UInt8], frames: [[UInt8]]) {
        let frames = try Wire.sampleMessages().map { try $0.encodedFrame() }
        return (frames.flatMap { $0 }, frames)
    }

    @Test("byte by byte, in random chunks and all at once, the decoder yields the same frames")
    func chunkingDoesNotMatter() throws {
        let (stream, encoded) = try Self.sampleStream()
        let messages = Wire.sampleMessages()
        let whole = try Wire.decodeAll(stream) { $0 }
        #expect(whole.count == messages.count)
        #expect(try whole.map { try $0.message() } == messages)
        // Stream offsets are the sums of the frames before.
        var offset: UInt64 = 0
        for (frame, bytes) in zip(whole, encoded) {
            #expect(frame.streamOffset == offset)
            offset += UInt64(bytes.count)
        }
        let byteByByte = try Wire.decodeAll(stream) { _ in 1 }
        #expect(byteByByte == whole)
        for seed in 1...20 as ClosedRange<UInt64> {
            var rng = WireRNG(seed: seed)
            let maxChunk = [2, 7, 64, 1000, 100_000][Int(seed) % 5]
            let chunked = try Wire.decodeAll(stream) { _ in Int.random(in: 1...maxChunk, using: &rng) }
            #expect(chunked == whole, "seed \(seed)")
        }
    }

    @Test("every truncation of a stream is 'need more data', never an error")
    func everyTruncationNeedsMoreData() throws {
        let (stream, encoded) = try Self.sampleStream()
        var ends: [Int] = []
        var end = 0
        for frame in encoded {
            end += frame.count
            ends.append(end)
        }
        for cut in 0..<stream.count {
            var decoder = FrameDecoder()
            decoder.append(contentsOf: Array(stream[0..<cut]))
            var count = 0
            while let _ = try decoder.next() { count += 1 }
            #expect(count == ends.filter { $0 <= cut }.count, "cut at \(cut)")
            #expect(try decoder.next() == nil)
            #expect(decoder.freeCapacity > 0)
            if decoder.bufferedByteCount >= 16 {
                #expect(decoder.bytesToCompleteFrame != nil)
            }
        }
    }

    @Test("a single bit flip anywhere in a frame is caught")
    func bitFlipsAreCaught() throws {
        for message in Wire.sampleMessages().prefix(14) {
            let frame = try message.encodedFrame()
            let bitCount = frame.count * 8
            let step = bitCount > 4000 ? 7 : 1
            for bit in stride(from: 0, to: bitCount, by: step) {
                var flipped = frame
                flipped[bit / 8] ^= 1 << (bit % 8)
                var decoder = FrameDecoder()
                decoder.append(contentsOf: flipped)
                var caught: ProtocolError?
                do {
                    var frame = try decoder.next()
                    // A flip in the length field can make the frame longer: feed zeros until it is whole.
                    while frame == nil {
                        decoder.append(contentsOf: [UInt8](repeating: 0, count: min(decoder.freeCapacity, 1 << 20)))
                        frame = try decoder.next()
                    }
                    Issue.record("\(message.type) bit \(bit): a corrupted frame was accepted")
                } catch {
                    caught = error
                }
                let byte = bit / 8
                switch (byte, caught) {
                case (0..<4, .badMagic?), (4, .unsupportedFrameVersion?), (8..<12, .frameTooLarge?),
                    (_, .frameChecksumMismatch?):
                    break
                default:
                    Issue.record("\(message.type) bit \(bit): unexpected \(String(describing: caught))")
                }
                if byte >= 5 && !(8..<12).contains(byte) {
                    if case .frameChecksumMismatch(_, _, let at)? = caught { #expect(at == 0) } else {
                        Issue.record("\(message.type) bit \(bit): expected a CRC mismatch, got \(String(describing: caught))")
                    }
                }
            }
        }
    }

    @Test("a header claiming 4 GiB is rejected from its 16 bytes, without allocating")
    func oversizedLengthRejectedWithoutAllocation() throws {
        // After one good frame, so the error names a non-zero stream offset.
        let good = try Message.statusRequest(.init(requestID: 1)).encodedFrame()
        let hostile = Array(Wire.frame(type: 0x11, payload: [], length: UInt32.max).prefix(16))
        var decoder = FrameDecoder()
        decoder.append(contentsOf: good + hostile)
        #expect(try decoder.next() != nil)
        #expect(throws: ProtocolError.frameTooLarge(payloadLength: UInt32.max, limitBytes: ProtocolLimits.frameBytesMax, streamOffset: UInt64(good.count))) {
            try decoder.next()
        }
        #expect(decoder.storage.capacity < 1024)
        // The decoder stays failed, and drops what it is fed.
        decoder.append(contentsOf: good)
        #expect(decoder.bufferedByteCount == 0)
        #expect(throws: ProtocolError.self) { try decoder.next() }

        // Exactly at the limit is accepted (and waits for data); one byte more is rejected.
        let limit = ProtocolLimits.handshakeFrameBytesMax
        var atLimit = FrameDecoder(frameBytesLimit: limit)
        atLimit.append(contentsOf: Array(Wire.frame(type: 0x01, payload: [], length: UInt32(limit - 16)).prefix(16)))
        #expect(try atLimit.next() == nil)
        #expect(atLimit.bytesToCompleteFrame == limit - 16)
        #expect(atLimit.freeCapacity == limit - 16)
        var overLimit = FrameDecoder(frameBytesLimit: limit)
        overLimit.append(contentsOf: Array(Wire.frame(type: 0x01, payload: [], length: UInt32(limit - 15)).prefix(16)))
        #expect(throws: ProtocolError.frameTooLarge(payloadLength: UInt32(limit - 15), limitBytes: limit, streamOffset: 0)) {
            try overLimit.next()
        }
        // The default limit: frameBytesMax exactly.
        var maxDecoder = FrameDecoder()
        maxDecoder.append(contentsOf: Array(Wire.frame(type: 0x11, payload: [], length: UInt32(ProtocolLimits.framePayloadBytesMax + 1)).prefix(16)))
        #expect(throws: ProtocolError.self) { try maxDecoder.next() }
        #expect(maxDecoder.storage.capacity < 1024)
    }

    @Test("framing errors name what is wrong and the frame's stream offset")
    func framingErrors() throws {
        let good = try Message.startStream(.init(fromLSN: LSN(1))).encodedFrame()
        let at = UInt64(good.count)
        func error(_ second: [UInt8]) -> ProtocolError? { Wire.decoderError(good + second) }

        var badMagic = good
        badMagic[0] = 0x54
        #expect(error(badMagic) == .badMagic(found: 0x5052_4C54, streamOffset: at))
        #expect(error(Wire.frame(type: 0x10, payload: Wire.le(UInt64(1)), version: 2)) == .unsupportedFrameVersion(2, streamOffset: at))
        #expect(error(Wire.frame(type: 0x10, payload: Wire.le(UInt64(1)), flags: 0x0100)) == .unknownFrameFlags(0x0100, streamOffset: at))
        #expect(error(Wire.frame(type: 0x00, payload: [])) == .unknownMessageType(0, streamOffset: at))
        #expect(error(Wire.frame(type: 0x7F, payload: [1, 2])) == .unknownMessageType(0x7F, streamOffset: at))
        var badCRC = good
        badCRC[12] ^= 0xFF
        guard case .frameChecksumMismatch(let stored, let computed, let offset)? = error(badCRC) else {
            Issue.record("expected a CRC mismatch")
            return
        }
        #expect(offset == at && stored != computed)
        let description = ProtocolError.frameChecksumMismatch(stored: stored, computed: computed, streamOffset: offset).description
        #expect(description.contains("stream offset \(at)") && description.contains("CRC"))
        #expect(ProtocolError.badMagic(found: 1, streamOffset: 7).description.contains("stream offset 7"))
        // An HTTP client on the replication port: bad magic at offset 0.
        #expect(Wire.decoderError(Wire.ascii("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) == .badMagic(found: 0x2054_4547, streamOffset: 0))
        // Zero-filled bytes are never a frame.
        #expect(Wire.decoderError([UInt8](repeating: 0, count: 64)) == .badMagic(found: 0, streamOffset: 0))
    }

    @Test("Frame.encoded round-trips through the decoder")
    func frameEncoding() throws {
        let frame = Frame(type: .statusRequest, payload: Wire.le(UInt64(42)))
        let bytes = try frame.encoded()
        #expect(bytes == Wire.frame(type: 0x24, payload: Wire.le(UInt64(42))))
        let decoded = try Wire.decodeAll(bytes) { $0 }
        #expect(decoded == [Frame(type: .statusRequest, payload: Wire.le(UInt64(42)), streamOffset: 0)])
        #expect(try decoded[0].message() == .statusRequest(.init(requestID: 42)))
        #expect(throws: ProtocolError.self) {
            try Frame(type: .batches, payload: [UInt8](repeating: 0, count: ProtocolLimits.framePayloadBytesMax + 1)).encoded()
        }
    }

    @Test("the buffer never holds more than one frame, and is released after big frames")
    func bufferIsBounded() throws {
        let big = Wire.batches(count: 40, recordsPerBatch: 50, recordBytes: 1000)
        let message = Message.batches(.init(writtenLSN: big.last!.lsnRange.last, flushedLSN: .zero, timestamp: 0, batches: big))
        let frame = try message.encodedFrame()
        let limit = frame.count
        let stream = frame + frame + frame
        var rng = WireRNG(seed: 77)
        let frames = try Wire.decodeAll(stream, limit: limit) { _ in Int.random(in: 1...300_000, using: &rng) }
        #expect(frames.count == 3)
        #expect(try frames.map { try $0.message() } == [message, message, message])
        // With a limit one byte short, the same frame is refused from its header.
        #expect(Wire.decoderError(frame, limit: limit - 1) == .frameTooLarge(payloadLength: UInt32(limit - 16), limitBytes: limit - 1, streamOffset: 0))

        var decoder = FrameDecoder()
        decoder.append(contentsOf: frame)
        #expect(try decoder.next() != nil)
        #expect(decoder.storage.capacity <= FrameDecoder.retainedCapacityMax)
    }

    @Test("a maximal batch travels in one Batches frame")
    func maximalBatch() throws {
        var builder = BatchBuilder(capacity: FormatLimits.batchUncompressedBytesMax)
        var rng = WireRNG(seed: 5)
        let record = rng.bytes(FormatLimits.recordBytesMax)
        while builder.canAppend(byteCount: record.count) { try builder.append(record) }
        let rest = FormatLimits.batchUncompressedBytesMax - builder.uncompressedByteCount - 5
        try builder.append(Array(record.prefix(rest)))
        var encoded = builder.encode(codec: .lz4)  // incompressible: stored raw
        let header = encoded.seal(baseLSN: LSN(1), epoch: Epoch(1), previousBatchCRC: 0, syncedThrough: .zero, timestamp: 0)
        let batch = Batch(verifiedHeader: header, bytes: encoded.bytes)
        #expect(batch.bytes.count > FormatLimits.batchBytesMax - 70_000)
        let message = Message.batches(.init(writtenLSN: batch.lsnRange.last, flushedLSN: .zero, timestamp: 0, batches: [batch]))
        let frame = try message.encodedFrame()
        #expect(frame.count <= ProtocolLimits.frameBytesMax)
        var chunks = WireRNG(seed: 6)
        let decoded = try Wire.decodeAll(frame) { _ in Int.random(in: 1...(1 << 20), using: &chunks) }
        #expect(try decoded.map { try $0.message() } == [message])
    }

    @Test("seeded garbage never crashes the decoder or the message decoders")
    func garbageNeverCrashes() throws {
        var rng = WireRNG(seed: 0x5EED)
        let samples = try Wire.sampleMessages().map { try $0.encodedFrame() }
        let types = MessageType.allCases.map(\.rawValue)
        var accepted = 0
        for iteration in 0..<4000 {
            var bytes: [UInt8]
            switch iteration % 4 {
            case 0:
                // Pure noise, sometimes behind a good frame.
                bytes = rng.bytes(Int.random(in: 0...200, using: &rng))
                if Bool.random(using: &rng) { bytes = samples.randomElement(using: &rng)! + bytes }
            case 1:
                // A valid frame header and CRC around a random payload, of a real or random type.
                let type = Bool.random(using: &rng) ? types.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
                bytes = Wire.frame(type: type, payload: rng.bytes(Int.random(in: 0...120, using: &rng)))
            case 2:
                // A real message's payload with a few bytes changed, then re-framed with a valid CRC.
                let sample = samples.randomElement(using: &rng)!
                var payload = Array(sample[16...])
                for _ in 0..<Int.random(in: 1...4, using: &rng) where !payload.isEmpty {
                    payload[Int.random(in: 0..<payload.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                bytes = Wire.frame(type: sample[5], payload: payload)
            default:
                // A real message's payload cut short or extended, re-framed with a valid CRC.
                let sample = samples.randomElement(using: &rng)!
                var payload = Array(sample[16...])
                if Bool.random(using: &rng), !payload.isEmpty {
                    payload.removeLast(Int.random(in: 1...payload.count, using: &rng))
                } else {
                    payload += rng.bytes(Int.random(in: 1...16, using: &rng))
                }
                bytes = Wire.frame(type: sample[5], payload: payload)
            }
            var decoder = FrameDecoder()
            var offset = 0
            feeding: while offset < bytes.count {
                let n = min(Int.random(in: 1...64, using: &rng), bytes.count - offset, decoder.freeCapacity)
                decoder.append(contentsOf: Array(bytes[offset..<offset + n]))
                offset += n
                while true {
                    let frame: Frame?
                    do { frame = try decoder.next() } catch { break feeding }
                    guard let frame else { break }
                    do {
                        let message = try frame.message()
                        accepted += 1
                        // Whatever the decoder accepts, the encoder accepts, and it decodes back the same.
                        let again = try message.encodedFrame()
                        #expect(try Wire.decodeMessage(again) == message)
                    } catch {
                        _ = error.description
                    }
                }
            }
        }
        #expect(accepted > 100)
    }
}
