import Testing
@testable import ShipLogFormat

@Suite("Segment names")
struct SegmentNameTests {
    @Test func nameIsTwentyZeroPaddedDigitsOfTheBaseLSN() {
        #expect(SegmentName.fileName(baseLSN: LSN(1)) == "00000000000000000001.seg")
        #expect(SegmentName.fileName(baseLSN: LSN(1_234_567)) == "00000000000001234567.seg")
        #expect(SegmentName.fileName(baseLSN: LSN(.max)) == "18446744073709551615.seg")
        #expect(SegmentName.fileExtension == "seg" && SegmentName.temporarySuffix == ".tmp")
    }

    @Test func nameRoundTripsThroughBaseLSN() {
        var rng = SplitMix64(seed: 21)
        var values: [UInt64] = [1, 2, 9, 10, 99, 100, 1 << 32, .max - 1, .max]
        for _ in 0..<500 { values.append(max(1, rng.next() >> (rng.next() % 64))) }
        for value in values {
            let name = SegmentName.fileName(baseLSN: LSN(value))
            #expect(name.utf8.count == 24)
            #expect(SegmentName.baseLSN(fromFileName: name) == LSN(value), "\(name)")
        }
    }

    @Test func namesSortLexicographicallyAsTheirLSNs() {
        let lsns: [UInt64] = [1, 9, 10, 11, 100, 99_999, 100_000, 1 << 40, .max]
        let names = lsns.map { SegmentName.fileName(baseLSN: LSN($0)) }
        #expect(names.sorted() == names)
    }

    @Test(arguments: [
        "",
        "1.seg",  // not padded
        "0000000000000000001.seg",  // 19 digits
        "000000000000000000001.seg",  // 21 digits
        "00000000000000000000.seg",  // base LSN 0 is never assigned
        "99999999999999999999.seg",  // overflows UInt64
        "18446744073709551616.seg",  // UInt64.max + 1
        "00000000000000000001.seg.tmp",  // still being created
        "00000000000000000001.tmp",
        "00000000000000000001.SEG",
        "00000000000000000001.seg ",
        "00000000000000000001seg",
        "00000000000000000001.",
        ".seg",
        "0000000000000000000x.seg",
        "+0000000000000000001.seg",
        "-0000000000000000001.seg",
        " 0000000000000000001.seg",
        "0000000000000000000١.seg",  // Arabic-Indic digit one: numeric but not ASCII
        "0000000000000000000１.seg",  // fullwidth digit one
        "00000000000000000001..seg",
        "00000000000000000001.seg/",
        "dir/00000000000000000001.seg",
    ])
    func badNameIsNotASegment(name: String) {
        #expect(SegmentName.baseLSN(fromFileName: name) == nil)
    }
}

@Suite("Segment header")
struct SegmentHeaderTests {
    static let sample = SegmentHeader(previousBatchCRC: 0xCAFE_BABE, baseLSN: LSN(12_345), epoch: Epoch(6), createdAt: 99)

    /// A header laid out from the spec with a correct CRC and arbitrary field values.
    static func forge(version: UInt16 = 1, flags: UInt16 = 0, baseLSN: UInt64 = 1, reserved: UInt8 = 0) -> [UInt8] {
        var h = ascii("SLSG") + [0, 0, 0, 0] + le(version) + le(flags) + le(UInt32(7)) + le(baseLSN) + le(UInt64(1)) + le(UInt64(2))
        h += [UInt8](repeating: reserved, count: 24)
        h.put(referenceCRC32C(h[8..<64]), at: 4)
        return h
    }

    @Test func encodedHeaderDecodesToTheSameValues() throws {
        let bytes = Self.sample.encoded()
        #expect(bytes.count == 64)
        #expect(try SegmentHeader.decode(bytes) == Self.sample)
        #expect(bytes.get(UInt32.self, at: 4) == referenceCRC32C(bytes[8..<64]))
    }

    @Test func decodeReadsOnlyTheFirst64Bytes() throws {
        let bytes = Self.sample.encoded() + [0x53, 0x4C, 0x42, 0x31]
        #expect(try SegmentHeader.decode(bytes) == Self.sample)
    }

