// Writes the seed corpora of the fuzz targets: small valid inputs produced by ShipLog's own
// encoders (BatchBuilder, EncodedBatch.seal, SegmentHeader.encoded, SegmentFooter.encoded, laid
// out as the writer in Log.assign lays out a segment), plus handcrafted edge cases with valid
// checksums but boundary or invalid field values. Deterministic: same output every run.
//
//   make_seeds OUTDIR    writes OUTDIR/{batch_decoder,segment_scanner,footer_decoder,message_decoder}/*
import ShipLogFormat

#if canImport(Glibc)
import Glibc
#endif

// MARK: Output

let outRoot: String = {
    let args = CommandLine.arguments
    guard args.count == 2 else {
        print("usage: make_seeds OUTDIR")
        exit(2)
    }
    return args[1]
}()

var written = 0

@MainActor func save(_ target: String, _ name: String, _ bytes: [UInt8]) {
    let dir = outRoot + "/" + target
    mkdir(outRoot, 0o755)
    mkdir(dir, 0o755)
    let path = dir + "/" + name
    guard let f = fopen(path, "wb") else { fatalError("cannot write \(path)") }
    if !bytes.isEmpty { precondition(fwrite(bytes, 1, bytes.count, f) == bytes.count) }
    fclose(f)
    written += 1
}

// MARK: Helpers

struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { (0..<(T.bitWidth / 8)).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

extension Array where Element == UInt8 {
    mutating func put<T: FixedWidthInteger>(_ v: T, at o: Int) { for (i, b) in le(v).enumerated() { self[o + i] = b } }
    func get32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(self[o + $1]) << (8 * UInt32($1)) } }
}

func crc(_ b: ArraySlice<UInt8>) -> UInt32 { CRC32C.checksum(b) }

let timestamp0: UInt64 = 1_700_000_000_000_000_000

/// One batch from the library's encoder.
func makeBatch(
    _ records: [[UInt8]], codec: CompressionCodec, baseLSN: UInt64, epoch: UInt64 = 1, previousBatchCRC: UInt32 = 0,
    syncedThrough: UInt64 = 0, timestamp: UInt64 = timestamp0
) -> (bytes: [UInt8], header: BatchHeader) {
    var builder = BatchBuilder(capacity: 256)
    for r in records { try! builder.append(r) }
    var encoded = builder.encode(codec: codec)
    let header = encoded.seal(
        baseLSN: LSN(baseLSN), epoch: Epoch(epoch), previousBatchCRC: previousBatchCRC,
        syncedThrough: LSN(syncedThrough), timestamp: timestamp)
    return (encoded.bytes, header)
}

/// A batch laid out by hand (docs/FORMAT.md 6.1) with correct CRCs, for values the encoder refuses.
func forgeBatch(
    payload: [UInt8], flags: UInt16 = 0, recordCount: UInt32 = 1, storedLength: UInt32? = nil,
    uncompressedLength: UInt32? = nil, baseLSN: UInt64 = 1, epoch: UInt64 = 1, syncedThrough: UInt64 = 0,
    version: UInt16 = 1, previousBatchCRC: UInt32 = 0
) -> [UInt8] {
    var h = [UInt8](repeating: 0, count: 64)
    h.put(UInt32(0x3142_4C53), at: 0)
    h.put(CRC32C.checksum(payload), at: 8)
    h.put(previousBatchCRC, at: 12)
    h.put(version, at: 16)
    h.put(flags, at: 18)
    h.put(recordCount, at: 20)
    h.put(storedLength ?? UInt32(payload.count), at: 24)
    h.put(uncompressedLength ?? UInt32(payload.count), at: 28)
    h.put(baseLSN, at: 32)
    h.put(epoch, at: 40)
    h.put(syncedThrough, at: 48)
    h.put(timestamp0, at: 56)
    h.put(crc(h[8..<64]), at: 4)
    return h + payload
}

