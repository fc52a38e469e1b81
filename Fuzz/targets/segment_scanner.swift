// Fuzz target `segment_scanner`: a whole segment file in an in-memory file system, opened with
// SegmentFile.open, scanned with SegmentScanner(verifyRecords: true) and read through
// SegmentFile.readFooter(). The file system is a minimal read-only one (below) rather than
// ShipLogTestSupport's SimulatedFileSystem: it shares the input's bytes without copying them (the
// simulator zero-fills and copies each file twice, which dominated the run time) and checks every
// read the storage layer makes.
//
// Input: byte 0 is the mode, the rest is the file (or, with bit 0, the file after its header).
//   mode bit 0: prepend a valid segment header (baseLSN 1, previousBatchCRC 0, epoch 1)
//   mode bit 1: fix up checksums: the segment header's, each batch's (payload then header, walking
//               batch to batch from offset 64 while batch magics are found), and the footer's
//               (the one the walk ends at, and the one the file's trailer points to)
//   mode bit 2: with bit 1, also rewrite each walked batch's baseLSN and previousBatchCRC so the
//               LSNs are dense and the CRC chain holds (reach the epoch, record and footer checks)
//   mode bit 3: name the file after a base LSN other than its header's (open must refuse it)
//
// Variant `segment_scanner_big` (this file compiled with -D FUZZ_BIG_SEGMENTS): every file is the
// prepended header (bit 0 implied), then ~1 MiB of valid, chained batches (LSNs 1...16), then the
// input, which so starts 40 bytes before the scanner's 1 MiB read-chunk boundary: exercises
// ChunkedFileReader's reloads, nextMagic's 3-byte overlap and isZero across chunks, which inputs
// of at most max_len bytes never reach. Fix-ups (bits 1, 2) chain the input's batches to those.
// About 20x slower per input, hence a separate binary and corpus directory.
//
// Invariants (beyond "never traps, never reads out of bounds, never allocates past the limits"):
//   * SegmentFile.open succeeds iff SegmentHeader.decode accepts the first 64 bytes and the file
//     name states the header's base LSN;
//   * scan() does not throw (the in-memory file system never fails);
//   * the N batches the scan reports valid decode one after another from offset 64 with
//     Batch.decode, their records() succeed, LSNs are dense from the header's baseLSN, the CRC
//     chain holds from the header's previousBatchCRC, epochs never decrease; dataEnd, lastLSN,
//     lastBatchCRC, lastEpoch, lastTimestamp, byte totals and every index entry agree with them;
//   * the ending agrees with the bytes: endOfFile at the end of the file, zeroFill only over
//     zeros, damage at dataEnd for the next LSN, footer = the footer at dataEnd;
//   * readFooter(), when it returns a footer, returns one that ends the file; when the scan ended
//     at a footer that ends the file, readFooter() returns that same footer;
//   * reads: offsets within the file, no single read over max(readChunkBytes, batchBytesMax,
//     largest footer) bytes, and in total at most a few times the file (no quadratic re-reading).
import ShipLogFormat
import ShipLogStorage

#if canImport(Glibc)
import Glibc
#endif

/// One read-only file in memory; every read is checked and counted.
final class MemoryFileHandle: FileHandle, @unchecked Sendable {
    let path: FilePath
    let bytes: [UInt8]
    var readCalls = 0
    var bytesRead = 0
    var largestRead = 0

