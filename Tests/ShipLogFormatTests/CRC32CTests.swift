import Testing
@testable import ShipLogFormat

@Suite("CRC-32C")
struct CRC32CTests {
    /// The standard vectors (RFC 3720 appendix B.4 and the "123456789" check value).
    static let vectors: [(name: String, bytes: [UInt8], crc: UInt32)] = [
        ("123456789", Array("123456789".utf8), 0xE306_9283),
        ("32 zero bytes", [UInt8](repeating: 0, count: 32), 0x8A91_36AA),
        ("32 0xFF bytes", [UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        ("ascending 0..31", (0..<32).map { UInt8($0) }, 0x46DD_794E),
        ("descending 31..0", (0..<32).map { UInt8(31 - $0) }, 0x113F_DB5C),
        ("empty", [], 0),
    ]

    @Test func standardVectorsMatchDispatchedImplementation() {
        for v in Self.vectors {
            #expect(CRC32C.checksum(v.bytes) == v.crc, "\(v.name)")
        }
    }

    @Test func standardVectorsMatchSoftwareImplementation() {
        for v in Self.vectors {
            #expect(v.bytes.withUnsafeBytes { CRC32C.softwareChecksum($0) } == v.crc, "\(v.name)")
        }
    }

    @Test func standardVectorsMatchHardwareImplementationWhenAvailable() {
        for v in Self.vectors {
            let hw = v.bytes.withUnsafeBytes { CRC32C.hardwareChecksum($0) }
            if let hw { #expect(hw == v.crc, "\(v.name)") }
        }
    }

    /// The bit-at-a-time pseudo-code in docs/FORMAT.md is the definition; it must give the vectors too.
    @Test func specPseudoCodeGivesStandardVectors() {
        for v in Self.vectors {
            #expect(referenceCRC32C(v.bytes) == v.crc, "\(v.name)")
        }
    }

    @Test func implementationNameReflectsCPU() {
        let hasHardware = [UInt8]().withUnsafeBytes { CRC32C.hardwareChecksum($0) } != nil
        #expect(CRC32C.implementation == (hasHardware ? "sse4.2" : "slicing-by-8"))
    }

    /// Lengths around every loop boundary of both implementations: the 8-byte alignment
    /// prologue, the 8-byte main loop, the tail, and the 3 x 4096-byte interleaved path.
    static let lengths: [Int] = Array(0...300) + [
        511, 512, 513, 4095, 4096, 4097, 8191, 8192, 12287, 12288, 12289, 12295, 12296, 12300,
        16384, 24575, 24576, 24577, 36864, 36871, 40000, 65536, 100_003, 262_147,
    ]

    @Test func softwareAndHardwareAgreeOnRandomBuffersOfManyLengthsAndAlignments() throws {
        var rng = SplitMix64(seed: 0xC3C3_2024)
        let pool = [UInt8].random(count: 262_147 + 16, using: &rng)
        try pool.withUnsafeBytes { all in
            let hasHardware = CRC32C.hardwareChecksum(UnsafeRawBufferPointer(rebasing: all[0..<0])) != nil
            for length in Self.lengths {
                for alignment in 0..<8 {
                    let slice = UnsafeRawBufferPointer(rebasing: all[alignment..<alignment + length])
                    let sw = CRC32C.softwareChecksum(slice)
                    #expect(CRC32C.checksum(slice) == sw, "length \(length) alignment \(alignment)")
                    if hasHardware {
                        let hw = try #require(CRC32C.hardwareChecksum(slice))
                        #expect(hw == sw, "length \(length) alignment \(alignment)")
                    }
                }
            }
        }
    }

    @Test func softwareAgreesWithSpecPseudoCode() {
        var rng = SplitMix64(seed: 7)
        let pool = [UInt8].random(count: 40_000 + 8, using: &rng)
        for length in [0, 1, 7, 8, 9, 63, 64, 65, 1000, 12288, 12289, 40_000] {
            for alignment in [0, 1, 3, 7] {
                let slice = pool[alignment..<alignment + length]
                let sw = slice.withUnsafeBytes { CRC32C.softwareChecksum($0) }
                #expect(sw == referenceCRC32C(slice), "length \(length) alignment \(alignment)")
            }
        }
    }

    @Test func hardwareThreeWayPathAgreesWithSpecPseudoCode() {
        var rng = SplitMix64(seed: 11)
        let pool = [UInt8].random(count: 3 * 4096 * 3 + 40, using: &rng)
        for length in [3 * 4096, 3 * 4096 + 1, 3 * 4096 * 2 + 13, 3 * 4096 * 3 + 33] {
            for alignment in [0, 5] {
                let slice = pool[alignment..<alignment + length]
                #expect(CRC32C.checksum(slice) == referenceCRC32C(slice), "length \(length) alignment \(alignment)")
            }
        }
    }

    @Test func checksumOfConcatenationEqualsChainedChecksum() {
        var rng = SplitMix64(seed: 42)
        let data = [UInt8].random(count: 50_000, using: &rng)
        let whole = CRC32C.checksum(data)
        let splits = [0, 1, 7, 8, 9, 100, 4096, 12287, 12288, 12289, 25_000, 49_999, 50_000]
        for split in splits {
            let a = data[..<split]
            let b = data[split...]
            #expect(CRC32C.checksum(b, continuing: CRC32C.checksum(a)) == whole, "split at \(split)")
            let sw = a.withUnsafeBytes { ra in
                b.withUnsafeBytes { rb in CRC32C.softwareChecksum(rb, continuing: CRC32C.softwareChecksum(ra)) }
            }
            #expect(sw == whole, "software split at \(split)")
            let hw = a.withUnsafeBytes { ra -> UInt32? in
                guard let first = CRC32C.hardwareChecksum(ra) else { return nil }
                return b.withUnsafeBytes { CRC32C.hardwareChecksum($0, continuing: first) }
            }
            if let hw { #expect(hw == whole, "hardware split at \(split)") }
        }
    }

    @Test func chainingOverManyPiecesEqualsOneShot() {
        var rng = SplitMix64(seed: 99)
        let data = [UInt8].random(count: 30_000, using: &rng)
        var crc: UInt32 = 0
        var offset = 0
        while offset < data.count {
            let n = min(Int(rng.next() % 5000), data.count - offset)
            crc = CRC32C.checksum(data[offset..<offset + n], continuing: crc)
            offset += n
        }
        #expect(crc == CRC32C.checksum(data))
        #expect(crc == referenceCRC32C(data))
    }

    @Test func continuingWithEmptyInputReturnsTheSameCRC() {
        #expect(CRC32C.checksum([], continuing: 0xE306_9283) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](), continuing: 0) == 0)
    }

    @Test func everySingleBitFlipChangesTheChecksum() {
        let data = Array("ShipLog format v1".utf8)
        let original = CRC32C.checksum(data)
        for bit in 0..<(data.count * 8) {
            var flipped = data
            flipped[bit / 8] ^= 1 << UInt8(bit % 8)
            #expect(CRC32C.checksum(flipped) != original)
        }
    }
}
