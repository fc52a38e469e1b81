import ShipLogFormat

/// Turns a byte stream into frames, incrementally (docs/PROTOCOL.md section 3.3).
///
/// Feed it bytes as they arrive with ``append(_:)``, then call ``next()`` until it returns `nil`
/// ("need more data"). Incomplete input is never an error, whatever the split. A frame is
/// returned only once its CRC has been checked.
///
/// Memory is bounded: the decoder holds at most ``frameBytesLimit`` unconsumed bytes, so the
/// caller may append at most ``freeCapacity`` bytes at a time (a programming error otherwise).
/// ``freeCapacity`` is never 0 after ``next()`` has returned `nil`, because the bytes then held
/// are a strict prefix of one frame no larger than the limit. A header announcing a frame over
/// the limit is rejected as soon as its 16 bytes are present; nothing is allocated from the
/// length it claims.
///
/// After an error the decoder stays failed: ``next()`` throws the same error again and appended
/// bytes are discarded. The stream cannot be resynchronised; close the connection.
public struct FrameDecoder: Sendable {
    /// The largest frame accepted, in bytes (header included): ``ProtocolLimits/frameBytesMax``
    /// by default. Set it to ``ProtocolLimits/handshakeFrameBytesMax`` until the peer has
    /// authenticated, then raise it. 17 ... `frameBytesMax`.
    public var frameBytesLimit: Int {
        didSet {
            precondition(
                frameBytesLimit > Frame.headerByteCount && frameBytesLimit <= ProtocolLimits.frameBytesMax,
                "frameBytesLimit must be 17 ... frameBytesMax")
        }
    }

    /// Bytes received; `storage[readIndex...]` are not consumed yet.
    private(set) var storage: [UInt8] = []
    private var readIndex = 0
    /// The stream offset of `storage[readIndex]`: bytes consumed by frames so far.
    public private(set) var streamOffset: UInt64 = 0
    /// The error that stopped the decoder, if any.
    public private(set) var failure: ProtocolError?

    /// Buffers of at most this capacity are kept for reuse once empty; larger ones are released.
    static let retainedCapacityMax = 1 << 20

    public init(frameBytesLimit: Int = ProtocolLimits.frameBytesMax) {
        precondition(
            frameBytesLimit > Frame.headerByteCount && frameBytesLimit <= ProtocolLimits.frameBytesMax,
            "frameBytesLimit must be 17 ... frameBytesMax")
        self.frameBytesLimit = frameBytesLimit
    }

    /// Bytes appended and not yet returned as frames.
    public var bufferedByteCount: Int { storage.count - readIndex }

    /// The most bytes ``append(_:)`` accepts now.
    public var freeCapacity: Int {
        failure == nil ? max(0, frameBytesLimit - bufferedByteCount) : frameBytesLimit
    }

    /// How many more bytes complete the next frame, when known (the header is present and
    /// acceptable); at least 1. `nil` when fewer than 16 bytes are buffered, when a whole frame is
    /// already buffered, or after a failure.
    public var bytesToCompleteFrame: Int? {
        guard failure == nil, bufferedByteCount >= Frame.headerByteCount else { return nil }
        guard let total = try? headerFrameLength() else { return nil }
        return total > bufferedByteCount ? total - bufferedByteCount : nil
    }

    /// Adds received bytes. `bytes.count` must not exceed ``freeCapacity``. Ignored after a failure.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard failure == nil, !bytes.isEmpty else { return }
        precondition(
            bytes.count <= freeCapacity,
            "FrameDecoder.append: \(bytes.count) bytes exceed the free capacity of \(freeCapacity) bytes")
        compact()
        let needed = storage.count + bytes.count
        if needed > storage.capacity {
            // Grow geometrically, but never past the limit: the buffer stays within one frame.
            storage.reserveCapacity(min(max(needed, 2 * storage.capacity), frameBytesLimit))
        }
        storage.append(contentsOf: bytes)
    }

    /// Adds received bytes. `bytes.count` must not exceed ``freeCapacity``. Ignored after a failure.
    public mutating func append(contentsOf bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// The next whole, checked frame; `nil` when more bytes are needed.
    ///
    /// Checks, in order: magic, framing version, payload length against ``frameBytesLimit``
    /// (all three as soon as the 16 header bytes are present), then, once the whole frame is
    /// present, the frame CRC, the flags and the type code.
    public mutating func next() throws(ProtocolError) -> Frame? {
        if let failure { throw failure }
        do {
            return try decodeNext()
        } catch {
            failure = error
            storage = []
            readIndex = 0
            throw error
        }
    }

    /// The next frame, decoded as a message; `nil` when more bytes are needed.
    public mutating func nextMessage() throws(ProtocolError) -> Message? {
        guard let frame = try next() else { return nil }
        return try Message(frame: frame)
    }

    private mutating func decodeNext() throws(ProtocolError) -> Frame? {
        guard bufferedByteCount >= Frame.headerByteCount else { return nil }
        let total = try headerFrameLength()
        guard bufferedByteCount >= total else { return nil }
        let at = streamOffset
        let start = readIndex
        let frame: Result<Frame, ProtocolError> = storage.withUnsafeBytes { all in
            let raw = UnsafeRawBufferPointer(rebasing: all[start..<start + total])
            let stored = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
            let computed = Frame.checksum(raw)
            guard stored == computed else {
                return .failure(.frameChecksumMismatch(stored: stored, computed: computed, streamOffset: at))
            }
            let flags = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
            guard flags == 0 else { return .failure(.unknownFrameFlags(flags, streamOffset: at)) }
            guard let type = MessageType(rawValue: raw[5]) else {
                return .failure(.unknownMessageType(raw[5], streamOffset: at))
            }
            let payload = [UInt8](UnsafeRawBufferPointer(rebasing: raw[Frame.headerByteCount...]))
            return .success(Frame(type: type, flags: flags, payload: payload, streamOffset: at))
        }
        let result = try frame.get()
        readIndex += total
        streamOffset += UInt64(total)
        if readIndex == storage.count { compact() }
        return result
    }

    /// Checks the magic, version and length of the buffered header; returns the frame's total size.
    private func headerFrameLength() throws(ProtocolError) -> Int {
        let at = streamOffset
        let start = readIndex
        let result: Result<Int, ProtocolError> = storage.withUnsafeBytes { all in
            let raw = UnsafeRawBufferPointer(rebasing: all[start..<start + Frame.headerByteCount])
            let magic = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
            guard magic == Frame.magic else { return .failure(.badMagic(found: magic, streamOffset: at)) }
            guard raw[4] == Frame.version else { return .failure(.unsupportedFrameVersion(raw[4], streamOffset: at)) }
            let length = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            // Compare in 64 bits: a claimed 4 GiB must not wrap.
            guard UInt64(length) + UInt64(Frame.headerByteCount) <= UInt64(frameBytesLimit) else {
                return .failure(.frameTooLarge(payloadLength: length, limitBytes: frameBytesLimit, streamOffset: at))
            }
            return .success(Frame.headerByteCount + Int(length))
        }
        return try result.get()
    }

    /// Drops consumed bytes from the front of the buffer.
    private mutating func compact() {
        guard readIndex > 0 else { return }
        if readIndex == storage.count {
            if storage.capacity > Self.retainedCapacityMax {
                storage = []
            } else {
                storage.removeAll(keepingCapacity: true)
            }
        } else {
            storage.removeSubrange(0..<readIndex)
        }
        readIndex = 0
    }
}
