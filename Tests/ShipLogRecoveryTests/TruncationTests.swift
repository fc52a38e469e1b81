import Foundation
import Testing
import ShipLog
import ShipLogTestSupport

/// `LogRecovery.truncate(after:)`, the rejoin of a diverged node (RECOVERY.md section 12): at
/// every batch boundary the result is the log that only ever had the prefix, every cut byte
/// is in quarantine, and a power loss at any call leaves a log strict recovery opens that is
/// never shorter than asked.
@Suite struct TruncationTests {
    static let directory = FilePath("/node")
    static let label = "rejoin-1"

    static func options() -> LogOptions {
        var options = LogOptions()
        options.segmentBytesMax = 8 << 10
        options.indexIntervalBytes = 512
        options.compression = .none
        return options
    }

    /// A log of several segments over epochs 1, 2 (with an epoch-start control batch) and 4;
    /// returns the simulator (everything synced), its batches and its history.
    static func originalLog() throws -> (SimulatedFileSystem, [Batch], [EpochStart]) {
        let simulator = SimulatedFileSystem(seed: 42)
        let log = try Log.open(directory: directory, options: options(), fileSystem: simulator)
        var rng = SplitMix64(seed: 9)
        for (epoch, count) in [(UInt64(1), 25), (2, 20), (4, 15)] {
            if epoch > 1 {
                let previous = log.epoch
                try log.raiseEpoch(to: Epoch(epoch))
                let record = ControlRecord.epochStart(
                    epoch: Epoch(epoch), previousEpoch: previous, previousEpochLastLSN: log.nextLSN.predecessor)
                if epoch == 2 { try log.appendEncoded(.control([record]), durability: .buffered) }
            }
            for i in 0..<count {
                var builder = BatchBuilder()
                for j in 0..<(1 + i % 3) {
                    try builder.append(Array("e\(epoch)-\(i)-\(j)-".utf8) + (0..<(50 + rng.uniform(below: 500))).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
                }
                try log.append(builder, durability: i % 5 == 0 ? .immediate : .buffered)
            }
        }
        var cursor = log.batches(from: .first)
        var batches: [Batch] = []
        while let batch = try cursor.next() { batches.append(batch) }
        let history = log.epochHistory
        try log.close()
        simulator.syncEverything()
        return (simulator, batches, history)
    }

    /// Names and bytes of the log directory's files (segments and the epoch history).
    static func files(_ fs: SimulatedFileSystem) throws -> [String: [UInt8]] {
        var files: [String: [UInt8]] = [:]
        for name in try fs.contentsOfDirectory(at: directory)
        where SegmentName.baseLSN(fromFileName: name) != nil || name == EpochHistoryFile.fileName {
            files[name] = fs.contents(at: directory.appending(name))
        }
        return files
    }

    static func batches(of log: Log) throws -> [Batch] {
        var cursor = log.batches(from: log.firstLSN)
        var batches: [Batch] = []
        while let batch = try cursor.next() { batches.append(batch) }
        return batches
    }

    /// The directory of a log that only ever held `batches` (stored as replicated).
    static func prefixOnlyLog(_ batches: ArraySlice<Batch>) throws -> SimulatedFileSystem {
        let simulator = SimulatedFileSystem(seed: 5)
        let log = try Log.open(directory: directory, options: options(), fileSystem: simulator)
        for batch in batches { try log.appendReplicated(batch, durability: .buffered) }
        try log.close()
        return simulator
    }

    @Test func everyBoundaryGivesThePrefixOnlyLogAndItsCutBytesInQuarantine() throws {
        let (base, batches, history) = try Self.originalLog()
        let original = try Self.files(base)
        #expect(original.count > 5, "several segments: \(original.keys.sorted())")
        #expect(history.count == 3)
        let end = batches.last!.lsnRange.last
        let boundaries = [LSN.zero] + batches.map(\.lsnRange.last)
        for (kept, lsn) in boundaries.enumerated() {
            let fs = base.clone()
            let report = try LogRecovery.truncate(
                directory: Self.directory, fileSystem: fs, after: lsn, quarantineLabel: Self.label, options: Self.options())
            let at = "truncating after LSN \(lsn)"
            #expect(report.lastLSN == lsn && report.previousLastLSN == end, "\(at)")
            #expect(report.recordsRemoved == end.rawValue - lsn.rawValue, "\(at)")
            #expect(report.changedNothing == (lsn == end), "\(at)")
            #expect(report.epochHistoryDropped == history.filter { $0.firstLSN > lsn }, "\(at)")
            #expect(!report.recovery.repaired, "\(at): a clean log needs no repair")

            // Every cut byte is in quarantine: whole segments, and the cut segment's tail.
            let quarantine = Self.directory.appending("quarantine").appending(Self.label)
            for item in report.quarantined {
                let saved = fs.contents(at: quarantine.appending(item.name.split(separator: "/").last.map(String.init)!))
                let source = try #require(original[item.from], "\(at): \(item.from)")
                if item.name.contains("@") {
                    var tail = Array(source[Int(item.offset)...])
                    while tail.last == 0 { tail.removeLast() }
                    #expect(saved == tail, "\(at): \(item.name) holds the cut bytes")
                } else {
                    #expect(saved == source, "\(at): \(item.name) is the whole segment")
                }
            }
            #expect(report.bytesQuarantined == report.quarantined.reduce(0) { $0 + $1.bytes })

            // The reopened log is the prefix, file for file the log that only ever had it.
            let log = try Log.open(directory: Self.directory, options: Self.options(), fileSystem: fs)
            #expect(try Self.batches(of: log).map(\.bytes) == batches[..<kept].map(\.bytes), "\(at)")
            #expect(log.nextLSN == lsn.advanced(by: 1), "\(at)")
            #expect(log.epochHistory == history.filter { $0.firstLSN <= lsn }, "\(at)")
            try log.close()
            let prefix = try Self.files(try Self.prefixOnlyLog(batches[..<kept]))
            var truncated = try Self.files(fs)
            if kept == 0 { truncated[EpochHistoryFile.fileName] = nil }  // an empty history, where a new log has none yet
            #expect(truncated == prefix, "\(at): files \(truncated.keys.sorted()) vs \(prefix.keys.sorted())")

            // And it continues with the rest, byte for byte the original files.
            let continued = try Log.open(directory: Self.directory, options: Self.options(), fileSystem: fs)
            for batch in batches[kept...] { try continued.appendReplicated(batch, durability: .buffered) }
            try continued.close()
            #expect(try Self.files(fs) == original, "\(at): continued log differs from the original")
        }
    }

    /// Power loss before every call of a truncation (and after the last), under each model of
    /// lost directory entries: strict recovery opens what is left, which is a prefix of the
    /// old log no shorter than asked, with the history of its batches, and continues.
    @Test func powerLossAtAnyCallOfATruncationLeavesAPrefixNoShorterThanAsked() throws {
        let (base, batches, history) = try Self.originalLog()
        let segmentStarts = Set(try base.contentsOfDirectory(at: Self.directory).compactMap { SegmentName.baseLSN(fromFileName: $0) })
        // Boundaries of each kind: nothing kept, mid-segment in a sealed one, at a segment's
        // end (its footer is cut), in the active segment.
        let atSegmentEnd = batches.dropLast().first { segmentStarts.contains($0.lsnRange.next) }!
        let picks: [LSN] = [.zero, batches[3].lsnRange.last, atSegmentEnd.lsnRange.last, batches[batches.count - 3].lsnRange.last]
        let modes: [SimulatedFileSystem.Options.UnsyncedDirectoryEntries] = [.lost, .kept, .randomPrefix]
        var outcomes: [String: Int] = [:]
        for lsn in picks {
            func truncate(_ fs: any FileSystem) throws {
                _ = try LogRecovery.truncate(
                    directory: Self.directory, fileSystem: fs, after: lsn, quarantineLabel: Self.label, options: Self.options())
            }
            let probe = PowerSwitch(base.clone(), recording: true)
            try truncate(probe)
            let callCount = probe.callCount
            for cut in 0...callCount {
                for seed in UInt64(1)...3 {
                    let simulator = base.clone()
                    simulator.options.unsyncedDirectoryEntries = modes[Int(seed) % modes.count]
                    let power = PowerSwitch(simulator)
                    power.arm(afterCalls: cut, outage: .powerLoss(seed: seed &* 7919 &+ UInt64(cut)))
                    let finished = (try? truncate(power)) != nil
                    power.cut(.powerLoss(seed: seed))
                    let at = "after LSN \(lsn), cut before call \(cut) of \(callCount), seed \(seed): \(power.trippedAt ?? "")"
                    let log: Log
                    do {
                        log = try Log.open(directory: Self.directory, options: Self.options(), fileSystem: simulator)
                    } catch {
                        Issue.record("\(at): strict recovery refused: \(error)")
                        continue
                    }
                    let kept = try Self.batches(of: log)
                    let end = log.nextLSN.predecessor
                    #expect(kept.map(\.bytes) == batches[..<kept.count].map(\.bytes), "\(at): not a prefix")
                    #expect(end >= lsn, "\(at): ends at \(end), shorter than asked")
                    if finished { #expect(end == lsn, "\(at): the truncation returned") }
                    #expect(log.epochHistory == history.filter { $0.firstLSN <= end }, "\(at)")
                    // It continues: the rest of the old log appends as replicated.
                    for batch in batches[kept.count...].prefix(5) { try log.appendReplicated(batch, durability: .buffered) }
                    try log.close()
                    outcomes[end == lsn ? "truncated" : (kept.count == batches.count ? "old log" : "longer prefix"), default: 0] += 1
                }
            }
        }
        #expect(outcomes["truncated"] != nil && outcomes["old log"] != nil && outcomes["longer prefix"] != nil, "\(outcomes)")
        print("truncation power loss: \(outcomes)")
    }

    @Test func boundaryInsideABatchOrOutsideTheLogIsRefusedAndNothingMoves() throws {
        let (base, batches, _) = try Self.originalLog()
        let original = try Self.files(base)
        let multi = try #require(batches.first { $0.header.recordCount > 1 })
        for lsn in [multi.lsnRange.first, batches.last!.lsnRange.next, LSN(UInt64.max)] {
            let fs = base.clone()
            #expect(throws: LogError.self, "after LSN \(lsn)") {
                try LogRecovery.truncate(directory: Self.directory, fileSystem: fs, after: lsn, quarantineLabel: Self.label)
            }
            #expect(try Self.files(fs) == original)
            #expect(!fs.fileExists(at: Self.directory.appending("quarantine")))
        }
        #expect(throws: LogError.self) {
            try LogRecovery.truncate(directory: Self.directory, fileSystem: base.clone(), after: .zero, quarantineLabel: "a/b")
        }
    }

