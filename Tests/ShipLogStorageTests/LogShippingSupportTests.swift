import Foundation
import Testing
@testable import ShipLogStorage
import ShipLogFormat
import ShipLogRecovery
import ShipLogTestSupport

/// Options with segments small enough that a few hundred batches roll several of them.
func tinySegments() -> LogOptions {
    var options = LogOptions()
    options.segmentBytesMax = 8 << 10
    options.indexIntervalBytes = 512
    return options
}

/// Record bytes that LZ4 cannot shrink.
func incompressible(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
}

/// Every batch of `log`, as stored.
func allBatches(_ log: Log, from lsn: LSN = .first) throws -> [Batch] {
    var cursor = log.batches(from: lsn)
    var batches: [Batch] = []
    while let batch = try cursor.next() { batches.append(batch) }
    return batches
}

/// Name and bytes of every segment file in `directory`, sorted by name.
func segmentFiles(in directory: FilePath) throws -> [(name: String, bytes: [UInt8])] {
    try FileManager.default.contentsOfDirectory(atPath: directory.string)
        .filter { SegmentName.baseLSN(fromFileName: $0) != nil }
        .sorted()
        .map { ($0, Array(try Data(contentsOf: URL(fileURLWithPath: directory.appending($0).string)))) }
}

/// Appends a mixed workload: small, compressible and incompressible records, batches of one to
/// four records, a batch larger than a segment, and every durability.
func appendMixedWorkload(to log: Log, batches: Range<Int>) throws {
    for i in batches {
        var builder = BatchBuilder()
        for j in 0..<(1 + i % 4) {
            switch (i + j) % 5 {
            case 0: try builder.append(incompressible(700 + i % 300, seed: UInt64(i * 10 + j)))
            case 1: try builder.append(Array(String(repeating: "log line \(i) ", count: 1 + i % 40).utf8))
            default: try builder.append(Array("r\(i)-\(j)".utf8))
            }
        }
        if i % 97 == 50 { try builder.append(incompressible(9_000, seed: UInt64(i))) }  // over segmentBytesMax
        let durability: Durability = i % 3 == 0 ? .immediate : (i % 3 == 1 ? .buffered : .interval(.milliseconds(2)))
        try log.append(builder, durability: durability)
    }
}

@Suite struct ByteIdenticalSegmentTests {
    /// A follower fed the primary's batches must write the very same files, or shipping whole
    /// segments, comparing checksums of files and re-seeding by copy would all break.
    @Test func followerWritesByteIdenticalSegmentFilesAcrossRollsAndARestart() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let options = tinySegments()
        let primaryPath = dir.path.appending("primary")
        var primary = try Log.open(directory: primaryPath, options: options)
        try appendMixedWorkload(to: primary, batches: 0..<120)
        try primary.close()
        primary = try Log.open(directory: primaryPath, options: options)  // a restart in the middle
        try appendMixedWorkload(to: primary, batches: 120..<260)
        let batches = try allBatches(primary)
        try primary.close()
        #expect(primary.segments.count >= 10, "the workload rolls many segments")

        let followerPath = dir.path.appending("follower")
        let follower = try Log.open(directory: followerPath, options: options)
        for (i, batch) in batches.enumerated() {
            try follower.appendReplicated(batch, durability: i % 2 == 0 ? .buffered : .immediate)
        }
        try follower.close()

        let expected = try segmentFiles(in: primaryPath)
        let stored = try segmentFiles(in: followerPath)
        #expect(stored.map(\.name) == expected.map(\.name))
        for (mine, theirs) in zip(stored, expected) {
            #expect(mine.bytes.count == theirs.bytes.count, "\(mine.name): file sizes differ")
            #expect(mine.bytes == theirs.bytes, "\(mine.name) is not byte-identical to the primary's")
        }
        // The createdAt of each segment is the timestamp of its first batch.
        for file in stored {
            let header = try SegmentHeader.decode(Array(file.bytes.prefix(SegmentHeader.byteCount)))
            let first = batches.first { $0.header.baseLSN == header.baseLSN }
            #expect(header.createdAt == first?.header.timestamp, "\(file.name)")
        }
    }
}