func varint(_ v: UInt32) -> [UInt8] {
    var n = v
    var out: [UInt8] = []
    while n >= 0x80 {
        out.append(UInt8(truncatingIfNeeded: n) | 0x80)
        n >>= 7
    }
    return out + [UInt8(n)]
}

var rng = SplitMix64(state: 0x5EED_F022)

func text(_ s: String) -> [UInt8] { Array(s.utf8) }
func compressible(_ n: Int, _ seed: UInt8) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: Int(seed) + $0 % 7) } }

// MARK: Segments, as Log.assign lays them out

struct SegmentBuilder {
    var header: SegmentHeader
    var bytes: [UInt8]
    var lastLSN: LSN
    var lastBatchCRC: UInt32
    var lastEpoch: Epoch
    var lastTimestamp: UInt64 = 0
    var batchCount: UInt32 = 0
    var index: [SegmentIndexEntry] = []
    var nextIndexAt: Int64 = 64
    var syncedThrough: UInt64
    let indexInterval: Int64

    init(baseLSN: UInt64, previousBatchCRC: UInt32, epoch: UInt64, indexInterval: Int64 = 4096) {
        header = SegmentHeader(previousBatchCRC: previousBatchCRC, baseLSN: LSN(baseLSN), epoch: Epoch(epoch), createdAt: timestamp0)
        bytes = header.encoded()
        lastLSN = LSN(baseLSN - 1)
        lastBatchCRC = previousBatchCRC
        lastEpoch = Epoch(epoch)
        syncedThrough = baseLSN - 1
        self.indexInterval = indexInterval
    }

    mutating func append(_ records: [[UInt8]], codec: CompressionCodec, epoch: UInt64? = nil, synced: Bool = true) {
        let offset = Int64(bytes.count)
        let timestamp = timestamp0 + UInt64(batchCount) * 1000
        let (batch, h) = makeBatch(
            records, codec: codec, baseLSN: lastLSN.rawValue + 1, epoch: epoch ?? lastEpoch.rawValue,
            previousBatchCRC: lastBatchCRC, syncedThrough: syncedThrough, timestamp: timestamp)
        bytes += batch
        if offset >= nextIndexAt {
            index.append(SegmentIndexEntry(lsn: h.baseLSN, position: offset))
            nextIndexAt = offset + indexInterval
        }
        batchCount += 1
        lastLSN = h.lsnRange.last
        lastBatchCRC = h.batchCRC
        lastEpoch = h.epoch
        lastTimestamp = timestamp
        if synced { syncedThrough = lastLSN.rawValue }
    }

    var footer: SegmentFooter {
        SegmentFooter(
            batchCount: batchCount, lastLSN: lastLSN, dataEnd: UInt64(bytes.count), lastTimestamp: lastTimestamp,
            lastEpoch: lastEpoch, lastBatchCRC: lastBatchCRC, index: index)
    }

    var sealed: [UInt8] { bytes + footer.encoded(baseLSN: header.baseLSN) }
}

/// The prepended header of segment_scanner mode bit 0 (baseLSN 1, previousBatchCRC 0, epoch 1):
/// seeds for that mode are segments built on it, without their first 64 bytes.
func firstSegment() -> SegmentBuilder { SegmentBuilder(baseLSN: 1, previousBatchCRC: 0, epoch: 1) }

// MARK: batch_decoder

