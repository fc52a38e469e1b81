import Foundation
import Testing
import ShipLog
import ShipLogTestSupport

/// Refuses every record that is not the one after the last applied: applying a record twice,
/// or skipping one, fails at once (the key-value machine forgives a repeated put).
final class SequenceMachine: StateMachine {
    typealias Snapshot = UInt64
    static let snapshotKind = "seq1"
    private(set) var lastLSN: UInt64 = 0

    func apply(_ record: UnsafeRawBufferPointer, at lsn: LSN) throws(StateMachineError) {
        guard lsn.rawValue == lastLSN + 1 else { throw StateMachineError("LSN \(lsn) applied after LSN \(lastLSN)") }
        lastLSN = lsn.rawValue
    }

    func captureSnapshot() -> UInt64 { lastLSN }
    static func write(_ snapshot: UInt64, to output: inout CheckpointWriter) throws(LogError) { try output.writeVarint(snapshot) }
    static func entryCount(of snapshot: UInt64) -> UInt64 { 1 }
    func restore(from input: inout CheckpointReader) throws(StateMachineError) { lastLSN = try input.readVarint() }
    func reset() { lastLSN = 0 }
}

@Suite struct ReplicatedApplyTests {
    typealias Host = StateMachineHost<SequenceMachine>

    static func open(_ path: FilePath) throws -> Host {
        try Host(directory: path, machine: SequenceMachine(), options: reseedOptions())
    }

    static func append(_ host: Host, records: [Int]) throws {
        for (i, count) in records.enumerated() {
            var builder = BatchBuilder()
            for j in 0..<count { try builder.append(Array("record \(i).\(j) ".utf8) + [UInt8](repeating: UInt8(i % 251), count: 90)) }
            try host.append(builder, durability: .buffered)
        }
        try host.log.sync()
    }

    static func install(_ checkpoint: CheckpointInfo, into path: FilePath) throws {
        let store = CheckpointStore(logDirectory: path, fileSystem: PosixFileSystem())
        let incoming = try store.incomingFile(lsn: checkpoint.lsn)
        try FileManager.default.copyItem(atPath: checkpoint.path.string, toPath: incoming.string)
        _ = try store.verify(file: incoming, kind: SequenceMachine.snapshotKind)
        try store.install(temporaryFile: incoming, lsn: checkpoint.lsn)
    }

    /// A follower's checkpoint may fall inside one of the primary's batches. Re-seeded from
    /// it, the follower must apply only that batch's records after the checkpoint, or records
    /// are applied twice.
    @Test func firstBatchStraddlingTheCheckpointAppliesOnlyItsLaterRecords() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let primary = try Self.open(dir.path.appending("primary"))
        defer { try? primary.close() }
        try Self.append(primary, records: (0..<200).map { 1 + $0 % 5 })
        let checkpoint = try primary.checkpoint()
        #expect(primary.log.firstLSN > .first)
        try Self.append(primary, records: (0..<100).map { 2 + $0 % 4 })
        let straddled = try #require(try batches(of: primary.log, from: checkpoint.lsn.advanced(by: 1)).dropFirst(3).first)
        let inside = straddled.lsnRange.first.advanced(by: 1)

        // Another node took its checkpoint at `inside`, having got the records one per batch.
        let otherPath = dir.path.appending("other")
        try Self.install(checkpoint, into: otherPath)
        try LogRecovery.resetForReseed(
            directory: otherPath, fileSystem: PosixFileSystem(), startingAt: checkpoint.lsn.advanced(by: 1),
            previousBatchCRC: 0, epoch: .initial, createdAt: 1, quarantineLabel: "seed", options: reseedOptions().log)
        let other = try Self.open(otherPath)
        try primary.log.forEachRecord(from: checkpoint.lsn.advanced(by: 1), through: inside) { _, record in
            var builder = BatchBuilder()
            try builder.append(Array(record))
            try other.append(builder, durability: .buffered)
        }
        let otherCheckpoint = try other.checkpoint()
        #expect(otherCheckpoint.lsn == inside)
        try other.close()

        let followerPath = dir.path.appending("follower")
        try Self.install(otherCheckpoint, into: followerPath)
        try LogRecovery.resetForReseed(
            directory: followerPath, fileSystem: PosixFileSystem(), startingAt: straddled.header.baseLSN,
            previousBatchCRC: straddled.header.previousBatchCRC, epoch: straddled.header.epoch,
            createdAt: straddled.header.timestamp, quarantineLabel: "reseed", options: reseedOptions().log)
        var follower = try Self.open(followerPath)
        #expect(follower.appliedLSN == inside && follower.machine.lastLSN == inside.rawValue)
        for batch in try batches(of: primary.log, from: straddled.header.baseLSN) {
            try follower.appendReplicated(batch, durability: .buffered)
        }
        #expect(follower.machine.lastLSN == primary.machine.lastLSN)
        #expect(follower.appliedLSN == primary.appliedLSN)
        try follower.close()
        follower = try Self.open(followerPath)
        #expect(follower.machine.lastLSN == primary.machine.lastLSN, "reopened: checkpoint plus replay, each record once")
        try follower.close()
    }

    /// Replicated batches count towards automatic checkpoints as appends do.
    @Test func replicatedBytesTriggerAutomaticCheckpoints() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let primary = try Self.open(dir.path.appending("primary"))
        defer { try? primary.close() }
        try Self.append(primary, records: (0..<300).map { 1 + $0 % 3 })
        var options = reseedOptions()
        options.checkpointIntervalBytes = 8 << 10
        let follower = try Host(directory: dir.path.appending("follower"), machine: SequenceMachine(), options: options)
        for batch in try batches(of: primary.log, from: .first) { try follower.appendReplicated(batch, durability: .buffered) }
        try follower.close()  // waits for a running checkpoint
        let store = CheckpointStore(logDirectory: dir.path.appending("follower"), fileSystem: PosixFileSystem())
        #expect(try store.newest() != nil, "automatic checkpoints were taken")
        #expect(follower.lastCheckpointError == nil)
    }
}