    init(path: FilePath, bytes: [UInt8]) {
        self.path = path
        self.bytes = bytes
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, fromAbsoluteOffset offset: Int64) throws(FileSystemError) -> Int {
        require(offset >= 0 && offset <= Int64(bytes.count), "read at offset \(offset) of a \(bytes.count)-byte file")
        readCalls += 1
        largestRead = max(largestRead, buffer.count)
        let count = min(buffer.count, bytes.count - Int(offset))
        if count > 0 {
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + Int(offset), byteCount: count) }
        }
        bytesRead += count
        return count
    }

    func size() throws(FileSystemError) -> Int64 { Int64(bytes.count) }
    func write(_ bytes: UnsafeRawBufferPointer, toAbsoluteOffset offset: Int64) throws(FileSystemError) { invariantFailed("write") }
    func synchronizeData() throws(FileSystemError) { invariantFailed("synchronizeData") }
    func preallocate(fromAbsoluteOffset offset: Int64, length: Int64) throws(FileSystemError) { invariantFailed("preallocate") }
    func truncate(toSize size: Int64) throws(FileSystemError) { invariantFailed("truncate") }
    func close() {}
}

/// A file system holding one file, opened read-only.
struct MemoryFileSystem: FileSystem {
    let handle: MemoryFileHandle

    func openFile(at path: FilePath, options: FileOpenOptions) throws(FileSystemError) -> any FileHandle {
        require(options == [.read], "segment opened with \(options)")
        guard path == handle.path else { throw FileSystemError(operation: .open, path: path, errno: ENOENT) }
        return handle
    }
    func contentsOfDirectory(at path: FilePath) throws(FileSystemError) -> [String] { [handle.path.lastComponent] }
    func createDirectory(at path: FilePath) throws(FileSystemError) { invariantFailed("createDirectory") }
    func rename(from source: FilePath, to destination: FilePath) throws(FileSystemError) { invariantFailed("rename") }
    func removeFile(at path: FilePath) throws(FileSystemError) { invariantFailed("removeFile") }
    func syncDirectory(at path: FilePath) throws(FileSystemError) { invariantFailed("syncDirectory") }
    func fileExists(at path: FilePath) -> Bool { path == handle.path }
}

let prependedHeader = SegmentHeader(previousBatchCRC: 0, baseLSN: LSN(1), epoch: Epoch(1), createdAt: 1_700_000_000_000_000_000)
let prependedHeaderBytes = prependedHeader.encoded()

#if FUZZ_BIG_SEGMENTS
let bigSegments = true
#else
let bigSegments = false
#endif

/// The big variant's prefix after the segment header: 16 chained batches (one record each, each
/// below 64 KiB so that copies stay out of ASan's slow large-allocation path) ending 40 bytes
/// before SegmentScanner.readChunkBytes.
let fillerBatches: [UInt8] = {
    guard bigSegments else { return [] }
    let end = SegmentScanner.readChunkBytes - 40
    let total = end - SegmentHeader.byteCount
    var bytes: [UInt8] = []
    var previousCRC: UInt32 = 0
    for i in 0..<16 {
        let batchSize = i < 15 ? total / 16 : total - 15 * (total / 16)
        var builder = BatchBuilder(capacity: batchSize)
        try! builder.append([UInt8](repeating: UInt8(0x41 + i), count: batchSize - BatchHeader.byteCount - 3))  // 3-byte varint
        var encoded = builder.encode(codec: .none)
        let header = encoded.seal(
            baseLSN: LSN(1 + UInt64(i)), epoch: Epoch(1), previousBatchCRC: previousCRC, syncedThrough: LSN(UInt64(i)),
            timestamp: 1_700_000_000_000_000_000)
        previousCRC = header.batchCRC
        bytes += encoded.bytes
    }
    precondition(SegmentHeader.byteCount + bytes.count == end)
    return bytes
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let mode = data[0]
    var file: [UInt8] = []
    file.reserveCapacity(size + 64 + fillerBatches.count)
    if mode & 1 != 0 || bigSegments { file += prependedHeaderBytes }
    file += fillerBatches
    let trusted = file.count
    file.append(contentsOf: UnsafeBufferPointer(start: data + 1, count: size - 1))
    if mode & 2 != 0 { fixUp(&file, chain: mode & 4 != 0, trustedPrefix: trusted) }
    checkSegment(file, misnamed: mode & 8 != 0, trustedPrefix: trusted)
    return 0
}