    @Test func truncatedHeaderIsHeaderTruncated() {
        let bytes = Self.sample.encoded()
        for length in 0..<64 {
            let defect = segmentDefect { _ = try SegmentHeader.decode(Array(bytes[..<length])) }
            #expect(defect == .headerTruncated(byteCount: length))
        }
    }

    @Test func allZeroHeaderIsHeaderZeroed() {
        #expect(segmentDefect { _ = try SegmentHeader.decode([UInt8](repeating: 0, count: 64)) } == .headerZeroed)
    }

    @Test func everySingleBitFlipInTheHeaderIsDetected() {
        let bytes = Self.sample.encoded()
        for bit in 0..<(64 * 8) {
            var damaged = bytes
            damaged[bit / 8] ^= 1 << UInt8(bit % 8)
            let kind = segmentDefect { _ = try SegmentHeader.decode(damaged) }?.kind
            #expect(kind == (bit < 32 ? "headerBadMagic" : "headerChecksumMismatch"), "bit \(bit)")
        }
    }

    @Test func unsupportedVersionWithValidCRCIsRejected() {
        #expect(segmentDefect { _ = try SegmentHeader.decode(Self.forge(version: 2)) } == .unsupportedVersion(2))
        #expect(segmentDefect { _ = try SegmentHeader.decode(Self.forge(version: 0)) } == .unsupportedVersion(0))
    }

    @Test func nonZeroFlagsWithValidCRCAreRejected() {
        #expect(segmentDefect { _ = try SegmentHeader.decode(Self.forge(flags: 1)) } == .unknownFlags(1))
    }

    @Test func baseLSNZeroWithValidCRCIsRejected() {
        #expect(segmentDefect { _ = try SegmentHeader.decode(Self.forge(baseLSN: 0)) } == .baseLSNZero)
    }

    /// docs/FORMAT.md: reserved bytes are written as zero; v1 readers do not look at them.
    @Test func nonZeroReservedBytesWithValidCRCAreIgnoredByV1Readers() throws {
        let header = try SegmentHeader.decode(Self.forge(reserved: 0xAB))
        #expect(header.baseLSN == LSN(1))
    }
}

@Suite("Segment footer")
struct SegmentFooterTests {
    static let baseLSN = LSN(1000)

    static let sample = SegmentFooter(
        batchCount: 40, lastLSN: LSN(1999), dataEnd: 1 << 20, lastTimestamp: 77, lastEpoch: Epoch(5),
        lastBatchCRC: 0x0BAD_F00D,
        index: [
            SegmentIndexEntry(lsn: LSN(1000), position: 64),
            SegmentIndexEntry(lsn: LSN(1250), position: 300_000),
            SegmentIndexEntry(lsn: LSN(1800), position: 900_000),
        ])

    static func decode(_ bytes: [UInt8], baseLSN: LSN = baseLSN) throws -> SegmentFooter {
        try bytes.withUnsafeBytes { raw throws(SegmentDefect) in try SegmentFooter.decode(raw, baseLSN: baseLSN) }
    }

    static func trailerLength(_ bytes: [UInt8]) -> Int? {
        Array(bytes.suffix(8)).withUnsafeBytes { SegmentFooter.footerLength(fromTrailer: $0) }
    }

    /// A footer laid out from the spec with arbitrary fields and, unless told otherwise, a correct CRC.
    static func forge(
        entryCount: UInt32? = nil, batchCount: UInt32 = 3, lastLSN: UInt64 = 1010, dataEnd: UInt64 = 5000,
        entries: [(delta: UInt32, position: UInt32)] = [(0, 64), (5, 1000)], footerLength: UInt32? = nil,
        trailerMagic: String = "SLFE", fixCRC: Bool = true
    ) -> [UInt8] {
        var f = ascii("SLFT") + [0, 0, 0, 0]
        f += le(entryCount ?? UInt32(entries.count)) + le(batchCount) + le(lastLSN) + le(dataEnd)
        f += le(UInt64(9)) + le(UInt64(2)) + le(UInt32(0x1234_5678)) + [0, 0, 0, 0]
        for e in entries { f += le(e.delta) + le(e.position) }
        f += le(footerLength ?? UInt32(64 + 8 * entries.count)) + ascii(trailerMagic)
        if fixCRC { f.put(referenceCRC32C(f[8...]), at: 4) }
        return f
    }

