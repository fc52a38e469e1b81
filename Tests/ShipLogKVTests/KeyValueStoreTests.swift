import Foundation
import Testing
import ShipLog
import ShipLogTestSupport

/// A fresh directory under the system temporary directory.
struct StoreDirectory {
    let path: FilePath
    init(_ name: String = #function) {
        let safe = name.filter { $0.isLetter || $0.isNumber }
        path = FilePath(FileManager.default.temporaryDirectory.path + "/shiplog-kv-tests/\(safe)-\(UInt64.random(in: 0...UInt64.max))")
    }
    func cleanup() { try? FileManager.default.removeItem(atPath: path.string) }
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

func contents(_ store: KeyValueStore) -> [[UInt8]: [UInt8]] {
    var all: [[UInt8]: [UInt8]] = [:]
    store.snapshot().scan { key, value in
        all[key] = value
        return true
    }
    return all
}

func smallCheckpoints() -> StateMachineOptions {
    var options = StateMachineOptions()
    options.log.segmentBytesMax = 64 << 10
    options.checkpointIntervalBytes = nil
    return options
}

@Suite struct KeyValueStoreTests {
    @Test func putGetDeleteAndReopenRebuildsFromTheLog() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        do {
            let store = try KeyValueStore(directory: dir.path)
            try store.put(bytes("a"), bytes("1"))
            try store.put(bytes("b"), bytes("2"), durability: .buffered)
            try store.put(bytes("a"), bytes("3"))
            try store.delete(bytes("b"))
            #expect(store.get(bytes("a")) == bytes("3"))
            #expect(store.get(bytes("b")) == nil)
            try store.close()
        }
        let store = try KeyValueStore(directory: dir.path)
        #expect(store.get(bytes("a")) == bytes("3"))
        #expect(store.get(bytes("b")) == nil)
        #expect(store.recoveryReport.replayedRecords == 4)
        #expect(store.appliedLSN == LSN(4))
        try store.close()
    }

