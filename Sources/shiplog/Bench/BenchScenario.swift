import Glibc
import ShipLog

/// `shiplog bench`: the full benchmark scenario on embedded defaults. Baselines first
/// (fdatasync latency, loopback RTT, raw LZ4, sequential writes), then the phases: buffered
/// appends, group commit with each writer count, a primary and its followers in this process
/// over loopback TCP (asynchronous, quorum `flush:1`, `all`), the replication-delay model for
/// 2 and 3 nodes, a follower shut down and caught up, and recovery (reopen and replay).
///
/// Every phase polls the progress's stop flag: after a Ctrl-C the current phase ends early,
/// the rest are skipped, and the result holds what was measured.
struct BenchScenario {
    /// What the user can change on the command line.
    struct Parameters: Sendable {
        /// Seconds per measured phase.
        var seconds: Double = 4
        /// Bytes of each record.
        var recordBytes = 100
        /// Followers of the replication phases.
        var followers = 2
        /// Concurrent writers of the group-commit phases; the replication phases with many
        /// clients use the largest.
        var writers = [1, 16, 64]
        /// Where the temporary directories go (default `$TMPDIR`, else `/var/tmp`).
        var directory: String?
    }

    /// Writer threads of the asynchronous replication phases.
    static let asyncWriters = 2
    /// Records per batch an asynchronous writer submits, and batches each keeps in flight.
    static let asyncBatchRecords = 1024
    static let asyncBatchesInFlight = 16
    /// Records generated ahead of the buffered phase, in bytes.
    static let bufferedPoolBytes = 32 << 20
    /// Records generated ahead of the other phases.
    static let poolRecords = 8192
    /// Longest baseline measurement, in seconds (each is also at most half a phase).
    static let baselineSecondsMax = 1.0
    /// Bytes of the sequential-write baseline per second of `--seconds`, and its limits.
    static let sequentialWriteBytesPerSecond = 16 << 20
    static let sequentialWriteBytesRange = (4 << 20)...(64 << 20)
    /// Node counts of the replication-delay model.
    static let modelNodeCounts = [2, 3]
    /// How long a restarted follower may take to catch up.
    static let catchUpTimeout: Duration = .seconds(120)

    let parameters: Parameters
    let progress: BenchProgress

    /// Runs every phase (until a stop); the directories are removed afterwards.
    func run() throws -> BenchScenarioResult {
        let root = try BenchDirectory(parent: parameters.directory)
        defer { root.remove() }
        var result = BenchScenarioResult(parameters: parameters, machine: .current(directory: root.path))
        let baselines = try measureBaselines(root: root.path)
        result.baselines = baselines
        let pool = RecordPool(logLikeRecords: Self.poolRecords, recordBytes: parameters.recordBytes)

        if !stopped { try runLocalPhases(root: root.path, pool: pool, baselines: baselines, into: &result) }
        if !stopped { try runReplicationPhases(root: root.path, pool: pool, baselines: baselines, into: &result) }
        if !stopped { try remeasureSync(root: root.path, into: &result) }
        result.interrupted = stopped
        progress.finish()
        return result
    }

    var stopped: Bool { progress.stop.isSet }

    // MARK: Baselines

    private func measureBaselines(root: String) throws -> BenchBaselines {
        let duration = Duration.milliseconds(Int64(max(1, baselineSeconds * 1000)))
        progress.note("baseline: 4 KiB pwrite+fdatasync on \(root), overwriting and appending")
        let fsync = try Baselines.syncedOverwrites(directory: root, duration: duration)
        let fsyncAppend = try Baselines.syncedWrites(directory: root, duration: duration / 2)
        progress.note("baseline: loopback TCP round trip of 100 bytes")
        let rtt = try Baselines.loopbackRoundTrip(duration: duration / 2)
        progress.note("baseline: raw LZ4 compression and decompression of the same records")
        let lz4 = Baselines.lz4(blocks: Self.lz4Blocks(), duration: duration / 2)
        let sequentialBytes = min(
            max(Int(parameters.seconds * Double(Self.sequentialWriteBytesPerSecond)), Self.sequentialWriteBytesRange.lowerBound),
            Self.sequentialWriteBytesRange.upperBound)
        progress.note("baseline: sequential 1 MiB writes, \(Format.bytes(UInt64(sequentialBytes))), one fdatasync")
        let sequential = try Baselines.sequentialWrite(directory: root, totalBytes: sequentialBytes)
        return BenchBaselines(fsync: fsync, fsyncAppend: fsyncAppend, loopbackRTT: rtt, lz4: lz4, sequentialWrite: sequential)
    }