    @Test func encodedFooterDecodesToTheSameValues() throws {
        let bytes = Self.sample.encoded(baseLSN: Self.baseLSN)
        #expect(bytes.count == 64 + 8 * 3)
        #expect(bytes.count == Self.sample.byteCount)
        #expect(Self.trailerLength(bytes) == bytes.count)
        #expect(try Self.decode(bytes) == Self.sample)
        #expect(bytes.get(UInt32.self, at: 4) == referenceCRC32C(bytes[8...]))
    }

    @Test func footerWithEmptyIndexRoundTrips() throws {
        var footer = Self.sample
        footer.index = []
        let bytes = footer.encoded(baseLSN: Self.baseLSN)
        #expect(bytes.count == 64)
        #expect(Self.trailerLength(bytes) == 64)
        #expect(try Self.decode(bytes) == footer)
    }

    @Test func indexStoresLSNDeltasFromTheSegmentBase() {
        let bytes = Self.sample.encoded(baseLSN: Self.baseLSN)
        #expect(bytes.get(UInt32.self, at: 56) == 0 && bytes.get(UInt32.self, at: 60) == 64)
        #expect(bytes.get(UInt32.self, at: 64) == 250 && bytes.get(UInt32.self, at: 68) == 300_000)
        #expect(bytes.get(UInt32.self, at: 72) == 800 && bytes.get(UInt32.self, at: 76) == 900_000)
    }

    @Test func forgedFooterFromTheSpecIsAccepted() throws {
        let footer = try Self.decode(Self.forge())
        #expect(footer.index == [SegmentIndexEntry(lsn: LSN(1000), position: 64), SegmentIndexEntry(lsn: LSN(1005), position: 1000)])
        #expect(footer.lastBatchCRC == 0x1234_5678 && footer.lastEpoch == Epoch(2) && footer.lastTimestamp == 9)
    }

    // MARK: Trailer

    @Test func trailerWithBadMagicIsNotAFooter() {
        #expect(Self.trailerLength(Self.forge(trailerMagic: "SLFX")) == nil)
        #expect(Self.trailerLength([UInt8](repeating: 0, count: 8)) == nil)  // a zero-filled tail
    }

    @Test func trailerLengthMustBeAtLeast64AndFixedPlusMultipleOf8() {
        for length: UInt32 in [0, 8, 56, 63, 65, 71, 100] {
            #expect(Self.trailerLength(le(length) + ascii("SLFE")) == nil, "\(length)")
        }
        for length: UInt32 in [64, 72, 64 + 8 * 1000] {
            #expect(Self.trailerLength(le(length) + ascii("SLFE")) == Int(length), "\(length)")
        }
    }

    @Test func trailerLengthOverTheIndexLimitIsRejected() {
        let largest = UInt32(64 + 8 * FormatLimits.indexEntriesMax)
        #expect(Self.trailerLength(le(largest) + ascii("SLFE")) == Int(largest))
        #expect(Self.trailerLength(le(largest + 8) + ascii("SLFE")) == nil)
        #expect(Self.trailerLength(le(UInt32.max - 7) + ascii("SLFE")) == nil)
    }

    @Test func trailerMustBeExactlyEightBytes() {
        let bytes = Self.sample.encoded(baseLSN: Self.baseLSN)
        #expect(Array(bytes.suffix(9)).withUnsafeBytes { SegmentFooter.footerLength(fromTrailer: $0) } == nil)
        #expect(Array(bytes.suffix(7)).withUnsafeBytes { SegmentFooter.footerLength(fromTrailer: $0) } == nil)
    }

    // MARK: Damage

    @Test func footerShorterThan64BytesIsFooterMissing() {
        let bytes = Self.forge(entries: [])
        for length in 0..<64 {
            #expect(segmentDefect { _ = try Self.decode(Array(bytes[..<length])) } == .footerMissing, "\(length)")
        }
    }

    @Test func badFooterMagicIsRejected() {
        var bytes = Self.forge()
        bytes[0] = 0x00
        #expect(segmentDefect { _ = try Self.decode(bytes) } == .footerBadMagic)
    }

