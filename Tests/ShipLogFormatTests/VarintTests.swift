import Testing
@testable import ShipLogFormat

@Suite("LEB128 varint")
struct VarintTests {
    func write(_ value: UInt32) -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: Varint.maxBytes)
        let n = out.withUnsafeMutableBytes { Varint.write(value, to: $0.baseAddress!) }
        return Array(out[..<n])
    }

    func read(_ bytes: [UInt8], at offset: Int = 0, end: Int? = nil) -> (value: UInt32, length: Int)? {
        // A non-empty backing store so the pointer is never nil; `end` bounds the read.
        let storage = bytes + [0xAA]
        return storage.withUnsafeBytes { Varint.read(from: $0.baseAddress!, at: offset, end: end ?? bytes.count) }
    }

    static let encodings: [(UInt32, [UInt8])] = [
        (0, [0x00]),
        (1, [0x01]),
        (127, [0x7F]),
        (128, [0x80, 0x01]),
        (300, [0xAC, 0x02]),
        (16_383, [0xFF, 0x7F]),
        (16_384, [0x80, 0x80, 0x01]),
        ((1 << 21) - 1, [0xFF, 0xFF, 0x7F]),
        (1 << 21, [0x80, 0x80, 0x80, 0x01]),
        ((1 << 28) - 1, [0xFF, 0xFF, 0xFF, 0x7F]),
        (1 << 28, [0x80, 0x80, 0x80, 0x80, 0x01]),
        (4 << 20, [0x80, 0x80, 0x80, 0x02]),  // recordBytesMax
        (UInt32.max, [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
    ]

    @Test func writesMinimalLittleEndianBase128() {
        for (value, expected) in Self.encodings {
            #expect(write(value) == expected, "\(value)")
        }
    }

    @Test func readsBackEveryBoundaryValue() throws {
        for (value, encoded) in Self.encodings {
            let decoded = try #require(read(encoded))
            #expect(decoded.value == value)
            #expect(decoded.length == encoded.count)
        }
    }

    @Test func roundTripsRandomValues() throws {
        var rng = SplitMix64(seed: 5)
        for _ in 0..<2000 {
            let value = UInt32(truncatingIfNeeded: rng.next() >> (rng.next() % 33))
            let encoded = write(value)
            let decoded = try #require(read(encoded))
            #expect(decoded.value == value && decoded.length == encoded.count)
        }
    }

    @Test func readsAtAnOffsetAndStopsAfterTheLastByte() throws {
        let decoded = try #require(read([0x99, 0x99, 0xAC, 0x02, 0x05], at: 2))
        #expect(decoded.value == 300 && decoded.length == 2)
    }

    @Test func emptyInputIsRejected() {
        #expect(read([]) == nil)
    }

    @Test func continuationRunningPastTheEndIsRejected() {
        #expect(read([0x80]) == nil)
        #expect(read([0xFF, 0xFF, 0xFF]) == nil)
        // The byte after `end` would complete it, but must not be read.
        #expect(read([0x80, 0x01], end: 1) == nil)
    }

    @Test func fifthByteAbove0x0FOverflows32BitsAndIsRejected() {
        #expect(read([0xFF, 0xFF, 0xFF, 0xFF, 0x10]) == nil)
        #expect(read([0x80, 0x80, 0x80, 0x80, 0x7F]) == nil)
    }

    @Test func sixByteEncodingIsRejected() {
        #expect(read([0x80, 0x80, 0x80, 0x80, 0x80, 0x00]) == nil)
        #expect(read([0xFF, 0xFF, 0xFF, 0xFF, 0x8F, 0x00]) == nil)
    }

    /// Documented in docs/FORMAT.md: v1 readers accept over-long (non-minimal) encodings of at
    /// most 5 bytes; writers always produce the minimal one.
    @Test func overlongButAtMostFiveByteEncodingIsAccepted() throws {
        let zero = try #require(read([0x80, 0x00]))
        #expect(zero.value == 0 && zero.length == 2)
        let one = try #require(read([0x81, 0x80, 0x80, 0x80, 0x00]))
        #expect(one.value == 1 && one.length == 5)
    }
}
