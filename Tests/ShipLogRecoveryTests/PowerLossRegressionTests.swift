import Foundation
import Testing
import ShipLog
import ShipLogTestSupport

/// Bugs the power-loss suite found that have since been fixed: each reproduction now runs as a
/// regression test. The comments describe the bug as it was found.
@Suite struct PowerLossRegressionTests {
    static let segmentOne = Scenario.directory.appending(SegmentName.fileName(baseLSN: .first))

    /// A crash on a file that grows with its appends (no fallocate) can keep the first sectors
    /// of the last batch and lose the rest, so the file ends inside the batch. The scanner
    /// calls that "file ends inside a batch" but passes no extent to `damage(...)`, which then
    /// only looks at the 64-byte header region: the header is whole, so no torn-write
    /// signature, and strict recovery refuses to open ("the damaged bytes were fully written").
    /// SegmentScanner.swift, `check(_:at:expected:result:fileSize:reader:)`: pass
    /// `extent: length` there (then `regionEnd > fileSize` marks it torn).
    @Test func batchCutOffByTheEndOfTheFileIsATornTail() throws {
        let simulator = SimulatedFileSystem(options: .lossless)
        var scenario = Scenario(preallocate: false)
        let log = try scenario.open(simulator).log
        for _ in 0..<3 { scenario.append(log, count: 2, bytes: 700, .immediate) }
        try log.close()
        let bytes = try #require(simulator.contents(at: Self.segmentOne))
        let batchBytes = (bytes.count - SegmentHeader.byteCount) / 3
        let third = SegmentHeader.byteCount + 2 * batchBytes
        // What survived of the third batch: whole sectors through its header and a few payload bytes.
        let cut = ((third + BatchHeader.byteCount + 8) / 512 + 1) * 512
        #expect(cut < third + batchBytes)
        try simulator.createFile(at: Self.segmentOne, contents: Array(bytes[..<cut]), durable: true)
        let (reopened, report) = try scenario.open(simulator)
        defer { try? reopened.close() }
        #expect(report.truncations.first?.offset == Int64(third))
        #expect(reopened.nextLSN == LSN(5))
    
    }

    /// A seal writes the footer, truncates and fdatasyncs. Until that fdatasync returns, the
    /// batches before the footer may not be on disk while the footer (and truncate) are: the
    /// kernel writes pages back in any order. After such a power loss recovery finds a valid
    /// footer at the end of the last segment and trusts it without reading the batches
    /// (LogRecovery.swift, `recoverSegment`: `if let footer, footer.lastLSN >= file.baseLSN`
    /// keeps it), so the log opens "sealed" with holes: reads throw corruption for LSNs the log
    /// says it has, and appends continue in a new segment after them.
    /// Fix: trust a footer without scanning only for segments before the last (their seal's
    /// fdatasync completed before the next segment was created); scan the last segment always,
    /// and accept its footer only when the scan ends at it (`.footer` ending), else truncate the
    /// torn tail as for an active segment.
    @Test func lastSegmentsFooterIsTrustedOverHoles() throws {
        let roll = try PowerLossScenarioTests.probeRoll(preallocate: false)
        let (scenario, snapshot) = try PowerLossScenarioTests.frozenRoll(preallocate: false, cutBefore: roll.sealSync)
        var unreadable: [UInt64] = []
        for seed in UInt64(0)..<64 {
            let copy = snapshot.clone()
            copy.crash(seed: seed)
            let log = try scenario.open(copy).log
            defer { try? log.close() }
            do {
                try log.forEachRecord(from: log.firstLSN) { _, _ in }
            } catch {
                unreadable.append(seed)
            }
        }
        #expect(unreadable.isEmpty, "power loss during a seal's fdatasync: unreadable log after crash seeds \(unreadable)")
    
    }

    /// The process dies inside a seal's fdatasync (or the seal fails and the process restarts,
    /// as LogError.syncFailed advises). Recovery opens the last segment by its footer and, since
    /// it is sealed, skips the fdatasync it gives an active last segment (LogRecovery.swift,
    /// `open`: `if let last = segments.last, last.footer == nil { synchronizeData() }`), yet
    /// `durableLSN` covers it and the next segment's batches say `syncedThrough` it. A power
    /// loss then loses a segment that is no longer the last: the log refuses to open or reads
    /// holes, and records acknowledged as durable are gone.
    /// Fix: fdatasync the last segment whether it is sealed or not.
    @Test func sealedLastSegmentIsNotSyncedByRecovery() throws {
        let roll = try PowerLossScenarioTests.probeRoll(preallocate: true)
        var scenario = Scenario(preallocate: true)
        let simulator = SimulatedFileSystem()
        let power = PowerSwitch(simulator)
        power.arm(afterCalls: roll.sealSync, outage: .processDeath)
        let log = try scenario.open(power).log
        PowerLossScenarioTests.rollWorkload(&scenario, log)
        try? log.close()
        // The process restarts: the page cache still holds the whole sealed segment.
        let reopened = try scenario.open(simulator).log
        let notDurable = checkRecoveredIsDurable(reopened, simulator: simulator, directory: Scenario.directory)
        try reopened.close()
        #expect(notDurable.isEmpty, "\(notDurable)")
    
        // The consequence: append (durably), lose power, and the acknowledged record is not readable.
        var lost: [UInt64] = []
        for seed in UInt64(0)..<8 {
            let copy = simulator.clone()
            var next = scenario
            let log = try next.open(copy).log
            let (range, acknowledged) = next.append(log, .immediate)
            try? log.close()
            copy.crash(seed: seed)
            let records = try? readAllRecords(next, copy)
            guard acknowledged, let range, let records, records[range.last.rawValue] != nil else {
                lost.append(seed)
                continue
            }
        }
        #expect(lost.isEmpty, "acknowledged .immediate record unreadable after power loss, crash seeds \(lost)")
    
    }

    /// `LogVerifier` scans each sealed segment with the default index interval (4096 bytes)
    /// and requires the footer's index to be a subset of the entries that scan produces. A log
    /// written with another `indexIntervalBytes` (512 is the minimum) has index entries the
    /// default scan does not produce, so `shiplog verify` reports valid segments as damaged
    /// ("footer index does not match the batches"). LogVerifier.swift, `verify()`.
    /// Fix: check that every footer index entry names a batch start the scan saw (LSN and
    /// position), instead of comparing with a rebuilt index.
    @Test func verifierRejectsFootersWrittenWithAnotherIndexInterval() throws {
        let simulator = SimulatedFileSystem(options: .lossless)
        var scenario = Scenario(indexIntervalBytes: 512)
        let log = try scenario.open(simulator).log
        for _ in 0..<30 { scenario.append(log, count: 1, bytes: 600, .immediate) }
        #expect(log.segments.count >= 2)
        try log.close()
        let verification = try LogVerifier(directory: Scenario.directory, fileSystem: simulator).verify()
        #expect(verification.problems.isEmpty, "\(verification.problems)")
    
    }
}
