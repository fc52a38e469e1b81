// The replication wire protocol (docs/PROTOCOL.md), protocol version 1. No I/O.
//
// Layers, bottom up:
//
// * Frames (`Frame`, `FrameDecoder`): a 16-byte header (magic `SLRP`, framing version, message
//   type, flags, payload length, CRC-32C) followed by the payload. `FrameDecoder` is fed bytes as
//   they arrive and yields whole, checked frames; it never buffers more than one frame.
// * Messages (`Message` and the types nested in it): the typed payloads, each with an encoder and
//   a decoder that bounds-checks every field. Batches travel byte for byte as stored
//   (docs/FORMAT.md section 6), so a follower stores exactly what the primary wrote.
// * Authentication (`Authentication.swift`, `HMAC.swift`, `SHA256.swift`): the HMAC-SHA256
//   challenge-response carried by `Message.Hello`/`Message.HelloAck` (nonces) and
//   `Message.AuthProof` (proofs).
public import ShipLogFormat

/// Protocol versions: the set of messages and their meaning. Negotiated by `Message.Hello`
/// (the initiator's range) and `Message.HelloAck` (the version chosen). Independent of the
/// framing version in the frame header (``Frame/version``), which is 1 for protocol version 1.
public enum ProtocolVersion {
    /// Protocol version 1, specified by docs/PROTOCOL.md.
    public static let v1: UInt16 = 1
    /// The versions this implementation speaks.
    public static let supported: ClosedRange<UInt16> = 1...1

    /// The version to use with a peer that speaks `peerMin ... peerMax`: the highest version both
    /// sides speak, or `nil` when the ranges do not overlap (refuse with `unsupportedVersion`).
    public static func negotiate(peerMin: UInt16, peerMax: UInt16, supported: ClosedRange<UInt16> = supported) -> UInt16? {
        guard peerMin <= peerMax else { return nil }
        let high = min(peerMax, supported.upperBound)
        let low = max(peerMin, supported.lowerBound)
        return low <= high ? high : nil
    }
}

