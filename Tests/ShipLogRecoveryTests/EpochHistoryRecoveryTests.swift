import Foundation
import Testing
import ShipLog
import ShipLogTestSupport

/// The epoch history at open (RECOVERY.md section 11): entries beyond the recovered end are
/// dropped, a missing file is rebuilt from the batches, a damaged or contradicting one is
/// refused (strict) or set aside (salvage), and whatever a power loss leaves, the history
/// equals the one a scan of the recovered batches gives.
@Suite struct EpochHistoryRecoveryTests {
    static let directory = FilePath("/epochs")

    static func options(preallocate: Bool = true) -> LogOptions {
        var options = LogOptions()
        options.segmentBytesMax = 8 << 10
        options.indexIntervalBytes = 512
        options.compression = .none
        options.preallocateSegments = preallocate
        return options
    }

    static func batch(_ tag: String, bytes: Int) -> BatchBuilder {
        var builder = BatchBuilder()
        try! builder.append(Array("\(tag)-".utf8) + [UInt8](repeating: UInt8(truncatingIfNeeded: bytes), count: bytes))
        return builder
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

    /// Why the open log's history is not the one its batches give (or the file disagrees).
    static func historyProblems(_ log: Log, fileSystem: any FileSystem) throws -> [String] {
        var problems: [String] = []
        let scanned = scannedHistory(try allBatches(log))
        if log.epochHistory != scanned { problems.append("history \(log.epochHistory), batches give \(scanned)") }
        let file = try EpochHistoryFile.read(directory: directory, fileSystem: fileSystem)
        if (file ?? []) != log.epochHistory, !(file == nil && log.writtenLSN == .zero) {
            problems.append("file holds \(file.map { "\($0)" } ?? "nothing"), the log says \(log.epochHistory)")
        }
        return problems
    }

    // MARK: Crash cases

    /// The entry is durable before its batch; the batch never made it. The open drops the
    /// entry and rewrites the file, so that later batches of the old epoch are not taken for
    /// the new one's.
    @Test func entryWhoseFirstBatchWasNeverWrittenIsDroppedAndStaysDropped() throws {
        let simulator = SimulatedFileSystem(seed: 7)
        let log = try Log.open(directory: Self.directory, options: Self.options(), fileSystem: simulator)
        for i in 0..<10 { try log.append(Self.batch("one-\(i)", bytes: 300), durability: .immediate) }
        let end = log.writtenLSN
        try log.close()
        let power = PowerSwitch(simulator)
        let second = try Log.open(directory: Self.directory, options: Self.options(), fileSystem: power)
        try second.raiseEpoch(to: Epoch(2))
        power.arm(afterCalls: 0, of: .write, where: { $0.lastComponent.hasSuffix(".seg") }, outage: .powerLoss(seed: 3))
        #expect(throws: LogError.self) { try second.append(Self.batch("two", bytes: 300), durability: .immediate) }
        try? second.close()
        #expect(
            try EpochHistoryFile.read(directory: Self.directory, fileSystem: simulator)?.last
                == EpochStart(epoch: Epoch(2), firstLSN: end.advanced(by: 1)),
            "the entry was durable before the batch's write")

        let (third, report) = try LogRecovery.open(directory: Self.directory, options: Self.options(), fileSystem: simulator)
        #expect(report.epochHistoryDropped == [EpochStart(epoch: Epoch(2), firstLSN: end.advanced(by: 1))])
        #expect(third.epochHistory == [EpochStart(epoch: .initial, firstLSN: .first)])
        #expect(third.epoch == .initial)
        for i in 0..<5 { try third.append(Self.batch("one-again-\(i)", bytes: 300), durability: .immediate) }
        try third.close()
        simulator.crash(seed: 11)
        let (fourth, again) = try LogRecovery.open(directory: Self.directory, options: Self.options(), fileSystem: simulator)
        #expect(again.epochHistoryDropped.isEmpty)
        #expect(try Self.historyProblems(fourth, fileSystem: simulator).isEmpty)
        #expect(fourth.epochHistory == [EpochStart(epoch: .initial, firstLSN: .first)])
        try fourth.close()
    }

