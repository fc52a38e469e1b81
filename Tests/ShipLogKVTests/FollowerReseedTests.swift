import Foundation
import Testing
import ShipLog
import ShipLogTestSupport

/// Applies `count` random single-operation write batches to `store` (several per log batch)
/// and to `model`; returns once they are durable.
func writeChanges(_ store: KeyValueStore, _ model: inout [[UInt8]: [UInt8]], count: Int, seed: UInt64) throws {
    var rng = SplitMix64(seed: seed)
    var pending: [WriteBatch] = []
    for i in 0..<count {
        var batch = WriteBatch()
        let key = bytes("key\(rng.uniform(below: 300))")
        if rng.chance(1, in: 5) {
            batch.delete(key)
            model[key] = nil
        } else {
            let noise = (0..<16).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let value = bytes("v\(seed)-\(i)-" + String(repeating: "x", count: rng.uniform(below: 200))) + noise
            batch.put(key, value)
            model[key] = value
        }
        pending.append(batch)
        if pending.count >= 1 + rng.uniform(below: 7) {
            try store.submit(pending, durability: .buffered) { _ in }
            pending.removeAll()
        }
    }
    if !pending.isEmpty { try store.submit(pending, durability: .buffered) { _ in } }
    try store.host.log.sync()
}

/// Every batch of `log` from the one holding `lsn`.
func batches(of log: Log, from lsn: LSN) throws -> [Batch] {
    var cursor = log.batches(from: lsn)
    var all: [Batch] = []
    while let batch = try cursor.next() { all.append(batch) }
    return all
}

func reseedOptions() -> StateMachineOptions {
    var options = smallCheckpoints()
    options.log.segmentBytesMax = 8 << 10
    options.checkpointsRetained = 1
    return options
}

/// A follower whose position the primary no longer holds is re-seeded from the primary's
/// checkpoint (PROTOCOL.md section 7.6) and then follows its batches.
@Suite struct FollowerReseedTests {
    /// The primary: changes, a checkpoint that drops the segments it covers, more changes.
    /// Returns the checkpoint's LSN, path and the state it holds.
    static func primaryWithCheckpoint(
        at path: FilePath, model: inout [[UInt8]: [UInt8]]
    ) throws -> (store: KeyValueStore, checkpoint: CheckpointInfo, stateAtCheckpoint: [[UInt8]: [UInt8]]) {
        let primary = try KeyValueStore(directory: path, options: reseedOptions())
        try writeChanges(primary, &model, count: 2_000, seed: 1)
        let checkpoint = try primary.checkpoint()
        let state = model
        #expect(primary.host.log.firstLSN > .first, "the checkpoint let retention drop segments")
        try writeChanges(primary, &model, count: 500, seed: 2)
        return (primary, checkpoint, state)
    }

    /// Receives the checkpoint as replication does: incoming file, verify, install, drop newer.
    static func receiveCheckpoint(_ checkpoint: CheckpointInfo, into follower: FilePath) throws {
        let store = CheckpointStore(logDirectory: follower, fileSystem: PosixFileSystem())
        let incoming = try store.incomingFile(lsn: checkpoint.lsn)
        try FileManager.default.copyItem(atPath: checkpoint.path.string, toPath: incoming.string)
        let header = try store.verify(file: incoming, kind: KeyValueStateMachine.snapshotKind)
        #expect(header.lsn == checkpoint.lsn)
        #expect(try store.install(temporaryFile: incoming, lsn: checkpoint.lsn).lastComponent == checkpoint.path.lastComponent)
    }

    @Test(arguments: [false, true])
    func reseededFollowerReachesThePrimarysStateAndKeepsItAcrossReopens(startingBeforeTheCheckpoint: Bool) throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        var model: [[UInt8]: [UInt8]] = [:]
        let (primary, checkpoint, stateAtCheckpoint) = try Self.primaryWithCheckpoint(
            at: dir.path.appending("primary"), model: &model)
        defer { try? primary.close() }

        // The follower's old history, diverged and with a checkpoint newer than the primary's.
        let followerPath = dir.path.appending("follower")
        do {
            var old: [[UInt8]: [UInt8]] = [:]
            let stale = try KeyValueStore(directory: followerPath, options: reseedOptions())
            try writeChanges(stale, &old, count: 3_000, seed: 99)
            #expect(try stale.checkpoint().lsn > checkpoint.lsn)
            try stale.close()
        }
        let store = CheckpointStore(logDirectory: followerPath, fileSystem: PosixFileSystem())
        try Self.receiveCheckpoint(checkpoint, into: followerPath)
        #expect(try store.removeCheckpoints(after: checkpoint.lsn).count == 1)
        #expect(try store.newest()?.lsn == checkpoint.lsn, "no newer checkpoint of the old history is left")

