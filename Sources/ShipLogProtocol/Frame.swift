import ShipLogFormat

/// One frame: the unit on the wire (docs/PROTOCOL.md section 3).
///
/// Header, 16 bytes, little-endian:
///
/// | offset | size | field         | value                                                      |
/// |-------:|-----:|---------------|------------------------------------------------------------|
/// |      0 |    4 | magic         | `SLRP` (`53 4c 52 50`)                                     |
/// |      4 |    1 | version       | framing version, 1                                         |
/// |      5 |    1 | type          | ``MessageType`` code                                       |
/// |      6 |    2 | flags         | 0 (version 1 defines no flags)                             |
/// |      8 |    4 | payloadLength | bytes of payload after the header                          |
/// |     12 |    4 | frameCRC      | CRC-32C of header bytes 0..<12, continued over the payload |
/// |     16 |    n | payload       | the message                                                |
public struct Frame: Hashable, Sendable {
    /// `SLRP` as stored (`53 4c 52 50`), read as a little-endian u32.
    public static let magic: UInt32 = 0x5052_4C53
    /// The framing version of protocol version 1.
    public static let version: UInt8 = 1
    /// Bytes of the fixed header.
    public static let headerByteCount = ProtocolLimits.frameHeaderBytes
    /// Header bytes covered by ``frameCRC``, before the payload: 0..<12.
    public static let crcCoverageHeaderBytes = 12

    public var type: MessageType
    /// Always 0 in version 1.
    public var flags: UInt16
    public var payload: [UInt8]
    /// Where the frame started in the decoder's input stream; `nil` for frames built locally.
    public var streamOffset: UInt64?

    public init(type: MessageType, flags: UInt16 = 0, payload: [UInt8], streamOffset: UInt64? = nil) {
        self.type = type
        self.flags = flags
        self.payload = payload
        self.streamOffset = streamOffset
    }

    /// The frame's bytes: header (with its CRC) followed by the payload.
    public func encoded() throws(ProtocolError) -> [UInt8] {
        guard payload.count <= ProtocolLimits.framePayloadBytesMax else {
            throw .messageTooLarge(type, payloadBytes: payload.count, limitBytes: ProtocolLimits.framePayloadBytesMax)
        }
        var bytes = [UInt8](repeating: 0, count: Self.headerByteCount)
        bytes.reserveCapacity(Self.headerByteCount + payload.count)
        bytes.append(contentsOf: payload)
        Self.sealHeader(&bytes, type: type, flags: flags)
        return bytes
    }

    /// The decoded message this frame carries.
    public func message() throws(ProtocolError) -> Message { try Message(frame: self) }

    /// Fills in the 16-byte header at the front of `bytes`, whose remainder is the payload.
    static func sealHeader(_ bytes: inout [UInt8], type: MessageType, flags: UInt16 = 0) {
        precondition(bytes.count >= headerByteCount && bytes.count - headerByteCount <= ProtocolLimits.framePayloadBytesMax)
        let payloadLength = UInt32(bytes.count - headerByteCount)
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
            raw[4] = version
            raw[5] = type.rawValue
            raw.storeBytes(of: flags.littleEndian, toByteOffset: 6, as: UInt16.self)
            raw.storeBytes(of: payloadLength.littleEndian, toByteOffset: 8, as: UInt32.self)
            let crc = checksum(UnsafeRawBufferPointer(raw))
            raw.storeBytes(of: crc.littleEndian, toByteOffset: 12, as: UInt32.self)
        }
    }

    /// CRC-32C of header bytes 0..<12 continued over the payload, for a whole frame in `frame`.
    static func checksum(_ frame: UnsafeRawBufferPointer) -> UInt32 {
        let head = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: frame[0..<crcCoverageHeaderBytes]))
        return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: frame[headerByteCount...]), continuing: head)
    }
}
