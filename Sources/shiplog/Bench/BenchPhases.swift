import Glibc
import ShipLog

/// The measured phases shared by `shiplog bench` and its single-phase subcommands. Each runs
/// for its context's time (or until Ctrl-C), adds what it completes to the context's counter
/// as it goes, and returns what it measured.
enum BenchPhases {
    /// Uncompressed bytes per batch of the buffered phases.
    static let bufferedBatchBytes = 64 << 10
    /// How often the lag sampler looks at the followers.
    static let lagSampleInterval: Duration = .microseconds(500)
    /// How long the followers may take to catch up after a replication phase.
    static let drainTimeout: Duration = .seconds(30)

    // MARK: Appends to a local log

    /// One appender thread submits ~64 KiB batches of the pool's records without waiting, with
    /// `buffered` durability; the log's I/O thread writes. Ends with one `sync`, inside the clock.
    static func bufferedAppend(
        key: String, name: String, pool: RecordPool, directory: String, context: PhaseContext
    ) throws -> BenchPhaseResult {
        let log = try Log.open(directory: FilePath(directory))
        defer { try? log.close() }
        var builder = BatchBuilder(capacity: bufferedBatchBytes + 4096)
        var phase = BenchPhaseResult(key: key, name: name)
        var next = 0
        let start = MonotonicClock.now()
        while !context.isOver(startedAt: start) {
            builder.removeAll()
            while builder.uncompressedByteCount < bufferedBatchBytes {
                try pool.append(next, to: &builder)
                phase.logicalBytes += UInt64(pool.size(next))
                next = next + 1 == pool.count ? 0 : next + 1
            }
            phase.operations += UInt64(builder.recordCount)
            context.completed.add(UInt64(builder.recordCount))
            try log.submit(builder.encode(codec: .lz4), durability: .buffered) { _ in }
        }
        try log.sync()  // everything handed to the OS (and synced) before the clock stops
        phase.nanoseconds = MonotonicClock.elapsed(since: start)
        phase.takeStatistics(of: log)
        return phase
    }

    /// `writers` tasks each append one record at a time with `immediate` durability (group
    /// commit shares the fdatasyncs); the latency of each append is recorded.
    static func immediateAppend(
        key: String, name: String, writers: Int, pool: RecordPool, directory: String, context: PhaseContext
    ) throws -> BenchPhaseResult {
        precondition(writers > 0)
        let log = try Log.open(directory: FilePath(directory))
        defer { try? log.close() }
        let collector = HistogramCollector()
        let done = ConditionLock()
        nonisolated(unsafe) var finished = false
        let start = MonotonicClock.now()
        Task.detached {
            await withTaskGroup(of: Void.self) { group in
                for writer in 0..<writers {
                    group.addTask {
                        var builder = BatchBuilder(capacity: 512)
                        var histogram = Histogram()
                        var records: UInt64 = 0
                        var bytes: UInt64 = 0
                        var next = writer &* 7919
                        while !context.isOver(startedAt: start) {
                            builder.removeAll()
                            try? pool.append(next, to: &builder)
                            let before = MonotonicClock.now()
                            do { try await log.append(builder, durability: .immediate) } catch { break }
                            histogram.record(MonotonicClock.elapsed(since: before))
                            records += 1
                            bytes += UInt64(pool.size(next))
                            context.completed.add(1)
                            next += 1
                        }
                        collector.add(records, bytes: bytes, histogram)
                    }
                }
            }
            done.withLock { finished = true }
            done.broadcast()
        }
        done.withLock { while !finished { done.wait() } }
        var phase = BenchPhaseResult(key: key, name: name)
        (phase.operations, phase.logicalBytes, phase.latency) = collector.total
        phase.nanoseconds = MonotonicClock.elapsed(since: start)
        phase.takeStatistics(of: log)
        return phase
    }

    // MARK: Replication

