import Foundation
import Testing
@testable import ShipLogStorage
import ShipLogFormat
import ShipLogRecovery
import ShipLogTestSupport

/// The log's epoch history (FORMAT.md section 21) and control batches (section 20): written
/// ahead of each epoch's first batch, right across raises, replication and reopens.
@Suite struct EpochHistoryTests {
    /// Small segments, records stored raw (so that a few dozen batches span segments).
    static func options() -> LogOptions {
        var options = smallSegments()
        options.compression = .none
        return options
    }

    static func append(_ log: Log, _ count: Int, tag: String, durability: Durability = .buffered) throws {
        for i in 0..<count {
            var builder = BatchBuilder()
            for j in 0..<(1 + i % 3) { try builder.append("\(tag)-\(i)-\(j)-" + String(repeating: "e", count: (i * 97) % 1500)) }
            try log.append(builder, durability: durability)
        }
    }

    static func allBatches(_ log: Log) throws -> [Batch] {
        var cursor = log.batches(from: log.firstLSN)
        var batches: [Batch] = []
        while let batch = try cursor.next() { batches.append(batch) }
        return batches
    }

    /// The history a scan of `batches` gives: each batch whose epoch exceeds its predecessor's.
    static func scannedHistory(_ batches: [Batch]) -> [EpochStart] {
        var history: [EpochStart] = []
        for batch in batches where history.last.map({ batch.header.epoch > $0.epoch }) ?? true {
            history.append(EpochStart(epoch: batch.header.epoch, firstLSN: batch.header.baseLSN))
        }
        return history
    }

    static func historyFile(_ dir: FilePath) throws -> [EpochStart]? {
        try EpochHistoryFile.read(directory: dir, fileSystem: PosixFileSystem())
    }