    /// The record blocks of the LZ4 baselines: 64 blocks of 64 KiB of log-like records.
    static func lz4Blocks() -> [[UInt8]] {
        var workload = Workload(kind: .logLike)
        return workload.makeRecordBlocks(count: 64, blockSize: BenchPhases.bufferedBatchBytes)
    }

    /// fdatasync latency and the CPU left for LZ4 drift with what else the machine does: both
    /// are measured again at the end, and the better of the two measurements is the bound of
    /// every phase (the most the machine showed it can do in this run).
    private func remeasureSync(root: String, into result: inout BenchScenarioResult) throws {
        guard var baselines = result.baselines else { return }
        let duration = Duration.milliseconds(Int64(max(1, baselineSeconds * 1000)))
        progress.note("baselines again: 4 KiB pwrite+fdatasync overwriting, raw LZ4")
        let again = try Baselines.syncedOverwrites(directory: root, duration: duration)
        baselines.fsyncEarlierP50 = baselines.fsync.latency.percentile(50)
        baselines.fsyncLaterP50 = again.latency.percentile(50)
        if again.latency.percentile(50) < baselines.fsync.latency.percentile(50) { baselines.fsync = again }
        let lz4 = Baselines.lz4(blocks: Self.lz4Blocks(), duration: duration / 2)
        baselines.lz4Earlier = baselines.lz4
        baselines.lz4Later = lz4
        if lz4.compression.megabytesPerSecond > baselines.lz4.compression.megabytesPerSecond {
            baselines.lz4.compression = lz4.compression
        }
        if lz4.decompression.megabytesPerSecond > baselines.lz4.decompression.megabytesPerSecond {
            baselines.lz4.decompression = lz4.decompression
        }
        for index in result.phases.indices { result.phases[index].bound?.follow(baselines) }
        result.baselines = baselines
        for index in result.phases.indices { result.phases[index].bound?.follow(baselines) }
        for index in result.delayModel.indices { result.delayModel[index].fsync = Double(baselines.fsync.latency.percentile(50)) }
    }

    /// Seconds of each baseline measurement.
    private var baselineSeconds: Double { max(0.001, min(Self.baselineSecondsMax, parameters.seconds / 2)) }

    // MARK: Local log

    private func runLocalPhases(root: String, pool: RecordPool, baselines: BenchBaselines, into result: inout BenchScenarioResult) throws {
        let bufferedPool = RecordPool(
            logLikeRecords: max(Self.poolRecords, Self.bufferedPoolBytes / parameters.recordBytes), recordBytes: parameters.recordBytes)
        var buffered = try progress.run("append (buffered)", seconds: parameters.seconds, unit: "records") { context in
            try BenchPhases.bufferedAppend(
                key: "append-buffered", name: "append (buffered)", pool: bufferedPool, directory: root + "/append-buffered",
                context: context)
        }
        BenchDirectory.removeTree(root + "/append-buffered")  // each local phase frees its disk space at once
        buffered.bound = .lz4(.compress, measured: buffered.logicalMBPerSecond, baselines: baselines)
        result.phases.append(buffered)

        for writers in parameters.writers where !stopped {
            let name = "group commit (immediate), \(writers) writer\(writers == 1 ? "" : "s")"
            var phase = try progress.run(name, seconds: parameters.seconds, unit: "records") { context in
                try BenchPhases.immediateAppend(
                    key: "group-commit-\(writers)", name: name, writers: writers, pool: pool,
                    directory: root + "/group-commit-\(writers)", context: context)
            }
            BenchDirectory.removeTree(root + "/group-commit-\(writers)")
            phase.bound = .perSync(writers, includesRoundTrip: false, measured: phase.operationsPerSecond, unit: "records/s", baselines: baselines)
            result.phases.append(phase)
        }
    }
}

/// The baselines measured at the start of a scenario.
struct BenchBaselines: Sendable {
    /// 4 KiB overwrites of a written region, each followed by fdatasync: data only, the bound.
    var fsync: SyncWriteBaseline
    /// 4 KiB appends to a growing file, each followed by fdatasync (which then also persists
    /// the file size): what a log without preallocation pays.
    var fsyncAppend: SyncWriteBaseline
    /// p50 of the overwrite baseline at the start and at the end of the run (``fsync`` is the
    /// faster of the two); `nil` until the end.
    var fsyncEarlierP50: UInt64?
    var fsyncLaterP50: UInt64?
    /// The LZ4 baseline at the start and at the end (``lz4`` has the faster of each direction).
    var lz4Earlier: LZ4Baseline?
    var lz4Later: LZ4Baseline?
    var loopbackRTT: Histogram
    var lz4: LZ4Baseline
    var sequentialWrite: Throughput