/// Bytes before `trustedPrefix` are the harness's own and already valid: walked, not rewritten.
func fixUp(_ file: inout [UInt8], chain: Bool, trustedPrefix: Int) {
    guard file.count >= 64 else { return }
    if trustedPrefix < 64, le32(file, 0) == segmentMagic { put32(&file, 4, crc(file, 8..<64)) }
    var previousCRC = le32(file, 12)
    var nextLSN = le64(file, 16)
    var offset = 64
    var batches: UInt32 = 0
    while file.count - offset >= 64, le32(file, offset) == batchMagic {
        if offset < trustedPrefix {
            previousCRC = le32(file, offset + 4)
            nextLSN = nextLSN &+ UInt64(le32(file, offset + 20))
            offset += 64 + Int(le32(file, offset + 24))
            batches &+= 1
            continue
        }
        if chain {
            put32(&file, offset + 12, previousCRC)
            put64(&file, offset + 32, nextLSN)
        }
        guard let end = fixBatchCRCs(&file, at: offset), end <= file.count else { break }
        previousCRC = le32(file, offset + 4)
        nextLSN = nextLSN &+ UInt64(le32(file, offset + 20))
        offset = end
        batches &+= 1
    }
    if file.count - offset >= 4, le32(file, offset) == footerMagic {
        if chain && file.count - offset >= 56 {
            put32(&file, offset + 12, batches)
            put32(&file, offset + 48, previousCRC)
            put64(&file, offset + 16, nextLSN &- 1)
            put64(&file, offset + 24, UInt64(offset))
        }
        fixFooterCRC(&file, at: offset)
    }
    if file.count >= 64 + 64, le32(file, file.count - 4) == trailerMagic {
        let length = Int(le32(file, file.count - 8))
        if length >= 64, length <= file.count - 64, le32(file, file.count - length) == footerMagic {
            fixFooterCRC(&file, at: file.count - length)
        }
    }
}

func checkSegment(_ file: [UInt8], misnamed: Bool, trustedPrefix: Int) {
    let decodedHeader = try? SegmentHeader.decode(file)
    // Name the file after its header's base LSN so SegmentFile.open's name check passes (or,
    // misnamed, after another one); with an undecodable header any segment name will do.
    var nameLSN = decodedHeader?.baseLSN ?? LSN(1)
    if misnamed { nameLSN = nameLSN == LSN(1) ? LSN(2) : LSN(1) }
    let name = SegmentName.fileName(baseLSN: nameLSN)
    let path = FilePath("log/" + name)
    let handle = MemoryFileHandle(path: path, bytes: file)
    let fs = MemoryFileSystem(handle: handle)
    defer { checkReads(handle) }
    let segment: SegmentFile
    do {
        segment = try SegmentFile.open(at: path, fileSystem: fs, writable: false)
    } catch {
        trace("open: \(error)")
        require(decodedHeader == nil || misnamed, "SegmentFile.open refused a header SegmentHeader.decode accepts: \(error)")
        return
    }
    guard let header = decodedHeader else { invariantFailed("SegmentFile.open accepted an invalid header") }
    require(!misnamed, "SegmentFile.open accepted a file named for base LSN \(nameLSN), header says \(header.baseLSN)")
    require(segment.header == header, "SegmentFile.open decoded a different header")

    let result: SegmentScanner.Result
    do { result = try SegmentScanner(file: segment, verifyRecords: true).scan() } catch {
        invariantFailed("scan() threw on an in-memory file: \(error)")
    }
    trace("scan: \(result.batchCount) batches, dataEnd \(result.dataEnd) of \(file.count), index \(result.index.count), ending \(result.ending)")
    checkScan(result, file: file, header: header, trustedPrefix: trustedPrefix)

    // The footer located through the trailer.
    let footer: SegmentFooter?
    do { footer = try segment.readFooter() } catch {
        trace("readFooter: \(error)")
        if case .footer(let f) = result.ending, Int(f.dataEnd) + f.byteCount == file.count {
            invariantFailed("scan accepted the footer ending the file, readFooter threw \(error)")
        }
        return
    }
    trace("readFooter: \(footer.map { "\($0.batchCount) batches, dataEnd \($0.dataEnd)" } ?? "none")")
    if let footer {
        require(Int(footer.dataEnd) + footer.byteCount == file.count, "readFooter's footer does not end the file")
        require(footer.batchCount >= 1 && footer.lastLSN >= header.baseLSN, "readFooter's footer")
        require(footer.index.count <= FormatLimits.indexEntriesMax, "index entries")
    }
    if case .footer(let f) = result.ending, Int(f.dataEnd) + f.byteCount == file.count {
        require(footer == f, "scan and readFooter disagree on the footer ending the file")
    }
}