    /// In-process writers submit batches of `batchRecords` records to the primary (commit
    /// level `local`: durable on the primary, shipped asynchronously), each keeping
    /// `batchesInFlight` batches in flight; the followers' lag is sampled throughout, and after
    /// the writers stop, until the followers have made everything durable.
    static func asynchronousReplication(
        key: String, name: String, cluster: BenchCluster, writers: Int, batchRecords: Int, batchesInFlight: Int,
        pool: RecordPool, context: PhaseContext, sampleLag: Bool = true
    ) throws -> BenchPhaseResult {
        guard let host = cluster.primary.host else { throw CommandError("the benchmark's primary is not open") }
        let storedBefore = host.log.statistics.storedBytesAppended
        let stopWriters = AtomicFlag()
        let failure = FirstError()
        let bytes = AtomicCounter()
        let sampling = sampleLag ? startLagSampler(cluster, primary: host.log) : nil
        let start = MonotonicClock.now()
        var threads: [OwnedThread] = []
        for writer in 0..<writers {
            threads.append(
                OwnedThread.start(name: "bench-writer") {
                    let inFlight = InFlightSlots(batchesInFlight)
                    var next = writer * 977
                    while !stopWriters.isSet {
                        var batch = BatchBuilder(capacity: batchRecords * (pool.size(next) + 8))
                        var batchBytes: UInt64 = 0
                        for _ in 0..<batchRecords {
                            try? pool.append(next, to: &batch)
                            batchBytes += UInt64(pool.size(next))
                            next += 1
                        }
                        let records = UInt64(batch.recordCount)
                        let submittedBytes = batchBytes
                        inFlight.acquire()
                        do {
                            try host.submit(batch, durability: .immediate) { result in
                                if case .failure(let error) = result {
                                    failure.set("\(error)")
                                } else {
                                    context.completed.add(records)
                                    bytes.add(submittedBytes)
                                }
                                inFlight.release()
                            }
                        } catch {
                            failure.set("\(error)")
                            inFlight.release()
                            break
                        }
                    }
                    inFlight.drain()
                })
        }
        context.sleepUntilOver(startedAt: start)
        stopWriters.set()
        for thread in threads { thread.join() }
        var phase = BenchPhaseResult(key: key, name: name)
        phase.nanoseconds = MonotonicClock.elapsed(since: start)
        phase.operations = context.completed.value
        phase.logicalBytes = bytes.value
        // The sampler's last samples measure the followers draining what was appended.
        try waitForFollowers(cluster, toReach: host.log.writtenLSN, timeout: drainTimeout)
        if let sampling { (phase.lag, phase.lagSeries) = sampling.stop() }
        phase.storedBytes = host.log.statistics.storedBytesAppended - storedBefore
        if let message = failure.value { throw CommandError("\(name): \(message)") }
        return phase
    }

    /// `clients` connections each append one record at a time at commit `level` and wait for
    /// the answer; the latency of each commit is recorded, and the followers' lag sampled.
    static func clientCommits(
        key: String, name: String, cluster: BenchCluster, clients: Int, level: CommitLevel, pool: RecordPool,
        context: PhaseContext
    ) throws -> BenchPhaseResult {
        precondition(clients > 0)
        guard let endpoint = cluster.primary.listenEndpoint else { throw CommandError("the benchmark's primary is not listening") }
        let log = try cluster.primaryLog()
        let storedBefore = log.statistics.storedBytesAppended
        var connections: [ReplicationClient] = []
        defer { for client in connections { client.close() } }
        for index in 0..<clients {
            connections.append(
                try ReplicationClient(connectingTo: endpoint, options: ClientOptions(nodeID: "bench-\(index)", secret: cluster.secret)))
        }
        let stopClients = AtomicFlag()
        let collector = HistogramCollector()
        let failure = FirstError()
        let sampling = startLagSampler(cluster, primary: log)
        let start = MonotonicClock.now()
        var threads: [OwnedThread] = []
        for (index, client) in connections.enumerated() {
            threads.append(
                OwnedThread.start(name: "bench-client") {
                    var histogram = Histogram()
                    var commits: UInt64 = 0
                    var bytes: UInt64 = 0
                    var next = index * 131
                    while !stopClients.isSet {
                        let record = pool.bytes(next)
                        let began = MonotonicClock.now()
                        do {
                            _ = try client.append([record], level: level)
                        } catch {
                            failure.set("\(error)")
                            break
                        }
                        histogram.record(MonotonicClock.elapsed(since: began))
                        commits += 1
                        bytes += UInt64(record.count)
                        context.completed.add(1)
                        next += 1
                    }
                    collector.add(commits, bytes: bytes, histogram)
                })
        }
        context.sleepUntilOver(startedAt: start)
        stopClients.set()
        for thread in threads { thread.join() }
        var phase = BenchPhaseResult(key: key, name: name, unit: "commits")
        phase.nanoseconds = MonotonicClock.elapsed(since: start)
        (phase.operations, phase.logicalBytes, phase.latency) = collector.total
        try? waitForFollowers(cluster, toReach: log.writtenLSN, timeout: drainTimeout)
        (phase.lag, phase.lagSeries) = sampling.stop()
        phase.storedBytes = log.statistics.storedBytesAppended - storedBefore
        if let message = failure.value { throw CommandError("\(name): \(message)") }
        return phase
    }

