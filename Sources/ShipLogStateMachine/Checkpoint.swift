import CShipLogSupport
public import ShipLogFormat
public import ShipLogStorage

/// The 64-byte header of a checkpoint file. See docs/FORMAT.md, "Checkpoint".
///
/// | offset | size | field      | meaning                                               |
/// |-------:|-----:|------------|-------------------------------------------------------|
/// |      0 |    4 | magic      | `SLCK`                                                |
/// |      4 |    4 | headerCRC  | CRC32C of bytes 8..<64                                |
/// |      8 |    2 | version    | 1                                                     |
/// |     10 |    2 | flags      | 0                                                     |
/// |     12 |    4 | reserved   | 0                                                     |
/// |     16 |    8 | lsn        | the state holds every record up to this LSN           |
/// |     24 |    8 | epoch      | epoch of the record at `lsn`'s writer                 |
/// |     32 |    8 | createdAt  | nanoseconds since the Unix epoch                      |
/// |     40 |    8 | kind       | state machine kind, ASCII, zero padded                |
/// |     48 |    8 | entryCount | entries in the snapshot (informational)               |
/// |     56 |    8 | reserved   | 0                                                     |
///
/// The body (the state machine's bytes) follows; the file ends with a 16-byte trailer:
/// magic `SLCE` (4), checkpointCRC (4): CRC32C of header ++ body ++ trailer bytes 8..<16,
/// bodyLength (8).
public struct CheckpointHeader: Hashable, Sendable {
    public static let byteCount = 64
    public static let trailerByteCount = 16
    public static let magic: UInt32 = 0x4B43_4C53  // "SLCK"
    public static let trailerMagic: UInt32 = 0x4543_4C53  // "SLCE"
    public static let currentVersion: UInt16 = 1
    /// Longest ``kind``, in bytes.
    public static let kindBytesMax = 8

    public var lsn: LSN
    public var epoch: Epoch
    public var createdAt: UInt64
    public var kind: String
    public var entryCount: UInt64

    public init(lsn: LSN, epoch: Epoch, createdAt: UInt64, kind: String, entryCount: UInt64) {
        precondition(kind.utf8.count <= Self.kindBytesMax && kind.allSatisfy(\.isASCII))
        self.lsn = lsn
        self.epoch = epoch
        self.createdAt = createdAt
        self.kind = kind
        self.entryCount = entryCount
    }

    public func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.byteCount)
        bytes.withUnsafeMutableBytes { buffer in
            buffer.storeBytes(of: Self.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
            buffer.storeBytes(of: Self.currentVersion.littleEndian, toByteOffset: 8, as: UInt16.self)
            buffer.storeBytes(of: lsn.rawValue.littleEndian, toByteOffset: 16, as: UInt64.self)
            buffer.storeBytes(of: epoch.rawValue.littleEndian, toByteOffset: 24, as: UInt64.self)
            buffer.storeBytes(of: createdAt.littleEndian, toByteOffset: 32, as: UInt64.self)
            for (i, byte) in kind.utf8.enumerated() { buffer[40 + i] = byte }
            buffer.storeBytes(of: entryCount.littleEndian, toByteOffset: 48, as: UInt64.self)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[8..<Self.byteCount]))
            buffer.storeBytes(of: crc.littleEndian, toByteOffset: 4, as: UInt32.self)
        }
        return bytes
    }

    public static func decode(_ bytes: [UInt8]) -> CheckpointHeader? {
        guard bytes.count >= byteCount else { return nil }
        return bytes.withUnsafeBytes { raw -> CheckpointHeader? in
            func u64(_ offset: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
            guard UInt32(littleEndian: raw.loadUnaligned(as: UInt32.self)) == magic,
                UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
                    == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[8..<byteCount])),
                UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt16.self)) == currentVersion,
                UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 10, as: UInt16.self)) == 0
            else { return nil }
            let kindBytes = raw[40..<48].prefix { $0 != 0 }
            return CheckpointHeader(
                lsn: LSN(u64(16)), epoch: Epoch(u64(24)), createdAt: u64(32),
                kind: String(decoding: kindBytes, as: UTF8.self), entryCount: u64(48))
        }
    }
}

/// Streams a checkpoint body to its file in large writes, keeping the running CRC.
public struct CheckpointWriter {
    /// Bytes buffered before each write.
    public static let bufferBytes = 1 << 20

    let handle: any FileHandle
    private(set) var offset: Int64
    private(set) var crc: UInt32
    private(set) var bodyLength: UInt64 = 0
    private var buffer: [UInt8] = []

    init(handle: any FileHandle, header: [UInt8]) {
        self.handle = handle
        self.offset = Int64(header.count)
        self.crc = CRC32C.checksum(header)
        buffer.reserveCapacity(Self.bufferBytes)
    }

    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws(LogError) {
        buffer.append(contentsOf: bytes)
        bodyLength += UInt64(bytes.count)
        if buffer.count >= Self.bufferBytes { try flush() }
    }

