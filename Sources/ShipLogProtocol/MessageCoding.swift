import ShipLogFormat

// The primitive encodings of docs/PROTOCOL.md section 5.1, shared by every message.

/// Builds a frame: 16 header bytes reserved at the front, then the payload, written in order.
struct MessageWriter {
    private(set) var bytes: [UInt8]

    init(payloadCapacity: Int = 64) {
        bytes = [UInt8](repeating: 0, count: Frame.headerByteCount)
        bytes.reserveCapacity(Frame.headerByteCount + payloadCapacity)
    }

    var payloadCount: Int { bytes.count - Frame.headerByteCount }

    mutating func u8(_ value: UInt8) { bytes.append(value) }

    mutating func u16(_ value: UInt16) { integer(value) }
    mutating func u32(_ value: UInt32) { integer(value) }
    mutating func u64(_ value: UInt64) { integer(value) }
    mutating func lsn(_ value: LSN) { integer(value.rawValue) }
    mutating func epoch(_ value: Epoch) { integer(value.rawValue) }

    private mutating func integer<T: FixedWidthInteger>(_ value: T) {
        var v = value
        for _ in 0..<(T.bitWidth / 8) {
            bytes.append(UInt8(truncatingIfNeeded: v))
            v >>= 8
        }
    }

    mutating func raw(_ value: [UInt8]) { bytes.append(contentsOf: value) }
    mutating func raw(_ value: UnsafeRawBufferPointer) { bytes.append(contentsOf: value) }

    /// `u8` length, then the UTF-8 bytes (the caller has checked the length fits).
    mutating func shortString(_ value: String) {
        let utf8 = Array(value.utf8)
        precondition(utf8.count <= Int(UInt8.max))
        u8(UInt8(utf8.count))
        raw(utf8)
    }

    /// `u16` length, then the UTF-8 bytes (the caller has checked the length fits).
    mutating func text(_ value: String) {
        let utf8 = Array(value.utf8)
        precondition(utf8.count <= Int(UInt16.max))
        u16(UInt16(utf8.count))
        raw(utf8)
    }

    /// Unsigned LEB128 (docs/FORMAT.md section 7), shortest form.
    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// The finished frame: header filled in, CRC computed.
    consuming func frame(type: MessageType) throws(ProtocolError) -> [UInt8] {
        guard payloadCount <= ProtocolLimits.framePayloadBytesMax else {
            throw .messageTooLarge(type, payloadBytes: payloadCount, limitBytes: ProtocolLimits.framePayloadBytesMax)
        }
        Frame.sealHeader(&bytes, type: type)
        return bytes
    }
}

/// Reads a payload field by field, checking every length against what is left before using it.
/// Records where each field started, so that errors found later can name its offset.
struct MessageReader {
    let type: MessageType
    let payload: [UInt8]
    private(set) var position = 0
    /// Each field read so far and its payload offset, in order.
    private(set) var fieldOffsets: [(name: String, offset: Int)] = []

    init(type: MessageType, payload: [UInt8]) {
        self.type = type
        self.payload = payload
    }

    var remaining: Int { payload.count - position }

    func offset(of field: String) -> Int? {
        fieldOffsets.last(where: { $0.name == field })?.offset
    }

    /// Marks the start of `field` and checks that `count` bytes are left for it.
    private mutating func begin(_ field: String, count: Int) throws(ProtocolError) {
        fieldOffsets.append((field, position))
        guard count <= remaining else {
            throw .truncatedMessage(type, field: field, payloadOffset: position, needed: count, available: remaining, streamOffset: nil)
        }
    }

    func invalid(_ field: String, _ problem: String, at offset: Int? = nil) -> ProtocolError {
        .invalidField(type, field: field, problem: problem, payloadOffset: offset ?? self.offset(of: field), streamOffset: nil)
    }

    mutating func u8(_ field: String) throws(ProtocolError) -> UInt8 {
        try begin(field, count: 1)
        defer { position += 1 }
        return payload[position]
    }