    /// A log whose retention removed its start truncates to its first LSN - 1: the first
    /// segment keeps only its header, so the log continues at the same LSN.
    @Test func truncatingEverythingOfARetainedSuffixKeepsItsStart() throws {
        let (base, batches, _) = try Self.originalLog()
        let log = try Log.open(directory: Self.directory, options: Self.options(), fileSystem: base)
        try log.removeSegments(before: batches[30].lsnRange.first)
        let first = log.firstLSN
        #expect(first > .first)
        try log.close()
        #expect(throws: LogError.self) {
            try LogRecovery.truncate(directory: Self.directory, fileSystem: base, after: first.predecessor.predecessor, quarantineLabel: Self.label)
        }
        let report = try LogRecovery.truncate(
            directory: Self.directory, fileSystem: base, after: first.predecessor, quarantineLabel: Self.label, options: Self.options())
        #expect(report.cutOffset == 64)
        let reopened = try Log.open(directory: Self.directory, options: Self.options(), fileSystem: base)
        #expect(reopened.firstLSN == first && reopened.nextLSN == first)
        let index = batches.firstIndex { $0.lsnRange.first == first }!
        for batch in batches[index...] { try reopened.appendReplicated(batch, durability: .buffered) }
        #expect(reopened.writtenLSN == batches.last!.lsnRange.last)
        try reopened.close()
    }

    @Test func truncationOfALogThatIsOpenIsRefused() throws {
        let path = FilePath(FileManager.default.temporaryDirectory.path + "/shiplog-truncate-\(UInt64.random(in: 0...UInt64.max))")
        defer { try? FileManager.default.removeItem(atPath: path.string) }
        let log = try Log.open(directory: path)
        try log.append(Array("one".utf8))
        try log.append(Array("two".utf8))
        #expect {
            try LogRecovery.truncate(directory: path, fileSystem: PosixFileSystem(), after: LSN(1), quarantineLabel: Self.label)
        } throws: { error in
            if case LogError.locked = error { return true }
            return false
        }
        try log.close()
        let report = try LogRecovery.truncate(directory: path, fileSystem: PosixFileSystem(), after: LSN(1), quarantineLabel: Self.label)
        #expect(report.recordsRemoved == 1)
        let reopened = try Log.open(directory: path)
        #expect(reopened.nextLSN == LSN(2))
        try reopened.close()
    }
}
