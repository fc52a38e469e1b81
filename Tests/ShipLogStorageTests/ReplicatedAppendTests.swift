import Foundation
import Testing
@testable import ShipLogStorage
import ShipLogFormat
import ShipLogRecovery
import ShipLogTestSupport

/// A follower stores the primary's batches byte for byte and honours their `syncedThrough`
/// watermark (FORMAT.md section 9) before writing them.
@Suite struct ReplicatedAppendTests {
    /// A primary log with batches of varied size and durability; returns its batches as stored.
    func primaryBatches(_ dir: TemporaryDirectory, count: Int = 60) throws -> [Batch] {
        let log = try Log.open(directory: dir.path.appending("primary"), options: smallSegments())
        for i in 0..<count {
            var builder = BatchBuilder()
            for j in 0..<(1 + i % 5) { try builder.append("primary-\(i)-\(j)-" + String(repeating: "p", count: (i * 7 + j) % 40)) }
            try log.append(builder, durability: i % 3 == 0 ? .immediate : .buffered)
        }
        var batches: [Batch] = []
        var cursor = log.batches(from: .first)
        while let batch = try cursor.next() { batches.append(batch) }
        try log.close()
        return batches
    }

    @Test func followerStoresTheSameBytesAndSyncsThroughEachWatermarkFirst() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let batches = try primaryBatches(dir)
        #expect(batches.contains { $0.header.syncedThrough > .zero }, "the primary synced along the way")
        let follower = try Log.open(directory: dir.path.appending("follower"), options: smallSegments())
        for batch in batches {
            let range = try follower.appendReplicated(batch, durability: .buffered)
            #expect(range == batch.lsnRange)
            // Everything up to the batch's watermark is durable here before it is written.
            #expect(follower.durableLSN >= batch.header.syncedThrough)
        }
        #expect(follower.statistics.syncCalls > 0, "buffered appends synced only because of the watermarks")
        var cursor = follower.batches(from: .first)
        var stored: [Batch] = []
        while let batch = try cursor.next() { stored.append(batch) }
        #expect(stored.map(\.bytes) == batches.map(\.bytes), "the follower's batches are byte-identical")
        try follower.close()
        // And they survive a reopen, chain and all.
        let reopened = try Log.open(directory: dir.path.appending("follower"), options: smallSegments())
        #expect(reopened.nextLSN == batches.last!.lsnRange.next)
        try reopened.close()
    }

    @Test func batchThatDoesNotContinueTheLogIsRefusedAndChangesNothing() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let batches = try primaryBatches(dir, count: 6)
        let follower = try Log.open(directory: dir.path.appending("follower"), options: smallSegments())
        try follower.appendReplicated(batches[0])
        // Skipping a batch: wrong base LSN.
        #expect(throws: LogError.self) { try follower.appendReplicated(batches[2]) }
        // A foreign batch with the right LSN but another chain.
        var foreign = BatchBuilder()
        try foreign.append("foreign")
        var encoded = foreign.encode(codec: .none)
        let header = encoded.seal(
            baseLSN: batches[1].header.baseLSN, epoch: .initial, previousBatchCRC: 0xDEAD_BEEF, syncedThrough: .zero,
            timestamp: 1)
        let forged = Batch(verifiedHeader: header, bytes: encoded.bytes)
        #expect { try follower.appendReplicated(forged) } throws: { error in
            guard case LogError.invalidArgument(let why) = error else { return false }
            return why.contains("previousBatchCRC")
        }
        // Nothing was queued by the refusals: the right batches still continue the log.
        for batch in batches.dropFirst() { try follower.appendReplicated(batch) }
        #expect(follower.nextLSN == batches.last!.lsnRange.next)
        try follower.close()
    }

    @Test func olderEpochIsRefused() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        var options = smallSegments()
        options.epoch = Epoch(3)
        let follower = try Log.open(directory: dir.path.appending("follower"), options: options)
        var builder = BatchBuilder()
        try builder.append("old primary")
        var encoded = builder.encode(codec: .none)
        let header = encoded.seal(baseLSN: .first, epoch: Epoch(2), previousBatchCRC: 0, syncedThrough: .zero, timestamp: 1)
        #expect { try follower.appendReplicated(Batch(verifiedHeader: header, bytes: encoded.bytes)) } throws: { error in
            "\(error)".contains("epoch")
        }
        try follower.close()
    }

    /// Power loss on a follower at any point leaves a log that opens (never "corruption") and
    /// holds a prefix of the primary's batches.
    @Test func followerSurvivesPowerLossAtAnyPoint() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let batches = try primaryBatches(dir, count: 40)
        for seed in UInt64(1)...60 {
            let fs = SimulatedFileSystem(seed: seed)
            let path = FilePath("/follower")
            let log = try Log.open(directory: path, options: smallSegments(), fileSystem: fs)
            let cut = Int(seed) % batches.count
            for batch in batches.prefix(cut) { try log.submitReplicated(batch, durability: .buffered) { _ in } }
            Thread.sleep(forTimeInterval: Double(seed % 3) / 1000)
            fs.crash(seed: seed)
            try? log.close()
            let reopened = try Log.open(directory: path, options: smallSegments(), fileSystem: fs)
            var cursor = reopened.batches(from: .first)
            var index = 0
            while let batch = try cursor.next() {
                #expect(batch.bytes == batches[index].bytes, "seed \(seed): batch \(index) differs after power loss")
                index += 1
            }
            #expect(index <= cut, "seed \(seed)")
            try reopened.close()
        }
    }
}