    /// Power lost at random calls of a workload that raises epochs, writes control batches
    /// and rolls segments: every reopen gives the history a scan of the batches gives, and
    /// the file on disk says the same.
    @Test func powerLossDuringEpochChangesLeavesTheHistoryOfTheRecoveredBatches() throws {
        let seeds = seedCount(default: 300)
        let start = firstSeed() ?? 1
        var dropped = 0
        var raisesSurvived = 0
        for seed in start..<(start + UInt64(seeds)) {
            var rng = SplitMix64(seed: seed)
            let simulator = SimulatedFileSystem(seed: seed)
            let modes: [SimulatedFileSystem.Options.UnsyncedDirectoryEntries] = [.lost, .kept, .randomPrefix]
            simulator.options.unsyncedDirectoryEntries = modes[rng.uniform(below: modes.count)]
            let options = Self.options(preallocate: rng.coin())
            for cycle in 0..<3 {
                let power = PowerSwitch(simulator)
                let (log, report): (Log, RecoveryReport)
                do {
                    (log, report) = try LogRecovery.open(directory: Self.directory, options: options, fileSystem: power)
                } catch {
                    Issue.record("seed \(seed) cycle \(cycle): strict open refused: \(error)")
                    break
                }
                dropped += report.epochHistoryDropped.count
                for problem in try Self.historyProblems(log, fileSystem: power) {
                    Issue.record("seed \(seed) cycle \(cycle): \(problem)")
                }
                power.arm(afterCalls: 5 + rng.uniform(below: 120), outage: .powerLoss(seed: rng.next()))
                var epoch = log.epoch
                do {
                    for step in 0..<(10 + rng.uniform(below: 30)) {
                        switch rng.uniform(below: 10) {
                        case 0:
                            epoch = Epoch(epoch.rawValue + 1 + UInt64(rng.uniform(below: 3)))
                            try log.raiseEpoch(to: epoch)
                            if rng.coin() {
                                let record = ControlRecord.epochStart(
                                    epoch: epoch, previousEpoch: log.epochHistory.last?.epoch ?? Epoch(0),
                                    previousEpochLastLSN: log.nextLSN.predecessor)
                                try log.appendEncoded(.control([record]), durability: .buffered)
                            }
                        case 1:
                            try log.sync()
                        default:
                            let durability: Durability = rng.chance(1, in: 4) ? .immediate : .buffered
                            try log.append(Self.batch("s\(seed)-c\(cycle)-\(step)", bytes: 50 + rng.uniform(below: 900)), durability: durability)
                        }
                    }
                    if let last = log.epochHistory.last, last.epoch > .initial { raisesSurvived += 1 }
                } catch {
                    // The power went out under the workload.
                }
                power.cut(.powerLoss(seed: rng.next()))
                try? log.close()
            }
            let final = try LogRecovery.open(directory: Self.directory, options: options, fileSystem: simulator).log
            for problem in try Self.historyProblems(final, fileSystem: simulator) {
                Issue.record("seed \(seed) final open: \(problem)")
            }
            for problem in try LogVerifier(directory: Self.directory, fileSystem: simulator).verify().problems {
                Issue.record("seed \(seed) final open: verify: \(problem)")
            }
            try final.close()
        }
        #expect(raisesSurvived > 0)
        print("epoch history power loss: \(seeds) seeds, \(dropped) entries dropped at open, \(raisesSurvived) workloads with raised epochs")
    }

    // MARK: Missing, damaged, contradicting

    static func writeThreeEpochs(fileSystem: any FileSystem) throws -> [EpochStart] {
        let log = try Log.open(directory: directory, options: options(), fileSystem: fileSystem)
        for epoch in [1, 2, 5] as [UInt64] {
            if epoch > 1 { try log.raiseEpoch(to: Epoch(epoch)) }
            for i in 0..<25 { try log.append(batch("e\(epoch)-\(i)", bytes: 200 + i * 37 % 500), durability: .buffered) }
        }
        let history = log.epochHistory
        try log.close()
        return history
    }

    @Test func missingHistoryIsRebuiltFromTheBatchesOfEverySegment() throws {
        let simulator = SimulatedFileSystem(seed: 1)
        let history = try Self.writeThreeEpochs(fileSystem: simulator)
        #expect(history.count == 3)
        try simulator.removeFile(at: Self.directory.appending(EpochHistoryFile.fileName))
        let (log, report) = try LogRecovery.open(directory: Self.directory, options: Self.options(), fileSystem: simulator)
        #expect(report.epochHistoryRebuilt)
        #expect(log.segments.count > 3)
        #expect(log.epochHistory == history)
        #expect(try EpochHistoryFile.read(directory: Self.directory, fileSystem: simulator) == history)
        try log.close()
        let (again, second) = try LogRecovery.open(directory: Self.directory, options: Self.options(), fileSystem: simulator)
        #expect(!second.epochHistoryRebuilt)
        try again.close()
    }

