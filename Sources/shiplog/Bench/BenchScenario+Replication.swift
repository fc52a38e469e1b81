import Glibc
import ShipLog

extension BenchScenario {
    /// The phases on a primary and its followers, then recovery of the primary's directory.
    func runReplicationPhases(
        root: String, pool: RecordPool, baselines: BenchBaselines, into result: inout BenchScenarioResult
    ) throws {
        let followers = parameters.followers
        progress.note("starting a primary and \(followers) follower\(followers == 1 ? "" : "s") on loopback TCP")
        let cluster = try BenchCluster(root: root + "/cluster", followerCount: followers, secret: try BenchCluster.randomSecret())
        var clusterOpen = true
        defer { if clusterOpen { cluster.shutdown() } }
        let clients = parameters.writers.max() ?? 1

        let asyncName = "async replication (local), \(Self.asyncWriters) writers"
        var async = try progress.run(asyncName, seconds: parameters.seconds, unit: "records") { context in
            try BenchPhases.asynchronousReplication(
                key: "replication-async", name: asyncName, cluster: cluster, writers: Self.asyncWriters,
                batchRecords: Self.asyncBatchRecords, batchesInFlight: Self.asyncBatchesInFlight, pool: pool, context: context)
        }
        async.bound = .lz4(.compress, measured: async.logicalMBPerSecond, baselines: baselines)
        result.phases.append(async)

        let steps: [(key: String, name: String, clients: Int, level: CommitLevel, seconds: Double)] = [
            ("commit-local-1", "commit local, 1 client", 1, .local, parameters.seconds / 2),
            ("quorum-flush1-\(clients)", "quorum (flush:1), \(clients) client\(clients == 1 ? "" : "s")", clients, .flush(followers: 1), parameters.seconds),
            ("commit-all-\(clients)", "all followers (all), \(clients) client\(clients == 1 ? "" : "s")", clients, .all, parameters.seconds),
        ]
        for step in steps where !stopped && result.phase(step.key) == nil {
            result.phases.append(
                try commitPhase(
                    cluster, key: step.key, name: step.name, clients: step.clients, level: step.level, seconds: step.seconds, pool: pool,
                    baselines: baselines))
        }
        if !stopped { try measureDelayModel(root: root, mainCluster: cluster, pool: pool, baselines: baselines, into: &result) }
        if !stopped { result.phases.append(try followerCatchUp(cluster, pool: pool, baselines: baselines)) }
        cluster.shutdown()
        clusterOpen = false
        if !stopped { result.phases.append(try recovery(directory: root + "/cluster/primary", secret: cluster.secret, baselines: baselines)) }
    }

    /// One client phase at `level`, with its bound `clients / (fdatasync + RTT)`.
    private func commitPhase(
        _ cluster: BenchCluster, key: String, name: String, clients: Int, level: CommitLevel, seconds: Double, pool: RecordPool,
        baselines: BenchBaselines
    ) throws -> BenchPhaseResult {
        var phase = try progress.run(name, seconds: seconds, unit: "commits") { context in
            try BenchPhases.clientCommits(
                key: key, name: name, cluster: cluster, clients: clients, level: level, pool: pool, context: context)
        }
        phase.bound = .perSync(clients, includesRoundTrip: true, measured: phase.operationsPerSecond, unit: "commits/s", baselines: baselines)
        return phase
    }

    // MARK: Replication delay model