do {
    let t = "batch_decoder"
    let b = { (mode: UInt8, bytes: [UInt8]) in [mode] + bytes }
    save(t, "none-1-record", b(0, makeBatch([text("hello")], codec: .none, baseLSN: 1).bytes))
    save(t, "lz4-3-records", b(0, makeBatch([compressible(200, 1), compressible(90, 2), text("tail")], codec: .lz4, baseLSN: 42, epoch: 3, previousBatchCRC: 0xDEAD_BEEF, syncedThrough: 41).bytes))
    save(t, "lz4-empty-records", b(0, makeBatch(Array(repeating: [], count: 40), codec: .lz4, baseLSN: 7, syncedThrough: 3).bytes))
    save(t, "none-varint-boundaries", b(0, makeBatch([rng.bytes(127), rng.bytes(128), [], [0]], codec: .none, baseLSN: 1000).bytes))
    save(t, "lz4-fallback-none-random", b(0, makeBatch([rng.bytes(300)], codec: .lz4, baseLSN: 5).bytes))
    save(t, "none-max-lsn", b(0, makeBatch([text("a"), text("b")], codec: .none, baseLSN: UInt64.max - 2, syncedThrough: UInt64.max - 3).bytes))
    save(t, "lz4-mixed-misaligned", b(2, makeBatch([compressible(64, 9), rng.bytes(20), compressible(500, 3)], codec: .lz4, baseLSN: 9).bytes))
    // Over 12 KiB: the SSE4.2 CRC's three-stream path.
    save(t, "none-13k-crc-3way", b(0, makeBatch([rng.bytes(13_000)], codec: .none, baseLSN: 77).bytes))
    save(t, "batch-plus-trailing", b(0, makeBatch([text("x")], codec: .none, baseLSN: 1).bytes + [0x53, 0x4C, 0x42, 0x31, 0, 0]))
    // Handcrafted (valid CRCs unless said otherwise).
    save(t, "edge-nonminimal-varint", b(0, forgeBatch(payload: [0x80, 0x00, 0x81, 0x00, 0x41], recordCount: 2)))
    save(t, "edge-5-byte-varint-bad", b(0, forgeBatch(payload: [0xFF, 0xFF, 0xFF, 0xFF, 0x10], recordCount: 1)))
    save(t, "edge-record-too-long", b(0, forgeBatch(payload: varint(UInt32(FormatLimits.recordBytesMax + 1)) + [1, 2], recordCount: 1)))
    save(t, "edge-trailing-bytes-in-block", b(0, forgeBatch(payload: [1, 0x41, 0x42], recordCount: 1)))
    save(t, "edge-record-count-0", b(0, forgeBatch(payload: [0], recordCount: 0)))
    save(t, "edge-record-count-too-big", b(0, forgeBatch(payload: [0], recordCount: FormatLimits.recordsPerBatchMax + 1)))
    save(t, "edge-lz4-short-output", b(1, forgeBatch(payload: [0x40, 1, 2, 3, 4], flags: 1, recordCount: 1, uncompressedLength: 100)))
    save(t, "edge-lz4-huge-uncompressed", b(1, forgeBatch(payload: [0x10, 0], flags: 1, recordCount: 1, uncompressedLength: UInt32(FormatLimits.batchUncompressedBytesMax))))
    save(t, "edge-stored-length-max", b(0, forgeBatch(payload: [], flags: 1, recordCount: 1, storedLength: UInt32(FormatLimits.batchStoredBytesMax), uncompressedLength: 1)))
    save(t, "edge-unknown-flags", b(0, forgeBatch(payload: [1, 0x41], flags: 0x11)))
    save(t, "edge-codec-2", b(0, forgeBatch(payload: [1, 0x41], flags: 2)))
    save(t, "edge-version-2", b(0, forgeBatch(payload: [1, 0x41], version: 2)))
    save(t, "edge-base-lsn-0", b(0, forgeBatch(payload: [0], baseLSN: 0)))
    save(t, "edge-lsn-overflow", b(0, forgeBatch(payload: [0, 0], recordCount: 2, baseLSN: UInt64.max - 1, syncedThrough: 0)))
    save(t, "edge-synced-ahead", b(0, forgeBatch(payload: [0], baseLSN: 5, syncedThrough: 5)))
    save(t, "edge-none-length-mismatch", b(0, forgeBatch(payload: [0, 0], storedLength: 2, uncompressedLength: 1)))
    save(t, "edge-header-only-63", b(0, Array(makeBatch([text("y")], codec: .none, baseLSN: 1).bytes[0..<63])))
    save(t, "edge-payload-truncated", b(0, Array(makeBatch([text("hello world")], codec: .none, baseLSN: 1).bytes.dropLast(3))))
    var badCRC = makeBatch([text("z")], codec: .none, baseLSN: 1).bytes
    badCRC[65] ^= 0x01
    save(t, "edge-payload-crc-mismatch", b(0, badCRC))
    save(t, "edge-zeros-64", b(0, [UInt8](repeating: 0, count: 64)))
}

