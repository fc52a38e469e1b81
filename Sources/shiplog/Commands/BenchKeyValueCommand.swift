import Glibc
import ShipLog

extension Commands {
    static let benchKeyValue = CommandSpec(
        path: ["bench", "kv"],
        summary: "Measure key-value puts, gets, checkpoint and rebuild against same-run raw log figures.",
        flags: [
            .flag("json", help: "Print the figures as JSON."),
            .value("keys", .unsignedInteger(1000...100_000_000), placeholder: "N", help: "Keys to write.", default: "1000000"),
            .value("dir", placeholder: "DIR", help: "Directory for the benchmark's store (default: a temporary one)."),
        ])
}

/// `shiplog bench kv`: puts of 16-byte keys and 100-byte values (buffered), gets, a checkpoint
/// of the whole store, and the rebuild after reopening (replay from the log), next to the raw
/// speed of reading the same log's records in the same run.
struct BenchKeyValueCommand {
    static let keyBytes = 16
    static let valueBytes = 100
    /// Puts handed to the log together by the pipelined phase (each its own record and LSN).
    static let putsPerSubmission = 64

    let json: Bool
    let keys: Int
    let directory: String?

    init(_ arguments: ParsedArguments) throws {
        json = arguments.flag("json")
        keys = Int(try arguments.uint64("keys") ?? 1_000_000)
        directory = arguments.string("dir")
    }

    /// Key `i` in a scrambled order, so inserts are not sorted.
    static func key(_ i: Int) -> [UInt8] {
        var x = UInt64(i) &* 0x9E37_79B9_7F4A_7C15
        x ^= x >> 29
        var bytes = [UInt8](repeating: 0, count: keyBytes)
        for j in 0..<8 { bytes[j] = UInt8(truncatingIfNeeded: x >> (8 * (7 - j))) }
        for j in 8..<keyBytes { bytes[j] = UInt8(truncatingIfNeeded: i >> (8 * (keyBytes - 1 - j))) }
        return bytes
    }

    static func value(_ i: Int) -> [UInt8] {
        var bytes = Array("value-\(i)-".utf8)
        while bytes.count < valueBytes { bytes.append(UInt8(97 + (bytes.count + i) % 26)) }
        return Array(bytes.prefix(valueBytes))
    }

