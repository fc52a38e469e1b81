import Foundation
import Testing
import ShipLog
import ShipLogTestSupport

/// `LogRecovery.resetForReseed`: a follower's log restarted at a checkpoint's LSN
/// (PROTOCOL.md section 7.6), never losing the old bytes and never leaving a directory that
/// strict recovery refuses.
@Suite struct ReseedTests {
    static func options() -> LogOptions {
        var options = LogOptions()
        options.segmentBytesMax = 8 << 10
        options.indexIntervalBytes = 512
        return options
    }

    /// A log of `count` batches (several segments), closed; returns its batches.
    static func writeLog(at path: FilePath, fileSystem: any FileSystem, count: Int, tag: String) throws -> [Batch] {
        let log = try Log.open(directory: path, options: options(), fileSystem: fileSystem)
        var rng = SplitMix64(seed: UInt64(count))
        for i in 0..<count {
            var builder = BatchBuilder()
            for j in 0..<(1 + i % 3) {
                let noise = (0..<(i % 4 == 0 ? 600 : 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                try builder.append(Array("\(tag)-\(i)-\(j)-".utf8) + noise)
            }
            try log.append(builder, durability: i % 4 == 0 ? .immediate : .buffered)
        }
        var cursor = log.batches(from: .first)
        var batches: [Batch] = []
        while let batch = try cursor.next() { batches.append(batch) }
        try log.close()
        return batches
    }

    static func directory(_ name: String = #function) -> FilePath {
        let safe = name.filter { $0.isLetter || $0.isNumber }
        let path = FileManager.default.temporaryDirectory.path + "/shiplog-reseed-tests/\(safe)-\(UInt64.random(in: 0...UInt64.max))"
        return FilePath(path)
    }

    static func fileBytes(_ path: FilePath) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path.string)))
    }

    static func segmentNames(in path: FilePath) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: path.string)
            .filter { SegmentName.baseLSN(fromFileName: $0) != nil }.sorted()
    }

    /// The re-seeded follower continues the primary's chain from the batch after the
    /// checkpoint, and from there on writes the primary's very segment files.
    @Test func reseededLogContinuesFromTheGivenBaseAndLinkWithThePrimarysFiles() throws {
        let root = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: root.string) }
        let fs = PosixFileSystem()
        let primaryPath = root.appending("primary")
        let primary = try Self.writeLog(at: primaryPath, fileSystem: fs, count: 200, tag: "primary")
        let followerPath = root.appending("follower")
        _ = try Self.writeLog(at: followerPath, fileSystem: fs, count: 50, tag: "old")
        let oldNames = try Self.segmentNames(in: followerPath)
        var oldBytes: [String: [UInt8]] = [:]
        for name in oldNames { oldBytes[name] = try Self.fileBytes(followerPath.appending(name)) }
        // A leftover of an interrupted segment creation goes to quarantine as well.
        let leftover = SegmentName.fileName(baseLSN: LSN(999)) + SegmentName.temporarySuffix
        _ = FileManager.default.createFile(atPath: followerPath.appending(leftover).string, contents: Data([1, 2, 3]))

        // Start at the first batch of one of the primary's segments.
        let primarySegments = try Self.segmentNames(in: primaryPath)
        let base = SegmentName.baseLSN(fromFileName: primarySegments[4])!
        let startIndex = primary.firstIndex { $0.header.baseLSN == base }!
        let first = primary[startIndex].header
        let moved = try LogRecovery.resetForReseed(
            directory: followerPath, fileSystem: fs, startingAt: base, previousBatchCRC: first.previousBatchCRC,
            epoch: first.epoch, createdAt: first.timestamp, quarantineLabel: "reseed-1", options: Self.options())
        #expect(moved == [leftover, EpochHistoryFile.fileName] + oldNames.reversed())
        #expect(try Self.segmentNames(in: followerPath) == [SegmentName.fileName(baseLSN: base)])
        let quarantined = followerPath.appending("quarantine").appending("reseed-1")
        for name in oldNames {
            #expect(try Self.fileBytes(quarantined.appending(name)) == oldBytes[name], "\(name) kept byte for byte")
        }
        #expect(try Self.fileBytes(quarantined.appending(leftover)) == [1, 2, 3])
        #expect(FileManager.default.fileExists(atPath: quarantined.appending(EpochHistoryFile.fileName).string))

        let (log, report) = try LogRecovery.open(directory: followerPath, options: Self.options(), fileSystem: fs)
        #expect(!report.repaired, "a reset leaves nothing to repair: \(report)")
        #expect(log.nextLSN == base)
        #expect(log.writtenLSN == base.predecessor)
        #expect(log.firstLSN == base)
        #expect(log.lastBatchCRC == first.previousBatchCRC)
        #expect(log.epoch == first.epoch)
        #expect(try log.batchCRC(endingAt: base.predecessor) == first.previousBatchCRC)
        for batch in primary[startIndex...] { try log.appendReplicated(batch, durability: .buffered) }
        try log.close()

        let expected = primarySegments.dropFirst(4)
        #expect(try Self.segmentNames(in: followerPath) == Array(expected))
        for name in expected {
            #expect(
                try Self.fileBytes(followerPath.appending(name)) == Self.fileBytes(primaryPath.appending(name)),
                "\(name) is byte-identical to the primary's")
        }
        let reopened = try Log.open(directory: followerPath, options: Self.options(), fileSystem: fs)
        #expect(reopened.nextLSN == primary.last!.lsnRange.next)
        // The old log's history went to quarantine; the new one starts with the first batch shipped.
        #expect(reopened.epochHistory == [EpochStart(epoch: first.epoch, firstLSN: base)])
        #expect(reopened.firstLSN == base)
        try reopened.close()
    }

    @Test func resetOfALogThatIsOpenIsRefused() throws {
        let root = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: root.string) }
        let log = try Log.open(directory: root, options: Self.options())
        try log.append(Array("kept".utf8))
        #expect {
            try LogRecovery.resetForReseed(
                directory: root, fileSystem: PosixFileSystem(), startingAt: LSN(10), previousBatchCRC: 1, epoch: .initial,
                createdAt: 1, quarantineLabel: "x")
        } throws: { error in
            if case LogError.locked = error { return true }
            return false
        }
        #expect(try Self.segmentNames(in: root).count == 1, "nothing moved")
        try log.close()
    }

    @Test func labelThatIsNotOneFileNameIsRefusedBeforeAnythingMoves() throws {
        let root = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: root.string) }
        _ = try Self.writeLog(at: root, fileSystem: PosixFileSystem(), count: 5, tag: "old")
        let longLabel = String(repeating: "l", count: LogRecovery.quarantineLabelBytesMax + 1)
        for label in ["", ".", "..", "a/b", "../escape", longLabel] {
            #expect(throws: LogError.self, "label '\(label)'") {
                try LogRecovery.resetForReseed(
                    directory: root, fileSystem: PosixFileSystem(), startingAt: LSN(10), previousBatchCRC: 1,
                    epoch: .initial, createdAt: 1, quarantineLabel: label)
            }
        }
        #expect(throws: LogError.self, "LSN 0") {
            try LogRecovery.resetForReseed(
                directory: root, fileSystem: PosixFileSystem(), startingAt: .zero, previousBatchCRC: 1,
                epoch: .initial, createdAt: 1, quarantineLabel: "ok")
        }
        #expect(try Self.segmentNames(in: root).count >= 1)
        #expect(!FileManager.default.fileExists(atPath: root.appending("quarantine").string))
    }

    /// Power loss before any call of a reset (and after the last) must leave a directory that
    /// strict recovery opens: the old log, a prefix of it, an empty log, or the new empty log.
    /// A partial state that strict recovery refuses would leave the follower unable to start.
    @Test func powerLossAtAnyCallOfAResetLeavesALogThatStrictRecoveryOpens() throws {
        let path = FilePath("/follower")
        let base = SimulatedFileSystem(seed: 1)
        let old = try Self.writeLog(at: path, fileSystem: base, count: 40, tag: "old")
        base.syncEverything()
        let newBase = LSN(5_000)
        let link: UInt32 = 0xC0FF_EE00
        func reset(_ fs: any FileSystem) throws {
            try LogRecovery.resetForReseed(
                directory: path, fileSystem: fs, startingAt: newBase, previousBatchCRC: link, epoch: Epoch(4),
                createdAt: 77, quarantineLabel: "reseed", options: Self.options())
        }
        let probe = PowerSwitch(base.clone(), recording: true)
        try reset(probe)
        let callCount = probe.callCount
        #expect(callCount > 10)
        let modes: [SimulatedFileSystem.Options.UnsyncedDirectoryEntries] = [.lost, .kept, .randomPrefix]
        var outcomes: [String: Int] = [:]
        for cut in 0...callCount {
            for seed in UInt64(1)...3 {
                let simulator = base.clone()
                simulator.options.unsyncedDirectoryEntries = modes[Int(seed) % modes.count]
                let power = PowerSwitch(simulator)
                power.arm(afterCalls: cut, outage: .powerLoss(seed: seed &* 7919 &+ UInt64(cut)))
                let finished = (try? reset(power)) != nil
                power.cut(.powerLoss(seed: seed))  // after the last call: crash anyway
                let where_ = "cut before call \(cut) of \(callCount), seed \(seed): \(power.trippedAt ?? "")"
                let opened: Log
                do {
                    opened = try Log.open(directory: path, options: Self.options(), fileSystem: simulator)
                } catch {
                    Issue.record("\(where_): strict recovery refused the directory: \(error)")
                    continue
                }
                defer { try? opened.close() }
                let outcome: String
                if opened.firstLSN == newBase {
                    #expect(opened.nextLSN == newBase && opened.lastBatchCRC == link && opened.epoch == Epoch(4), "\(where_)")
                    outcome = "new empty log"
                } else if opened.nextLSN == .first {
                    outcome = "empty log"
                } else {
                    var cursor = opened.batches(from: .first)
                    var index = 0
                    while let batch = try cursor.next() {
                        #expect(index < old.count && batch.bytes == old[index].bytes, "\(where_): batch \(index)")
                        index += 1
                    }
                    #expect(opened.firstLSN == .first && index > 0, "\(where_)")
                    outcome = index == old.count ? "old log" : "prefix of the old log"
                }
                if finished { #expect(outcome == "new empty log", "\(where_): the reset returned") }
                outcomes[outcome, default: 0] += 1
            }
        }
        #expect(outcomes["old log"] != nil && outcomes["new empty log"] != nil, "\(outcomes)")
        #expect(outcomes["prefix of the old log"] != nil, "\(outcomes)")
    }
}