    /// Delay = (n − 1) / n × Latency for n = 2 and 3, against the measured difference between
    /// one client's commits at `all` (n − 1 followers) and at `local`, alternated commit by
    /// commit. A node count the main cluster does not have gets a cluster of its own.
    private func measureDelayModel(
        root: String, mainCluster: BenchCluster, pool: RecordPool, baselines: BenchBaselines, into result: inout BenchScenarioResult
    ) throws {
        for nodes in Self.modelNodeCounts where !stopped {
            let onMainCluster = nodes - 1 == mainCluster.followerCount
            let cluster: BenchCluster
            if onMainCluster {
                cluster = mainCluster
            } else {
                progress.note("starting a primary and \(nodes - 1) follower\(nodes == 2 ? "" : "s") for the n = \(nodes) model")
                cluster = try BenchCluster(root: root + "/model-\(nodes)", followerCount: nodes - 1, secret: try BenchCluster.randomSecret())
            }
            defer { if !onMainCluster { cluster.shutdown() } }
            let name = "delay model, n = \(nodes): local and all alternating, 1 client"
            var latencies = (local: Histogram(), all: Histogram())
            let phase = try progress.run(name, seconds: parameters.seconds / 2, unit: "commits") { context in
                let measured = try BenchPhases.alternatingCommits(
                    key: "delay-model-\(nodes)", name: name, cluster: cluster, levels: (.local, .all), pool: pool, context: context)
                latencies = (measured.first, measured.second)
                return measured.phase
            }
            guard !latencies.local.isEmpty, !latencies.all.isEmpty else { continue }
            result.delayModel.append(
                ReplicationDelayModel(
                    nodes: nodes, localLatency: Double(latencies.local.percentile(50)),
                    synchronousLatency: Double(latencies.all.percentile(50)),
                    roundTrip: Double(baselines.loopbackRTT.percentile(50)), fsync: Double(baselines.fsync.latency.percentile(50)),
                    local: latencies.local, synchronous: latencies.all, commits: phase.operations, onMainCluster: onMainCluster))
        }
    }

    // MARK: A follower shut down and caught up

    /// Shuts follower 0 down, keeps appending asynchronously for a phase, restarts the
    /// follower on its directory and times its catch-up to what the primary had written.
    private func followerCatchUp(_ cluster: BenchCluster, pool: RecordPool, baselines: BenchBaselines) throws -> BenchPhaseResult {
        let name = "follower killed and caught up"
        var phase = try progress.run(name, seconds: parameters.seconds, unit: "records") { context in
            let log = try cluster.primaryLog()
            let sampling = BenchPhases.startLagSampler(cluster, primary: log)
            let before = cluster.followerLogs[0]?.durableLSN ?? .zero
            cluster.stopFollower(0)
            let appended = try BenchPhases.asynchronousReplication(
                key: "follower-down", name: "appends while a follower is down", cluster: cluster, writers: Self.asyncWriters,
                batchRecords: Self.asyncBatchRecords, batchesInFlight: Self.asyncBatchesInFlight, pool: pool, context: context,
                sampleLag: false)
            let target = log.writtenLSN
            let restarted = MonotonicClock.now()
            try cluster.restartFollower(0)
            var reached = before
            let deadline = restarted + Self.catchUpTimeout.nanoseconds
            while reached < target {
                guard MonotonicClock.now() < deadline else {
                    throw CommandError("\(name): follower-0 under \(cluster.root) reached LSN \(reached) of \(target) in \(Self.catchUpTimeout)")
                }
                usleep(500)
                let now = cluster.followerLogs[0]?.durableLSN ?? reached
                if now > reached { context.completed.add(now.rawValue - reached.rawValue) }
                reached = max(reached, now)
            }
            var phase = BenchPhaseResult(key: "follower-catch-up", name: name)
            phase.nanoseconds = MonotonicClock.elapsed(since: restarted)
            phase.operations = target.rawValue - before.rawValue
            phase.logicalBytes = appended.logicalBytes
            phase.storedBytes = appended.storedBytes
            (phase.lag, phase.lagSeries) = sampling.stop()
            phase.extra["records_appended_while_down"] = JSONValue(appended.operations)
            phase.extra["seconds_down"] = JSONValue(appended.seconds)
            phase.extra["append_rate_while_down_per_second"] = JSONValue(appended.operationsPerSecond)
            phase.extra["catch_up_seconds"] = JSONValue(Double(phase.nanoseconds) / 1e9)
            phase.notes.append(
                "\(name): down for \(Format.fixed(appended.seconds, decimals: 1)) s while the primary appended "
                    + "\(Format.group(appended.operations)) records (\(Format.bytes(appended.storedBytes)) stored); after the restart it "
                    + "caught up in \(Format.fixed(Double(phase.nanoseconds) / 1e9, decimals: 2)) s, "
                    + "\(Format.fixed(phase.operationsPerSecond, decimals: 0, grouping: true)) records/s, "
                    + "\(Format.megabytesPerSecond(phase.storedMBPerSecond)) of segment bytes.")
            return phase
        }
        phase.bound = PhysicalBound(
            name: "sequential write", value: baselines.sequentialWrite.megabytesPerSecond, measured: phase.storedMBPerSecond,
            unit: "MB/s")
        return phase
    }