    /// One client commits one record at a time, alternating between `levels.0` and
    /// `levels.1`; each level's latencies go to their own histogram. Alternating commit by
    /// commit exposes both levels to the same moment-to-moment load, so their difference is
    /// the cost of the stronger level, not of a noisy neighbour.
    static func alternatingCommits(
        key: String, name: String, cluster: BenchCluster, levels: (CommitLevel, CommitLevel), pool: RecordPool,
        context: PhaseContext
    ) throws -> (phase: BenchPhaseResult, first: Histogram, second: Histogram) {
        guard let endpoint = cluster.primary.listenEndpoint else { throw CommandError("the benchmark's primary is not listening") }
        let client = try ReplicationClient(connectingTo: endpoint, options: ClientOptions(nodeID: "bench-model", secret: cluster.secret))
        defer { client.close() }
        var latencies = (Histogram(), Histogram())
        var phase = BenchPhaseResult(key: key, name: name, unit: "commits")
        var next = 0
        let start = MonotonicClock.now()
        while !context.isOver(startedAt: start) {
            for second in [false, true] {
                let record = pool.bytes(next)
                let began = MonotonicClock.now()
                _ = try client.append([record], level: second ? levels.1 : levels.0)
                let elapsed = MonotonicClock.elapsed(since: began)
                if second { latencies.1.record(elapsed) } else { latencies.0.record(elapsed) }
                phase.operations += 1
                phase.logicalBytes += UInt64(record.count)
                context.completed.add(1)
                next += 1
            }
        }
        phase.nanoseconds = MonotonicClock.elapsed(since: start)
        phase.latency = latencies.0
        phase.latency.merge(latencies.1)
        return (phase, latencies.0, latencies.1)
    }

    // MARK: Helpers

    /// A lag sampler running on its own thread until ``LagSampling/stop()``.
    struct LagSampling {
        let sampler: LagSampler
        let flag: AtomicFlag
        let thread: OwnedThread

        /// Stops the sampler; returns the lag histogram and the series.
        func stop() -> (Histogram, [SeriesPoint]) {
            flag.set()
            thread.join()
            return (sampler.histogram, sampler.series)
        }
    }

    static func startLagSampler(_ cluster: BenchCluster, primary: Log) -> LagSampling {
        let sampler = LagSampler(primary: primary) { cluster.followerLogs }
        let flag = AtomicFlag()
        let thread = OwnedThread.start(name: "bench-lag") { sampler.run(interval: lagSampleInterval, until: flag) }
        return LagSampling(sampler: sampler, flag: flag, thread: thread)
    }

    /// Waits until every running follower's durable LSN reaches `target`.
    static func waitForFollowers(_ cluster: BenchCluster, toReach target: LSN, timeout: Duration) throws {
        let deadline = MonotonicClock.now() + timeout.nanoseconds
        while cluster.followerLogs.contains(where: { ($0?.durableLSN ?? target) < target }) {
            guard MonotonicClock.now() < deadline else {
                throw CommandError("the followers under \(cluster.root) did not reach LSN \(target) within \(timeout)")
            }
            usleep(500)
        }
    }
}

extension BenchPhaseResult {
    /// Bytes written and fdatasyncs from the statistics of a log the phase opened itself.
    mutating func takeStatistics(of log: Log) {
        let statistics = log.statistics
        storedBytes = statistics.storedBytesAppended
        syncCalls = statistics.syncCalls
    }
}