/// Why bytes from a peer are not a valid frame or message, or why a message cannot be encoded.
///
/// Framing errors name the stream offset of the frame's first byte (bytes fed to the
/// ``FrameDecoder`` before it). Message errors name the message type, the field, and its offset
/// in the payload; when the frame came from a decoder they also name the frame's stream offset,
/// so the field's own stream offset is `streamOffset + 16 + payloadOffset`. Errors raised while
/// encoding have no offsets.
///
/// After any error the byte stream cannot be trusted: the decoder stays failed and the
/// connection must be closed.
public enum ProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The frame does not start with `SLRP`.
    case badMagic(found: UInt32, streamOffset: UInt64)
    /// The framing version (header byte 4) is not 1.
    case unsupportedFrameVersion(UInt8, streamOffset: UInt64)
    /// The header announces a frame larger than the decoder's limit; nothing was allocated for it.
    case frameTooLarge(payloadLength: UInt32, limitBytes: Int, streamOffset: UInt64)
    /// The stored frame CRC does not match CRC-32C of header bytes 0..<12 ++ payload.
    case frameChecksumMismatch(stored: UInt32, computed: UInt32, streamOffset: UInt64)
    /// Flag bits are set that version 1 does not define (all of them).
    case unknownFrameFlags(UInt16, streamOffset: UInt64)
    /// The type code names no message of protocol version 1.
    case unknownMessageType(UInt8, streamOffset: UInt64)
    /// The payload ends inside a field: `needed` bytes at `payloadOffset`, only `available` left.
    case truncatedMessage(MessageType, field: String, payloadOffset: Int, needed: Int, available: Int, streamOffset: UInt64?)
    /// A field holds a value the specification does not allow.
    case invalidField(MessageType, field: String, problem: String, payloadOffset: Int?, streamOffset: UInt64?)
    /// Bytes follow the message's last field.
    case trailingBytes(MessageType, count: Int, payloadOffset: Int, streamOffset: UInt64?)
    /// A batch inside the message fails the checks of docs/FORMAT.md section 6.3.
    case invalidBatch(MessageType, index: Int, payloadOffset: Int?, defect: BatchDefect, streamOffset: UInt64?)
    /// Encoding only: the message's payload would exceed the largest frame.
    case messageTooLarge(MessageType, payloadBytes: Int, limitBytes: Int)

    public var description: String {
        switch self {
        case .badMagic(let found, let at):
            return "frame at stream offset \(at): bad magic \(Self.hex(found)) (expected 0x50524c53, \"SLRP\")"
        case .unsupportedFrameVersion(let v, let at):
            return "frame at stream offset \(at): unsupported framing version \(v) (header byte 4; expected 1)"
        case .frameTooLarge(let length, let limit, let at):
            return "frame at stream offset \(at): payload length \(length) bytes (header bytes 8..<12) makes a frame of "
                + "\(UInt64(length) + UInt64(Frame.headerByteCount)) bytes, over the limit of \(limit) bytes"
        case .frameChecksumMismatch(let stored, let computed, let at):
            return "frame at stream offset \(at): frame CRC mismatch (stored \(Self.hex(stored)), computed \(Self.hex(computed)) "
                + "over header bytes 0..<12 and the payload)"
        case .unknownFrameFlags(let flags, let at):
            return "frame at stream offset \(at): unknown frame flags \(Self.hex(flags)) (header bytes 6..<8; version 1 defines none)"
        case .unknownMessageType(let code, let at):
            return "frame at stream offset \(at): unknown message type 0x\(String(code, radix: 16)) (header byte 5)"
        case .truncatedMessage(let type, let field, let offset, let needed, let available, let at):
            return "\(type.name).\(field)\(Self.location(offset, at)): needs \(needed) bytes, the payload has \(available) left"
        case .invalidField(let type, let field, let problem, let offset, let at):
            return "\(type.name).\(field)\(Self.location(offset, at)): \(problem)"
        case .trailingBytes(let type, let count, let offset, let at):
            return "\(type.name)\(Self.location(offset, at)): \(count) bytes after the last field"
        case .invalidBatch(let type, let index, let offset, let defect, let at):
            return "\(type.name).batches[\(index)]\(Self.location(offset, at)): \(defect)"
        case .messageTooLarge(let type, let bytes, let limit):
            return "\(type.name): payload of \(bytes) bytes exceeds the largest frame payload (\(limit) bytes)"
        }
    }

    static func hex<T: FixedWidthInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }

    static func location(_ payloadOffset: Int?, _ frameOffset: UInt64?) -> String {
        switch (payloadOffset, frameOffset) {
        case (let p?, let f?):
            " at stream offset \(f + UInt64(Frame.headerByteCount) + UInt64(p)) (payload offset \(p) of the frame at \(f))"
        case (let p?, nil): " at payload offset \(p)"
        case (nil, let f?): " in the frame at stream offset \(f)"
        case (nil, nil): ""
        }
    }

    /// The same error, located in the frame that started at `streamOffset`.
    func located(inFrameAt streamOffset: UInt64?) -> ProtocolError {
        guard let streamOffset else { return self }
        switch self {
        case .truncatedMessage(let t, let f, let p, let n, let a, nil): return .truncatedMessage(t, field: f, payloadOffset: p, needed: n, available: a, streamOffset: streamOffset)
        case .invalidField(let t, let f, let problem, let p, nil): return .invalidField(t, field: f, problem: problem, payloadOffset: p, streamOffset: streamOffset)
        case .trailingBytes(let t, let c, let p, nil): return .trailingBytes(t, count: c, payloadOffset: p, streamOffset: streamOffset)
        case .invalidBatch(let t, let i, let p, let d, nil): return .invalidBatch(t, index: i, payloadOffset: p, defect: d, streamOffset: streamOffset)
        default: return self
        }
    }

    /// The same error with the payload offset of its field filled in, when it was missing.
    func withPayloadOffset(_ lookup: (String) -> Int?) -> ProtocolError {
        switch self {
        case .invalidField(let t, let f, let problem, nil, let s):
            return .invalidField(t, field: f, problem: problem, payloadOffset: lookup(f), streamOffset: s)
        case .invalidBatch(let t, let i, nil, let d, let s):
            return .invalidBatch(t, index: i, payloadOffset: lookup("batches[\(i)]"), defect: d, streamOffset: s)
        default: return self
        }
    }
}