// MARK: footer_decoder

do {
    let t = "footer_decoder"
    func f(_ mode: UInt8, _ base: UInt64, _ bytes: [UInt8]) -> [UInt8] { [mode] + le(base) + bytes }
    var s = SegmentBuilder(baseLSN: 100, previousBatchCRC: 0x1234_5678, epoch: 2, indexInterval: 512)
    for i in 0..<6 { s.append([rng.bytes(200 + 50 * i), compressible(300, UInt8(i))], codec: .lz4) }
    let footer = s.footer.encoded(baseLSN: LSN(100))
    save(t, "footer-\(s.index.count)-entries", f(0, 100, footer))
    save(t, "footer-after-batches", f(0, 100, Array(s.sealed.suffix(footer.count + 150))))
    var one = SegmentBuilder(baseLSN: 1, previousBatchCRC: 0, epoch: 1)
    one.append([text("only")], codec: .none)
    save(t, "footer-1-entry", f(0, 1, one.footer.encoded(baseLSN: LSN(1))))
    let empty = SegmentFooter(batchCount: 1, lastLSN: LSN(10), dataEnd: 200, lastTimestamp: 5, lastEpoch: Epoch(1), lastBatchCRC: 9, index: [])
    save(t, "footer-0-entries", f(0, 3, empty.encoded(baseLSN: LSN(3))))
    let high = SegmentFooter(
        batchCount: 2, lastLSN: LSN(UInt64.max), dataEnd: 4_000_000_000, lastTimestamp: 1, lastEpoch: Epoch(9),
        lastBatchCRC: 1, index: [SegmentIndexEntry(lsn: LSN(UInt64.max - 5), position: 64), SegmentIndexEntry(lsn: LSN(UInt64.max), position: 3_999_999_000)])
    save(t, "footer-lsn-max", f(0, UInt64.max - 5, high.encoded(baseLSN: LSN(UInt64.max - 5))))
    // Handcrafted: mode 1 fixes the CRC, so these reach the consistency checks.
    var reserved = footer
    reserved[53] = 0x7F
    save(t, "edge-reserved-nonzero", f(1, 100, reserved))
    var wrongCount = footer
    wrongCount.put(UInt32(s.index.count + 1), at: 8)
    save(t, "edge-entry-count-mismatch", f(1, 100, wrongCount))
    var wrongTrailer = footer
    wrongTrailer.put(UInt32(footer.count + 8), at: footer.count - 8)
    save(t, "edge-trailer-length-wrong", f(1, 100, wrongTrailer))
    save(t, "edge-last-lsn-before-base", f(1, 101, one.footer.encoded(baseLSN: LSN(1))))
    var noBatches = footer
    noBatches.put(UInt32(0), at: 12)
    save(t, "edge-batch-count-0", f(1, 100, noBatches))
    if s.index.count >= 2 {
        var unordered = footer
        unordered.put(UInt32(0), at: 56 + 8 + 4)  // second entry's position below the first's
        save(t, "edge-index-not-ascending", f(1, 100, unordered))
    }
    var pastEnd = footer
    pastEnd.put(UInt64(s.index.last!.position), at: 24)  // last entry at dataEnd
    save(t, "edge-index-at-data-end", f(1, 100, pastEnd))
    var deltaPastLast = footer
    deltaPastLast.put(UInt64(100 + 1), at: 16)  // lastLSN below the entries
    save(t, "edge-index-past-last-lsn", f(1, 100, deltaPastLast))
    save(t, "edge-trailer-only", f(0, 1, le(UInt32(64)) + le(UInt32(0x4546_4C53))))
    save(t, "edge-trailer-max-length", f(0, 1, le(UInt32(64 + 8 * FormatLimits.indexEntriesMax)) + le(UInt32(0x4546_4C53))))
    save(t, "edge-trailer-unaligned-length", f(0, 1, le(UInt32(68)) + le(UInt32(0x4546_4C53))))
    save(t, "edge-short", f(0, 1, [0x53, 0x4C, 0x46]))
}