    @Test func writeBatchIsAtomicAndGetsOneLSN() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let store = try KeyValueStore(directory: dir.path)
        var batch = WriteBatch()
        for i in 0..<100 { batch.put(bytes("k\(i)"), bytes("v\(i)")) }
        batch.delete(bytes("k7"))
        let lsn = try store.write(batch)
        #expect(lsn == LSN(1))
        #expect(store.snapshot().count == 99)
        #expect(store.get(bytes("k7")) == nil)
        try store.close()
    }

    @Test func rangeAndPrefixScansAreOrderedBytewise() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let store = try KeyValueStore(directory: dir.path)
        var batch = WriteBatch()
        for key in ["b", "a", "ab", "abc", "b\u{1}", "c", "\u{7F}", "ac"] { batch.put(bytes(key), bytes(key.uppercased())) }
        batch.put([0xFF, 0x00], [1])
        try store.write(batch)
        var keys: [[UInt8]] = []
        store.snapshot().scan { key, _ in
            keys.append(key)
            return true
        }
        #expect(keys == keys.sorted { $0.lexicographicallyPrecedes($1) })
        var prefixed: [String] = []
        store.snapshot().scan(prefix: bytes("ab")) { key, _ in
            prefixed.append(String(decoding: key, as: UTF8.self))
            return true
        }
        #expect(prefixed == ["ab", "abc"])
        var ranged: [String] = []
        store.snapshot().scan(from: bytes("ab"), to: bytes("b\u{1}")) { key, _ in
            ranged.append(String(decoding: key, as: UTF8.self))
            return true
        }
        #expect(ranged == ["ab", "abc", "ac", "b"])
        try store.close()
    }

    @Test func limitsAreEnforcedWithNamedErrors() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let store = try KeyValueStore(directory: dir.path)
        #expect { try store.put([UInt8](repeating: 1, count: KeyValueLimits.keyBytesMax + 1), [1]) } throws: { error in
            "\(error)".contains("keyBytesMax")
        }
        #expect { try store.put([1], [UInt8](repeating: 1, count: KeyValueLimits.valueBytesMax + 1)) } throws: { error in
            "\(error)".contains("valueBytesMax")
        }
        #expect(throws: KeyValueError.self) { try store.write(WriteBatch()) }
        // Nothing was logged by the refused calls.
        #expect(store.appliedLSN == .zero)
        try store.close()
    }

    @Test func snapshotStaysConsistentWhileTheWriterGoesOn() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let store = try KeyValueStore(directory: dir.path)
        for i in 0..<1000 { try store.put(bytes(String(format: "key%04d", i)), bytes("old"), durability: .buffered) }
        let snapshot = store.snapshot()
        for i in 0..<1000 { try store.put(bytes(String(format: "key%04d", i)), bytes("new"), durability: .buffered) }
        for i in 0..<500 { try store.delete(bytes(String(format: "key%04d", i)), durability: .buffered) }
        var old = 0
        snapshot.scan { _, value in
            if value == bytes("old") { old += 1 }
            return true
        }
        #expect(old == 1000 && snapshot.count == 1000)
        #expect(snapshot.lsn == LSN(1000))
        #expect(store.snapshot().count == 500)
        try store.close()
    }

    @Test func checkpointThenReplayOnlyWhatCameAfter() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        var model: [[UInt8]: [UInt8]] = [:]
        do {
            let store = try KeyValueStore(directory: dir.path, options: smallCheckpoints())
            for i in 0..<3000 {
                let key = bytes("k\(i % 700)"), value = bytes("v\(i)")
                try store.put(key, value, durability: .buffered)
                model[key] = value
            }
            let first = try store.checkpoint()
            #expect(first.lsn == LSN(3000))
            #expect(first.entries == 700)
            // One checkpoint has no fallback yet: the log keeps everything.
            #expect(store.host.log.firstLSN == LSN(1))
            try store.put(bytes("k0"), bytes("again"), durability: .buffered)
            model[bytes("k0")] = bytes("again")
            let info = try store.checkpoint()
            #expect(info.lsn == LSN(3001))
            for i in 0..<50 {
                try store.delete(bytes("k\(i)"), durability: .buffered)
                model[bytes("k\(i)")] = nil
            }
            // Retention dropped segments the checkpoint covers.
            #expect(store.host.log.firstLSN > LSN(1))
            try store.close()
        }
        let store = try KeyValueStore(directory: dir.path, options: smallCheckpoints())
        #expect(store.recoveryReport.checkpointLSN == LSN(3001))
        #expect(store.recoveryReport.replayedRecords == 50)
        #expect(contents(store) == model)
        try store.close()
    }

    @Test func damagedNewestCheckpointFallsBackToThePreviousOne() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        var model: [[UInt8]: [UInt8]] = [:]
        var newest: FilePath?
        do {
            let store = try KeyValueStore(directory: dir.path, options: smallCheckpoints())
            for round in 0..<2 {
                for i in 0..<500 {
                    let key = bytes("r\(round)-\(i)")
                    try store.put(key, bytes("\(i)"), durability: .buffered)
                    model[key] = bytes("\(i)")
                }
                newest = try store.checkpoint().path
            }
            try store.put(bytes("after"), bytes("x"))
            model[bytes("after")] = bytes("x")
            try store.close()
        }
        // Flip a byte in the middle of the newest checkpoint's body.
        let handle = try #require(FileHandle(forUpdatingAtPath: newest!.string))
        try handle.seek(toOffset: 200)
        let byte = try #require(handle.readData(ofLength: 1).first)
        try handle.seek(toOffset: 200)
        handle.write(Data([byte ^ 0x40]))
        try handle.close()
        let store = try KeyValueStore(directory: dir.path, options: smallCheckpoints())
        #expect(store.recoveryReport.checkpointLSN == LSN(500))
        #expect(store.recoveryReport.skippedCheckpoints.count == 1)
        #expect(store.recoveryReport.skippedCheckpoints.first?.contains("00000000000000001000.ckpt") == true, "\(store.recoveryReport.skippedCheckpoints)")
        #expect(contents(store) == model)
        try store.close()
    }

    @Test func automaticCheckpointsTriggerByLogBytes() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        var options = smallCheckpoints()
        options.checkpointIntervalBytes = 32 << 10
        let store = try KeyValueStore(directory: dir.path, options: options)
        for i in 0..<4000 { try store.put(bytes("key-\(i)"), [UInt8](repeating: UInt8(i % 251), count: 64), durability: .buffered) }
        try store.close()
        #expect(store.host.lastCheckpointError == nil)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path.string + "/checkpoints")
        #expect(names.contains { $0.hasSuffix(".ckpt") })
        #expect(names.filter { $0.hasSuffix(".ckpt") }.count <= 2)
        let reopened = try KeyValueStore(directory: dir.path, options: options)
        #expect(reopened.recoveryReport.checkpointLSN != nil)
        #expect(reopened.snapshot().count == 4000)
        try reopened.close()
    }

    @Test func concurrentReadersSeeCommittedStatesOnly() async throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let store = try KeyValueStore(directory: dir.path)
        // Every write batch moves one unit between two keys: the sum is invariant.
        var initial = WriteBatch()
        initial.put(bytes("x"), bytes("100"))
        initial.put(bytes("y"), bytes("0"))
        try await store.write(initial, durability: .buffered)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for i in 0..<500 {
                    var move = WriteBatch()
                    move.put(bytes("x"), bytes("\(100 - (i % 100) - 1)"))
                    move.put(bytes("y"), bytes("\(i % 100 + 1)"))
                    try await store.write(move, durability: .buffered)
                }
            }
            for _ in 0..<2 {
                group.addTask {
                    for _ in 0..<2000 {
                        let snapshot = store.snapshot()
                        let x = Int(String(decoding: snapshot.get(bytes("x")) ?? [], as: UTF8.self)) ?? -1
                        let y = Int(String(decoding: snapshot.get(bytes("y")) ?? [], as: UTF8.self)) ?? -1
                        #expect(x + y == 100, "a reader saw half a write batch: x=\(x) y=\(y)")
                    }
                }
            }
            try await group.waitForAll()
        }
        try store.close()
    }

    @Test func randomWorkloadsMatchAModelAcrossCrashesOnSimulatedStorage() throws {
        for seed in UInt64(1)...40 {
            var rng = SplitMix64(seed: seed)
            let fs = SimulatedFileSystem(seed: seed)
            let dir = FilePath("/store")
            var model: [[UInt8]: [UInt8]] = [:]   // what is durable for sure
            var options = smallCheckpoints()
            options.checkpointIntervalBytes = 16 << 10
            for cycle in 0..<3 {
                let store = try KeyValueStore(directory: dir, options: options, fileSystem: fs)
                #expect(contents(store) == model, "seed \(seed) cycle \(cycle): recovered state differs from the durable model")
                var pending = model
                for _ in 0..<Int(rng.uniform(below: 300)) {
                    let key = bytes("k\(rng.uniform(below: 60))")
                    if rng.uniform(below: 5) == 0 {
                        try store.delete(key, durability: .immediate)
                        pending[key] = nil
                    } else {
                        let value = bytes("v\(rng.next() % 1000)")
                        try store.put(key, value, durability: .immediate)
                        pending[key] = value
                    }
                    if rng.uniform(below: 50) == 0 { try store.checkpoint() }
                }
                model = pending  // every write above was acknowledged .immediate
                fs.crash(seed: seed &* 31 &+ UInt64(cycle))
                try? store.close()
            }
        }
    }
}
