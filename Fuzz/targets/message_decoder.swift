// Fuzz target `message_decoder`: FrameDecoder (docs/PROTOCOL.md section 3) and Message(frame:),
// that is every message decoder, validate() and every encoder of ShipLogProtocol (sections 5-8).
//
// Input: byte 0 is the mode.
//   mode bit 0: frame it — byte 1 is a type code, bytes 2... a payload; the harness wraps them in
//               a frame header with the right length and CRC, so mutations reach the message
//               decoders. Clear: bytes 1... are a raw byte stream (any number of frames, any damage).
//   mode bit 1: decode with the handshake limit (handshakeFrameBytesMax) instead of frameBytesMax.
//   mode bits 2-3: how the stream is fed: 0 all at once, 1 byte by byte, 2 in 7-byte pieces,
//               3 in pieces sized by the stream's own bytes (1 ... 256).
//
// Invariants (beyond "never traps, never reads out of bounds, never allocates past the limits"):
//   * the decoder agrees with a reference reading of section 3.3: the same frames (stream offset,
//     type, payload), then the same first error (kind and stream offset) or "need more data",
//     whatever the feeding; it never buffers more than its limit, and freeCapacity > 0 whenever
//     next() has returned nil;
//   * each frame either decodes to a message or throws a message error located in that frame;
//   * a decoded message validates, re-encodes to the very same payload (Hello: without its
//     ignored extension bytes) and decodes back equal;
//   * QueryRequest, QueryResponse (result) and AppendResponse (appended, appendedDegraded) agree
//     with reference readings of sections 8.3 and 8.6: accepted exactly when valid, same values.
import ShipLogFormat
import ShipLogProtocol

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let mode = data[0]
    let rest = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let stream: [UInt8]
    if mode & 1 != 0 {
        guard let type = rest.first else { return 0 }
        stream = frame(type: type, payload: Array(rest.dropFirst()))
    } else {
        stream = rest
    }
    let limit = mode & 2 != 0 ? ProtocolLimits.handshakeFrameBytesMax : ProtocolLimits.frameBytesMax
    let (frames, ending) = decode(stream, limit: limit, feeding: Int(mode >> 2) & 3)
    let (expectedFrames, expectedEnding) = referenceFrames(stream, limit: limit)
    trace("\(frames.count) frames, then \(ending)")
    require(frames.count == expectedFrames.count, "decoder yields \(frames.count) frames, the reference \(expectedFrames.count)")
    for (frame, expected) in zip(frames, expectedFrames) {
        require(
            frame.streamOffset == expected.offset && frame.type.rawValue == expected.type && sameBytes(frame.payload, expected.payload),
            "frame at \(String(describing: frame.streamOffset)) differs from the reference's at \(expected.offset)")
        checkMessage(in: frame)
    }
    require(ending == expectedEnding, "decoder ends with \(ending), the reference with \(expectedEnding)")
    return 0
}

// MARK: Frames

/// A frame laid out from the header table of section 3.1, with a correct CRC.
func frame(type: UInt8, payload: [UInt8]) -> [UInt8] {
    var bytes: [UInt8] = [0x53, 0x4C, 0x52, 0x50, 1, type, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] + payload
    put32(&bytes, 8, UInt32(payload.count))
    put32(&bytes, 12, CRC32C.checksum(payload, continuing: crc(bytes, 0..<12)))
    return bytes
}

/// How a stream of frames ends: more bytes needed, or the first error (its kind and stream offset).
enum Ending: Equatable, CustomStringConvertible {
    case needMoreData
    case error(String, UInt64)

    var description: String {
        switch self {
        case .needMoreData: "need more data"
        case .error(let kind, let at): "\(kind) at \(at)"
        }
    }
}

