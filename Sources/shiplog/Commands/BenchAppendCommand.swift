import Glibc
import ShipLog

/// `shiplog bench append`: append throughput of the engine next to baselines measured in the
/// same run on the same machine (raw liblz4 compression of the same data, raw single-writer
/// 4 KiB pwrite+fdatasync on the same disk), and the ratios between them.
struct BenchAppendCommand {
    /// Uncompressed bytes per batch in the buffered phases.
    static let batchBytes = BenchPhases.bufferedBatchBytes
    /// Records generated ahead of the buffered phases, in bytes.
    static let recordPoolBytes = 32 << 20
    /// Log-like records generated ahead of the `immediate` phases, in bytes.
    static let immediatePoolBytes = 1 << 20
    /// Concurrent appender counts of the `immediate` phases.
    static let immediateWriters = [1, 16, 64]

    let json: Bool
    let seconds: Double
    let directory: String?

    init(_ arguments: ParsedArguments) throws {
        json = arguments.flag("json")
        seconds = try arguments.double("seconds") ?? 2
        directory = arguments.string("dir")
    }

    func run() throws -> Int32 {
        let root = try BenchDirectory(parent: directory)
        defer { root.remove() }
        let duration = Duration.milliseconds(Int64(seconds * 1000))
        progress("baselines: raw LZ4 on the same records, raw 4 KiB pwrite+fdatasync on \(root.path)")
        var blocksWorkload = Workload(kind: .logLike)
        let blocks = blocksWorkload.makeRecordBlocks(count: 64, blockSize: Self.batchBytes)
        let lz4 = Baselines.lz4(blocks: blocks, duration: duration)
        let fsync = try Baselines.syncedWrites(directory: root.path, duration: duration)

        progress("buffered append, log-like records")
        let bufferedLog = try buffered(kind: .logLike, directory: root.path + "/buffered-log")
        progress("buffered append, random records")
        let bufferedRandom = try buffered(kind: .random, directory: root.path + "/buffered-random")
        var immediate: [Int: BenchPhaseResult] = [:]
        for writers in Self.immediateWriters {
            progress("immediate append, \(writers) concurrent appender(s)")
            immediate[writers] = try self.immediate(writers: writers, directory: root.path + "/immediate-\(writers)")
        }
        let ratioToLZ4 = bufferedLog.logicalMBPerSecond / lz4.compression.megabytesPerSecond
        let immediate64 = immediate[64]!.operationsPerSecond
        let ratioImmediate = immediate64 / fsync.operationsPerSecond
        if json {
            var document: JSONObject = [
                "records_per_second": JSONValue(bufferedLog.operationsPerSecond),
                "logical_mb_per_second": JSONValue(bufferedLog.logicalMBPerSecond),
                "on_disk_mb_per_second": JSONValue(bufferedLog.storedMBPerSecond),
                "compression_ratio": JSONValue(Double(bufferedLog.logicalBytes) / Double(max(bufferedLog.storedBytes, 1))),
                "random_records_per_second": JSONValue(bufferedRandom.operationsPerSecond),
                "random_logical_mb_per_second": JSONValue(bufferedRandom.logicalMBPerSecond),
                "lz4_baseline_mb_per_second": JSONValue(lz4.compression.megabytesPerSecond),
                "lz4_baseline_ratio": JSONValue(lz4.ratio),
                "ratio_to_lz4": JSONValue(ratioToLZ4),
                "fsync_baseline_per_second": JSONValue(fsync.operationsPerSecond),
                "fsync_baseline_p50_us": JSONValue(Double(fsync.latency.percentile(50)) / 1000),
                "fsync_baseline_p99_us": JSONValue(Double(fsync.latency.percentile(99)) / 1000),
                "ratio_immediate_64_to_fsync": JSONValue(ratioImmediate),
                "crc32c": JSONValue(CRC32C.implementation),
                "seconds_per_phase": JSONValue(seconds),
            ]
            for (writers, phase) in immediate.sorted(by: { $0.key < $1.key }) {
                document["immediate_\(writers)_per_second"] = JSONValue(phase.operationsPerSecond)
                document["immediate_\(writers)_p50_us"] = JSONValue(Double(phase.latency.percentile(50)) / 1000)
                document["immediate_\(writers)_p99_us"] = JSONValue(Double(phase.latency.percentile(99)) / 1000)
                document["immediate_\(writers)_records_per_fdatasync"] =
                    JSONValue(Double(phase.operations) / Double(max(phase.syncCalls, 1)))
            }
            Output.standard.line(JSONValue.object(document).rendered(pretty: true))
            return 0
        }
        var table = TextTable([
            ("phase", .left), ("records/s", .right), ("logical MB/s", .right), ("on-disk MB/s", .right),
            ("p50", .right), ("p99", .right), ("records/fdatasync", .right),
        ])
        for phase in [bufferedLog, bufferedRandom] + Self.immediateWriters.map({ immediate[$0]! }) {
            // Buffered phases sync once, at the end: records per fdatasync means nothing there.
            let perSync = phase.latency.count > 0 && phase.syncCalls > 0
                ? Format.fixed(Double(phase.operations) / Double(phase.syncCalls), decimals: 1) : "-"
            table.addRow([
                phase.name, Format.group(UInt64(phase.operationsPerSecond)), Format.fixed(phase.logicalMBPerSecond),
                Format.fixed(phase.storedMBPerSecond),
                phase.latency.count > 0 ? Format.nanoseconds(phase.latency.percentile(50)) : "-",
                phase.latency.count > 0 ? Format.nanoseconds(phase.latency.percentile(99)) : "-", perSync,
            ])
        }
        let out = Output.standard
        out.write(table.rendered())
        out.line("")
        out.line("baselines measured in this run:")
        out.line("  raw LZ4 compress (liblz4, same records, 64 KiB blocks): \(Format.fixed(lz4.compression.megabytesPerSecond)) MB/s, ratio \(Format.fixed(lz4.ratio, decimals: 2))")
        out.line("  raw 4 KiB pwrite+fdatasync, one writer: \(Format.group(UInt64(fsync.operationsPerSecond)))/s, p50 \(Format.nanoseconds(fsync.latency.percentile(50))), p99 \(Format.nanoseconds(fsync.latency.percentile(99)))")
        out.line("ratios:")
        out.line("  buffered log-like logical MB/s / raw LZ4 MB/s = \(Format.fixed(ratioToLZ4, decimals: 2))  (target >= 0.5)")
        out.line("  immediate with 64 appenders / raw fdatasync rate = \(Format.fixed(ratioImmediate, decimals: 1))  (target >= 20)")
        out.line("  buffered records/s = \(Format.group(UInt64(bufferedLog.operationsPerSecond)))  (target >= 4,000,000)")
        return 0
    }

    /// One appender thread submits 64 KiB batches without waiting; the log's I/O thread writes.
    func buffered(kind: Workload.Kind, directory: String) throws -> BenchPhaseResult {
        // Records are generated before the clock starts: the phase measures the engine.
        let pool = RecordPool(kind: kind, bytes: Self.recordPoolBytes)
        return try BenchPhases.bufferedAppend(
            key: "append-buffered-\(kind)", name: "buffered, \(kind == .logLike ? "log-like" : "random") records", pool: pool,
            directory: directory, context: PhaseContext(seconds: seconds))
    }

    /// `writers` tasks each append one log-like record at a time with `.immediate`.
    func immediate(writers: Int, directory: String) throws -> BenchPhaseResult {
        let pool = RecordPool(kind: .logLike, bytes: Self.immediatePoolBytes)
        return try BenchPhases.immediateAppend(
            key: "group-commit-\(writers)", name: "immediate, \(writers) appender\(writers == 1 ? "" : "s")", writers: writers,
            pool: pool, directory: directory, context: PhaseContext(seconds: seconds))
    }

    func progress(_ text: String) {
        if !json { Output.error.line("… \(text)") }
    }
}
