import Testing
@testable import ShipLogFormat

/// Seeded mutation testing: valid batches are damaged at random and decoded. Whatever the
/// damage, decoding must not crash, and must never hand back records that differ from the
/// ones originally written. Fixed seeds keep every run identical; a failure prints the
/// iteration so it can be replayed.
@Suite("Batch mutation fuzzing")
struct BatchFuzzTests {
    static func randomRecords(using rng: inout SplitMix64) -> [[UInt8]] {
        let count = 1 + Int(rng.next() % 12)
        return (0..<count).map { _ in
            let length = Int(rng.next() % 160)
            switch rng.next() % 3 {
            case 0: return [UInt8].random(count: length, using: &rng)  // incompressible
            case 1: return [UInt8](repeating: UInt8(truncatingIfNeeded: rng.next()), count: length)
            default: return (0..<length).map { UInt8(truncatingIfNeeded: $0 % 5 + 0x61) }
            }
        }
    }

    enum Mutation: CaseIterable {
        case flipBits, overwriteBytes, truncate, appendGarbage, insertByte, deleteByte, swapBytes
    }

    static func mutate(_ batch: [UInt8], _ mutation: Mutation, using rng: inout SplitMix64) -> [UInt8] {
        var bytes = batch
        func index() -> Int { Int(rng.next() % UInt64(bytes.count)) }
        switch mutation {
        case .flipBits:
            for _ in 0..<(1 + Int(rng.next() % 8)) {
                bytes[index()] ^= 1 << UInt8(rng.next() % 8)
            }
        case .overwriteBytes:
            let start = index()
            let length = min(bytes.count - start, 1 + Int(rng.next() % 16))
            for i in start..<start + length { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
        case .truncate:
            bytes.removeLast(1 + Int(rng.next() % UInt64(bytes.count)))
        case .appendGarbage:
            bytes += [UInt8].random(count: 1 + Int(rng.next() % 32), using: &rng)
        case .insertByte:
            bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: index())
        case .deleteByte:
            bytes.remove(at: index())
        case .swapBytes:
            let (i, j) = (index(), index())
            bytes.swapAt(i, j)
        }
        return bytes
    }

    /// Decodes `bytes` as a stream would: the batch at the start, then its records.
    /// Returns the records only when every check passed.
    static func acceptedRecords(_ bytes: [UInt8]) -> (header: BatchHeader, records: [[UInt8]])? {
        guard case .batch(let header) = decodeBatch(bytes) else { return nil }
        let batch = Batch(verifiedHeader: header, bytes: Array(bytes[..<header.batchByteCount]))
        guard case .success(let records) = records(of: batch) else { return nil }
        return (header, records)
    }

    @Test func randomlyMutatedBatchesNeverDecodeToDifferentRecords() throws {
        var rng = SplitMix64(seed: 0x5EED_0001)
        var accepted = 0
        for iteration in 0..<4000 {
            let records = Self.randomRecords(using: &rng)
            let codec: CompressionCodec = rng.next() % 2 == 0 ? .lz4 : .none
            let (original, header) = try makeBatch(
                records, codec: codec, baseLSN: 1 + rng.next() % 1_000_000, previousBatchCRC: UInt32(truncatingIfNeeded: rng.next()))
            let mutation = Mutation.allCases[Int(rng.next() % UInt64(Mutation.allCases.count))]
            let damaged = Self.mutate(original, mutation, using: &rng)
            if let (decodedHeader, decoded) = Self.acceptedRecords(damaged) {
                accepted += 1
                #expect(decoded == records, "iteration \(iteration) \(mutation)")
                #expect(decodedHeader == header, "iteration \(iteration) \(mutation)")
            }
        }
        // Only appended garbage (and no-op swaps) leave the batch itself intact.
        #expect(accepted > 0 && accepted < 4000)
    }

    /// Header fields rewritten at random with batchCRC recomputed: the payload is untouched,
    /// so any accepted decode must still yield exactly the original records. This drives the
    /// range checks, LZ4 length checks and record-block parser with hostile-but-checksummed headers.
    @Test func headerFieldsRewrittenWithValidCRCNeverYieldDifferentRecords() throws {
        var rng = SplitMix64(seed: 0x5EED_0002)
        let fieldOffsets: [(offset: Int, width: Int)] = [
            (16, 2), (18, 2), (20, 4), (24, 4), (28, 4), (32, 8), (48, 8),
        ]
        var accepted = 0
        for iteration in 0..<3000 {
            let records = Self.randomRecords(using: &rng)
            let codec: CompressionCodec = rng.next() % 2 == 0 ? .lz4 : .none
            let (original, _) = try makeBatch(records, codec: codec, baseLSN: 100, syncedThrough: 50)
            var damaged = original
            let field = fieldOffsets[Int(rng.next() % UInt64(fieldOffsets.count))]
            let old = damaged[field.offset..<field.offset + field.width]
            switch rng.next() % 3 {
            case 0:  // small nudge
                var value: UInt64 = 0
                for (i, byte) in old.enumerated() { value |= UInt64(byte) << (8 * i) }
                value = rng.next() % 2 == 0 ? value &+ (1 + rng.next() % 4) : value &- (1 + rng.next() % 4)
                for i in 0..<field.width { damaged[field.offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
            case 1:  // random value
                for i in 0..<field.width { damaged[field.offset + i] = UInt8(truncatingIfNeeded: rng.next()) }
            default:  // one bit
                damaged[field.offset + Int(rng.next() % UInt64(field.width))] ^= 1 << UInt8(rng.next() % 8)
            }
            refreshBatchCRC(&damaged)
            if let (header, decoded) = Self.acceptedRecords(damaged + [UInt8](repeating: 0, count: 8)) {
                // Records must match whenever the block was parsed at all; LSN fields may move
                // (the log's chain catches that), but the content cannot.
                accepted += 1
                #expect(decoded == records, "iteration \(iteration) field at \(field.offset)")
                #expect(Int(header.recordCount) == records.count, "iteration \(iteration)")
            }
        }
        // Moving baseLSN or syncedThrough within range is accepted (the chain catches it); most
        // other rewrites are not.
        #expect(accepted > 100 && accepted < 2000, "\(accepted) accepted")
    }

    /// Payload bytes replaced at random with both CRCs recomputed: this can legitimately form a
    /// different valid batch, so the check is weaker. Decoding must not crash, and an accepted
    /// batch must be self-consistent: recordCount records that re-encode to uncompressedLength bytes.
    @Test func payloadRewrittenWithValidCRCsDecodesSafelyAndConsistently() throws {
        var rng = SplitMix64(seed: 0x5EED_0003)
        var rejected = 0
        for iteration in 0..<3000 {
            let records = Self.randomRecords(using: &rng)
            let codec: CompressionCodec = rng.next() % 2 == 0 ? .lz4 : .none
            let (original, _) = try makeBatch(records, codec: codec)
            var damaged = Self.mutate(original, rng.next() % 2 == 0 ? .flipBits : .overwriteBytes, using: &rng)
            // Keep the header's own fields: restore them, then fix up both CRCs.
            for i in 8..<64 where i < damaged.count { damaged[i] = original[i] }
            for i in 0..<4 { damaged[i] = original[i] }
            refreshBothCRCs(&damaged)
            guard let (header, decoded) = Self.acceptedRecords(damaged) else {
                rejected += 1
                continue
            }
            #expect(decoded.count == Int(header.recordCount), "iteration \(iteration)")
            #expect(recordBlock(decoded).count == Int(header.uncompressedLength), "iteration \(iteration)")
        }
        #expect(rejected > 0)
    }
}
