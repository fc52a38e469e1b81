// Fuzz target `batch_decoder`: BatchHeader.decode, Batch.decode, Batch.decoding and
// Batch.records() on arbitrary bytes.
//
// Input: byte 0 is the mode, the rest is the batch (plus anything after it).
//   mode bit 0: recompute payloadCRC and batchCRC first (reach the range, LZ4 and record checks)
//   mode bit 1: decode from an odd address (every multi-byte field misaligned)
//
// Invariants (beyond "never traps, never reads out of bounds"):
//   * CRC32C: hardware == software, and checksum(b, continuing: checksum(a)) == checksum(a ++ b);
//   * BatchHeader.decode agrees with a reference reading of docs/FORMAT.md 6.3 conditions 1-9;
//   * a decoded header re-encodes to exactly the same 64 bytes;
//   * Batch.decode agrees with the header decode, and with the spec on conditions 10-11;
//   * Batch.decoding(exact bytes) accepts exactly what Batch.decode accepted;
//   * records(): accepted iff the payload decompresses to uncompressedLength and the reference
//     parser of section 7 accepts the block; yields recordCount records, each within
//     recordBytesMax, identical through the iterator, forEach and the reference parser;
//   * re-building the records with BatchBuilder and sealing them with the same header fields
//     decodes to the same records, and gives back the identical batch bytes when the input was
//     uncompressed with minimal varints.
import ShipLogFormat

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let mode = data[0]
    var body = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    if mode & 1 != 0 { fixBatchCRCs(&body, at: 0) }
    withExactBuffer(body, shift: Int(mode >> 1) & 1) { checkBatch($0) }
    return 0
}

/// What docs/FORMAT.md 6.3 says about header conditions 1-9 (nil: all hold).
func referenceHeaderDefect(_ b: UnsafeRawBufferPointer) -> String? {
    func u16(_ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
    func u32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[o + $1]) << (8 * UInt32($1)) } }
    func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[o + $1]) << (8 * UInt64($1)) } }
    guard b.count >= 64 else { return "needMoreData" }
    guard u32(0) == batchMagic else { return "badMagic" }
    guard u32(4) == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[8..<64])) else { return "headerChecksumMismatch" }
    guard u16(16) == 1 else { return "unsupportedVersion" }
    let flags = u16(18)
    // Bit 4 (control batch) is valid only with codec 0 (docs/FORMAT.md 6.1).
    guard flags & 0xFFE0 == 0, flags & 0xF <= 1, !(flags & 0x10 != 0 && flags & 0xF != 0) else { return "unknownFlags" }
    let recordCount = u32(20), stored = u32(24), uncompressed = u32(28)
    guard recordCount >= 1, recordCount <= FormatLimits.recordsPerBatchMax else { return "recordCountOutOfRange" }
    guard Int(uncompressed) <= FormatLimits.batchUncompressedBytesMax, Int(stored) <= FormatLimits.batchStoredBytesMax,
        flags & 0xF != 0 || stored == uncompressed, uncompressed >= recordCount
    else { return "lengthOutOfRange" }
    let base = u64(32)
    guard base != 0, base <= UInt64.max - UInt64(recordCount) else { return "lsnOutOfRange" }
    guard u64(48) < base else { return "syncedThroughAhead" }
    return nil
}

func kind(_ defect: BatchDefect) -> String {
    switch defect {
    case .badMagic: "badMagic"
    case .headerChecksumMismatch: "headerChecksumMismatch"
    case .unsupportedVersion: "unsupportedVersion"
    case .unknownFlags: "unknownFlags"
    case .recordCountOutOfRange: "recordCountOutOfRange"
    case .lengthOutOfRange: "lengthOutOfRange"
    case .lsnOutOfRange: "lsnOutOfRange"
    case .syncedThroughAhead: "syncedThroughAhead"
    case .payloadChecksumMismatch: "payloadChecksumMismatch"
    case .decompressionFailed: "decompressionFailed"
    case .malformedRecordBlock: "malformedRecordBlock"
    }
}

func checkCRC(_ buffer: UnsafeRawBufferPointer) {
    let software = CRC32C.softwareChecksum(buffer)
    let dispatched = CRC32C.checksum(buffer)
    require(software == dispatched, "CRC32C dispatch \(dispatched) != software \(software) over \(buffer.count) bytes")
    if let hardware = CRC32C.hardwareChecksum(buffer) {
        require(hardware == software, "CRC32C hardware \(hardware) != software \(software) over \(buffer.count) bytes")
    }
    let split = buffer.count / 3
    let a = UnsafeRawBufferPointer(rebasing: buffer[..<split])
    let b = UnsafeRawBufferPointer(rebasing: buffer[split...])
    require(CRC32C.checksum(b, continuing: CRC32C.checksum(a)) == software, "CRC32C continuation mismatch")
}

