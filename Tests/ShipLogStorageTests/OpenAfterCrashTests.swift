import Foundation
import Testing
@testable import ShipLogStorage
import ShipLogFormat
import ShipLogRecovery

/// Damage a crash can leave at the end of the active segment is cut and reported; damage it
/// cannot leave refuses the open, naming file and offset.
@Suite struct OpenAfterCrashTests {
    /// Writes `count` records in batches of 5 and returns the segment file path.
    func writeLog(at dir: TemporaryDirectory, count: Int = 100, recordBytes: Int? = nil) throws -> String {
        var options = LogOptions()
        options.compression = recordBytes == nil ? .lz4 : .none
        let log = try Log.open(directory: dir.path, options: options)
        var batch = BatchBuilder()
        for (i, record) in records(count, bytes: recordBytes).enumerated() {
            try batch.append(record)
            if i % 5 == 4 {
                try log.append(batch, durability: .immediate)
                batch.removeAll()
            }
        }
        try log.close()
        return dir.path.appending(SegmentName.fileName(baseLSN: .first)).string
    }

    func fileBytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
    func write(_ bytes: [UInt8], to path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

    /// Offset just after the valid batches.
    func dataEnd(_ path: String) throws -> Int {
        let file = try SegmentFile.open(at: FilePath(path), fileSystem: PosixFileSystem(), writable: false)
        return Int(try SegmentScanner(file: file).scan().dataEnd)
    }

    /// Offsets of every batch in the segment.
    func batchOffsets(_ path: String) throws -> [Int] {
        let bytes = try fileBytes(path)
        var offsets: [Int] = []
        var offset = SegmentHeader.byteCount
        while offset + BatchHeader.byteCount <= bytes.count {
            let decoded = bytes[offset...].withUnsafeBytes { BatchHeader.decode($0) }
            guard case .header(let header) = decoded else { break }
            offsets.append(offset)
            offset += header.batchByteCount
        }
        return offsets
    }

    @Test func tornTrailingBatchIsCutAndReported() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = try writeLog(at: dir, count: 100, recordBytes: 300)
        let end = try dataEnd(path)
        let last = try batchOffsets(path).last!
        var bytes = try fileBytes(path)
        // A crash mid-write: the sectors after the first one the last batch touches never
        // reached the disk.
        let cut = (last / 512 + 1) * 512
        #expect(cut < end, "the last batch must span a sector boundary for this test")
        for i in cut..<end { bytes[i] = 0 }
        try write(bytes, to: path)
        let (log, report) = try LogRecovery.open(directory: dir.path)
        #expect(report.truncations.count == 1)
        #expect(report.truncations.first?.offset == Int64(last))
        let back = try readAll(log)
        #expect(back.count == 95)
        #expect(back.map(\.1) == Array(records(100, bytes: 300).prefix(95)))
        // Appending continues right after the last good batch.
        #expect(try log.append(Array("next".utf8)).first == LSN(96))
        try log.close()
        #expect(try readAll(try Log.open(directory: dir.path)).count == 96)
    }

    @Test func zeroFilledTailIsTheNormalEndOfAnActiveSegment() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        _ = try writeLog(at: dir)
        let (log, report) = try LogRecovery.open(directory: dir.path)
        #expect(report.truncations.isEmpty)
        #expect(try readAll(log).count == 100)
        try log.close()
    }

    @Test func fileEndingInsideABatchHeaderIsATornTail() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = try writeLog(at: dir)
        let last = try batchOffsets(path).last!
        let bytes = try fileBytes(path)
        try write(Array(bytes[0..<(last + 20)]), to: path)
        let (log, report) = try LogRecovery.open(directory: dir.path)
        #expect(report.truncations.first?.offset == Int64(last))
        #expect(try readAll(log).count == 95)
        try log.close()
    }

    @Test func flippedBitInFullyWrittenLastBatchIsCorruptionNotATornTail() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = try writeLog(at: dir)
        let last = try batchOffsets(path).last!
        var bytes = try fileBytes(path)
        bytes[last + BatchHeader.byteCount + 3] ^= 0x10
        try write(bytes, to: path)
        #expect {
            _ = try LogRecovery.open(directory: dir.path)
        } throws: { error in
            guard case LogError.corruption(let file, let offset, _, _) = error else { return false }
            return file == SegmentName.fileName(baseLSN: .first) && offset == Int64(last)
        }
    }

    @Test func corruptBatchFollowedByValidDataRefusesToOpen() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = try writeLog(at: dir)
        let offsets = try batchOffsets(path)
        var bytes = try fileBytes(path)
        let victim = offsets[3]
        for i in victim..<(victim + 512) { bytes[i] = 0 }  // a zeroed sector in the middle
        try write(bytes, to: path)
        #expect {
            _ = try LogRecovery.open(directory: dir.path)
        } throws: { error in
            guard case LogError.corruption(_, let offset, _, let reason) = error else { return false }
            return offset == Int64(victim) && reason.contains("synced")
        }
        // Nothing was cut: the file is as it was.
        #expect(try fileBytes(path) == bytes)
    }

    @Test func readerNeverReturnsABatchWhoseChecksumFailed() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = try writeLog(at: dir)
        let log = try Log.open(directory: dir.path)
        let offsets = try batchOffsets(path)
        var bytes = try fileBytes(path)
        bytes[offsets[10] + BatchHeader.byteCount + 1] ^= 1  // rot after open
        try write(bytes, to: path)
        var cursor = log.batches(from: .first)
        var good = 0
        #expect(throws: LogError.self) {
            while try cursor.next() != nil { good += 1 }
        }
        #expect(good == 10)
        try log.close()
    }

    @Test func leftoverTemporarySegmentIsRemoved() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        _ = try writeLog(at: dir)
        let temporary = dir.path.appending(SegmentName.fileName(baseLSN: LSN(101)) + ".tmp").string
        try write([1, 2, 3], to: temporary)
        let (log, report) = try LogRecovery.open(directory: dir.path)
        #expect(report.removedTemporaryFiles == [SegmentName.fileName(baseLSN: LSN(101)) + ".tmp"])
        #expect(!FileManager.default.fileExists(atPath: temporary))
        try log.close()
    }

    @Test func missingMiddleSegmentIsAnLSNGapError() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path, options: smallSegments())
        for record in records(5000) { try log.append(record, durability: .buffered) }
        let segments = log.segments
        try log.close()
        #expect(segments.count >= 3)
        try FileManager.default.removeItem(atPath: dir.path.appending(segments[1].fileName).string)
        #expect {
            _ = try LogRecovery.open(directory: dir.path, options: smallSegments())
        } throws: { error in
            guard case LogError.corruption(let file, _, _, let reason) = error else { return false }
            return file == segments[2].fileName && reason.contains("missing")
        }
    }
}
