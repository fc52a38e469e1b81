import Glibc
import ShipLog

/// `shiplog bench append`: append throughput of the engine next to baselines measured in the
/// same run on the same machine (raw liblz4 compression of the same data, raw single-writer
/// 4 KiB pwrite+fdatasync on the same disk), and the ratios between them.
struct BenchAppendCommand {
    /// Uncompressed bytes per batch in the buffered phases.
    static let batchBytes = 64 << 10
    /// Records generated ahead of the buffered phases, in bytes.
    static let recordPoolBytes = 32 << 20
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

    struct Phase {
        var name: String
        var records: UInt64 = 0
        var logicalBytes: UInt64 = 0
        var storedBytes: UInt64 = 0
        var nanoseconds: UInt64 = 0
        var syncCalls: UInt64 = 0
        var latency = Histogram()

        var recordsPerSecond: Double { Double(records) * 1e9 / Double(max(nanoseconds, 1)) }
        var logicalMBPerSecond: Double { Double(logicalBytes) * 1e3 / Double(max(nanoseconds, 1)) }
        var storedMBPerSecond: Double { Double(storedBytes) * 1e3 / Double(max(nanoseconds, 1)) }
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
        let bufferedLog = try buffered(kind: .logLike, directory: root.path + "/buffered-log", duration: duration)
        progress("buffered append, random records")
        let bufferedRandom = try buffered(kind: .random, directory: root.path + "/buffered-random", duration: duration)
        var immediate: [Int: Phase] = [:]
        for writers in Self.immediateWriters {
            progress("immediate append, \(writers) concurrent appender(s)")
            immediate[writers] = try self.immediate(
                writers: writers, directory: root.path + "/immediate-\(writers)", duration: duration)
        }
        let ratioToLZ4 = bufferedLog.logicalMBPerSecond / lz4.compression.megabytesPerSecond
        let immediate64 = immediate[64]!.recordsPerSecond
        let ratioImmediate = immediate64 / fsync.operationsPerSecond
        if json {
            var document: JSONObject = [
                "records_per_second": JSONValue(bufferedLog.recordsPerSecond),
                "logical_mb_per_second": JSONValue(bufferedLog.logicalMBPerSecond),
                "on_disk_mb_per_second": JSONValue(bufferedLog.storedMBPerSecond),
                "compression_ratio": JSONValue(Double(bufferedLog.logicalBytes) / Double(max(bufferedLog.storedBytes, 1))),
                "random_records_per_second": JSONValue(bufferedRandom.recordsPerSecond),
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
                document["immediate_\(writers)_per_second"] = JSONValue(phase.recordsPerSecond)
                document["immediate_\(writers)_p50_us"] = JSONValue(Double(phase.latency.percentile(50)) / 1000)
                document["immediate_\(writers)_p99_us"] = JSONValue(Double(phase.latency.percentile(99)) / 1000)
                document["immediate_\(writers)_records_per_fdatasync"] =
                    JSONValue(Double(phase.records) / Double(max(phase.syncCalls, 1)))
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
                ? Format.fixed(Double(phase.records) / Double(phase.syncCalls), decimals: 1) : "-"
            table.addRow([
                phase.name, Format.group(UInt64(phase.recordsPerSecond)), Format.fixed(phase.logicalMBPerSecond),
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
        out.line("  buffered records/s = \(Format.group(UInt64(bufferedLog.recordsPerSecond)))  (target >= 4,000,000)")
        return 0
    }

    /// One appender thread submits 64 KiB batches without waiting; the log's I/O thread writes.
    func buffered(kind: Workload.Kind, directory: String, duration: Duration) throws -> Phase {
        let log = try Log.open(directory: FilePath(directory))
        defer { try? log.close() }
        // Records are generated before the clock starts: the phase measures the engine.
        let pool = RecordPool(kind: kind, bytes: Self.recordPoolBytes)
        var builder = BatchBuilder(capacity: Self.batchBytes + 4096)
        var phase = Phase(name: "buffered, \(kind == .logLike ? "log-like" : "random") records")
        let budget = UInt64(seconds * 1e9)
        var next = 0
        var logicalBytes: UInt64 = 0
        let start = MonotonicClock.now()
        while MonotonicClock.elapsed(since: start) < budget {
            builder.removeAll()
            try pool.storage.withUnsafeBytes { raw in
                while builder.uncompressedByteCount < Self.batchBytes {
                    let record = pool.records[next]
                    try builder.append(UnsafeRawBufferPointer(rebasing: raw[record]))
                    logicalBytes += UInt64(record.count)
                    next = next + 1 == pool.records.count ? 0 : next + 1
                }
            }
            phase.records += UInt64(builder.recordCount)
            try log.submit(builder.encode(codec: .lz4), durability: .buffered) { _ in }
        }
        try log.sync()  // everything handed to the OS (and synced) before the clock stops
        phase.nanoseconds = MonotonicClock.elapsed(since: start)
        let stats = log.statistics
        phase.logicalBytes = logicalBytes
        phase.storedBytes = stats.storedBytesAppended
        phase.syncCalls = stats.syncCalls
        _ = duration
        return phase
    }

    /// `writers` tasks each append one ~100-byte record at a time with `.immediate`.
    func immediate(writers: Int, directory: String, duration: Duration) throws -> Phase {
        let log = try Log.open(directory: FilePath(directory))
        defer { try? log.close() }
        let budget = UInt64(seconds * 1e9)
        let collector = PhaseCollector()
        let done = NSLockLike()
        nonisolated(unsafe) var finished = false
        let start = MonotonicClock.now()
        Task.detached {
            await withTaskGroup(of: (UInt64, UInt64, Histogram).self) { group in
                for writer in 0..<writers {
                    group.addTask {
                        var workload = Workload(kind: .logLike, seed: UInt64(writer) &* 0x9E37_79B9)
                        var builder = BatchBuilder(capacity: 512)
                        var histogram = Histogram()
                        var records: UInt64 = 0
                        while MonotonicClock.elapsed(since: start) < budget {
                            builder.removeAll()
                            try? workload.fill(&builder, records: 1)
                            let before = MonotonicClock.now()
                            do { try await log.append(builder, durability: .immediate) } catch { break }
                            histogram.record(MonotonicClock.elapsed(since: before))
                            records += 1
                        }
                        return (records, workload.bytesProduced, histogram)
                    }
                }
                for await (records, bytes, histogram) in group { collector.add(records, bytes, histogram) }
            }
            done.withLock { finished = true }
            done.signal()
        }
        done.withLock { while !finished { done.wait() } }
        var phase = collector.phase
        phase.name = "immediate, \(writers) appender\(writers == 1 ? "" : "s")"
        phase.nanoseconds = MonotonicClock.elapsed(since: start)
        let stats = log.statistics
        phase.storedBytes = stats.storedBytesAppended
        phase.syncCalls = stats.syncCalls
        _ = duration
        return phase
    }

    func progress(_ text: String) {
        if !json { Output.error.line("… \(text)") }
    }
}

/// Sums the appenders' counts.
final class PhaseCollector: @unchecked Sendable {
    private let lock = NSLockLike()
    private var total = BenchAppendCommand.Phase(name: "")

    func add(_ records: UInt64, _ bytes: UInt64, _ histogram: Histogram) {
        lock.withLock {
            total.records += records
            total.logicalBytes += bytes
            total.latency.merge(histogram)
        }
    }

    var phase: BenchAppendCommand.Phase { lock.withLock { total } }
}

/// A directory for benchmark logs, removed afterwards.
struct BenchDirectory {
    let path: String

    init(parent: String?) throws {
        let base = parent ?? (getenv("TMPDIR").map { String(cString: $0) } ?? "/var/tmp")
        var template = Array("\(base)/shiplog-bench-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw CommandError("cannot create a benchmark directory under \(base): \(String(cString: strerror(errno)))")
        }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Removes the directory and everything the benchmark created in it.
    func remove() { Self.removeTree(path) }

    private static func removeTree(_ path: String) {
        guard let directory = opendir(path) else {
            unlink(path)
            return
        }
        var children: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { children.append(path + "/" + name) }
        }
        closedir(directory)
        for child in children { removeTree(child) }
        rmdir(path)
    }
}

/// Records generated before a phase starts, so that the phase measures the engine, not the generator.
struct RecordPool {
    /// All records back to back.
    var storage: [UInt8] = []
    /// Each record's byte range in `storage`.
    var records: [Range<Int>] = []

    init(kind: Workload.Kind, bytes: Int) {
        var workload = Workload(kind: kind)
        storage.reserveCapacity(bytes + 4096)
        while storage.count < bytes {
            workload.withNextRecord { record in
                records.append(storage.count..<storage.count + record.count)
                storage.append(contentsOf: record)
            }
        }
    }
}