/// The largest read the storage layer has reason to make: a scanner chunk, a whole batch or a
/// whole footer.
let largestLegitimateRead = max(
    SegmentScanner.readChunkBytes, FormatLimits.batchBytesMax,
    SegmentFooter.fixedByteCount + 8 * FormatLimits.indexEntriesMax + SegmentFooter.trailerByteCount)

func checkReads(_ handle: MemoryFileHandle) {
    trace("reads: \(handle.readCalls) calls, \(handle.bytesRead) bytes of a \(handle.bytes.count)-byte file, largest \(handle.largestRead)")
    require(handle.largestRead <= largestLegitimateRead, "a single read of \(handle.largestRead) bytes")
    if checkEnabled("read-amplification") {
        let bound = 4 * handle.bytes.count + 4096
        require(handle.bytesRead <= bound, "read \(handle.bytesRead) bytes (\(handle.readCalls) calls) of a \(handle.bytes.count)-byte file")
    }
}

func checkScan(_ result: SegmentScanner.Result, file: [UInt8], header: SegmentHeader, trustedPrefix: Int) {
    var offset = SegmentHeader.byteCount
    var expected = header.baseLSN
    var previousCRC = header.previousBatchCRC
    var lastEpoch = header.epoch
    var lastTimestamp: UInt64 = 0
    var uncompressed: Int64 = 0
    var stored: Int64 = 0
    var starts: [Int: LSN] = [:]
    require(result.batchCount >= 0 && result.batchCount <= (file.count - 64) / 65, "batchCount \(result.batchCount)")
    for i in 0..<result.batchCount {
        let decoded = file.withUnsafeBytes { Batch.decode(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
        guard case .batch(let h) = decoded else {
            invariantFailed("scan counted \(result.batchCount) batches, batch \(i) at \(offset) decodes as \(decoded)")
        }
        require(h.baseLSN == expected, "batch \(i): LSN \(h.baseLSN), expected \(expected)")
        require(h.previousBatchCRC == previousCRC, "batch \(i): chain broken")
        require(h.epoch >= lastEpoch, "batch \(i): epoch went back")
        if offset >= trustedPrefix {  // (the big variant's own prefix batches are known to be good)
            let batch = Batch(verifiedHeader: h, bytes: Array(file[offset..<offset + h.batchByteCount]))
            do {
                let records = try batch.records()
                require(records.count == Int(h.recordCount), "batch \(i): record count")
            } catch {
                invariantFailed("scan (verifyRecords) accepted batch \(i) whose records() throws \(error)")
            }
        }
        starts[offset] = h.baseLSN
        expected = h.lsnRange.next
        previousCRC = h.batchCRC
        lastEpoch = h.epoch
        lastTimestamp = h.timestamp
        uncompressed += Int64(h.uncompressedLength)
        stored += Int64(h.batchByteCount)
        offset += h.batchByteCount
    }
    require(result.dataEnd == Int64(offset), "dataEnd \(result.dataEnd), batches end at \(offset)")
    require(result.lastLSN == expected.predecessor, "lastLSN \(result.lastLSN), expected \(expected.predecessor)")
    require(result.lastBatchCRC == previousCRC, "lastBatchCRC")
    require(result.lastEpoch == lastEpoch, "lastEpoch")
    require(result.batchCount == 0 || result.lastTimestamp == lastTimestamp, "lastTimestamp")
    require(result.uncompressedBytes == uncompressed && result.storedBytes == stored, "byte totals")
    // Index: ascending, each entry at a batch start with that batch's LSN; the first batch indexed.
    var previous: SegmentIndexEntry?
    for entry in result.index {
        require(starts[Int(entry.position)] == entry.lsn, "index entry \(entry) is not a batch start")
        if let p = previous { require(p.lsn < entry.lsn && p.position < entry.position, "index not ascending") }
        previous = entry
    }
    require((result.batchCount == 0) == result.index.isEmpty, "first batch not indexed")
    if let first = result.index.first { require(first.position == 64, "first index entry at \(first.position)") }

    // The ending.
    switch result.ending {
    case .endOfFile:
        require(offset == file.count, "endOfFile at \(offset) of \(file.count)")
    case .zeroFill:
        require(offset < file.count && file[offset...].allSatisfy { $0 == 0 }, "zeroFill over non-zero bytes")
    case .footer(let f):
        require(f.dataEnd == UInt64(offset), "footer dataEnd \(f.dataEnd) at \(offset)")
        require(f.lastLSN == result.lastLSN && f.lastBatchCRC == result.lastBatchCRC, "footer vs batches")
        require(Int(f.batchCount) == result.batchCount, "footer batchCount")
        require(offset + f.byteCount <= file.count, "footer past the end of the file")
        if let last = f.index.last { require(UInt64(last.position) < f.dataEnd, "footer index past dataEnd") }
    case .damage(let d):
        require(d.offset == Int64(offset), "damage at \(d.offset), data ends at \(offset)")
        require(d.expectedLSN == expected, "damage expects \(d.expectedLSN), not \(expected)")
        require(d.bytesAfter == Int64(file.count - offset) && d.bytesAfter > 0, "damage bytesAfter")
        require(d.validBatchesAfter >= 0 && d.validBatchesAfter <= d.bytesAfter / 64, "validBatchesAfter")
        if let later = d.laterBatchClaimingDurability {
            require(later.offset > d.offset && later.offset + 64 <= Int64(file.count), "laterBatchClaimingDurability offset")
            let claim = file.withUnsafeBytes { BatchHeader.decode(UnsafeRawBufferPointer(rebasing: $0[Int(later.offset)...])) }
            guard case .header(let h) = claim, h.lsnRange == later.lsnRange, h.syncedThrough >= d.expectedLSN else {
                invariantFailed("laterBatchClaimingDurability at \(later.offset) is not a valid header claiming LSN \(d.expectedLSN)")
            }
        }
        // Damage doc: "the file ends inside it" is a torn-write signature. The file ends inside
        // the damaged batch when fewer than 64 bytes remain, or its header decodes and states a
        // batch longer than what remains.
        if checkEnabled("torn-signature") {
            let remaining = file.count - offset
            var endsInside = remaining < BatchHeader.byteCount
            if case .header(let h) = file.withUnsafeBytes({ BatchHeader.decode(UnsafeRawBufferPointer(rebasing: $0[offset...])) }) {
                endsInside = h.batchByteCount > remaining
            }
            if endsInside {
                require(d.tornWriteSignature, "the file ends inside the damaged batch at \(offset) (\(remaining) bytes left) but tornWriteSignature is false (reason: \(d.reason))")
            }
        }
    default:
        // Endings added later (e.g. a damaged footer) only need to start at dataEnd.
        require(offset < file.count, "scan ended early at \(offset) of \(file.count)")
    }
}
