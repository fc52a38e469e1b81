import Glibc
import ShipLog

extension Commands {
    static let benchReplicate = CommandSpec(
        path: ["bench", "replicate"],
        summary: "Measure replication over loopback (a primary and two followers) against same-run fdatasync and RTT.",
        flags: [
            .flag("json", help: "Print the figures as JSON."),
            .value("seconds", .number(0.1...3600), placeholder: "N", help: "Seconds per measured phase.", default: "2"),
            .value("dir", placeholder: "DIR", help: "Directory for the benchmark's logs (default: a temporary one)."),
        ])
}

/// `shiplog bench replicate`: a primary and two followers in this process, over loopback
/// TCP, each with its own log directory on the same disk. Phases: `local` commits (durable on
/// the primary, replicated asynchronously) with the followers' lag; `flush:1` commits from 1,
/// 16 and 64 concurrent clients (each its own connection, one append in flight). Baselines in
/// the same run: 4 KiB pwrite+fdatasync latency on the same disk and the loopback round trip
/// of 100-byte messages; and the ceilings of the 16-client figure: `local` commits from 16
/// clients with the followers replicating, then on a primary without followers, then on that
/// primary under the followers' fdatasync rate (``FlushLoad``).
struct BenchReplicateCommand {
    static let recordBytes = 100
    static let followerCount = 2
    /// Records per in-process batch in the `local` phase, and batches each writer keeps in flight.
    static let localBatchRecords = 1024
    static let localBatchesInFlight = 16
    static let localWriters = 2
    static let flushClientCounts = [1, 16, 64]
    /// Records generated ahead of the phases.
    static let poolRecords = 8192

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
        progress("baselines: 4 KiB pwrite+fdatasync on \(root.path), loopback round trip of 100 bytes")
        let fsync = try Baselines.syncedWrites(directory: root.path, duration: duration)
        let rtt = try Baselines.loopbackRoundTrip(duration: .milliseconds(Int64(min(seconds, 1) * 1000)))
        let pool = RecordPool(logLikeRecords: Self.poolRecords, recordBytes: Self.recordBytes)

