import Glibc
import ShipLog
import Synchronization

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
/// of 100-byte messages.
struct BenchReplicateCommand {
    static let recordBytes = 100
    static let followerCount = 2
    /// Records per in-process batch in the `local` phase, and batches each writer keeps in flight.
    static let localBatchRecords = 1024
    static let localBatchesInFlight = 16
    static let localWriters = 2
    static let flushClientCounts = [1, 16, 64]
    /// How often the lag sampler looks at the followers.
    static let lagSampleInterval: Duration = .microseconds(500)

    let json: Bool
    let seconds: Double
    let directory: String?

    init(_ arguments: ParsedArguments) throws {
        json = arguments.flag("json")
        seconds = try arguments.double("seconds") ?? 2
        directory = arguments.string("dir")
    }

    typealias Node = ReplicaNode<RecordCountingStateMachine>

    struct LocalPhase {
        var records: UInt64 = 0
        var nanoseconds: UInt64 = 0
        var lag = Histogram()
        var storedBytes: UInt64 = 0
        var recordsPerSecond: Double { Double(records) * 1e9 / Double(max(nanoseconds, 1)) }
    }

    struct FlushPhase {
        var clients: Int
        var commits: UInt64 = 0
        var nanoseconds: UInt64 = 0
        var latency = Histogram()
        var failures: UInt64 = 0
        var commitsPerSecond: Double { Double(commits) * 1e9 / Double(max(nanoseconds, 1)) }
    }

    func run() throws -> Int32 {
        let root = try BenchDirectory(parent: directory)
        defer { root.remove() }
        let duration = Duration.milliseconds(Int64(seconds * 1000))
        progress("baselines: 4 KiB pwrite+fdatasync on \(root.path), loopback round trip of 100 bytes")
        let fsync = try Baselines.syncedWrites(directory: root.path, duration: duration)
        let rtt = try Self.loopbackRoundTrip(duration: .milliseconds(Int64(min(seconds, 1) * 1000)))
        let secret = try SharedSecret(bytes: (0..<32).map { _ in UInt8.random(in: 0...255) })

        let cluster = try Cluster(root: root.path, secret: secret)
        defer { cluster.shutdown() }
        progress("local commits, \(Self.localWriters) writers × \(Self.localBatchesInFlight) batches of \(Self.localBatchRecords) × \(Self.recordBytes)-byte records in flight")
        let local = try localPhase(cluster, duration: duration)
        var flush: [FlushPhase] = []
        for clients in Self.flushClientCounts {
            progress("flush:1 commits, \(clients) client\(clients == 1 ? "" : "s"), one append in flight each")
            flush.append(try flushPhase(cluster, clients: clients, secret: secret, duration: duration))
        }
        report(local: local, flush: flush, fsync: fsync, rtt: rtt, root: root.path)
        return 0
    }

    // MARK: Cluster

    final class Cluster: @unchecked Sendable {
        let primary: Node
        var followers: [Node] = []

        init(root: String, secret: SharedSecret) throws {
            var machine = StateMachineOptions()
            machine.checkpointIntervalBytes = nil
            func options(_ node: String) -> ReplicationOptions {
                var options = ReplicationOptions(nodeID: node, secret: secret)
                options.keepaliveInterval = .milliseconds(200)
                return options
            }
            let loopback = Endpoint(host: "127.0.0.1", port: 0)
            primary = try Node(
                directory: FilePath(root + "/primary"), role: .primary, listen: loopback, options: options("primary"),
                stateMachineOptions: machine) { RecordCountingStateMachine() }
            for index in 0..<BenchReplicateCommand.followerCount {
                followers.append(
                    try Node(
                        directory: FilePath(root + "/follower-\(index)"), role: .follower(primary: primary.listenEndpoint!),
                        listen: nil, options: options("follower-\(index)"), stateMachineOptions: machine) { RecordCountingStateMachine() })
            }
            let deadline = MonotonicClock.now() + 10_000_000_000
            while primary.connectedFollowerCount < followers.count {
                guard MonotonicClock.now() < deadline else { throw CommandError("followers did not connect within 10 s") }
                usleep(1000)
            }
        }

        func shutdown() {
            for follower in followers { follower.shutdown() }
            primary.shutdown()
        }
    }

    // MARK: local