@Suite struct ChainPositionTests {
    @Test func emptyLogAnswersTheStartOfTheChain() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path, options: tinySegments())
        #expect(log.lastBatchCRC == 0)
        #expect(try log.batchCRC(endingAt: .zero) == 0)
        #expect(try log.batchCRC(endingAt: LSN(1)) == nil)
        let boundary = try log.lastBatchBoundary(atOrBefore: LSN(10))
        #expect(boundary?.lsn == .zero && boundary?.batchCRC == 0)
        try log.close()
    }

    /// Positions inside a batch or past the end are not boundaries: a follower announcing one
    /// is not where it claims to be.
    @Test func batchBoundariesAnswerTheirCRCAndOtherLSNsDoNot() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path, options: tinySegments())
        try appendMixedWorkload(to: log, batches: 0..<80)
        let batches = try allBatches(log)
        #expect(log.lastBatchCRC == batches.last!.header.batchCRC)
        try checkBoundaries(of: log, against: batches)
        let end = log.nextLSN.predecessor
        #expect(try log.batchCRC(endingAt: end.advanced(by: 1)) == nil)
        let beyond = try log.lastBatchBoundary(atOrBefore: end.advanced(by: 100))
        #expect(beyond?.lsn == end && beyond?.batchCRC == batches.last!.header.batchCRC)
        try log.close()
        // The same answers from a reopened log (footers and scans instead of live state).
        let reopened = try Log.open(directory: dir.path, options: tinySegments())
        try checkBoundaries(of: reopened, against: batches)
        #expect(reopened.lastBatchCRC == batches.last!.header.batchCRC)
        try reopened.close()
    }

    @Test func afterRetentionTheStartIsTheFirstSegmentsLinkAndEarlierLSNsAreUnknown() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path, options: tinySegments())
        try appendMixedWorkload(to: log, batches: 0..<80)
        let batches = try allBatches(log)
        let removed = try log.removeSegments(before: batches[40].header.baseLSN)
        #expect(!removed.isEmpty)
        let first = log.firstLSN
        let firstBatch = batches.first { $0.header.baseLSN == first }!
        #expect(try log.batchCRC(endingAt: first.predecessor) == firstBatch.header.previousBatchCRC)
        #expect(try log.batchCRC(endingAt: first.predecessor.predecessor) == nil)
        #expect(try log.lastBatchBoundary(atOrBefore: first.predecessor.predecessor) == nil)
        #expect(try log.batchCRC(endingAt: .zero) == 0, "LSN 0 is the start of every chain")
        try checkBoundaries(of: log, against: batches.filter { $0.header.baseLSN >= first })
        try log.close()
    }

    private func checkBoundaries(of log: Log, against batches: [Batch]) throws {
        for batch in batches {
            let range = batch.lsnRange
            #expect(try log.batchCRC(endingAt: range.last) == batch.header.batchCRC, "batch \(range)")
            #expect(try log.batchCRC(endingAt: range.first.predecessor) == batch.header.previousBatchCRC)
            if range.first < range.last {
                #expect(try log.batchCRC(endingAt: range.first) == nil, "LSN \(range.first) is inside \(range)")
                let boundary = try log.lastBatchBoundary(atOrBefore: range.last.predecessor)
                #expect(boundary?.lsn == range.first.predecessor)
                #expect(boundary?.batchCRC == batch.header.previousBatchCRC)
            }
            let exact = try log.lastBatchBoundary(atOrBefore: range.last)
            #expect(exact?.lsn == range.last && exact?.batchCRC == batch.header.batchCRC)
        }
    }
}

