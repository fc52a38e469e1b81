import Foundation
import Testing
import ShipLog
import ShipLogTestSupport

/// Where a segment roll touches the file system, found by recording one run.
struct RollCalls {
    /// Index of each call of the roll, from the footer write through the call after the
    /// directory sync that publishes the new segment, with a label.
    var steps: [(index: Int, label: String)]
    var sealSync: Int
    var directorySync: Int

    init(_ calls: [(FaultOperation, String)]) {
        let truncate = calls.firstIndex { $0.0 == .truncate }!
        let sealSync = calls[truncate...].firstIndex { $0.0 == .sync }!
        let directorySync = calls[sealSync...].firstIndex { $0.0 == .syncDirectory }!
        self.sealSync = sealSync
        self.directorySync = directorySync
        steps = (truncate - 1...directorySync + 1).map { index in
            let (operation, name) = calls[index]
            let role: String = switch index {
            case truncate - 1: "seal: footer write"
            case truncate: "seal: truncate"
            case sealSync: "seal: fdatasync"
            case directorySync: "create: directory fsync"
            case directorySync + 1: "after the new segment is published"
            default: "create"
            }
            return (index, "\(role) (\(operation) \(name), call #\(index))")
        }
    }
}

@Suite struct PowerLossScenarioTests {
    /// Fills the first segment (.immediate, then .buffered batches) until it rolls, then
    /// appends two .immediate batches to the new segment. Deterministic: one thread, blocking.
    static func rollWorkload(_ scenario: inout Scenario, _ log: Log) {
        var appended = 0
        while log.segments.count < 2 && log.failure == nil && appended < 30 {
            scenario.append(log, appended < 3 ? .immediate : .buffered)
            appended += 1
        }
        scenario.append(log, .immediate)
        scenario.append(log, .immediate)
        scenario.noteClaims(log)
    }

    /// Runs `rollWorkload` and returns the calls it made.
    static func probeRoll(preallocate: Bool) throws -> RollCalls {
        var scenario = Scenario(preallocate: preallocate)
        let power = PowerSwitch(SimulatedFileSystem(), recording: true)
        let log = try scenario.open(power).log
        rollWorkload(&scenario, log)
        try log.close()
        return RollCalls(power.recordedCalls)
    }