    private func localPhase(_ cluster: Cluster, duration: Duration) throws -> LocalPhase {
        guard let host = cluster.primary.host else { throw CommandError("the primary is not open") }
        let pool = Self.recordPool(count: 8192)
        let stop = AtomicFlag()
        let counter = AtomicCounter()
        let failure = FirstError()
        let sampler = LagSampler(primary: host.log, followers: cluster.followers.compactMap { $0.host?.log })
        let samplerThread = OwnedThread.start(name: "bench-lag") { sampler.run(interval: Self.lagSampleInterval, until: stop) }
        let start = MonotonicClock.now()
        var writers: [OwnedThread] = []
        for writer in 0..<Self.localWriters {
            writers.append(
                OwnedThread.start(name: "bench-writer") {
                    let inFlight = InFlightSlots(Self.localBatchesInFlight)
                    var next = writer * 977
                    while !stop.isSet {
                        var batch = BatchBuilder(capacity: Self.localBatchRecords * (Self.recordBytes + 2))
                        for _ in 0..<Self.localBatchRecords {
                            try? batch.append(pool[next % pool.count])
                            next += 1
                        }
                        inFlight.acquire()
                        do {
                            try host.submit(batch, durability: .immediate) { result in
                                if case .failure(let error) = result { failure.set("\(error)") } else { counter.add(UInt64(Self.localBatchRecords)) }
                                inFlight.release()
                            }
                        } catch {
                            failure.set("\(error)")
                            inFlight.release()
                            return
                        }
                    }
                    inFlight.drain()
                })
        }
        usleep(UInt32(duration.nanoseconds / 1000))
        stop.set()
        for writer in writers { writer.join() }
        var phase = LocalPhase()
        phase.nanoseconds = MonotonicClock.elapsed(since: start)
        phase.records = counter.value
        samplerThread.join()
        // Let the followers drain what was appended; the sampler's last samples measure it.
        let drainStop = AtomicFlag()
        let drainThread = OwnedThread.start(name: "bench-lag") { sampler.run(interval: Self.lagSampleInterval, until: drainStop) }
        let target = host.log.writtenLSN
        let deadline = MonotonicClock.now() + 30_000_000_000
        while cluster.followers.contains(where: { ($0.host?.log.durableLSN ?? .zero) < target }) && MonotonicClock.now() < deadline {
            usleep(500)
        }
        drainStop.set()
        drainThread.join()
        phase.lag = sampler.histogram
        phase.storedBytes = host.log.statistics.storedBytesAppended
        if let message = failure.value { throw CommandError("local phase: \(message)") }
        return phase
    }

    // MARK: flush:1

    private func flushPhase(_ cluster: Cluster, clients: Int, secret: SharedSecret, duration: Duration) throws -> FlushPhase {
        let endpoint = cluster.primary.listenEndpoint!
        let pool = Self.recordPool(count: 1024)
        var connections: [ReplicationClient] = []
        for index in 0..<clients {
            connections.append(try ReplicationClient(connectingTo: endpoint, options: ClientOptions(nodeID: "bench-\(index)", secret: secret)))
        }
        defer { for client in connections { client.close() } }
        let stop = AtomicFlag()
        let collector = HistogramCollector()
        let failure = FirstError()
        let start = MonotonicClock.now()
        var threads: [OwnedThread] = []
        for (index, client) in connections.enumerated() {
            threads.append(
                OwnedThread.start(name: "bench-client") {
                    var histogram = Histogram()
                    var commits: UInt64 = 0
                    var next = index * 131
                    while !stop.isSet {
                        let began = MonotonicClock.now()
                        do {
                            _ = try client.append([pool[next % pool.count]], level: .flush(followers: 1))
                        } catch {
                            failure.set("\(error)")
                            break
                        }
                        histogram.record(MonotonicClock.elapsed(since: began))
                        commits += 1
                        next += 1
                    }
                    collector.add(commits, histogram)
                })
        }
        usleep(UInt32(duration.nanoseconds / 1000))
        stop.set()
        for thread in threads { thread.join() }
        var phase = FlushPhase(clients: clients)
        phase.nanoseconds = MonotonicClock.elapsed(since: start)
        (phase.commits, phase.latency) = collector.total
        if let message = failure.value { throw CommandError("flush:1 phase with \(clients) clients: \(message)") }
        return phase
    }

    // MARK: Baseline: loopback round trip