    public mutating func write(_ bytes: [UInt8]) throws(LogError) {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(LogError) in try write(raw) } }
        try result.get()
    }

    /// Writes an unsigned LEB128 varint.
    public mutating func writeVarint(_ value: UInt64) throws(LogError) {
        var v = value
        var bytes: (UInt64, UInt64) = (0, 0)
        let count = withUnsafeMutableBytes(of: &bytes) { raw -> Int in
            var i = 0
            while v >= 0x80 {
                raw[i] = UInt8(truncatingIfNeeded: v) | 0x80
                v >>= 7
                i += 1
            }
            raw[i] = UInt8(v)
            return i + 1
        }
        let result = withUnsafeBytes(of: &bytes) { raw in
            Result { () throws(LogError) in try write(UnsafeRawBufferPointer(rebasing: raw[0..<count])) }
        }
        try result.get()
    }

    mutating func flush() throws(LogError) {
        guard !buffer.isEmpty else { return }
        crc = CRC32C.checksum(buffer, continuing: crc)
        do { try handle.write(buffer, toAbsoluteOffset: offset) } catch { throw error.isOutOfSpace ? .outOfSpace(error) : .writeFailed(error) }
        offset += Int64(buffer.count)
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes and appends the trailer.
    mutating func finish() throws(LogError) {
        try flush()
        var trailer = [UInt8](repeating: 0, count: CheckpointHeader.trailerByteCount)
        trailer.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: CheckpointHeader.trailerMagic.littleEndian, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: bodyLength.littleEndian, toByteOffset: 8, as: UInt64.self)
        }
        let total = CRC32C.checksum(trailer[8..<16], continuing: crc)
        trailer.withUnsafeMutableBytes { $0.storeBytes(of: total.littleEndian, toByteOffset: 4, as: UInt32.self) }
        do { try handle.write(trailer, toAbsoluteOffset: offset) } catch { throw error.isOutOfSpace ? .outOfSpace(error) : .writeFailed(error) }
        offset += Int64(trailer.count)
    }
}

/// Streams a checkpoint body out of its file, keeping the running CRC. The state machine
/// reads until ``isAtEnd``; the host checks the CRC once the body is consumed.
public struct CheckpointReader {
    public static let bufferBytes = 1 << 20

    let handle: any FileHandle
    let path: FilePath
    let bodyEnd: Int64
    private var offset: Int64
    private var buffer: [UInt8] = []
    private var position = 0
    private(set) var crc: UInt32

    init(handle: any FileHandle, path: FilePath, header: [UInt8], bodyLength: Int64) {
        self.handle = handle
        self.path = path
        self.offset = Int64(CheckpointHeader.byteCount)
        self.bodyEnd = Int64(CheckpointHeader.byteCount) + bodyLength
        self.crc = CRC32C.checksum(header)
    }

    /// True when the whole body has been read.
    public var isAtEnd: Bool { position == buffer.count && offset == bodyEnd }

    private mutating func refill() throws(StateMachineError) {
        guard position == buffer.count, offset < bodyEnd else { return }
        let count = Int(min(Int64(Self.bufferBytes), bodyEnd - offset))
        do { buffer = try handle.read(count: count, fromAbsoluteOffset: offset) } catch {
            throw StateMachineError("reading checkpoint \(path): \(error)")
        }
        guard buffer.count == count else { throw StateMachineError("checkpoint \(path) ends early") }
        crc = CRC32C.checksum(buffer, continuing: crc)
        offset += Int64(count)
        position = 0
    }

    /// Reads exactly `count` bytes (the caller has checked `count` against its own limits).
    public mutating func read(count: Int) throws(StateMachineError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            try refill()
            guard position < buffer.count else {
                throw StateMachineError("checkpoint \(path) body ends inside an entry")
            }
            let take = min(count - out.count, buffer.count - position)
            out.append(contentsOf: buffer[position..<position + take])
            position += take
        }
        return out
    }

    /// Reads an unsigned LEB128 varint of at most 10 bytes.
    public mutating func readVarint() throws(StateMachineError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            try refill()
            guard position < buffer.count else { throw StateMachineError("checkpoint \(path) body ends inside a varint") }
            let byte = buffer[position]
            position += 1
            guard shift < 64 else { throw StateMachineError("checkpoint \(path): varint too long") }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// Reads (and checksums) the rest of the body without keeping it.
    mutating func skipToEnd() throws(StateMachineError) {
        while !isAtEnd {
            position = buffer.count
            try refill()
        }
    }

    /// The CRC once everything is read.
    var finalCRC: UInt32 { crc }
}