    // MARK: Recovery

    /// Reopens the primary's directory (log recovery, then replay of every record through the
    /// state machine: no checkpoints), then times a recovery scan of its segments against raw
    /// LZ4 decompression.
    private func recovery(directory: String, secret: SharedSecret, baselines: BenchBaselines) throws -> BenchPhaseResult {
        let name = "recovery (reopen and replay)"
        var phase = try progress.run(name, seconds: parameters.seconds, unit: "records") { context in
            let start = MonotonicClock.now()
            let node = try BenchCluster.Node(
                directory: FilePath(directory), role: .primary, listen: nil, options: BenchCluster.options("primary", secret: secret),
                stateMachineOptions: BenchCluster.machineOptions
            ) { RecordCountingStateMachine() }
            let openNanoseconds = MonotonicClock.elapsed(since: start)
            guard let report = node.host?.recoveryReport else {
                node.shutdown()
                throw CommandError("\(name): the state machine in \(directory) did not open")
            }
            node.shutdown()
            context.completed.add(report.replayedRecords)
            let (segmentBytes, scanNanoseconds) = try BenchRecoveryCommand.scanAll(FilePath(directory), verifyRecords: false)
            var phase = BenchPhaseResult(key: "recovery", name: name)
            phase.operations = report.replayedRecords
            phase.nanoseconds = openNanoseconds
            let scanRate = Double(segmentBytes) * 1e3 / Double(max(scanNanoseconds, 1))
            let replaySeconds = Double(report.replayDuration.nanoseconds) / 1e9
            phase.extra["open_seconds"] = JSONValue(Double(openNanoseconds) / 1e9)
            phase.extra["replayed_records"] = JSONValue(report.replayedRecords)
            phase.extra["replay_seconds"] = JSONValue(replaySeconds)
            phase.extra["segment_bytes"] = JSONValue(UInt64(max(0, segmentBytes)))
            phase.extra["segments_opened_by_footer"] = JSONValue(report.log.segmentsOpenedByFooter)
            phase.extra["segments_scanned"] = JSONValue(report.log.segmentsScanned)
            phase.extra["recovery_scan_mb_per_second"] = JSONValue(scanRate)
            phase.notes.append(
                "\(name): \(Format.bytes(UInt64(max(0, segmentBytes)))) of segments; open \(Format.fixed(Double(openNanoseconds) / 1e6, decimals: 1)) ms "
                    + "(\(report.log.segmentsOpenedByFooter) segments by footer, \(report.log.segmentsScanned) scanned), replay of "
                    + "\(Format.group(report.replayedRecords)) records \(Format.fixed(replaySeconds * 1e3, decimals: 1)) ms; "
                    + "recovery scan \(Format.megabytesPerSecond(scanRate)) vs raw LZ4 decompress "
                    + "\(Format.megabytesPerSecond(baselines.lz4.decompression.megabytesPerSecond)).")
            return phase
        }
        let scanRate: Double
        if case .double(let rate)? = phase.extra["recovery_scan_mb_per_second"] { scanRate = rate } else { scanRate = 0 }
        phase.bound = .lz4(.decompress, measured: scanRate, baselines: baselines, what: " (recovery scan)")
        return phase
    }
}