func checkBatch(_ buffer: UnsafeRawBufferPointer) {
    checkCRC(buffer)

    // Header alone.
    let headerResult = BatchHeader.decode(buffer)
    let reference = referenceHeaderDefect(buffer)
    var header: BatchHeader?
    switch headerResult {
    case .needMoreData(let n):
        require(buffer.count < BatchHeader.byteCount && n == BatchHeader.byteCount, "header needMoreData(\(n)) with \(buffer.count) bytes")
        require(reference == "needMoreData", "spec says \(reference ?? "valid") for a short header")
    case .invalid(let defect):
        require(reference == kind(defect), "header defect \(kind(defect)), spec says \(reference ?? "valid")")
    case .header(let h):
        require(reference == nil, "header accepted, spec says \(reference!)")
        header = h
        // Re-encode: the same 64 bytes, the same batchCRC, and decode(encode(h)) == h.
        var copy = h
        var encoded = [UInt8](repeating: 0, count: BatchHeader.byteCount)
        let batchCRC = encoded.withUnsafeMutableBytes { copy.encode(into: $0) }
        require(batchCRC == h.batchCRC && copy == h, "re-encoded header changed its batchCRC")
        require(sameBytes(encoded, UnsafeRawBufferPointer(rebasing: buffer[0..<BatchHeader.byteCount])), "header does not re-encode to the same 64 bytes")
        // Limits.
        require(h.recordCount >= 1 && h.recordCount <= FormatLimits.recordsPerBatchMax, "recordCount \(h.recordCount)")
        require(Int(h.uncompressedLength) <= FormatLimits.batchUncompressedBytesMax, "uncompressedLength")
        require(h.batchByteCount <= FormatLimits.batchBytesMax, "batchByteCount \(h.batchByteCount)")
        require(h.lsnRange.count == UInt64(h.recordCount) && h.lsnRange.first == h.baseLSN, "lsnRange")
        require(h.lsnRange.last < LSN(UInt64.max), "the LSN after the batch must be representable")
        require(h.syncedThrough < h.baseLSN, "syncedThrough")
    }

    // Whole batch.
    let batchResult = Batch.decode(buffer)
    trace("header: \(headerResult)\nbatch: \(batchResult)")
    switch (headerResult, batchResult) {
    case (.needMoreData(let a), .needMoreData(let b)):
        require(a == b, "needMoreData \(a) vs \(b)")
    case (.invalid(let a), .invalid(let b)):
        require(a == b, "defect \(a) vs \(b)")
    case (.header(let h), .needMoreData(let n)):
        require(n == h.batchByteCount && buffer.count < n, "batch needMoreData(\(n)) with \(buffer.count) of \(h.batchByteCount) bytes")
    case (.header(let h), .invalid(.payloadChecksumMismatch(let stored, let computed))):
        require(buffer.count >= h.batchByteCount && stored == h.payloadCRC && stored != computed, "payload CRC verdict")
        let payload = UnsafeRawBufferPointer(rebasing: buffer[BatchHeader.byteCount..<h.batchByteCount])
        require(CRC32C.softwareChecksum(payload) == computed, "reported payload CRC is wrong")
    case (.header(let h), .batch(let h2)):
        require(h == h2, "Batch.decode returned a different header")
        require(buffer.count >= h.batchByteCount, "batch accepted with \(buffer.count) of \(h.batchByteCount) bytes")
        let payload = UnsafeRawBufferPointer(rebasing: buffer[BatchHeader.byteCount..<h.batchByteCount])
        require(CRC32C.softwareChecksum(payload) == h.payloadCRC, "batch accepted with a wrong payload CRC")
    default:
        invariantFailed("header decode \(headerResult) but batch decode \(batchResult)")
    }

    // Batch.decoding needs exactly one batch.
    if let h = header, buffer.count >= h.batchByteCount {
        let exact = Array(buffer[0..<h.batchByteCount])
        do {
            let batch = try Batch.decoding(exact)
            guard case .batch = batchResult else { invariantFailed("Batch.decoding accepted what Batch.decode rejected") }
            require(batch.header == h && sameBytes(batch.bytes, exact), "Batch.decoding changed the batch")
            checkRecords(batch)
        } catch {
            if case .batch = batchResult { invariantFailed("Batch.decoding rejected what Batch.decode accepted: \(error)") }
        }
        if buffer.count > h.batchByteCount {
            // With trailing bytes Batch.decoding must refuse.
            let longer = Array(buffer)
            require((try? Batch.decoding(longer)) == nil, "Batch.decoding accepted trailing bytes")
        }
    }
}