        let cluster = try BenchCluster(root: root.path, followerCount: Self.followerCount, secret: try BenchCluster.randomSecret())
        defer { cluster.shutdown() }
        progress("local commits, \(Self.localWriters) writers × \(Self.localBatchesInFlight) batches of \(Self.localBatchRecords) × \(Self.recordBytes)-byte records in flight")
        let local = try BenchPhases.asynchronousReplication(
            key: "replication-async", name: "local, \(Self.localWriters) writers", cluster: cluster, writers: Self.localWriters,
            batchRecords: Self.localBatchRecords, batchesInFlight: Self.localBatchesInFlight, pool: pool,
            context: PhaseContext(seconds: seconds))
        var flush: [(clients: Int, phase: BenchPhaseResult)] = []
        for clients in Self.flushClientCounts {
            progress("flush:1 commits, \(clients) client\(clients == 1 ? "" : "s"), one append in flight each")
            let phase = try BenchPhases.clientCommits(
                key: "replication-flush1-\(clients)", name: "flush:1, \(clients) client\(clients == 1 ? "" : "s")", cluster: cluster,
                clients: clients, level: .flush(followers: 1), pool: pool, context: PhaseContext(seconds: seconds))
            flush.append((clients, phase))
        }
        let ceilings = try measureCeilings(cluster: cluster, root: root.path, pool: pool)
        report(local: local, flush: flush, ceilings: ceilings, fsync: fsync, rtt: rtt, root: root.path)
        return 0
    }

    /// What the same client loop reaches when nobody waits for a follower: `local` commits
    /// from ``ceilingClients`` clients with the followers replicating (the CPU the replication
    /// stream itself costs on this machine), and on a primary of its own without followers
    /// (what the clients, the primary and its fdatasyncs alone cost). The `flush:1` figure
    /// at the same client count is read against these, measured seconds apart in the same
    /// run, not against another run's.
    ///
    /// The third ceiling separates the disk from the CPU: the primary alone again, while one
    /// thread per follower fdatasyncs a scratch file on the same disk as often as that follower
    /// synced in the first ceiling phase (``FlushLoad``: the followers' flushes without their
    /// CPU).
    private func measureCeilings(cluster: BenchCluster, root: String, pool: RecordPool) throws -> Ceilings {
        let clients = Self.ceilingClients
        progress("local commits, \(clients) clients, followers replicating (ceiling)")
        let syncsBefore = cluster.followerLogs.map { $0?.statistics.syncCalls ?? 0 }
        let replicating = try BenchPhases.clientCommits(
            key: "replication-local-\(clients)", name: "local, \(clients) clients", cluster: cluster, clients: clients, level: .local,
            pool: pool, context: PhaseContext(seconds: seconds))
        let followerSyncRates = zip(cluster.followerLogs, syncsBefore).map { log, before in
            Double((log?.statistics.syncCalls ?? before) - before) * 1e9 / Double(max(replicating.nanoseconds, 1))
        }
        cluster.shutdown()
        progress("local commits, \(clients) clients, a primary without followers (ceiling)")
        let alone = try BenchCluster(root: root + "/alone", followerCount: 0, secret: try BenchCluster.randomSecret())
        defer { alone.shutdown() }
        let unreplicated = try BenchPhases.clientCommits(
            key: "local-no-followers-\(clients)", name: "local, \(clients) clients, no followers", cluster: alone, clients: clients,
            level: .local, pool: pool, context: PhaseContext(seconds: seconds))
        let rates = followerSyncRates.map { Format.fixed($0, decimals: 0, grouping: true) }.joined(separator: " + ")
        progress("local commits, \(clients) clients, a primary without followers, \(rates) fdatasyncs/s on the same disk (ceiling)")
        let load = try FlushLoad(directory: root, rates: followerSyncRates)
        let loaded: BenchPhaseResult
        do {
            loaded = try BenchPhases.clientCommits(
                key: "local-flush-load-\(clients)", name: "local, \(clients) clients, followers' fdatasyncs", cluster: alone, clients: clients,
                level: .local, pool: pool, context: PhaseContext(seconds: seconds))
        } catch {
            _ = load.stop()
            throw error
        }
        let achieved = load.stop()
        return Ceilings(replicating: replicating, alone: unreplicated, flushLoaded: loaded, flushLoadRates: achieved)
    }

    /// The client count of the ceiling phases (the `flush:1` target's).
    static let ceilingClients = 16

    struct Ceilings {
        var replicating: BenchPhaseResult
        var alone: BenchPhaseResult
        /// The primary alone under the followers' flush load, and that load's fdatasyncs/s.
        var flushLoaded: BenchPhaseResult
        var flushLoadRates: [Double]
    }

    // MARK: Report

    private func report(
        local: BenchPhaseResult, flush: [(clients: Int, phase: BenchPhaseResult)], ceilings: Ceilings, fsync: SyncWriteBaseline, rtt: Histogram,
        root: String
    ) {
        let fsyncP50 = Double(fsync.latency.percentile(50))
        let rttP50 = Double(rtt.percentile(50))
        let bound = fsyncP50 + rttP50
        let single = flush.first { $0.clients == 1 }
        let sixteen = flush.first { $0.clients == 16 }
        let singleRatio = Double(single?.phase.latency.percentile(50) ?? 0) / max(bound, 1)
        if json {
            var object: JSONObject = [
                "local_records_per_second": JSONValue(local.operationsPerSecond),
                "local_lag_p50_ms": JSONValue(Double(local.lag.percentile(50)) / 1e6),
                "local_lag_p99_ms": JSONValue(Double(local.lag.percentile(99)) / 1e6),
                "local_records": JSONValue(local.operations),
                "record_bytes": JSONValue(Self.recordBytes),
                "followers": JSONValue(Self.followerCount),
            ]
            for (clients, phase) in flush {
                object["flush1_commits_per_second_\(clients)"] = JSONValue(phase.operationsPerSecond)
                object["flush1_latency_p50_ms_\(clients)"] = JSONValue(Double(phase.latency.percentile(50)) / 1e6)
                object["flush1_latency_p99_ms_\(clients)"] = JSONValue(Double(phase.latency.percentile(99)) / 1e6)
            }
            object["fdatasync_p50_ms"] = JSONValue(fsyncP50 / 1e6)
            object["loopback_rtt_p50_ms"] = JSONValue(rttP50 / 1e6)
            object["fdatasync_plus_rtt_ms"] = JSONValue(bound / 1e6)
            object["flush1_latency_p50_over_fdatasync_plus_rtt_1"] = JSONValue(singleRatio)
            object["local_commits_per_second_16"] = JSONValue(ceilings.replicating.operationsPerSecond)
            object["local_commits_per_second_16_no_followers"] = JSONValue(ceilings.alone.operationsPerSecond)
            object["local_commits_per_second_16_followers_fdatasyncs_only"] = JSONValue(ceilings.flushLoaded.operationsPerSecond)
            object["follower_fdatasyncs_per_second"] = JSONValue.array(ceilings.flushLoadRates.map { JSONValue($0) })
            object["file_system"] = JSONValue(fsync.fileSystem ?? "unknown")
            Output.standard.line(JSONValue.object(object).rendered(pretty: true))
            return
        }
        var table = TextTable([("phase", .left), ("commits/s", .right), ("p50", .right), ("p99", .right), ("note", .left)])
        table.addRow([
            "local, \(Self.localWriters) writers", Format.fixed(local.operationsPerSecond, decimals: 0, grouping: true) + " rec",
            "lag " + Format.nanoseconds(local.lag.percentile(50)), "lag " + Format.nanoseconds(local.lag.percentile(99)),
            "follower lag: primary written → follower durable",
        ])
        for (clients, phase) in flush {
            table.addRow([
                "flush:1, \(clients) client\(clients == 1 ? "" : "s")", Format.fixed(phase.operationsPerSecond, decimals: 0, grouping: true),
                Format.nanoseconds(phase.latency.percentile(50)), Format.nanoseconds(phase.latency.percentile(99)),
                "\(Format.fixed(phase.latency.mean > 0 ? Double(clients) * 1e9 / Double(phase.latency.mean) : 0, decimals: 0, grouping: true))/s if latency-bound",
            ])
        }
        for (name, phase, note) in [
            ("local, 16 clients", ceilings.replicating, "ceiling: nobody waits for the followers"),
            ("local, 16, no followers", ceilings.alone, "ceiling: a primary alone"),
            (
                "local, 16, flush load", ceilings.flushLoaded,
                "ceiling: alone, + \(ceilings.flushLoadRates.map { Format.fixed($0, decimals: 0, grouping: true) }.joined(separator: " + ")) fdatasyncs/s"
            ),
        ] {
            table.addRow([
                name, Format.fixed(phase.operationsPerSecond, decimals: 0, grouping: true), Format.nanoseconds(phase.latency.percentile(50)),
                Format.nanoseconds(phase.latency.percentile(99)), note,
            ])
        }
        Output.standard.line("shiplog bench replicate: primary + \(Self.followerCount) followers in one process over loopback TCP, \(Self.recordBytes)-byte records, counting state machine, \(fsync.fileSystem ?? "unknown file system") at \(root)")
        Output.standard.line(table.rendered())
        Output.standard.line("baselines (same run): 4 KiB pwrite+fdatasync p50 \(Format.nanoseconds(fsync.latency.percentile(50))), loopback RTT p50 \(Format.nanoseconds(rtt.percentile(50))); fdatasync + RTT = \(Format.nanoseconds(bound))")
        let sixteenRate = sixteen?.phase.operationsPerSecond ?? 0
        Output.standard.line(
            "flush:1 at 16 clients = \(Format.fixed(100 * sixteenRate / max(ceilings.replicating.operationsPerSecond, 1), decimals: 0))% of local commits with the followers replicating, "
                + "\(Format.fixed(100 * sixteenRate / max(ceilings.alone.operationsPerSecond, 1), decimals: 0))% of local commits on a primary without followers; "
                + "that primary under only the followers' fdatasyncs (no followers' CPU) reaches \(Format.fixed(100 * ceilings.flushLoaded.operationsPerSecond / max(ceilings.alone.operationsPerSecond, 1), decimals: 0))% of its unloaded rate (same run)")
        Output.standard.line("flush:1 single-client p50 = \(Format.fixed(singleRatio, decimals: 2))× (fdatasync + RTT) (target ≤ 2×); flush:1 at 16 clients: \(Format.fixed(sixteen?.phase.operationsPerSecond ?? 0, decimals: 0, grouping: true)) commits/s (target ≥ 30,000); local: \(Format.fixed(local.operationsPerSecond, decimals: 0, grouping: true)) records/s (target ≥ 1,000,000) with lag p99 \(Format.nanoseconds(local.lag.percentile(99))) (target ≤ 100 ms)")
    }

    func progress(_ text: String) {
        if !json { Output.error.line("… \(text)") }
    }
}