// MARK: segment_scanner

do {
    let t = "segment_scanner"
    // Mode 0: the whole file as written.
    var active = firstSegment()
    active.append([text("first"), text("second")], codec: .none)
    active.append([compressible(400, 1), compressible(400, 2)], codec: .lz4)
    active.append([rng.bytes(100)], codec: .lz4)
    save(t, "active-3-batches", [0] + active.bytes)
    save(t, "sealed-3-batches", [0] + active.sealed)
    save(t, "prealloc-zero-tail", [0] + active.bytes + [UInt8](repeating: 0, count: 700))
    save(t, "sealed-footer-then-zeros", [0] + active.sealed + [UInt8](repeating: 0, count: 100))
    // Several index entries: > 4096 bytes of batches.
    var big = SegmentBuilder(baseLSN: 5000, previousBatchCRC: 0xAABB_CCDD, epoch: 4)
    for i in 0..<7 { big.append([rng.bytes(900 + i)], codec: .none, epoch: 4 + UInt64(i / 3)) }
    save(t, "sealed-multi-index", [0] + big.sealed)
    // Torn tail: the last batch cut short; and a torn header.
    save(t, "torn-last-batch", [0] + Array(active.bytes.dropLast(20)))
    save(t, "torn-in-header", [0] + Array(active.bytes[0..<(active.bytes.count - 100)]))
    // Damage in synced data, with a later batch claiming durability.
    var synced = firstSegment()
    for i in 0..<4 { synced.append([text("record \(i)"), rng.bytes(30)], codec: .none) }
    var rotten = synced.bytes
    rotten[64 + 70] ^= 0x04
    save(t, "bitrot-before-synced-batch", [0] + rotten)
    // A batch that breaks the chain / LSN continuity / epoch order.
    var wrongLSN = firstSegment()
    wrongLSN.append([text("a")], codec: .none)
    let (stray, _) = makeBatch([text("b")], codec: .none, baseLSN: 9, previousBatchCRC: wrongLSN.lastBatchCRC)
    save(t, "lsn-gap", [0] + wrongLSN.bytes + stray)
    let (back, _) = makeBatch([text("c")], codec: .none, baseLSN: 2, epoch: 0, previousBatchCRC: wrongLSN.lastBatchCRC)
    save(t, "epoch-goes-back", [0] + wrongLSN.bytes + back)
    // Bad record block inside a checksummed batch (only verifyRecords catches it).
    save(t, "bad-record-block", [0] + wrongLSN.bytes + forgeBatch(payload: [5, 1], recordCount: 1, baseLSN: 2, previousBatchCRC: wrongLSN.lastBatchCRC))
    // Zero bytes followed by data.
    save(t, "zeros-then-data", [0] + active.bytes + [UInt8](repeating: 0, count: 600) + [1, 2, 3])
    // Header problems.
    var badHeader = active.bytes
    badHeader[20] ^= 1
    save(t, "header-crc-mismatch", [0] + badHeader)
    save(t, "header-zeroed", [0] + [UInt8](repeating: 0, count: 64) + Array(active.bytes[64...]))
    save(t, "header-truncated", [0] + Array(active.bytes[0..<40]))
    // Mode 1: the harness prepends the header (baseLSN 1, previousBatchCRC 0, epoch 1).
    save(t, "prepend-active", [1] + Array(active.bytes[64...]))
    save(t, "prepend-sealed", [1] + Array(active.sealed[64...]))
    save(t, "prepend-empty", [1])
    // Modes 3 and 7: checksums (and chain) fixed by the harness, so mutations get deep.
    save(t, "fixup-sealed", [3] + Array(active.sealed[64...]))
    save(t, "fixup-chain-sealed", [7] + Array(synced.sealed[64...]))
    var scrambled = Array(synced.sealed[64...])
    scrambled.put(UInt64(77), at: 32)  // wrong baseLSN, repaired by mode 7
    save(t, "fixup-chain-repairs-lsn", [7] + scrambled)
    save(t, "fixup-raw-header", [2] + badHeader)
    // Mode 8: misnamed file (open must refuse).
    save(t, "misnamed", [8] + active.sealed)
    // For segment_scanner_big, where every input follows ~1 MiB of batches ending at LSN 16
    // (these also run in segment_scanner, as small files).
    save(t, "chained-batches-fixup", [7] + Array(synced.bytes[64...]))
    save(t, "zero-tail-300", [1] + [UInt8](repeating: 0, count: 300))
    save(t, "zeros-then-magic", [1] + [UInt8](repeating: 0, count: 38) + [0x53, 0x4C, 0x42, 0x31] + [UInt8](repeating: 7, count: 70))
    save(t, "torn-header-fixup", [7] + Array(synced.bytes[64..<200]))
}