func checkRecords(_ batch: Batch) {
    let h = batch.header
    let payload = Array(batch.bytes[BatchHeader.byteCount...])
    let expected = Int(h.uncompressedLength)
    // The spec's verdict: decompression to exactly uncompressedLength, then the section 7 parser.
    var block: [UInt8]?
    switch h.codec {
    case .none:
        block = payload.count == expected ? payload : nil
    case .lz4:
        var produced: Int?
        let out = [UInt8](unsafeUninitializedCapacity: expected) { buffer, count in
            produced = payload.withUnsafeBytes { LZ4.decompress($0, into: UnsafeMutableRawBufferPointer(buffer)) }
            count = produced == expected ? expected : 0
        }
        block = produced == expected ? out : nil
    }
    let referenceRanges = block.flatMap { b in b.withUnsafeBytes { referenceRecords($0, recordCount: Int(h.recordCount)) } }

    let records: RecordBlock
    do {
        records = try batch.records()
        trace("records: \(records.count)")
    } catch {
        trace("records: \(error)")
        switch error {
        case .decompressionFailed:
            require(block == nil, "records() says decompressionFailed but the payload decompresses")
        case .malformedRecordBlock:
            require(block != nil && referenceRanges == nil, "records() says malformed, spec parser accepts")
        default:
            invariantFailed("records() threw \(error)")
        }
        return
    }
    guard let block, let referenceRanges else { invariantFailed("records() accepted a block the spec rejects") }
    require(records.count == Int(h.recordCount), "RecordBlock.count \(records.count) != recordCount \(h.recordCount)")
    require(sameBytes(records.storage, block), "RecordBlock.storage differs from the decompressed payload")

    // Iterator, forEach and the reference parser agree; every record is within limits.
    var iterated: [ArraySlice<UInt8>] = []
    iterated.reserveCapacity(records.count)
    for record in records {
        require(record.count <= FormatLimits.recordBytesMax, "record of \(record.count) bytes")
        iterated.append(record)
    }
    require(iterated.count == records.count, "iterator gave \(iterated.count) of \(records.count) records")
    var index = 0
    records.forEach { raw in
        require(index < iterated.count, "forEach gave too many records")
        let r = referenceRanges[index]
        require(sameBytes(raw, block[r]) && sameBytes(iterated[index], block[r]), "record \(index) differs")
        index += 1
    }
    require(index == records.count, "forEach gave \(index) of \(records.count) records")

    // Re-build with the library's encoder and compare.
    var builder = BatchBuilder(capacity: 0)
    for record in iterated {
        do { try builder.append(record) } catch {
            // The decoder accepts blocks up to batchUncompressedBytesMax; BatchBuilder.canAppend is
            // conservative by up to 5 bytes (docs/FORMAT.md 12), so only a full batch may refuse.
            require(error == .batchFull && expected + 5 > FormatLimits.batchUncompressedBytesMax, "re-append failed: \(error)")
            return
        }
    }
    let minimal = builder.uncompressedByteCount == expected
    if !minimal {
        let minimalSize = iterated.reduce(0) { $0 + minimalVarintLength($1.count) + $1.count }
        require(builder.uncompressedByteCount == minimalSize && minimalSize < expected, "rebuilt block size")
    }
    // A control batch is rebuilt from its control records (it is stored raw, flag set).
    var encoded: EncodedBatch
    if h.isControl {
        guard let controls = try? batch.controlRecords() else { return }
        encoded = EncodedBatch.control(controls)
        guard encoded.bytes.count == batch.bytes.count else { return }  // non-canonical control records
    } else {
        encoded = builder.encode(codec: h.codec)
    }
    let sealed = encoded.seal(
        baseLSN: h.baseLSN, epoch: h.epoch, previousBatchCRC: h.previousBatchCRC, syncedThrough: h.syncedThrough,
        timestamp: h.timestamp)
    let rebuilt: Batch
    do { rebuilt = try Batch.decoding(encoded.bytes) } catch { invariantFailed("re-encoded batch does not decode: \(error)") }
    require(rebuilt.header == sealed, "re-encoded header")
    do {
        let again = try rebuilt.records()
        require(again.count == records.count && zip(again, iterated).allSatisfy { sameBytes($0, $1) }, "re-encoded records differ")
    } catch {
        invariantFailed("re-encoded batch's records do not decode: \(error)")
    }
    if minimal && h.codec == .none && encoded.codec == .none {
        require(sameBytes(encoded.bytes, batch.bytes), "re-encoding an uncompressed, minimal batch changed its bytes")
    }
}