    func run() throws -> Int32 {
        let root = try BenchDirectory(parent: directory)
        defer { root.remove() }
        let path = FilePath(root.path + "/kv")
        var options = StateMachineOptions()
        options.checkpointIntervalBytes = nil  // the checkpoint is measured on its own
        progress("generating \(keys) keys")
        let keyList = (0..<keys).map(Self.key)
        let valueList = (0..<min(keys, 4096)).map(Self.value)

        progress("pipelined buffered puts (\(Self.putsPerSubmission) per log batch)")
        var store = try KeyValueStore(directory: path, options: options)
        var start = MonotonicClock.now()
        var index = 0
        while index < keys {
            var batches: [WriteBatch] = []
            batches.reserveCapacity(Self.putsPerSubmission)
            for i in index..<min(index + Self.putsPerSubmission, keys) {
                var batch = WriteBatch()
                batch.put(keyList[i], valueList[i % valueList.count])
                batches.append(batch)
            }
            try store.submit(batches, durability: .buffered) { _ in }
            index += batches.count
        }
        try store.host.log.sync()
        let pipelinedNanoseconds = MonotonicClock.elapsed(since: start)

        progress("blocking buffered puts, one call per put (overwrites)")
        let blockingCount = min(keys, 50_000)
        start = MonotonicClock.now()
        for i in 0..<blockingCount { try store.put(keyList[i], valueList[(i + 1) % valueList.count], durability: .buffered) }
        let blockingNanoseconds = MonotonicClock.elapsed(since: start)

        progress("point gets")
        start = MonotonicClock.now()
        let snapshot = store.snapshot()
        var found = 0
        for i in 0..<keys where snapshot.get(keyList[(i &* 7919) % keys]) != nil { found += 1 }
        let getNanoseconds = MonotonicClock.elapsed(since: start)
        guard found == keys else { throw CommandError("gets found \(found) of \(keys) keys") }

        progress("checkpoint of \(keys) keys")
        let checkpoint = try store.checkpoint()
        // Rebuild: reopen with the checkpoint out of the way, so every record is replayed.
        let appliedRecords = store.appliedLSN.rawValue
        try store.close()
        let checkpointsDirectory = root.path + "/kv/" + CheckpointStore.directoryName
        rename(checkpointsDirectory, checkpointsDirectory + ".set-aside")

        progress("raw log read of the same records")
        let log = try Log.open(directory: path)
        start = MonotonicClock.now()
        var rawRecords: UInt64 = 0
        try log.forEachRecord(from: log.firstLSN) { _, _ in rawRecords += 1 }
        let rawNanoseconds = MonotonicClock.elapsed(since: start)
        try log.close()

        progress("rebuild: reopen and replay \(appliedRecords) records")
        start = MonotonicClock.now()
        store = try KeyValueStore(directory: path, options: options)
        let rebuildNanoseconds = MonotonicClock.elapsed(since: start)
        let rebuilt = store.snapshot().count
        let replayed = store.recoveryReport.replayedRecords
        let replayOnly = store.recoveryReport.replayDuration
        let replayOnlyNanoseconds = UInt64(replayOnly.components.seconds) * 1_000_000_000
            + UInt64(replayOnly.components.attoseconds / 1_000_000_000)
        try store.close()
        guard rebuilt == keys else { throw CommandError("rebuilt store holds \(rebuilt) keys, expected \(keys)") }

        rename(checkpointsDirectory + ".set-aside", checkpointsDirectory)
        progress("restore from the checkpoint")
        start = MonotonicClock.now()
        store = try KeyValueStore(directory: path, options: options)
        let restoreNanoseconds = MonotonicClock.elapsed(since: start)
        try store.close()

        func rate(_ count: Int, _ ns: UInt64) -> Double { Double(count) * 1e9 / Double(max(ns, 1)) }
        let figures: [(String, String, JSONValue)] = [
            ("pipelined buffered puts/s", Format.group(UInt64(rate(keys, pipelinedNanoseconds))), JSONValue(rate(keys, pipelinedNanoseconds))),
            ("blocking buffered puts/s (one call each)", Format.group(UInt64(rate(blockingCount, blockingNanoseconds))), JSONValue(rate(blockingCount, blockingNanoseconds))),
            ("gets/s", Format.group(UInt64(rate(keys, getNanoseconds))), JSONValue(rate(keys, getNanoseconds))),
            ("checkpoint seconds", Format.fixed(Double(checkpoint.duration.components.seconds) + Double(checkpoint.duration.components.attoseconds) / 1e18, decimals: 3), JSONValue(Double(checkpoint.duration.components.seconds) + Double(checkpoint.duration.components.attoseconds) / 1e18)),
            ("checkpoint bytes", Format.bytes(UInt64(checkpoint.bytes)), JSONValue(UInt64(checkpoint.bytes))),
            ("rebuild records/s (open + replay)", Format.group(UInt64(rate(Int(replayed), rebuildNanoseconds))), JSONValue(rate(Int(replayed), rebuildNanoseconds))),
            ("replay records/s (checkpoint lookup + replay, without log recovery)", Format.group(UInt64(rate(Int(replayed), replayOnlyNanoseconds))), JSONValue(rate(Int(replayed), replayOnlyNanoseconds))),
            ("raw log read records/s (same log)", Format.group(UInt64(rate(Int(rawRecords), rawNanoseconds))), JSONValue(rate(Int(rawRecords), rawNanoseconds))),
            ("restore from checkpoint seconds", Format.fixed(Double(restoreNanoseconds) / 1e9, decimals: 3), JSONValue(Double(restoreNanoseconds) / 1e9)),
        ]
        let keysJSON = ["pipelined_puts_per_second", "blocking_puts_per_second", "gets_per_second", "checkpoint_seconds",
                        "checkpoint_bytes", "rebuild_records_per_second", "replay_records_per_second",
                        "raw_read_records_per_second", "restore_seconds"]
        if json {
            var document = JSONObject()
            document["keys"] = JSONValue(keys)
            for (key, figure) in zip(keysJSON, figures) { document[key] = figure.2 }
            document["ratio_rebuild_to_raw_read"] = JSONValue(
                rate(Int(replayed), rebuildNanoseconds) / rate(Int(rawRecords), rawNanoseconds))
            Output.standard.line(JSONValue.object(document).rendered(pretty: true))
            return 0
        }
        var table = TextTable([("\(keys) keys, 16-byte keys, 100-byte values", .left), ("figure", .right)])
        for figure in figures { table.addRow([figure.0, figure.1]) }
        Output.standard.write(table.rendered())
        Output.standard.line(
            "targets: puts >= 1,000,000/s, rebuild >= 2,000,000 records/s, checkpoint of 1M keys < 1 s")
        return 0
    }

    func progress(_ text: String) {
        if !json { Output.error.line("… \(text)") }
    }
}