// MARK: message_decoder

// Frames and messages laid out by hand from the tables of docs/PROTOCOL.md (sections 3-8, and the
// worked examples of section 11), with correct frame CRCs unless said otherwise.
do {
    let t = "message_decoder"
    func frame(_ type: UInt8, _ payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = text("SLRP") + [1, type] + le(UInt16(0)) + le(UInt32(payload.count))
        bytes += le(CRC32C.checksum(payload, continuing: crc(bytes[0..<12])))
        return bytes + payload
    }
    func id(_ s: String) -> [UInt8] { [UInt8(s.utf8.count)] + text(s) }
    func reason(_ s: String) -> [UInt8] { le(UInt16(s.utf8.count)) + text(s) }
    let nonce = (0..<32).map { UInt8($0) }
    let b1 = makeBatch([text("alpha"), text("beta")], codec: .none, baseLSN: 1, epoch: 3)
    let b2 = makeBatch([compressible(300, 4)], codec: .lz4, baseLSN: 3, epoch: 3, previousBatchCRC: b1.header.batchCRC, syncedThrough: 2)

    // Payloads, one per message type (section 4 order).
    let hello = le(UInt64(3)) + le(UInt64(43)) + nonce + le(UInt32(0x2897_11A6)) + le(UInt16(1)) + le(UInt16(1)) + [2] + id("prod") + id("db-2")
    let helloAck = le(UInt64(3)) + le(UInt64(50)) + nonce.reversed() + le(UInt32(7)) + le(UInt16(1)) + [1] + id("db-1")
    let proof = (0..<32).map { UInt8(0x80 + $0) }
    let startStream = le(UInt64(44))
    let batches = le(UInt64(3)) + le(UInt64(2)) + le(timestamp0) + le(UInt32(2)) + b1.bytes + b2.bytes
    let keepalive = le(UInt64(43)) + le(UInt64(40)) + le(timestamp0 + 1000) + [1]
    let followerStatus = le(UInt64(43)) + le(UInt64(41)) + le(UInt64(42)) + le(UInt64(12345))
    let chunk = le(UInt64(40)) + le(UInt64(10)) + le(UInt64(0)) + le(CRC32C.checksum([1, 2, 3, 4])) + [1, 2, 3, 4]
    let snapshotAck = le(UInt64(40)) + le(UInt64(4))
    let appendRequest = le(UInt64(1)) + le(UInt32(3)) + le(UInt32(250)) + [2, 1] + [0] + [1, 7] + [5] + text("hello")
    let appended = le(UInt64(1)) + [0] + le(UInt64(44)) + le(UInt64(46)) + le(UInt64(3))
    let appendedDegraded = le(UInt64(9)) + [2] + le(UInt64(44)) + le(UInt64(46)) + le(UInt64(3))
    let readRequest = le(UInt64(5)) + le(UInt64(1)) + le(UInt32(65536)) + le(UInt32(1000))
    let readResponse = le(UInt64(5)) + [0] + le(UInt64(100)) + le(UInt32(2)) + b1.bytes + b2.bytes
    let statusRequest = le(UInt64(7))
    let statusResponse = le(UInt64(7)) + text(#"{"role":"follower","node_id":"db-2","followers":[]}"#)
    let queryRequest = le(UInt64(7)) + le(UInt32(6)) + text("get k1")
    let queryResponse = le(UInt64(7)) + [0] + le(UInt64(43)) + le(UInt32(2)) + text("v1")
    let queryFailed = le(UInt64(8)) + [1] + le(UInt16(15)) + reason("bad key")
    let failures: [[UInt8]] = [
        le(UInt16(1)) + le(UInt16(1)) + le(UInt16(1)) + reason("version 1 only"),
        le(UInt16(2)) + reason("cluster is prod"),
        le(UInt16(3)) + reason(""),
        le(UInt16(4)) + id("10.0.0.7:7400") + reason("follower"),
        le(UInt16(5)) + le(UInt64(40)) + le(UInt32(0x1234_ABCD)) + reason(""),
        le(UInt16(6)) + le(UInt64(4)) + reason(""),
        le(UInt16(7)) + reason(""),
        le(UInt16(8)) + reason("Batches before StartStream"),
        le(UInt16(9)) + le(UInt64(44)) + le(UInt64(46)) + reason("flush:2 not confirmed"),
        le(UInt16(10)) + reason(""),
        le(UInt16(11)) + le(UInt64(1)) + le(UInt64(0)) + reason(""),
        le(UInt16(12)) + reason("EIO"),
        le(UInt16(13)) + reason(""),
        le(UInt16(14)) + reason("ünïcødé"),
        le(UInt16(15)) + reason("unknown operation"),
    ]

    // The worked examples of section 11, as raw streams.
    save(t, "golden-keepalive", [0] + frame(0x12, keepalive))
    save(t, "golden-hello", [0] + frame(0x01, hello))
    save(t, "golden-query-request", [0] + frame(0x26, queryRequest))
    save(t, "golden-query-response", [0] + frame(0x27, queryResponse))
    save(t, "golden-appended-degraded", [0] + frame(0x21, appendedDegraded))
    // Whole conversations, fed all at once, byte by byte, in 7-byte pieces and in varying pieces.
    let handshake = frame(0x01, hello) + frame(0x02, helloAck) + frame(0x04, proof) + frame(0x04, proof.reversed())
    save(t, "stream-handshake", [2] + handshake)
    save(t, "stream-handshake-bytewise", [2 | 4] + handshake)
    let replication =
        frame(0x10, startStream) + frame(0x11, batches) + frame(0x12, keepalive) + frame(0x13, followerStatus)
        + frame(0x14, chunk) + frame(0x15, snapshotAck)
    save(t, "stream-replication", [0] + replication)
    save(t, "stream-replication-pieces", [12] + replication)
    let client =
        frame(0x20, appendRequest) + frame(0x21, appended) + frame(0x21, appendedDegraded) + frame(0x22, readRequest)
        + frame(0x23, readResponse) + frame(0x24, statusRequest) + frame(0x25, statusResponse) + frame(0x26, queryRequest)
        + frame(0x27, queryResponse) + frame(0x27, queryFailed)
    save(t, "stream-client", [0] + client)
    save(t, "stream-client-7", [8] + client)
    save(t, "stream-failures", [0] + failures.enumerated().map { frame($0.offset % 2 == 0 ? 0x03 : 0x05, $0.element) }.joined())
    // Framing errors.
    save(t, "stream-http", [0] + text("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    save(t, "stream-zeros", [0] + [UInt8](repeating: 0, count: 40))
    var huge = frame(0x11, [])
    huge.put(UInt32.max, at: 8)
    save(t, "stream-header-4gib", [0] + huge)
    save(t, "stream-over-handshake-limit", [2] + frame(0x25, statusRequest + [UInt8](repeating: 0x20, count: 5000)))
    var badCRC = frame(0x26, queryRequest)
    badCRC[20] ^= 1
    save(t, "stream-crc-mismatch", [0] + badCRC)
    var flags = frame(0x24, statusRequest)
    flags.put(UInt16(1), at: 6)
    save(t, "stream-flags", [0] + flags)
    save(t, "stream-type-0x28", [0] + frame(0x28, statusRequest))
    save(t, "stream-truncated", [0] + Array(client.dropLast(5)))

    // Mode 1: type + payload, framed by the harness; mutations go straight to the message decoders.
    let payloads: [(String, UInt8, [UInt8])] = [
        ("hello", 0x01, hello), ("hello-extension", 0x01, hello + [9, 9, 9]), ("hello-ack", 0x02, helloAck),
        ("auth-proof", 0x04, proof), ("start-stream", 0x10, startStream), ("batches", 0x11, batches),
        ("keepalive", 0x12, keepalive), ("follower-status", 0x13, followerStatus), ("snapshot-chunk", 0x14, chunk),
        ("snapshot-ack", 0x15, snapshotAck), ("append-request", 0x20, appendRequest), ("appended", 0x21, appended),
        ("appended-degraded", 0x21, appendedDegraded), ("read-request", 0x22, readRequest), ("read-response", 0x23, readResponse),
        ("status-request", 0x24, statusRequest), ("status-response", 0x25, statusResponse), ("query-request", 0x26, queryRequest),
        ("query-response", 0x27, queryResponse), ("query-failed", 0x27, queryFailed),
        ("append-failed-commit-timed-out", 0x21, le(UInt64(2)) + [1] + failures[8]),
        ("read-failed-lsn-out-of-range", 0x23, le(UInt64(3)) + [1] + failures[10]),
        // Edges: lengths at and over the limits, unknown outcomes and codes, bad ranges.
        ("edge-query-length-max-absent", 0x26, le(UInt64(1)) + le(UInt32(65_536))),
        ("edge-query-length-over", 0x26, le(UInt64(1)) + le(UInt32(65_537)) + [1, 2, 3]),
        ("edge-query-empty", 0x26, le(UInt64(1)) + le(UInt32(0))),
        ("edge-result-length-over", 0x27, le(UInt64(1)) + [0] + le(UInt64(43)) + le(UInt32(4_194_305))),
        ("edge-result-length-huge", 0x27, le(UInt64(1)) + [0] + le(UInt64(43)) + le(UInt32.max)),
        ("edge-query-outcome-2", 0x27, le(UInt64(1)) + [2] + le(UInt64(43)) + le(UInt32(0))),
        ("edge-failure-code-16", 0x27, le(UInt64(1)) + [1] + le(UInt16(16)) + reason("")),
        ("edge-append-outcome-3", 0x21, le(UInt64(1)) + [3] + le(UInt64(44)) + le(UInt64(46)) + le(UInt64(3))),
        ("edge-degraded-empty-range", 0x21, le(UInt64(1)) + [2] + le(UInt64(46)) + le(UInt64(44)) + le(UInt64(3))),
        ("edge-degraded-epoch-0", 0x21, le(UInt64(1)) + [2] + le(UInt64(44)) + le(UInt64(46)) + le(UInt64(0))),
        ("edge-batch-count-huge", 0x11, le(UInt64(3)) + le(UInt64(2)) + le(timestamp0) + le(UInt32.max) + b1.bytes),
        ("edge-record-count-huge", 0x20, le(UInt64(1)) + le(UInt32.max) + le(UInt32(0)) + [0, 0, 0]),
        ("edge-text-length-huge", 0x05, le(UInt16(7)) + le(UInt16(0xFFFF)) + [0x61]),
        ("edge-status-not-utf8", 0x25, le(UInt64(1)) + [0x7B, 0xC0, 0x7D]),
    ]
    for (name, type, payload) in payloads { save(t, "framed-" + name, [1, type] + payload) }
}

print("make_seeds: wrote \(written) files under \(outRoot)")