    @Test func newLogWritesItsFirstEpochToTheFileBeforeItsFirstBatch() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path, options: Self.options())
        #expect(log.epochHistory.isEmpty)
        #expect(try Self.historyFile(dir.path) == nil, "an empty log has no history file yet")
        try log.append(Array("first".utf8))
        #expect(log.epochHistory == [EpochStart(epoch: .initial, firstLSN: .first)])
        #expect(try Self.historyFile(dir.path) == [EpochStart(epoch: .initial, firstLSN: .first)])
        try log.close()
    }

    @Test func raisedEpochStartsAtTheNextBatchAndSurvivesReopen() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path, options: Self.options())
        try Self.append(log, 40, tag: "one")
        let endOfOne = log.writtenLSN
        try log.raiseEpoch(to: Epoch(3))
        #expect(log.epoch == Epoch(3))
        #expect(log.epochHistory == [EpochStart(epoch: Epoch(1), firstLSN: .first)], "no batch of epoch 3 yet")
        #expect(throws: LogError.self) { try log.raiseEpoch(to: Epoch(3)) }
        #expect(throws: LogError.self) { try log.raiseEpoch(to: Epoch(2)) }
        try Self.append(log, 40, tag: "three", durability: .immediate)
        let expected = [EpochStart(epoch: Epoch(1), firstLSN: .first), EpochStart(epoch: Epoch(3), firstLSN: endOfOne.advanced(by: 1))]
        #expect(log.epochHistory == expected)
        #expect(log.epochHistory == Self.scannedHistory(try Self.allBatches(log)))
        #expect(log.epochEnd(atOrBefore: Epoch(1)) == endOfOne)
        #expect(log.epochEnd(atOrBefore: Epoch(2)) == endOfOne, "epoch 2 never wrote here: epoch 1's end")
        #expect(log.epochEnd(atOrBefore: Epoch(3)) == log.writtenLSN)
        #expect(log.epochEnd(atOrBefore: Epoch(9)) == log.writtenLSN)
        #expect(log.epochEnd(atOrBefore: Epoch(0)) == nil)
        #expect(log.epochStart(atOrBefore: Epoch(2)) == expected[0])
        #expect(log.epoch(of: endOfOne) == Epoch(1) && log.epoch(of: endOfOne.advanced(by: 1)) == Epoch(3))
        #expect(log.epoch(of: .zero) == nil && log.epoch(of: log.writtenLSN.advanced(by: 1)) == nil)
        #expect(log.segments.count > 1, "the epochs span segments")
        try log.close()

        let reopened = try Log.open(directory: dir.path, options: Self.options())
        #expect(reopened.epochHistory == expected)
        #expect(reopened.epoch == Epoch(3))
        try Self.append(reopened, 5, tag: "three-again")
        #expect(reopened.epochHistory == expected, "the same epoch adds no entry")
        try reopened.close()
        #expect(try Self.historyFile(dir.path) == expected)
    }

    /// A promotion that never wrote a batch leaves no trace: the entry is written with the
    /// epoch's first batch, not with the raise.
    @Test func raiseWithoutABatchIsNotRemembered() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path, options: Self.options())
        try Self.append(log, 3, tag: "a")
        try log.raiseEpoch(to: Epoch(5))
        try log.close()
        #expect(throws: LogError.self) { try log.raiseEpoch(to: Epoch(6)) }
        let reopened = try Log.open(directory: dir.path, options: Self.options())
        #expect(reopened.epoch == .initial)
        #expect(reopened.epochHistory == [EpochStart(epoch: .initial, firstLSN: .first)])
        try reopened.close()
    }

    /// A follower's history follows the epochs of the batches it stores.
    @Test func replicatedBatchesOfNewerEpochsAddTheSameEntriesAsThePrimarys() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let primary = try Log.open(directory: dir.path.appending("primary"), options: Self.options())
        try Self.append(primary, 20, tag: "p1")
        try primary.raiseEpoch(to: Epoch(2))
        try Self.append(primary, 20, tag: "p2")
        try primary.raiseEpoch(to: Epoch(7))
        try Self.append(primary, 20, tag: "p7")
        let batches = try Self.allBatches(primary)
        let history = primary.epochHistory
        #expect(history.count == 3)
        try primary.close()

        let follower = try Log.open(directory: dir.path.appending("follower"), options: Self.options())
        for batch in batches { try follower.appendReplicated(batch, durability: .buffered) }
        #expect(follower.epochHistory == history)
        #expect(follower.epoch == Epoch(7))
        try follower.close()
        let reopened = try Log.open(directory: dir.path.appending("follower"), options: Self.options())
        #expect(reopened.epochHistory == history)
        try reopened.close()
        #expect(
            try Data(contentsOf: URL(fileURLWithPath: dir.path.appending("follower").appending(EpochHistoryFile.fileName).string))
                == Data(contentsOf: URL(fileURLWithPath: dir.path.appending("primary").appending(EpochHistoryFile.fileName).string)),
            "the history files are byte-identical")
    }

    /// Control batches are the engine's: record readers skip them, their LSNs stay taken,
    /// cursors (and so replication) return them byte for byte.
    @Test func controlBatchesAreSkippedByForEachRecordButKeepTheirLSNs() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path.appending("primary"), options: Self.options())
        try Self.append(log, 3, tag: "before")  // LSNs 1...6 (1 + 2 + 3 records)
        let before = log.writtenLSN
        try log.raiseEpoch(to: Epoch(2))
        let control = ControlRecord.epochStart(epoch: Epoch(2), previousEpoch: .initial, previousEpochLastLSN: before)
        let range = try log.appendEncoded(.control([control]))
        #expect(range == LSNRange(first: before.advanced(by: 1), count: 1))
        try Self.append(log, 2, tag: "after")
        var seen: [LSN] = []
        try log.forEachRecord(from: .first) { lsn, bytes in
            #expect(!bytes.starts(with: Array("SLCR".utf8)), "LSN \(lsn) is a control record")
            seen.append(lsn)
        }
        let expectedLSNs: [LSN] = (1...before.rawValue).map { LSN($0) } + (range.next.rawValue...log.writtenLSN.rawValue).map { LSN($0) }
        #expect(seen == expectedLSNs)
        var records = 0
        try log.forEachRecord(from: range.first, through: range.first) { _, _ in records += 1 }
        #expect(records == 0, "a range holding only a control batch has no records")
        let stored = try #require(try log.batch(containing: range.first))
        #expect(stored.header.isControl && stored.header.epoch == Epoch(2))
        #expect(try stored.controlRecords() == [control])
        #expect(log.epochHistory == [EpochStart(epoch: .initial, firstLSN: .first), EpochStart(epoch: Epoch(2), firstLSN: range.first)])
        let batches = try Self.allBatches(log)
        try log.close()

        let follower = try Log.open(directory: dir.path.appending("follower"), options: Self.options())
        for batch in batches { try follower.appendReplicated(batch, durability: .buffered) }
        #expect(try Self.allBatches(follower).map(\.bytes) == batches.map(\.bytes))
        #expect(follower.epochHistory.last == EpochStart(epoch: Epoch(2), firstLSN: range.first))
        try follower.close()
    }

    @Test func controlRecordThatContradictsTheLogIsRefusedBeforeItGetsAnLSN() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path, options: Self.options())
        try Self.append(log, 2, tag: "x")
        let next = log.nextLSN
        let wrongEpoch = ControlRecord.epochStart(epoch: Epoch(4), previousEpoch: .initial, previousEpochLastLSN: next.predecessor)
        #expect(throws: LogError.self) { try log.appendEncoded(.control([wrongEpoch])) }
        try log.raiseEpoch(to: Epoch(4))
        let lastInFuture = ControlRecord.epochStart(epoch: Epoch(4), previousEpoch: .initial, previousEpochLastLSN: next)
        #expect(throws: LogError.self) { try log.appendEncoded(.control([lastInFuture])) }
        let backwards = ControlRecord.epochStart(epoch: Epoch(4), previousEpoch: Epoch(4), previousEpochLastLSN: .zero)
        #expect(throws: LogError.self) { try log.appendEncoded(.control([backwards])) }
        #expect(log.nextLSN == next, "nothing was assigned")
        #expect(log.epochHistory.count == 1)
        try log.close()
    }

    /// Write-ahead: when the history cannot be made durable, the batch that starts the epoch
    /// is never written (the log stops, as on any failed write or sync).
    @Test func failedHistoryWriteStopsTheLogBeforeTheBatchIsWritten() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let faults = FaultInjectingFileSystem(wrapping: PosixFileSystem(), recordingCalls: false)
        let log = try Log.open(directory: dir.path, options: Self.options(), fileSystem: faults)
        try Self.append(log, 3, tag: "ok", durability: .immediate)
        let written = log.writtenLSN
        faults.failCall(0, of: .sync, where: { $0.lastComponent == EpochHistoryFile.temporaryFileName })
        try log.raiseEpoch(to: Epoch(2))
        #expect(throws: LogError.self) { try log.append(Array("new epoch".utf8)) }
        #expect(log.writtenLSN == written)
        #expect(log.failure != nil)
        try? log.close()
        let reopened = try Log.open(directory: dir.path, options: Self.options())
        #expect(reopened.nextLSN == written.advanced(by: 1))
        #expect(reopened.epochHistory == [EpochStart(epoch: .initial, firstLSN: .first)])
        try reopened.close()
    }
}
