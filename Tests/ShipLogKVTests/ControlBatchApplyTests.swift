import Foundation
import Testing
import ShipLog
import ShipLogTestSupport

/// Control batches (FORMAT.md section 20) on a state machine host: the machine never sees
/// them — not when appended, not when replayed, not when replicated — but `appliedLSN`
/// counts their LSNs, so a checkpoint or a follower's position can sit on one.
@Suite struct ControlBatchApplyTests {
    typealias CountingHost = StateMachineHost<RecordCountingStateMachine>

    /// put a, promote (epoch 2, its epoch-start control batch), put b.
    static func writePromotedStore(_ store: KeyValueStore) throws -> LSNRange {
        try store.put(bytes("a"), bytes("1"))
        let log = store.host.log
        let record = ControlRecord.epochStart(epoch: Epoch(2), previousEpoch: log.epoch, previousEpochLastLSN: log.writtenLSN)
        try log.raiseEpoch(to: Epoch(2))
        let control = try store.host.appendControl([record])
        try store.put(bytes("b"), bytes("2"))
        return control
    }

    @Test func controlRecordsNeverReachTheMachineButAdvanceAppliedLSN() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let store = try KeyValueStore(directory: dir.path, options: reseedOptions())
        let control = try Self.writePromotedStore(store)
        #expect(control == LSNRange(first: LSN(2), count: 1))
        #expect(store.appliedLSN == LSN(3))
        #expect(store.get(bytes("a")) == bytes("1") && store.get(bytes("b")) == bytes("2"))
        #expect(store.host.log.epochHistory == [EpochStart(epoch: .initial, firstLSN: .first), EpochStart(epoch: Epoch(2), firstLSN: LSN(2))])
        try store.close()

        // Replay skips it (a key-value machine would refuse its bytes as a malformed write batch).
        let reopened = try KeyValueStore(directory: dir.path, options: reseedOptions())
        #expect(reopened.recoveryReport.replayedRecords == 2)
        #expect(reopened.appliedLSN == LSN(3))
        #expect(reopened.get(bytes("a")) == bytes("1") && reopened.get(bytes("b")) == bytes("2"))
        try reopened.close()
    }

    /// A checkpoint taken right after a control batch sits on its LSN; restoring it replays nothing.
    @Test func checkpointAtAControlBatchRestoresWithoutReplay() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let store = try KeyValueStore(directory: dir.path, options: reseedOptions())
        try store.put(bytes("a"), bytes("1"))
        let log = store.host.log
        try log.raiseEpoch(to: Epoch(3))
        let control = try store.host.appendControl(
            [.epochStart(epoch: Epoch(3), previousEpoch: .initial, previousEpochLastLSN: LSN(1))])
        let checkpoint = try store.checkpoint()
        #expect(checkpoint.lsn == control.last)
        try store.close()
        let reopened = try KeyValueStore(directory: dir.path, options: reseedOptions())
        #expect(reopened.recoveryReport.checkpointLSN == control.last)
        #expect(reopened.recoveryReport.replayedRecords == 0)
        #expect(reopened.appliedLSN == control.last && reopened.get(bytes("a")) == bytes("1"))
        try reopened.close()
    }

    /// A follower stores the control batch byte for byte, applies only application records,
    /// and ends at the primary's appliedLSN and history.
    @Test func replicatedControlBatchIsStoredButNeverApplied() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let primary = try KeyValueStore(directory: dir.path.appending("primary"), options: reseedOptions())
        _ = try Self.writePromotedStore(primary)
        var cursor = primary.host.log.batches(from: .first)
        var batches: [Batch] = []
        while let batch = try cursor.next() { batches.append(batch) }
        #expect(batches.map(\.header.isControl) == [false, true, false])
        let history = primary.host.log.epochHistory
        try primary.close()

        let follower = try CountingHost(
            directory: dir.path.appending("follower"), machine: RecordCountingStateMachine(), options: reseedOptions())
        for batch in batches { try follower.appendReplicated(batch) }
        #expect(follower.appliedLSN == LSN(3))
        #expect(follower.withMachine { machine, _ in machine.counts.records } == 2)
        #expect(follower.log.epochHistory == history)
        try follower.close()
        let reopened = try CountingHost(
            directory: dir.path.appending("follower"), machine: RecordCountingStateMachine(), options: reseedOptions())
        #expect(reopened.withMachine { machine, _ in machine.counts.records } == 2)
        #expect(reopened.appliedLSN == LSN(3))
        try reopened.close()
    }

    @Test func emptyOrMismatchedControlBatchIsRefusedAndChangesNothing() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let host = try CountingHost(directory: dir.path, machine: RecordCountingStateMachine(), options: reseedOptions())
        var builder = BatchBuilder()
        try builder.append(bytes("x"))
        try host.append(builder, durability: .immediate)
        #expect(throws: LogError.self) { try host.appendControl([]) }
        #expect(throws: LogError.self, "an epoch start of an epoch the log is not in") {
            try host.appendControl([.epochStart(epoch: Epoch(5), previousEpoch: .initial, previousEpochLastLSN: LSN(1))])
        }
        #expect(host.appliedLSN == LSN(1) && host.log.nextLSN == LSN(2))

        // A replicated control batch whose record does not decode is refused before appending.
        var bad = BatchBuilder()
        try bad.append([UInt8](repeating: 0x41, count: 32))
        var encoded = bad.encode(codec: .none)
        encoded.seal(baseLSN: LSN(2), epoch: .initial, previousBatchCRC: host.log.lastBatchCRC, syncedThrough: LSN(1), timestamp: 1)
        var raw = encoded.bytes
        raw[18] = 0x10  // the control flag, then the header CRC again
        let crc = CRC32C.checksum(raw[8..<64])
        withUnsafeBytes(of: crc.littleEndian) { raw.replaceSubrange(4..<8, with: $0) }
        let forged = try Batch.decoding(raw)
        #expect(forged.header.isControl)
        #expect(throws: LogError.self) { try host.appendReplicated(forged) }
        #expect(host.appliedLSN == LSN(1) && host.log.nextLSN == LSN(2))
        try host.close()
    }
}
