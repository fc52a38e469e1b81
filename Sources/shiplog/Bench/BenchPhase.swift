import Glibc

// What every benchmark phase shares: how long it may run and whether it must stop early
// (`PhaseContext`), the counter its progress is read from, the CPU time it used, and what it
// measured (`BenchPhaseResult`), in one shape for the report, the JSON and the charts.

/// CPU time of this process, from `getrusage(RUSAGE_SELF)`: all threads, user and system.
struct CPUTime: Sendable, Equatable {
    var userNanoseconds: UInt64
    var systemNanoseconds: UInt64

    static let zero = CPUTime(userNanoseconds: 0, systemNanoseconds: 0)

    var totalNanoseconds: UInt64 { userNanoseconds + systemNanoseconds }

    /// The process's CPU time so far.
    static func now() -> CPUTime {
        var usage = rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return .zero }
        func nanoseconds(_ time: timeval) -> UInt64 { UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_usec) * 1000 }
        return CPUTime(userNanoseconds: nanoseconds(usage.ru_utime), systemNanoseconds: nanoseconds(usage.ru_stime))
    }

    /// CPU time used between `earlier` and `self` (clamped at zero).
    func since(_ earlier: CPUTime) -> CPUTime {
        CPUTime(
            userNanoseconds: userNanoseconds &- min(earlier.userNanoseconds, userNanoseconds),
            systemNanoseconds: systemNanoseconds &- min(earlier.systemNanoseconds, systemNanoseconds))
    }
}

/// One point of a time series: seconds since the phase started, and a value.
struct SeriesPoint: Sendable, Equatable {
    var seconds: Double
    var value: Double
}

/// How long a phase runs and how it learns to stop early; the counter its progress is read from.
struct PhaseContext: Sendable {
    /// The phase's measuring time, in nanoseconds.
    let budgetNanoseconds: UInt64
    /// Set by Ctrl-C: every phase polls it and ends early.
    let stop: AtomicFlag
    /// Operations completed so far (records or commits); read for the live rate and the
    /// throughput-over-time samples.
    let completed: AtomicCounter

    init(seconds: Double, stop: AtomicFlag = AtomicFlag(), completed: AtomicCounter = AtomicCounter()) {
        precondition(seconds > 0 && seconds.isFinite)
        budgetNanoseconds = UInt64(seconds * 1e9)
        self.stop = stop
        self.completed = completed
    }

    /// Whether a phase started at `start` (a ``MonotonicClock`` value) has had its time or was stopped.
    @inline(__always)
    func isOver(startedAt start: UInt64) -> Bool {
        MonotonicClock.elapsed(since: start) >= budgetNanoseconds || stop.isSet
    }

    /// Sleeps until the phase's time is up or it is stopped (polling every few milliseconds).
    func sleepUntilOver(startedAt start: UInt64) {
        while !isOver(startedAt: start) { usleep(UInt32(Self.pollInterval.nanoseconds / 1000)) }
    }

    /// How often a sleeping phase looks at the stop flag.
    static let pollInterval: Duration = .milliseconds(5)
}

/// The physical limit a phase is compared with: something measured in the same run.
struct PhysicalBound: Sendable, Equatable {
    /// What the limit is, e.g. `raw LZ4 compress` or `N / (fdatasync + RTT)`.
    var name: String
    /// The limit, in ``unit``.
    var value: Double
    /// What the phase achieved, in the same unit.
    var measured: Double
    /// `records/s`, `MB/s`, `commits/s`.
    var unit: String
    /// For a bound of N operations per fdatasync (and per round trip when
    /// ``includesRoundTrip``): N, so that the bound can follow the fastest fdatasync of the run.
    var operationsPerSync: Int?
    var includesRoundTrip = false
    /// For a bound that is the raw LZ4 rate: which direction, so that it can follow the
    /// faster LZ4 measurement of the run.
    var lz4: LZ4Direction?

    enum LZ4Direction: Sendable, Equatable { case compress, decompress }

    /// measured / bound (0 when the bound is 0).
    var ratio: Double { value > 0 ? measured / value : 0 }

