// Fuzz target `footer_decoder`: SegmentFooter.footerLength(fromTrailer:) and SegmentFooter.decode.
//
// Input: byte 0 is the mode, bytes 1..<9 the segment's baseLSN (little-endian), the rest the
// tail of a segment file (normally: a footer, maybe with bytes before it).
//   mode bit 0: recompute footerCRC first (of the footer the trailer locates, and of the whole tail)
//   mode bit 1: decode from an odd address (every multi-byte field misaligned)
// Two decodes per input: (a) as a reader opening a sealed segment does — trailer = last 8 bytes,
// footer = the footerLength bytes ending there; (b) the whole tail passed to decode directly.
//
// Invariants (beyond "never traps, never reads out of bounds, never allocates past the limits"):
//   * footerLength(fromTrailer:) and decode agree with a reference reading of docs/FORMAT.md 10.2;
//   * a decoded footer is consistent (byteCount, entry count, strictly ascending index within
//     [baseLSN, lastLSN] and below dataEnd, batchCount >= 1) and re-encodes with encoded(baseLSN:)
//     to the same bytes (reserved bytes 52..<56 and hence footerCRC aside).
import ShipLogFormat

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 9 else { return 0 }
    let mode = data[0]
    var baseRaw: UInt64 = 0
    for i in 0..<8 { baseRaw |= UInt64(data[1 + i]) << (8 * UInt64(i)) }
    let baseLSN = LSN(baseRaw)
    let tail = Array(UnsafeBufferPointer(start: data + 9, count: size - 9))
    let shift = Int(mode >> 1) & 1

    // (a) Through the trailer.
    if tail.count >= 8 {
        let length = withExactBuffer(Array(tail[(tail.count - 8)...]), shift: shift) { SegmentFooter.footerLength(fromTrailer: $0) }
        let expected = referenceFooterLength(Array(tail[(tail.count - 8)...]))
        require(length == expected, "footerLength(fromTrailer:) = \(String(describing: length)), spec says \(String(describing: expected))")
        if let length, length <= tail.count {
            var footer = Array(tail[(tail.count - length)...])
            if mode & 1 != 0 { put32(&footer, 4, crc(footer, 8..<footer.count)) }
            checkFooter(footer, baseLSN: baseLSN, shift: shift)
        }
    }
    // (b) The whole tail.
    var whole = tail
    if mode & 1 != 0 && whole.count >= 8 { put32(&whole, 4, crc(whole, 8..<whole.count)) }
    checkFooter(whole, baseLSN: baseLSN, shift: shift)
    // Short buffers must be refused by footerLength without reading past them.
    if tail.count < 8 {
        require(withExactBuffer(tail, shift: shift) { SegmentFooter.footerLength(fromTrailer: $0) } == nil, "short trailer accepted")
    }
    return 0
}

/// docs/FORMAT.md 10.2, the trailer.
func referenceFooterLength(_ t: [UInt8]) -> Int? {
    guard t.count == 8, le32(t, 4) == trailerMagic else { return nil }
    let length = Int(le32(t, 0))
    guard length >= 64, (length - 64) % 8 == 0, length <= 64 + 8 * FormatLimits.indexEntriesMax else { return nil }
    return length
}

/// docs/FORMAT.md 10.2, the footer: the defect kind, or nil when valid.
func referenceFooterDefect(_ b: [UInt8], baseLSN: LSN) -> String? {
    guard b.count >= 64 else { return "footerMissing" }
    guard le32(b, 0) == footerMagic else { return "footerBadMagic" }
    guard le32(b, 4) == crc(b, 8..<b.count) else { return "footerChecksumMismatch" }
    let n = Int(le32(b, 8))
    guard 56 + 8 * n + 8 == b.count else { return "footerInconsistent" }
    guard Int(le32(b, b.count - 8)) == b.count, le32(b, b.count - 4) == trailerMagic else { return "footerInconsistent" }
    var previous: (lsn: UInt64, position: UInt32)?
    for i in 0..<n {
        let delta = UInt64(le32(b, 56 + 8 * i)), position = le32(b, 60 + 8 * i)
        let (lsn, overflow) = baseLSN.rawValue.addingReportingOverflow(delta)
        guard !overflow else { return "footerInconsistent" }
        if let p = previous, !(p.lsn < lsn && p.position < position) { return "footerInconsistent" }
        previous = (lsn, position)
    }
    let lastLSN = le64(b, 16)
    guard lastLSN >= baseLSN.rawValue, le32(b, 12) >= 1 else { return "footerInconsistent" }
    if let p = previous, p.lsn > lastLSN || UInt64(p.position) >= le64(b, 24) { return "footerInconsistent" }
    return nil
}

func kind(_ defect: SegmentDefect) -> String {
    switch defect {
    case .footerMissing: "footerMissing"
    case .footerBadMagic: "footerBadMagic"
    case .footerChecksumMismatch: "footerChecksumMismatch"
    case .footerInconsistent: "footerInconsistent"
    default: "\(defect)"  // header defects: never expected from a footer decode
    }
}

func checkFooter(_ bytes: [UInt8], baseLSN: LSN, shift: Int) {
    let result = withExactBuffer(bytes, shift: shift) { raw in
        Result { () throws(SegmentDefect) in try SegmentFooter.decode(raw, baseLSN: baseLSN) }
    }
    let reference = referenceFooterDefect(bytes, baseLSN: baseLSN)
    trace("decode(\(bytes.count) bytes): \(result)")
    let footer: SegmentFooter
    switch result {
    case .failure(let defect):
        require(reference == kind(defect), "decode says \(defect), spec says \(reference ?? "valid")")
        return
    case .success(let f):
        require(reference == nil, "decode accepted a footer the spec rejects (\(reference!))")
        footer = f
    }
    require(footer.byteCount == bytes.count, "byteCount \(footer.byteCount) of \(bytes.count)")
    require(footer.index.count == Int(le32(bytes, 8)) && footer.index.count <= FormatLimits.indexEntriesMax, "entry count")
    require(footer.batchCount >= 1 && footer.lastLSN >= baseLSN, "batchCount / lastLSN")
    var previous: SegmentIndexEntry?
    for entry in footer.index {
        require(entry.lsn >= baseLSN && entry.lsn <= footer.lastLSN, "index LSN \(entry.lsn) outside \(baseLSN)...\(footer.lastLSN)")
        require(entry.position >= 0 && UInt64(entry.position) < footer.dataEnd, "index position \(entry.position)")
        if let p = previous { require(p.lsn < entry.lsn && p.position < entry.position, "index not ascending") }
        previous = entry
    }
    // Re-encode: identical except the reserved bytes (written as zero) and so the CRC.
    var canonical = bytes
    for i in 52..<56 { canonical[i] = 0 }
    put32(&canonical, 4, crc(canonical, 8..<canonical.count))
    let encoded = footer.encoded(baseLSN: baseLSN)
    require(encoded == canonical, "footer does not re-encode to the same bytes")
}