        // The first batch: the one holding ckpt + 1, or (a follower's case) one ending at ckpt.
        let first = try #require(
            try primary.host.log.batch(containing: startingBeforeTheCheckpoint ? checkpoint.lsn : checkpoint.lsn.advanced(by: 1)))
        let moved = try LogRecovery.resetForReseed(
            directory: followerPath, fileSystem: PosixFileSystem(), startingAt: first.header.baseLSN,
            previousBatchCRC: first.header.previousBatchCRC, epoch: first.header.epoch, createdAt: first.header.timestamp,
            quarantineLabel: "reseed-\(checkpoint.lsn)", options: reseedOptions().log)
        #expect(!moved.isEmpty)

        var follower = try KeyValueStore(directory: followerPath, options: reseedOptions())
        #expect(follower.recoveryReport.checkpointLSN == checkpoint.lsn)
        #expect(follower.appliedLSN == checkpoint.lsn, "the checkpoint is ahead of the empty log")
        #expect(contents(follower) == stateAtCheckpoint)
        for batch in try batches(of: primary.host.log, from: first.header.baseLSN) {
            try follower.host.appendReplicated(batch, durability: .buffered)
        }
        #expect(contents(follower) == model)
        #expect(follower.appliedLSN == primary.appliedLSN)
        try follower.close()

        follower = try KeyValueStore(directory: followerPath, options: reseedOptions())
        #expect(contents(follower) == model, "reopened without new records")
        #expect(follower.appliedLSN == primary.appliedLSN)
        try follower.close()

        try writeChanges(primary, &model, count: 300, seed: 3)
        follower = try KeyValueStore(directory: followerPath, options: reseedOptions())
        for batch in try batches(of: primary.host.log, from: follower.host.log.nextLSN) {
            try follower.host.appendReplicated(batch, durability: .buffered)
        }
        #expect(contents(follower) == model)
        try follower.checkpoint()
        try follower.close()

        follower = try KeyValueStore(directory: followerPath, options: reseedOptions())
        #expect(contents(follower) == model, "reopened after more records and its own checkpoint")
        #expect(follower.appliedLSN == primary.appliedLSN)
        try follower.close()
    }

    /// A checkpoint that ends before an empty log starts would leave records nobody has.
    @Test func checkpointLeavingAGapBeforeAnEmptyLogIsNotRestored() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        var model: [[UInt8]: [UInt8]] = [:]
        let (primary, checkpoint, _) = try Self.primaryWithCheckpoint(at: dir.path.appending("primary"), model: &model)
        try primary.close()
        let followerPath = dir.path.appending("follower")
        try Self.receiveCheckpoint(checkpoint, into: followerPath)
        try LogRecovery.resetForReseed(
            directory: followerPath, fileSystem: PosixFileSystem(), startingAt: checkpoint.lsn.advanced(by: 2),
            previousBatchCRC: 1, epoch: .initial, createdAt: 1, quarantineLabel: "gap", options: reseedOptions().log)
        #expect(throws: LogError.self) { try KeyValueStore(directory: followerPath, options: reseedOptions()) }
    }

    @Test func replicatedBatchWithADamagedRecordBlockIsRefusedBeforeItIsLogged() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let follower = try KeyValueStore(directory: dir.path, options: reseedOptions())
        var builder = BatchBuilder()
        try builder.append([0xFF, 0xFF])  // not a key-value record
        var encoded = builder.encode(codec: .none)
        let header = encoded.seal(baseLSN: .first, epoch: .initial, previousBatchCRC: 0, syncedThrough: .zero, timestamp: 1)
        #expect(throws: LogError.self) {
            try follower.host.appendReplicated(Batch(verifiedHeader: header, bytes: encoded.bytes))
        }
        try follower.close()
    }

    @Test func retentionHoldKeepsSegmentsACheckpointWouldDrop() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let store = try KeyValueStore(directory: dir.path, options: reseedOptions())
        var model: [[UInt8]: [UInt8]] = [:]
        store.host.log.setRetentionHold("follower", from: LSN(10))
        try writeChanges(store, &model, count: 1_000, seed: 5)
        #expect(store.host.log.segments.count > 3)
        try store.checkpoint()
        #expect(store.host.log.firstLSN == .first, "the hold keeps LSN 10 and so the first segment")
        store.host.log.setRetentionHold("follower", from: nil)
        try writeChanges(store, &model, count: 10, seed: 6)
        try store.checkpoint()
        #expect(store.host.log.firstLSN > .first)
        try store.close()
    }
}

@Suite struct CheckpointFileTests {
    static func storeWithCheckpoint(_ dir: StoreDirectory) throws -> (KeyValueStore, CheckpointInfo) {
        let store = try KeyValueStore(directory: dir.path, options: smallCheckpoints())
        var model: [[UInt8]: [UInt8]] = [:]
        try writeChanges(store, &model, count: 200, seed: 8)
        return (store, try store.checkpoint())
    }