    /// p50 of fdatasync + p50 of the loopback round trip, in nanoseconds: the least a commit
    /// that waits for one follower's fdatasync can take.
    var syncPlusRoundTripNanoseconds: Double {
        Double(fsync.latency.percentile(50)) + Double(loopbackRTT.percentile(50))
    }
}

/// Facts about the machine a scenario ran on.
struct MachineFacts: Sendable {
    var hostname: String
    var system: String
    var kernel: String
    var architecture: String
    var cpus: Int
    var memoryBytes: UInt64
    var fileSystem: String?
    var crc32c: String
    /// `debug` or `release`: debug figures are not representative.
    var build: String

    static func current(directory: String) -> MachineFacts {
        var names = utsname()
        uname(&names)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        #if DEBUG
            let build = "debug"
        #else
            let build = "release"
        #endif
        return MachineFacts(
            hostname: field(names.nodename), system: field(names.sysname), kernel: field(names.release),
            architecture: field(names.machine), cpus: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))),
            memoryBytes: UInt64(max(0, sysconf(Int32(_SC_PHYS_PAGES)))) * UInt64(max(0, sysconf(Int32(_SC_PAGESIZE)))),
            fileSystem: Baselines.fileSystemName(of: directory), crc32c: CRC32C.implementation, build: build)
    }
}

/// The textbook model of synchronous replication delay next to what one run measured.
struct ReplicationDelayModel: Sendable {
    /// Nodes: the primary and `nodes - 1` followers, all of which a commit waits for (`all`).
    var nodes: Int
    /// p50 commit latency of one client at `local` (durable on the primary only), in ns.
    var localLatency: Double
    /// p50 commit latency of one client at `all` with `nodes - 1` followers, in ns.
    var synchronousLatency: Double
    /// Loopback RTT p50 and fdatasync p50 of the same run, in ns.
    var roundTrip: Double
    var fsync: Double
    /// The latencies behind the p50s, and the commits made (half at each level).
    var local: Histogram
    var synchronous: Histogram
    var commits: UInt64
    /// Whether the commits went to the scenario's main primary (rather than a cluster of its own).
    var onMainCluster: Bool

    /// Delay = (n − 1) / n × Latency, with Latency the local commit latency.
    var modelDelay: Double { Double(nodes - 1) / Double(nodes) * localLatency }
    /// What waiting for the followers added, measured.
    var measuredDelay: Double { synchronousLatency - localLatency }

    /// One sentence on where the measurement and the model differ and why, from the figures.
    var explanation: String {
        let measured = Format.nanoseconds(measuredDelay)
        let model = Format.nanoseconds(modelDelay)
        let serial = Format.nanoseconds(roundTrip + fsync)
        if measuredDelay > modelDelay * 1.1 {
            return "n = \(nodes): measured \(measured) is above the model's \(model): the follower's fdatasync starts only "
                + "after its copy arrives, so a commit waits for the primary's write, one round trip (\(Format.nanoseconds(roundTrip))) "
                + "and the follower's own fdatasync (\(Format.nanoseconds(fsync))), in series (RTT + fdatasync = \(serial)), "
                + (nodes > 2 ? "and with \(nodes - 1) followers for the slowest of them, " : "")
                + "not a fraction of one latency."
        }
        if measuredDelay < modelDelay * 0.9 {
            return "n = \(nodes): measured \(measured) is below the model's \(model): the primary ships a batch as soon as it is "
                + "written, so the followers' fdatasyncs overlap its own and what remains is about one round trip "
                + "(\(Format.nanoseconds(roundTrip))) plus the part of a follower's fdatasync not hidden behind the primary's."
        }
        return "n = \(nodes): measured \(measured) is within 10 % of the model's \(model): one round trip plus the part of "
            + "a follower's fdatasync that does not overlap the primary's (at most \(serial)) happens to come to about "
            + "\(nodes - 1)/\(nodes) of a local commit on this machine."
    }
}

/// Everything one scenario measured.
struct BenchScenarioResult: Sendable {
    var parameters: BenchScenario.Parameters
    var machine: MachineFacts
    var baselines: BenchBaselines?
    var phases: [BenchPhaseResult] = []
    var delayModel: [ReplicationDelayModel] = []
    /// Ctrl-C stopped the scenario before its end.
    var interrupted = false

    init(parameters: BenchScenario.Parameters, machine: MachineFacts) {
        self.parameters = parameters
        self.machine = machine
    }

    func phase(_ key: String) -> BenchPhaseResult? { phases.first { $0.key == key } }
}