    mutating func u16(_ field: String) throws(ProtocolError) -> UInt16 { try integer(field) }
    mutating func u32(_ field: String) throws(ProtocolError) -> UInt32 { try integer(field) }
    mutating func u64(_ field: String) throws(ProtocolError) -> UInt64 { try integer(field) }
    mutating func lsn(_ field: String) throws(ProtocolError) -> LSN { LSN(try integer(field)) }
    mutating func epoch(_ field: String) throws(ProtocolError) -> Epoch { Epoch(try integer(field)) }

    private mutating func integer<T: FixedWidthInteger>(_ field: String) throws(ProtocolError) -> T {
        let size = T.bitWidth / 8
        try begin(field, count: size)
        var value: T = 0
        for i in 0..<size { value |= T(payload[position + i]) << (8 * i) }
        position += size
        return value
    }

    /// Exactly `count` raw bytes.
    mutating func bytes(_ field: String, count: Int) throws(ProtocolError) -> [UInt8] {
        try begin(field, count: count)
        defer { position += count }
        return Array(payload[position..<position + count])
    }

    /// Everything left in the payload.
    mutating func rest(_ field: String) throws(ProtocolError) -> [UInt8] {
        try bytes(field, count: remaining)
    }

    /// A `u32` length (`lengthField`), checked against `limit` (named `limitName` in the error)
    /// before anything is read or allocated, then that many raw bytes (`field`).
    mutating func bytes(_ field: String, lengthField: String, atMost limit: Int, limitName: String) throws(ProtocolError) -> [UInt8] {
        let length = try u32(lengthField)
        guard Int(length) <= limit else {
            throw invalid(lengthField, "\(length) bytes exceed \(limitName) (\(limit))")
        }
        return try bytes(field, count: Int(length))
    }

    /// A `u8` length (checked against `range` before anything is read or allocated), then that
    /// many bytes of UTF-8.
    mutating func shortString(_ field: String, bytes range: ClosedRange<Int>) throws(ProtocolError) -> String {
        let length = Int(try u8(field))
        return try string(field, length: length, range: range, lengthOffset: position - 1)
    }

    /// A `u16` length (checked against `range` first), then that many bytes of UTF-8.
    mutating func text(_ field: String, bytes range: ClosedRange<Int>) throws(ProtocolError) -> String {
        let length = Int(try u16(field))
        return try string(field, length: length, range: range, lengthOffset: position - 2)
    }

    private mutating func string(_ field: String, length: Int, range: ClosedRange<Int>, lengthOffset: Int) throws(ProtocolError) -> String {
        guard range.contains(length) else {
            throw invalid(field, "length \(length) bytes is outside \(range.lowerBound) ... \(range.upperBound)", at: lengthOffset)
        }
        guard length <= remaining else {
            throw .truncatedMessage(type, field: field, payloadOffset: position, needed: length, available: remaining, streamOffset: nil)
        }
        let utf8 = payload[position..<position + length]
        guard let value = String(validating: utf8, as: UTF8.self) else {
            throw invalid(field, "is not valid UTF-8", at: position)
        }
        position += length
        return value
    }

    /// `count` batches back to back, each checked with `Batch.decode` (docs/FORMAT.md 6.3
    /// conditions 1-11). Their continuity is checked by the message's `validate()`.
    mutating func batches(count: Int) throws(ProtocolError) -> [Batch] {
        var batches: [Batch] = []
        batches.reserveCapacity(min(count, 1024))
        for index in 0..<count {
            let field = "batches[\(index)]"
            fieldOffsets.append((field, position))
            let start = position
            let decoding = payload.withUnsafeBytes { Batch.decode(UnsafeRawBufferPointer(rebasing: $0[start...])) }
            switch decoding {
            case .needMoreData(let needed):
                throw .truncatedMessage(type, field: field, payloadOffset: start, needed: needed, available: remaining, streamOffset: nil)
            case .invalid(let defect):
                throw .invalidBatch(type, index: index, payloadOffset: start, defect: defect, streamOffset: nil)
            case .batch(let header):
                let end = start + header.batchByteCount
                batches.append(Batch(verifiedHeader: header, bytes: Array(payload[start..<end])))
                position = end
            }
        }
        return batches
    }