@Suite struct BlockingWaitTests {
    @Test func waitForWriteTimesOutWhenNothingIsAppended() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path)
        try log.append(Array("one".utf8))
        let started = ContinuousClock.now
        #expect(!log.waitForWrite(after: log.writtenLSN, timeout: .milliseconds(50)))
        #expect(ContinuousClock.now - started >= .milliseconds(45))
        #expect(log.waitForWrite(after: .zero, timeout: .zero), "already written: true at once")
        #expect(log.waitForDurable(after: .zero, timeout: .zero))
        try log.close()
    }

    /// A replication sender sleeping in `waitForWrite` must wake on the append, not on a poll.
    @Test func waitersWakeAsSoonAsAnotherThreadWritesAndSyncs() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path)
        let start = log.writtenLSN
        let appender = Thread {
            Thread.sleep(forTimeInterval: 0.05)
            _ = try? log.append(Array("later".utf8), durability: .buffered)
            Thread.sleep(forTimeInterval: 0.05)
            try? log.sync()
        }
        appender.start()
        let started = ContinuousClock.now
        #expect(log.waitForWrite(after: start, timeout: .seconds(20)))
        #expect(log.writtenLSN > start)
        #expect(log.waitForDurable(after: start, timeout: .seconds(20)))
        #expect(log.durableLSN > start)
        #expect(ContinuousClock.now - started < .seconds(10))
        try log.close()
    }

    @Test func closingTheLogReleasesWaitersWithFalse() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path)
        let closer = Thread {
            Thread.sleep(forTimeInterval: 0.05)
            try? log.close()
        }
        closer.start()
        let started = ContinuousClock.now
        #expect(!log.waitForWrite(after: log.writtenLSN, timeout: .seconds(30)))
        #expect(!log.waitForDurable(after: LSN(1_000), timeout: .seconds(30)))
        #expect(ContinuousClock.now - started < .seconds(10), "woken by the close, not the timeout")
    }

    @Test func aFailedLogReleasesWaitersWithFalse() throws {
        let fs = SimulatedFileSystem(seed: 7)
        let log = try Log.open(directory: "/failing", options: tinySegments(), fileSystem: fs)
        try log.append(Array("one".utf8))
        fs.failSyncs(times: 10)
        let failer = Thread {
            Thread.sleep(forTimeInterval: 0.05)
            _ = try? log.append(Array("two".utf8), durability: .immediate)
        }
        failer.start()
        let started = ContinuousClock.now
        #expect(!log.waitForDurable(after: log.durableLSN, timeout: .seconds(30)))
        #expect(log.failure != nil)
        #expect(ContinuousClock.now - started < .seconds(10))
        try? log.close()
    }
}

@Suite struct RetentionHoldTests {
    /// A follower still reading LSN x must find it: retention may not drop it under its feet.
    @Test func retentionNeverRemovesASegmentAHoldStillNeeds() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path, options: tinySegments())
        try appendMixedWorkload(to: log, batches: 0..<150)
        let segments = log.segments
        #expect(segments.count >= 6)
        let held = segments[3].baseLSN.advanced(by: 1)
        log.setRetentionHold("follower-a", from: held)
        log.setRetentionHold("follower-b", from: segments[5].baseLSN)
        #expect(log.retentionHolds == ["follower-a": held, "follower-b": segments[5].baseLSN])

        let removed = try log.removeSegments(before: log.nextLSN)
        #expect(removed.map(\.fileName) == segments.prefix(3).map(\.fileName))
        #expect(log.firstLSN == segments[3].baseLSN)
        #expect(try log.applyRetention(RetentionPolicy(totalBytesMax: 0)).isEmpty)
        #expect(try log.batch(containing: held) != nil)

        log.setRetentionHold("follower-a", from: nil)  // a: gone; b still holds
        #expect(log.retentionHolds == ["follower-b": segments[5].baseLSN])
        let next = try log.applyRetention(RetentionPolicy(totalBytesMax: 0))
        #expect(next.map(\.fileName) == segments[3..<5].map(\.fileName))
        log.setRetentionHold("follower-b", from: nil)
        #expect(log.retentionHolds.isEmpty)
        try log.removeSegments(before: log.nextLSN)
        #expect(log.segments.count == 1, "without holds everything sealed may go")
        try log.close()
    }
}