    /// Median and distribution of a 100-byte ping-pong over a loopback TCP connection.
    static func loopbackRoundTrip(duration: Duration) throws -> Histogram {
        let network = TCPNetwork()
        let listener = try network.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        defer { listener.close() }
        let echo = OwnedThread.start(name: "bench-echo") {
            guard let connection = try? listener.accept() else { return }
            defer { connection.close() }
            var buffer = [UInt8](repeating: 0, count: 100)
            while true {
                var received = 0
                while received < 100 {
                    let count = (try? buffer.withUnsafeMutableBytes { raw in
                        Result { () throws(TransportError) in try connection.receive(into: UnsafeMutableRawBufferPointer(rebasing: raw[received...])) }
                    }.get()) ?? 0
                    if count == 0 { return }
                    received += count
                }
                guard (try? connection.send(buffer)) != nil else { return }
            }
        }
        let connection = try network.connect(to: listener.endpoint, timeout: .seconds(5))
        var histogram = Histogram()
        var buffer = [UInt8](repeating: 7, count: 100)
        let end = MonotonicClock.now() + duration.nanoseconds
        while MonotonicClock.now() < end {
            let began = MonotonicClock.now()
            try connection.send(buffer)
            var received = 0
            while received < 100 {
                let count = try buffer.withUnsafeMutableBytes { raw in
                    Result { () throws(TransportError) in try connection.receive(into: UnsafeMutableRawBufferPointer(rebasing: raw[received...])) }
                }.get()
                guard count > 0 else { throw CommandError("loopback echo closed") }
                received += count
            }
            histogram.record(MonotonicClock.elapsed(since: began))
        }
        connection.close()
        echo.join()
        return histogram
    }

    /// `count` log-like records of exactly `recordBytes` bytes.
    static func recordPool(count: Int) -> [[UInt8]] {
        var workload = Workload(kind: .logLike)
        var pool: [[UInt8]] = []
        pool.reserveCapacity(count)
        while pool.count < count {
            var record: [UInt8] = []
            while record.count < recordBytes {
                workload.withNextRecord { bytes in record.append(contentsOf: bytes) }
            }
            pool.append(Array(record.prefix(recordBytes)))
        }
        return pool
    }

    // MARK: Report

    private func report(local: LocalPhase, flush: [FlushPhase], fsync: SyncWriteBaseline, rtt: Histogram, root: String) {
        let fsyncP50 = Double(fsync.latency.percentile(50))
        let rttP50 = Double(rtt.percentile(50))
        let bound = fsyncP50 + rttP50
        let single = flush.first { $0.clients == 1 }
        let sixteen = flush.first { $0.clients == 16 }
        let singleRatio = Double(single?.latency.percentile(50) ?? 0) / max(bound, 1)
        if json {
            var object: JSONObject = [
                "local_records_per_second": JSONValue(local.recordsPerSecond),
                "local_lag_p50_ms": JSONValue(Double(local.lag.percentile(50)) / 1e6),
                "local_lag_p99_ms": JSONValue(Double(local.lag.percentile(99)) / 1e6),
                "local_records": JSONValue(local.records),
                "record_bytes": JSONValue(Self.recordBytes),
                "followers": JSONValue(Self.followerCount),
            ]
            for phase in flush {
                object["flush1_commits_per_second_\(phase.clients)"] = JSONValue(phase.commitsPerSecond)
                object["flush1_latency_p50_ms_\(phase.clients)"] = JSONValue(Double(phase.latency.percentile(50)) / 1e6)
                object["flush1_latency_p99_ms_\(phase.clients)"] = JSONValue(Double(phase.latency.percentile(99)) / 1e6)
            }
            object["fdatasync_p50_ms"] = JSONValue(fsyncP50 / 1e6)
            object["loopback_rtt_p50_ms"] = JSONValue(rttP50 / 1e6)
            object["fdatasync_plus_rtt_ms"] = JSONValue(bound / 1e6)
            object["flush1_latency_p50_over_fdatasync_plus_rtt_1"] = JSONValue(singleRatio)
            object["file_system"] = JSONValue(fsync.fileSystem ?? "unknown")
            Output.standard.line(JSONValue.object(object).rendered(pretty: true))
            return
        }
        var table = TextTable([("phase", .left), ("commits/s", .right), ("p50", .right), ("p99", .right), ("note", .left)])
        table.addRow([
            "local, \(Self.localWriters) writers", Format.fixed(local.recordsPerSecond, decimals: 0, grouping: true) + " rec",
            "lag " + Format.nanoseconds(local.lag.percentile(50)), "lag " + Format.nanoseconds(local.lag.percentile(99)),
            "follower lag: primary written → follower durable",
        ])
        for phase in flush {
            table.addRow([
                "flush:1, \(phase.clients) client\(phase.clients == 1 ? "" : "s")", Format.fixed(phase.commitsPerSecond, decimals: 0, grouping: true),
                Format.nanoseconds(phase.latency.percentile(50)), Format.nanoseconds(phase.latency.percentile(99)),
                "\(Format.fixed(phase.latency.mean > 0 ? Double(phase.clients) * 1e9 / Double(phase.latency.mean) : 0, decimals: 0, grouping: true))/s if latency-bound",
            ])
        }
        Output.standard.line("shiplog bench replicate: primary + \(Self.followerCount) followers in one process over loopback TCP, \(Self.recordBytes)-byte records, counting state machine, \(fsync.fileSystem ?? "unknown file system") at \(root)")
        Output.standard.line(table.rendered())
        Output.standard.line("baselines (same run): 4 KiB pwrite+fdatasync p50 \(Format.nanoseconds(fsync.latency.percentile(50))), loopback RTT p50 \(Format.nanoseconds(rtt.percentile(50))); fdatasync + RTT = \(Format.nanoseconds(bound))")
        Output.standard.line("flush:1 single-client p50 = \(Format.fixed(singleRatio, decimals: 2))× (fdatasync + RTT) (target ≤ 2×); flush:1 at 16 clients: \(Format.fixed(sixteen?.commitsPerSecond ?? 0, decimals: 0, grouping: true)) commits/s (target ≥ 30,000); local: \(Format.fixed(local.recordsPerSecond, decimals: 0, grouping: true)) records/s (target ≥ 1,000,000) with lag p99 \(Format.nanoseconds(local.lag.percentile(99))) (target ≤ 100 ms)")
    }