    /// N operations per fdatasync: N / fdatasync p50, or N / (fdatasync p50 + RTT p50).
    static func perSync(_ operations: Int, includesRoundTrip: Bool, measured: Double, unit: String, baselines: BenchBaselines) -> PhysicalBound {
        var bound = PhysicalBound(
            name: includesRoundTrip ? "\(operations) / (fdatasync + RTT)" : "\(operations) per fdatasync", value: 0, measured: measured,
            unit: unit, operationsPerSync: operations, includesRoundTrip: includesRoundTrip)
        bound.follow(baselines)
        return bound
    }

    /// The raw LZ4 rate of `baselines` in one direction, in MB/s.
    static func lz4(_ direction: LZ4Direction, measured: Double, baselines: BenchBaselines, what: String = "") -> PhysicalBound {
        var bound = PhysicalBound(
            name: "raw LZ4 \(direction == .compress ? "compress" : "decompress")\(what)", value: 0, measured: measured, unit: "MB/s",
            lz4: direction)
        bound.follow(baselines)
        return bound
    }

    /// Recomputes a per-fdatasync or LZ4 bound from `baselines` (other bounds stay as they are).
    mutating func follow(_ baselines: BenchBaselines) {
        if let lz4 {
            value = lz4 == .compress ? baselines.lz4.compression.megabytesPerSecond : baselines.lz4.decompression.megabytesPerSecond
        }
        guard let operations = operationsPerSync else { return }
        let nanoseconds = Double(baselines.fsync.latency.percentile(50))
            + (includesRoundTrip ? Double(baselines.loopbackRTT.percentile(50)) : 0)
        value = nanoseconds > 0 ? Double(operations) * 1e9 / nanoseconds : 0
    }
}

/// What one phase measured.
struct BenchPhaseResult: Sendable {
    /// A stable identifier for JSON and charts: `append-buffered`, `group-commit-16`.
    var key: String
    /// For people: `buffered append`, `group commit, 16 writers`.
    var name: String
    /// What ``operations`` counts: `records` or `commits`.
    var unit = "records"
    var operations: UInt64 = 0
    /// Bytes of the records as appended (before compression, without framing).
    var logicalBytes: UInt64 = 0
    /// Bytes the phase wrote to the primary's segments (after compression, with headers).
    var storedBytes: UInt64 = 0
    /// Wall time of the measured part.
    var nanoseconds: UInt64 = 0
    var syncCalls: UInt64 = 0
    /// Per-operation latency (empty when the phase does not measure it).
    var latency = Histogram()
    /// Follower lag: primary written → follower durable (empty without followers).
    var lag = Histogram()
    /// CPU time of the whole process during the phase.
    var cpu = CPUTime.zero
    /// Operations per second, sampled every ``BenchProgress/sampleInterval``.
    var throughputSeries: [SeriesPoint] = []
    /// Worst follower lag in milliseconds, sampled every ``LagSampler/seriesInterval``.
    var lagSeries: [SeriesPoint] = []
    var bound: PhysicalBound?
    /// Ctrl-C ended the phase before its time.
    var stoppedEarly = false
    /// Figures particular to the phase (catch-up time, replayed records...), for JSON and notes.
    var extra = JSONObject()
    /// Sentences printed under the report.
    var notes: [String] = []

    init(key: String, name: String, unit: String = "records") {
        self.key = key
        self.name = name
        self.unit = unit
    }

    var seconds: Double { Double(nanoseconds) / 1e9 }
    var operationsPerSecond: Double { Double(operations) * 1e9 / Double(max(nanoseconds, 1)) }
    var logicalMBPerSecond: Double { Double(logicalBytes) * 1e3 / Double(max(nanoseconds, 1)) }
    var storedMBPerSecond: Double { Double(storedBytes) * 1e3 / Double(max(nanoseconds, 1)) }
    /// logical / stored bytes; `nil` when nothing was stored.
    var compressionRatio: Double? { storedBytes > 0 && logicalBytes > 0 ? Double(logicalBytes) / Double(storedBytes) : nil }
    var recordsPerSync: Double? { syncCalls > 0 ? Double(operations) / Double(syncCalls) : nil }
}