    @Test func footerWithBadCRCIsFooterChecksumMismatch() {
        let bytes = Self.forge(fixCRC: false)
        #expect(segmentDefect { _ = try Self.decode(bytes) }?.kind == "footerChecksumMismatch")
    }

    @Test func everySingleBitFlipInTheFooterIsDetected() {
        let bytes = Self.sample.encoded(baseLSN: Self.baseLSN)
        for bit in 0..<(bytes.count * 8) {
            var damaged = bytes
            damaged[bit / 8] ^= 1 << UInt8(bit % 8)
            let kind = segmentDefect { _ = try Self.decode(damaged) }?.kind
            #expect(kind == (bit < 32 ? "footerBadMagic" : "footerChecksumMismatch"), "bit \(bit)")
        }
    }

    @Test func entryCountDisagreeingWithLengthIsInconsistent() {
        for count: UInt32 in [0, 1, 3, 1000, .max] {
            let bytes = Self.forge(entryCount: count)
            #expect(segmentDefect { _ = try Self.decode(bytes) }?.kind == "footerInconsistent", "\(count)")
        }
    }

    @Test func nonAscendingIndexIsInconsistent() {
        let cases: [[(delta: UInt32, position: UInt32)]] = [
            [(5, 64), (5, 1000)],  // equal LSNs
            [(5, 1000), (0, 2000)],  // LSN goes back
            [(0, 1000), (5, 1000)],  // equal positions
            [(0, 1000), (5, 64)],  // position goes back
        ]
        for entries in cases {
            let bytes = Self.forge(entries: entries)
            #expect(segmentDefect { _ = try Self.decode(bytes) }?.kind == "footerInconsistent", "\(entries)")
        }
    }

    @Test func lastLSNBeforeBaseLSNIsInconsistent() {
        let bytes = Self.forge(lastLSN: 999, entries: [])
        #expect(segmentDefect { _ = try Self.decode(bytes) }?.kind == "footerInconsistent")
    }

    @Test func zeroBatchCountIsInconsistent() {
        let bytes = Self.forge(batchCount: 0)
        #expect(segmentDefect { _ = try Self.decode(bytes) }?.kind == "footerInconsistent")
    }

    @Test func indexEntryPastLastLSNIsInconsistent() {
        let bytes = Self.forge(lastLSN: 1004, entries: [(0, 64), (5, 1000)])
        #expect(segmentDefect { _ = try Self.decode(bytes) }?.kind == "footerInconsistent")
    }

    @Test func indexEntryAtOrPastDataEndIsInconsistent() {
        for dataEnd: UInt64 in [1000, 999] {
            let bytes = Self.forge(dataEnd: dataEnd, entries: [(0, 64), (5, 1000)])
            #expect(segmentDefect { _ = try Self.decode(bytes) }?.kind == "footerInconsistent", "\(dataEnd)")
        }
    }

    /// A segment header with a valid CRC may carry a base LSN near UInt64.max; the footer's
    /// lsnDelta added to it must be rejected as inconsistent, not overflow. Run in a child process
    /// so that a trap cannot take the test run down.
    @Test func indexDeltaOverflowingBaseLSNIsRejectedNotATrap() async {
        await #expect(processExitsWith: .success) {
            let bytes = SegmentFooterTests.forge(lastLSN: .max, entries: [(0, 64), (5, 1000)])
            _ = try? SegmentFooterTests.decode(bytes, baseLSN: LSN(.max - 1))
        }
    }

    /// The footerLength and trailerMagic inside the footer are covered by footerCRC; `decode`
    /// must compare both with the bytes it was given, even with a valid CRC.
    @Test func footerLengthFieldDisagreeingWithTheFooterIsInconsistent() {
        let wrongLength = Self.forge(footerLength: 64 + 8)  // the footer holds 2 entries: 80 bytes
        #expect(segmentDefect { _ = try Self.decode(wrongLength) } != nil)
        let wrongMagic = Self.forge(trailerMagic: "XXXX")
        #expect(segmentDefect { _ = try Self.decode(wrongMagic) } != nil)
    }
}