/// Feeds `stream` to a FrameDecoder in pieces chosen by `feeding`, collecting frames until an error.
func decode(_ stream: [UInt8], limit: Int, feeding: Int) -> ([Frame], Ending) {
    var decoder = FrameDecoder(frameBytesLimit: limit)
    var frames: [Frame] = []
    var offset = 0
    var piece = 0
    while offset < stream.count {
        let wanted =
            switch feeding {
            case 0: stream.count
            case 1: 1
            case 2: 7
            default: Int(stream[(offset + piece) % stream.count]) + 1
            }
        piece += 1
        let n = min(wanted, stream.count - offset, decoder.freeCapacity)
        require(n > 0, "freeCapacity is 0 after next() returned nil (\(decoder.bufferedByteCount) bytes buffered)")
        decoder.append(contentsOf: Array(stream[offset..<offset + n]))
        offset += n
        require(decoder.bufferedByteCount <= limit, "decoder buffers \(decoder.bufferedByteCount) bytes, over its limit \(limit)")
        while true {
            do {
                guard let frame = try decoder.next() else { break }
                frames.append(frame)
            } catch {
                return (frames, .error(kind(of: error), streamOffset(of: error) ?? .max))
            }
        }
    }
    return (frames, .needMoreData)
}

/// The message type codes of section 4, written from the table.
let specifiedTypes: Set<UInt8> = Set(Array(0x01...0x05) + Array(0x10...0x15) + Array(0x20...0x29))

/// Section 3.3, condition by condition.
func referenceFrames(_ s: [UInt8], limit: Int) -> ([(offset: UInt64, type: UInt8, payload: [UInt8])], Ending) {
    var frames: [(offset: UInt64, type: UInt8, payload: [UInt8])] = []
    var o = 0
    while true {
        let at = UInt64(o)
        guard s.count - o >= 16 else { return (frames, .needMoreData) }
        guard le32(s, o) == 0x5052_4C53 else { return (frames, .error("badMagic", at)) }
        guard s[o + 4] == 1 else { return (frames, .error("unsupportedFrameVersion", at)) }
        let length = Int(le32(s, o + 8))
        guard 16 + length <= limit else { return (frames, .error("frameTooLarge", at)) }
        guard s.count - o >= 16 + length else { return (frames, .needMoreData) }
        let payload = Array(s[(o + 16)..<(o + 16 + length)])
        guard le32(s, o + 12) == CRC32C.checksum(payload, continuing: crc(s, o..<(o + 12))) else {
            return (frames, .error("frameChecksumMismatch", at))
        }
        guard le16(s, o + 6) == 0 else { return (frames, .error("unknownFrameFlags", at)) }
        guard specifiedTypes.contains(s[o + 5]) else { return (frames, .error("unknownMessageType", at)) }
        frames.append((at, s[o + 5], payload))
        o += 16 + length
    }
}

func kind(of error: ProtocolError) -> String {
    switch error {
    case .badMagic: "badMagic"
    case .unsupportedFrameVersion: "unsupportedFrameVersion"
    case .frameTooLarge: "frameTooLarge"
    case .frameChecksumMismatch: "frameChecksumMismatch"
    case .unknownFrameFlags: "unknownFrameFlags"
    case .unknownMessageType: "unknownMessageType"
    case .truncatedMessage: "truncatedMessage"
    case .invalidField: "invalidField"
    case .trailingBytes: "trailingBytes"
    case .invalidBatch: "invalidBatch"
    case .messageTooLarge: "messageTooLarge"
    }
}

func streamOffset(of error: ProtocolError) -> UInt64? {
    switch error {
    case .badMagic(_, let at), .unsupportedFrameVersion(_, let at), .frameTooLarge(_, _, let at),
        .frameChecksumMismatch(_, _, let at), .unknownFrameFlags(_, let at), .unknownMessageType(_, let at):
        at
    case .truncatedMessage(_, _, _, _, _, let at), .invalidField(_, _, _, _, let at), .trailingBytes(_, _, _, let at),
        .invalidBatch(_, _, _, _, let at):
        at
    case .messageTooLarge: nil
    }
}

// MARK: Messages