    func progress(_ text: String) {
        if !json { Output.error.line("… \(text)") }
    }
}

/// Measures how long each follower takes to make durable what the primary had written:
/// every sample records the primary's written LSN with the time; when a follower's durable
/// LSN passes it, the elapsed time is one lag observation.
final class LagSampler: @unchecked Sendable {
    // @unchecked: `pending` and `lag` are touched only by the sampling thread, and read after it is joined.
    private let primary: Log
    private let followers: [Log]
    private var pending: [[(lsn: LSN, at: UInt64)]]
    private var lag = Histogram()

    init(primary: Log, followers: [Log]) {
        self.primary = primary
        self.followers = followers
        self.pending = Array(repeating: [], count: followers.count)
    }

    var histogram: Histogram { lag }

    func run(interval: Duration, until stop: AtomicFlag) {
        while !stop.isSet {
            let now = MonotonicClock.now()
            let written = primary.writtenLSN
            for (index, follower) in followers.enumerated() {
                let durable = follower.durableLSN
                var consumed = 0
                for sample in pending[index] {
                    guard sample.lsn <= durable else { break }
                    lag.record(now &- sample.at)
                    consumed += 1
                }
                pending[index].removeFirst(consumed)
                if written > durable, pending[index].last?.lsn != written { pending[index].append((written, now)) }
            }
            usleep(UInt32(max(1, interval.nanoseconds / 1000)))
        }
    }
}

final class AtomicFlag: Sendable {
    private let state = Mutex(false)
    var isSet: Bool { state.withLock { $0 } }
    func set() { state.withLock { $0 = true } }
}

final class AtomicCounter: Sendable {
    private let count = Mutex<UInt64>(0)
    func add(_ value: UInt64) { count.withLock { $0 += value } }
    var value: UInt64 { count.withLock { $0 } }
}

final class FirstError: Sendable {
    private let message = Mutex<String?>(nil)
    func set(_ text: String) { message.withLock { if $0 == nil { $0 = text } } }
    var value: String? { message.withLock { $0 } }
}

final class HistogramCollector: Sendable {
    private let state = Mutex<(commits: UInt64, histogram: Histogram)>((0, Histogram()))
    func add(_ count: UInt64, _ other: Histogram) {
        state.withLock {
            $0.commits += count
            $0.histogram.merge(other)
        }
    }
    var total: (UInt64, Histogram) { state.withLock { ($0.commits, $0.histogram) } }
}

/// A counting semaphore on a condition lock.
final class InFlightSlots: @unchecked Sendable {
    private let lock = ConditionLock()
    private var free: Int
    private let capacity: Int

    init(_ capacity: Int) {
        self.capacity = capacity
        self.free = capacity
    }

    func acquire() {
        lock.withLock {
            while free == 0 { lock.wait() }
            free -= 1
        }
    }

    func release() {
        lock.withLock { free += 1 }
        lock.broadcast()
    }

    func drain() {
        lock.withLock { while free < capacity { lock.wait() } }
    }
}