    /// A re-seed installs a file from the network: any damage must be caught before it is.
    @Test func verifyRefusesEveryDamagedOrTruncatedCheckpoint() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let (store, info) = try Self.storeWithCheckpoint(dir)
        try store.close()
        let checkpoints = CheckpointStore(logDirectory: dir.path, fileSystem: PosixFileSystem())
        let header = try checkpoints.verify(file: info.path, kind: "kv1")
        #expect(header.lsn == info.lsn && header.entryCount == info.entries)
        #expect(throws: StateMachineError.self) { try checkpoints.verify(file: info.path, kind: "other") }

        let original = Array(try Data(contentsOf: URL(fileURLWithPath: info.path.string)))
        let copy = dir.path.appending("copy.ckpt")
        func write(_ bytes: [UInt8]) throws { try Data(bytes).write(to: URL(fileURLWithPath: copy.string)) }
        for offset in [0, 5, 20, CheckpointHeader.byteCount + 3, original.count / 2, original.count - 12, original.count - 1] {
            var damaged = original
            damaged[offset] ^= 0x40
            try write(damaged)
            #expect(throws: StateMachineError.self, "byte \(offset) flipped") { try checkpoints.verify(file: copy, kind: "kv1") }
        }
        for length in [0, 10, CheckpointHeader.byteCount, original.count / 2, original.count - 1] {
            try write(Array(original.prefix(length)))
            #expect(throws: StateMachineError.self, "cut to \(length) bytes") { try checkpoints.verify(file: copy, kind: "kv1") }
        }
        try write(original + [0])
        #expect(throws: StateMachineError.self, "a byte appended") { try checkpoints.verify(file: copy, kind: "kv1") }
    }

    /// Listing for the newest checkpoint must not delete a checkpoint being written meanwhile.
    @Test func newestDeletesNoTemporaryFileButListDoes() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let (store, info) = try Self.storeWithCheckpoint(dir)
        let checkpoints = CheckpointStore(logDirectory: dir.path, fileSystem: PosixFileSystem())
        let temporary = checkpoints.directory.appending(CheckpointStore.fileName(lsn: LSN(999_999)) + CheckpointStore.temporarySuffix)
        _ = FileManager.default.createFile(atPath: temporary.string, contents: Data([1]))
        let incoming = try checkpoints.incomingFile(lsn: LSN(888_888))
        _ = FileManager.default.createFile(atPath: incoming.string, contents: Data([2]))
        let newest = try #require(try checkpoints.newest())
        #expect(newest.lsn == info.lsn && newest.path == info.path)
        #expect(try store.host.newestCheckpoint()?.lsn == info.lsn)
        #expect(FileManager.default.fileExists(atPath: temporary.string))
        #expect(try checkpoints.list().count == 1)
        #expect(!FileManager.default.fileExists(atPath: temporary.string), "list() clears leftovers")
        #expect(FileManager.default.fileExists(atPath: incoming.string), "incoming transfers are not leftovers of save()")
        #expect(try checkpoints.removeIncomingFiles() == [incoming.lastComponent])
        #expect(store.host.directory == dir.path)
        try store.close()
    }

    @Test func installedCheckpointIsRestoredOnlyIntoALogResetToContinueIt() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let (store, info) = try Self.storeWithCheckpoint(dir)
        let expected = contents(store)
        try store.close()
        let other = dir.path.appending("other")
        let checkpoints = CheckpointStore(logDirectory: other, fileSystem: PosixFileSystem())
        let incoming = try checkpoints.incomingFile(lsn: info.lsn)
        try FileManager.default.copyItem(atPath: info.path.string, toPath: incoming.string)
        let installed = try checkpoints.install(temporaryFile: incoming, lsn: info.lsn)
        #expect(!FileManager.default.fileExists(atPath: incoming.string))
        #expect(try checkpoints.newest()?.path == installed)
        // A new log at LSN 1 does not continue it: its appends would reuse the checkpoint's LSNs.
        let fresh = try KeyValueStore(directory: other, options: smallCheckpoints())
        #expect(fresh.appliedLSN == .zero && contents(fresh).isEmpty)
        #expect(fresh.recoveryReport.skippedCheckpoints.count == 1)
        try fresh.close()
        // A log reset to start right after it does.
        try LogRecovery.resetForReseed(
            directory: other, fileSystem: PosixFileSystem(), startingAt: info.lsn.advanced(by: 1), previousBatchCRC: 7,
            epoch: .initial, createdAt: 1, quarantineLabel: "reseed", options: smallCheckpoints().log)
        let restored = try KeyValueStore(directory: other, options: smallCheckpoints())
        #expect(contents(restored) == expected)
        #expect(restored.appliedLSN == info.lsn)
        #expect(restored.recoveryReport.checkpointLSN == info.lsn)
        try restored.put(bytes("after"), bytes("reseed"))
        #expect(restored.appliedLSN == info.lsn.advanced(by: 1), "the next append continues the checkpoint's LSNs")
        try restored.close()
    }
}