    /// Runs `rollWorkload` with the power switch freezing the simulator before call `index`.
    static func frozenRoll(preallocate: Bool, cutBefore index: Int) throws -> (Scenario, SimulatedFileSystem) {
        var scenario = Scenario(preallocate: preallocate)
        let power = PowerSwitch(SimulatedFileSystem())
        power.arm(afterCalls: index, outage: .freeze)
        let log = try scenario.open(power).log
        rollWorkload(&scenario, log)
        try? log.close()
        return (scenario, try #require(power.snapshot, "the switch never reached call #\(index)"))
    }

    /// Power cut at every file-system call of a segment roll (footer write, truncate,
    /// fdatasync of the seal; open, header write, preallocate, fdatasync, rename, directory
    /// fsync of the new segment), each crashed with 12 seeds, then a second crash cycle.
    @Test(arguments: [true, false])
    func crashDuringSegmentRoll(preallocate: Bool) throws {
        let roll = try Self.probeRoll(preallocate: preallocate)
        for (index, label) in roll.steps {
            let (scenario, snapshot) = try Self.frozenRoll(preallocate: preallocate, cutBefore: index)
            scenario.crashCopies(
                of: snapshot, seeds: 0..<12, requiredThrough: scenario.model.durableThrough,
                context: "power loss before \(label), preallocate \(preallocate)")
        }
    }

    /// The process dies at every call of a roll; the log is reopened on what the page cache
    /// holds (everything acknowledged as written must be there), appended to, then the power
    /// fails. Finds what recovery left undurable.
    @Test(arguments: [true, false])
    func processDeathDuringSegmentRollThenPowerLoss(preallocate: Bool) throws {
        let roll = try Self.probeRoll(preallocate: preallocate)
        for (index, label) in roll.steps {
            let (scenario, snapshot) = try Self.frozenRoll(preallocate: preallocate, cutBefore: index)
            let written = max(scenario.model.durableThrough, scenario.ledger.snapshot.written)
            for seed in UInt64(0)..<4 {
                let problems = scenario.check(snapshot.clone(), requiredThrough: written, secondCrashSeed: seed)
                if !problems.isEmpty {
                    recordProblems(
                        problems,
                        context: "process death before \(label), preallocate \(preallocate), then power loss (seed \(seed))")
                    break
                }
            }
        }
    }

    /// Crash right after a seal completed (its fdatasync returned) and before the next segment
    /// exists: the sealed segment is whole and stays sealed, every record in it present.
    @Test(arguments: [true, false])
    func crashRightAfterSeal(preallocate: Bool) throws {
        let roll = try Self.probeRoll(preallocate: preallocate)
        let (scenario, snapshot) = try Self.frozenRoll(preallocate: preallocate, cutBefore: roll.sealSync + 1)
        // The seal synced the whole first segment: every record in it is durable.
        let sealedThrough = scenario.model.lastAssigned - 1  // the batch that triggered the roll was never written
        for seed in UInt64(0)..<32 {
            let copy = snapshot.clone()
            copy.crash(seed: seed)
            let power = PowerSwitch(copy)
            let (log, report) = try scenario.open(power)
            #expect(report.truncations.isEmpty, "seed \(seed): \(report)")
            #expect(log.segments.count == 1 && log.segments[0].isSealed, "seed \(seed)")
            #expect(log.nextLSN.rawValue - 1 == sealedThrough, "seed \(seed)")
            try log.close()
            let problems = scenario.check(copy, requiredThrough: sealedThrough, secondCrashSeed: seed)
            if !problems.isEmpty {
                recordProblems(problems, context: "crash right after a seal, seed \(seed)")
            }
        }
    }

    /// Only .buffered appends (several segments): anything may be lost except what seals
    /// synced, and what is left is a valid prefix of what was appended.
    @Test(arguments: [true, false])
    func crashWithOnlyBufferedAppends(preallocate: Bool) throws {
        var scenario = Scenario(preallocate: preallocate)
        let power = PowerSwitch(SimulatedFileSystem())
        let log = try scenario.open(power).log
        var rng = SplitMix64(seed: 42)
        for _ in 0..<40 {
            scenario.append(log, count: 1 + rng.uniform(below: 4), bytes: 1 + rng.uniform(below: 900), .buffered)
        }
        scenario.noteClaims(log)
        #expect(log.segments.count > 2, "the workload should roll a few segments")
        power.cut(.freeze)
        try? log.close()
        let snapshot = try #require(power.snapshot)
        let failing = scenario.crashCopies(
            of: snapshot, seeds: 0..<48, requiredThrough: scenario.model.durableThrough,
            context: "buffered appends only, preallocate \(preallocate)")
        #expect(failing.count < 48)
    }

    /// Retention removes old segments, and the power fails before (or instead of) the
    /// directory fsync: the removed files come back. The log must open, start at or before
    /// the first retained LSN, and read the old segments back intact.
    @Test(arguments: [SimulatedFileSystem.Options.UnsyncedDirectoryEntries.lost, .randomPrefix, .kept])
    func crashAfterRetentionWithoutDirectorySync(entries: SimulatedFileSystem.Options.UnsyncedDirectoryEntries) throws {
        var simulated = SimulatedFileSystem.Options()
        simulated.unsyncedDirectoryEntries = entries
        var scenario = Scenario()
        let power = PowerSwitch(SimulatedFileSystem(options: simulated))
        let log = try scenario.open(power).log
        for index in 0..<30 { scenario.append(log, count: 1, bytes: 900, index % 3 == 0 ? .immediate : .buffered) }
        scenario.append(log, .immediate)
        #expect(log.segments.count >= 4)
        let keepFrom = log.segments[log.segments.count - 2].baseLSN
        // Freeze at the directory fsync of the removal: the files are unlinked, not durably.
        power.arm(afterCalls: 0, of: .syncDirectory, outage: .freeze)
        #expect(throws: LogError.self) { try log.removeSegments(before: keepFrom) }
        scenario.noteClaims(log)
        #expect(log.firstLSN == keepFrom)
        try? log.close()
        let snapshot = try #require(power.snapshot)
        #expect(snapshot.contents(at: Scenario.directory.appending(SegmentName.fileName(baseLSN: .first))) == nil)
        // Power loss: the unlinked segments may reappear before the first retained one.
        scenario.crashCopies(
            of: snapshot, seeds: 0..<16, requiredThrough: scenario.model.durableThrough,
            context: "power loss after retention unlinked segments, directory entries \(entries)")
        // Process death instead: reopen without them, append, then lose power (they reappear
        // under a log that has moved on).
        for seed in UInt64(0)..<8 {
            let problems = scenario.check(
                snapshot.clone(), requiredThrough: scenario.model.durableThrough, secondCrashSeed: seed)
            if !problems.isEmpty {
                recordProblems(
                    problems,
                    context: "process death after retention unlinked segments, then power loss (seed \(seed))")
            }
        }
    }

    /// The same after a removal whose directory fsync completed: the segments are gone for good.
    @Test func removalDurableAfterDirectorySync() throws {
        var scenario = Scenario()
        let power = PowerSwitch(SimulatedFileSystem())
        let log = try scenario.open(power).log
        for _ in 0..<30 { scenario.append(log, count: 1, bytes: 900, .immediate) }
        let keepFrom = log.segments[log.segments.count - 2].baseLSN
        let removed = try log.removeSegments(before: keepFrom)
        #expect(!removed.isEmpty)
        scenario.model.removedBelow = keepFrom.rawValue
        scenario.noteClaims(log)
        power.cut(.freeze)
        try? log.close()
        scenario.crashCopies(
            of: try #require(power.snapshot), seeds: 0..<16, requiredThrough: scenario.model.durableThrough,
            context: "power loss after a durable removal")
    }
}
