// Helpers shared by every fuzz target (compiled into each target binary).
//
// Layout convention for all targets: byte 0 of the fuzz input is a MODE byte whose bits turn on
// harness-side "fix-ups" (mainly recomputing CRC-32C fields), so that the fuzzer can get past the
// checksums and reach the range checks, LZ4 and record-block parsing. Inputs with the fix-up
// bits clear are decoded exactly as given, which keeps the checksum checks themselves fuzzed.
import ShipLogFormat

#if canImport(Glibc)
import Glibc
#endif

/// Reports a broken invariant and aborts, so libFuzzer records the input as a crash.
@inline(never)
func invariantFailed(_ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    var text = "FUZZ INVARIANT VIOLATED (\(file):\(line)): \(message())\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    abort()
}

/// FUZZ_VERBOSE=1 prints what each input decoded to (for triaging a reproducer).
let verbose = getenv("FUZZ_VERBOSE") != nil

func trace(_ message: @autoclosure () -> String) {
    guard verbose else { return }
    var text = message() + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// FUZZ_SKIP_CHECKS=id,id,... turns off named invariants (those guarded by `checkEnabled`), so
/// that fuzzing can go on past a known, reported bug until its fix lands.
let skippedChecks: Set<String> = {
    guard let raw = getenv("FUZZ_SKIP_CHECKS") else { return [] }
    return Set(String(cString: raw).split(separator: ",").map { String($0) })
}()

func checkEnabled(_ id: String) -> Bool { !skippedChecks.contains(id) }

@inline(__always)
func require(_ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
    if !condition { invariantFailed(message(), file: file, line: line) }
}

/// Anything whose bytes can be borrowed contiguously (Foundation's ContiguousBytes, without Foundation).
protocol ByteBlob { func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R }
extension Array: ByteBlob where Element == UInt8 {
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R { withUnsafeBytes(body) }
}
extension ArraySlice: ByteBlob where Element == UInt8 {
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R { withUnsafeBytes(body) }
}
extension UnsafeRawBufferPointer: ByteBlob {
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R { body(self) }
}

/// Byte-wise equality through memcmp (the harness compares whole payloads on every input).
func sameBytes(_ a: some ByteBlob, _ b: some ByteBlob) -> Bool {
    a.withBytes { (x: UnsafeRawBufferPointer) -> Bool in
        b.withBytes { (y: UnsafeRawBufferPointer) -> Bool in
            guard x.count == y.count else { return false }
            guard x.count > 0 else { return true }
            return memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0
        }
    }
}

// MARK: Little-endian access to [UInt8] (bounds-checked: these are harness code, not under test)

func le32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    var v: UInt32 = 0
    for i in 0..<4 { v |= UInt32(bytes[offset + i]) << (8 * UInt32(i)) }
    return v
}

func le64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<8 { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
    return v
}

func le16(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
    UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
}

func put32(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt32) {
    for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
}

func put64(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt64) {
    for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
}

func crc(_ bytes: [UInt8], _ range: Range<Int>) -> UInt32 {
    bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[range])) }
}

let batchMagic: UInt32 = 0x3142_4C53  // "SLB1"
let segmentMagic: UInt32 = 0x4753_4C53  // "SLSG"
let footerMagic: UInt32 = 0x5446_4C53  // "SLFT"
let trailerMagic: UInt32 = 0x4546_4C53  // "SLFE"

/// Recomputes payloadCRC (over as much of the stated payload as is present) and then batchCRC
/// of a batch starting at `offset`. Returns the batch's end (`offset + 64 + storedLength`,
/// possibly past the end of `bytes`), or nil when fewer than 64 bytes are there.
@discardableResult
func fixBatchCRCs(_ bytes: inout [UInt8], at offset: Int) -> Int? {
    guard bytes.count - offset >= 64 else { return nil }
    let stored = Int(le32(bytes, offset + 24))
    let end = offset + 64 + stored
    put32(&bytes, offset + 8, crc(bytes, (offset + 64)..<min(end, bytes.count)))
    put32(&bytes, offset + 4, crc(bytes, (offset + 8)..<(offset + 64)))
    return end
}

/// Recomputes footerCRC of a footer whose entryCount says it is `56 + 8n + 8` bytes long, when
/// that many bytes are present. Returns whether it did.
@discardableResult
func fixFooterCRC(_ bytes: inout [UInt8], at offset: Int) -> Bool {
    guard bytes.count - offset >= 64 else { return false }
    let length = 64 + 8 * Int(le32(bytes, offset + 8))
    guard length <= bytes.count - offset else { return false }
    put32(&bytes, offset + 4, crc(bytes, (offset + 8)..<(offset + length)))
    return true
}

/// Copies `bytes` into a fresh allocation of exactly `bytes.count + shift` bytes and calls `body`
/// with the part from `shift` on. The allocation ends exactly where the buffer does, so ASan
/// flags any read past the end; `shift` 1 makes every multi-byte field misaligned.
func withExactBuffer<R>(_ bytes: [UInt8], shift: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
    let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count + shift, 1), alignment: 1)
    defer { storage.deallocate() }
    storage.initializeMemory(as: UInt8.self, repeating: 0xA5)
    let window = UnsafeMutableRawBufferPointer(rebasing: storage[shift..<(shift + bytes.count)])
    bytes.withUnsafeBytes { window.copyMemory(from: $0) }
    return body(UnsafeRawBufferPointer(window))
}

// MARK: Reference LEB128 and record-block parser written from docs/FORMAT.md section 7

/// Parses a record block as the spec says; nil when the spec says it is invalid.
func referenceRecords(_ block: UnsafeRawBufferPointer, recordCount: Int) -> [Range<Int>]? {
    var records: [Range<Int>] = []
    var offset = 0
    for _ in 0..<recordCount {
        var value: UInt64 = 0
        var length = 0
        while true {
            guard offset + length < block.count, length < 5 else { return nil }
            let byte = block[offset + length]
            if length == 4 && byte > 0x0F { return nil }
            value |= UInt64(byte & 0x7F) << (7 * UInt64(length))
            length += 1
            if byte & 0x80 == 0 { break }
        }
        guard value <= UInt64(FormatLimits.recordBytesMax) else { return nil }
        let start = offset + length
        guard start + Int(value) <= block.count else { return nil }
        records.append(start..<(start + Int(value)))
        offset = start + Int(value)
    }
    return offset == block.count ? records : nil
}

func minimalVarintLength(_ value: Int) -> Int {
    var v = value
    var n = 1
    while v >= 0x80 {
        v >>= 7
        n += 1
    }
    return n
}