    /// Retention keeps entries; a rebuild can only see what is retained, so its first entry
    /// starts at the first retained batch.
    @Test func rebuiltHistoryOfARetainedSuffixStartsAtTheFirstRetainedBatch() throws {
        let simulator = SimulatedFileSystem(seed: 2)
        let history = try Self.writeThreeEpochs(fileSystem: simulator)
        let log = try Log.open(directory: Self.directory, options: Self.options(), fileSystem: simulator)
        try log.removeSegments(before: history[1].firstLSN.advanced(by: 3))
        let first = log.firstLSN
        #expect(first > .first && first <= history[1].firstLSN.advanced(by: 3))
        #expect(log.epochHistory == history, "retention removes no entry")
        try log.close()
        #expect(try Log.open(directory: Self.directory, options: Self.options(), fileSystem: simulator).epochHistory == history)
        try simulator.removeFile(at: Self.directory.appending(EpochHistoryFile.fileName))
        let rebuilt = try Log.open(directory: Self.directory, options: Self.options(), fileSystem: simulator)
        let firstEpoch = try #require(try rebuilt.batch(containing: first)).header.epoch
        #expect(rebuilt.epochHistory == [EpochStart(epoch: firstEpoch, firstLSN: first)] + history.filter { $0.firstLSN > first })
        try rebuilt.close()
    }

    @Test func damagedHistoryIsRefusedByStrictOpenAndSetAsideBySalvage() throws {
        let simulator = SimulatedFileSystem(seed: 3)
        let history = try Self.writeThreeEpochs(fileSystem: simulator)
        let path = Self.directory.appending(EpochHistoryFile.fileName)
        try simulator.corrupt(at: path, offset: 20, length: 1, .xor(0x04))
        let refusal = Result { try Log.open(directory: Self.directory, options: Self.options(), fileSystem: simulator) }
        guard case .failure(let error) = refusal else {
            Issue.record("strict open accepted a damaged epoch history")
            return
        }
        #expect("\(error)".contains("corruption in \(EpochHistoryFile.fileName)"), "\(error)")
        let (log, report) = try LogRecovery.open(
            directory: Self.directory, options: Self.options(), fileSystem: simulator, mode: .salvage)
        #expect(report.epochHistoryRebuilt && log.epochHistory == history)
        #expect(report.quarantined.map(\.name) == ["quarantine/\(EpochHistoryFile.fileName)"])
        try log.close()
    }

    /// `shiplog verify` checks the history against the batches' epochs, retention or not.
    @Test func verifierFlagsAHistoryThatDisagreesWithTheBatches() throws {
        let simulator = SimulatedFileSystem(seed: 5)
        let history = try Self.writeThreeEpochs(fileSystem: simulator)
        let verifier = LogVerifier(directory: Self.directory, fileSystem: simulator)
        #expect(try verifier.verify().problems == [])
        let log = try Log.open(directory: Self.directory, options: Self.options(), fileSystem: simulator)
        try log.removeSegments(before: history[1].firstLSN.advanced(by: 2))
        try log.close()
        #expect(try verifier.verify().problems == [], "retention keeps entries before the first retained batch")
        let path = Self.directory.appending(EpochHistoryFile.fileName)
        let unfinished = history + [EpochStart(epoch: Epoch(9), firstLSN: LSN(1_000_000))]
        try simulator.createFile(at: path, contents: EpochHistoryFile.encode(unfinished))
        #expect(try verifier.verify().problems == [], "an entry beyond the end awaits its batch")
        for forged in [Array(history.dropLast()), [history[0], EpochStart(epoch: Epoch(3), firstLSN: history[1].firstLSN), history[2]]] {
            try simulator.createFile(at: path, contents: EpochHistoryFile.encode(forged))
            let problems = try verifier.verify().problems
            #expect(problems.count == 1 && problems.first?.hasPrefix(EpochHistoryFile.fileName) == true, "\(forged): \(problems)")
        }
        try simulator.createFile(at: path, contents: Array("garbage\n".utf8))
        #expect(try verifier.verify().problems.count == 1)
    }

    @Test func historyThatContradictsTheSegmentsIsRefused() throws {
        let simulator = SimulatedFileSystem(seed: 4)
        let history = try Self.writeThreeEpochs(fileSystem: simulator)
        let path = Self.directory.appending(EpochHistoryFile.fileName)
        let wrong = [history[0], EpochStart(epoch: Epoch(3), firstLSN: history[1].firstLSN), history[2]]
        for forged in [wrong, Array(history.dropLast()), Array(history.dropFirst())] {
            try simulator.createFile(at: path, contents: EpochHistoryFile.encode(forged))
            #expect(throws: LogError.self, "\(forged)") {
                try Log.open(directory: Self.directory, options: Self.options(), fileSystem: simulator)
            }
        }
    }
}