    /// The payload must end here.
    func end() throws(ProtocolError) {
        guard remaining == 0 else {
            throw .trailingBytes(type, count: remaining, payloadOffset: position, streamOffset: nil)
        }
    }
}

// MARK: - Checks shared by `validate()` implementations

enum MessageCheck {
    static func invalid(_ type: MessageType, _ field: String, _ problem: String) -> ProtocolError {
        .invalidField(type, field: field, problem: problem, payloadOffset: nil, streamOffset: nil)
    }

    /// An id: 1 ... idBytesMax bytes of UTF-8.
    static func id(_ value: String, _ type: MessageType, _ field: String) throws(ProtocolError) {
        let count = value.utf8.count
        guard count >= 1 && count <= ProtocolLimits.idBytesMax else {
            throw invalid(type, field, "length \(count) bytes is outside 1 ... \(ProtocolLimits.idBytesMax) (idBytesMax)")
        }
    }

    /// A human-readable text: at most reasonBytesMax bytes of UTF-8.
    static func text(_ value: String, _ type: MessageType, _ field: String) throws(ProtocolError) {
        let count = value.utf8.count
        guard count <= ProtocolLimits.reasonBytesMax else {
            throw invalid(type, field, "length \(count) bytes exceeds reasonBytesMax (\(ProtocolLimits.reasonBytesMax))")
        }
    }

    /// Exactly `size` bytes.
    static func fixed(_ value: [UInt8], size: Int, _ type: MessageType, _ field: String) throws(ProtocolError) {
        guard value.count == size else {
            throw invalid(type, field, "must be exactly \(size) bytes, not \(value.count)")
        }
    }

    /// Batches back to back in one message: each continues the one before it (docs/FORMAT.md 6.4):
    /// dense LSNs, the chain, non-decreasing epochs. The last one must not pass `lastLSN`.
    static func batchSequence(_ batches: [Batch], through lastLSN: LSN, lastLSNField: String, _ type: MessageType) throws(ProtocolError) {
        guard batches.count <= ProtocolLimits.batchesPerFrameMax else {
            throw invalid(type, "batchCount", "\(batches.count) batches exceed batchesPerFrameMax (\(ProtocolLimits.batchesPerFrameMax))")
        }
        for (index, batch) in batches.enumerated() {
            guard batch.bytes.count == batch.header.batchByteCount else {
                throw invalid(type, "batches[\(index)]", "holds \(batch.bytes.count) bytes, its header says \(batch.header.batchByteCount)")
            }
            guard index > 0 else { continue }
            let previous = batches[index - 1].header
            let header = batch.header
            let expected = previous.lsnRange.next
            guard header.baseLSN == expected else {
                throw invalid(type, "batches[\(index)]", "base LSN \(header.baseLSN) does not follow the previous batch (expected \(expected))")
            }
            guard header.previousBatchCRC == previous.batchCRC else {
                throw invalid(
                    type, "batches[\(index)]",
                    "previousBatchCRC \(ProtocolError.hex(header.previousBatchCRC)) does not chain to the previous batch's batchCRC \(ProtocolError.hex(previous.batchCRC))")
            }
            guard header.epoch >= previous.epoch else {
                throw invalid(type, "batches[\(index)]", "epoch \(header.epoch) is below the previous batch's epoch \(previous.epoch)")
            }
        }
        if let last = batches.last, last.lsnRange.last > lastLSN {
            throw invalid(type, lastLSNField, "\(lastLSN) is before the last LSN carried, \(last.lsnRange.last)")
        }
    }

    /// A wait: at most requestWaitMillisMax.
    static func wait(_ value: UInt32, _ type: MessageType, _ field: String) throws(ProtocolError) {
        guard value <= ProtocolLimits.requestWaitMillisMax else {
            throw invalid(type, field, "\(value) ms exceeds requestWaitMillisMax (\(ProtocolLimits.requestWaitMillisMax) ms)")
        }
    }
}