func checkMessage(in frame: Frame) {
    let message: Message
    do {
        message = try frame.message()
    } catch {
        trace("\(frame.type): \(error)")
        let kind = kind(of: error)
        require(
            ["truncatedMessage", "invalidField", "trailingBytes", "invalidBatch"].contains(kind),
            "a whole frame's payload fails with a framing error: \(error)")
        require(streamOffset(of: error) == frame.streamOffset, "message error not located in its frame: \(error)")
        require(!error.description.isEmpty, "empty error description")
        checkReference(frame, decoded: nil)
        return
    }
    trace("\(frame.type): accepted")
    require(message.type == frame.type, "\(frame.type) decoded as \(message.type)")
    do {
        try message.validate()
    } catch {
        invariantFailed("\(frame.type) accepted by the decoder, refused by validate(): \(error)")
    }
    let encoded: [UInt8]
    do {
        encoded = try message.encodedFrame()
    } catch {
        invariantFailed("\(frame.type) accepted by the decoder, refused by the encoder: \(error)")
    }
    let payload = Array(encoded[16...])
    require(encoded[5] == frame.type.rawValue, "re-encoded under type \(encoded[5])")
    if frame.type == .hello {
        require(payload.count <= frame.payload.count && sameBytes(payload, frame.payload[..<payload.count]), "Hello re-encodes differently")
    } else {
        require(sameBytes(payload, frame.payload), "\(frame.type) re-encodes to other bytes (\(payload.count) vs \(frame.payload.count))")
    }
    do {
        require(try Frame(type: frame.type, payload: payload).message() == message, "\(frame.type) does not decode back equal")
    } catch {
        invariantFailed("\(frame.type) re-encoded does not decode: \(error)")
    }
    checkReference(frame, decoded: message)
}

/// The limits of section 9 for the query messages, as the specification writes them.
let queryBytesMax = 65_536
let queryResultBytesMax = 4_194_304

/// Sections 8.3 (appended outcomes) and 8.6, read independently of the decoders.
func checkReference(_ frame: Frame, decoded: Message?) {
    require(ProtocolLimits.queryBytesMax == queryBytesMax && ProtocolLimits.queryResultBytesMax == queryResultBytesMax, "limits differ from section 9")
    let p = frame.payload
    switch frame.type {
    case .queryRequest:
        var expected: Message?
        if p.count >= 12, Int(le32(p, 8)) <= queryBytesMax, p.count == 12 + Int(le32(p, 8)) {
            expected = .queryRequest(.init(requestID: le64(p, 0), query: Array(p[12...])))
        }
        require(decoded == expected, "QueryRequest: decoder says \(String(describing: decoded)), section 8.6 \(String(describing: expected))")
    case .queryResponse where p.count >= 9 && p[8] != 1:
        var expected: Message?
        if p[8] == 0, p.count >= 21, Int(le32(p, 17)) <= queryResultBytesMax, p.count == 21 + Int(le32(p, 17)) {
            expected = .queryResponse(.init(requestID: le64(p, 0), outcome: .result(appliedLSN: LSN(le64(p, 9)), Array(p[21...]))))
        }
        require(decoded == expected, "QueryResponse: decoder says \(String(describing: decoded)), section 8.6 \(String(describing: expected))")
    case .promoteRequest:
        let expected: Message? = p.count == 16 ? .promoteRequest(.init(requestID: le64(p, 0), minimumEpoch: Epoch(le64(p, 8)))) : nil
        require(decoded == expected, "PromoteRequest: decoder says \(String(describing: decoded)), section 8.7 \(String(describing: expected))")
    case .promoteResponse where p.count >= 9 && p[8] != 1:
        var expected: Message?
        if p[8] == 0, p.count == 25, le64(p, 9) >= 1, le64(p, 17) >= 1 {
            expected = .promoteResponse(.init(requestID: le64(p, 0), outcome: .promoted(epoch: Epoch(le64(p, 9)), firstLSN: LSN(le64(p, 17)))))
        }
        require(decoded == expected, "PromoteResponse: decoder says \(String(describing: decoded)), section 8.7 \(String(describing: expected))")
    case .appendResponse where p.count >= 9 && p[8] != 1:
        var expected: Message?
        if p[8] == 0 || p[8] == 2, p.count == 33 {
            let first = le64(p, 9)
            let last = le64(p, 17)
            let epoch = le64(p, 25)
            if first >= 1 && first <= last && epoch >= 1 {
                let range = LSNRange(first: LSN(first), last: LSN(last))
                let outcome: Message.AppendResponse.Outcome =
                    p[8] == 0 ? .appended(range, epoch: Epoch(epoch)) : .appendedDegraded(range, epoch: Epoch(epoch))
                expected = .appendResponse(.init(requestID: le64(p, 0), outcome: outcome))
            }
        }
        require(decoded == expected, "AppendResponse: decoder says \(String(describing: decoded)), section 8.3 \(String(describing: expected))")
    default:
        break
    }
}
