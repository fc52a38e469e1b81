public import Benchmark

/// How far a run may fall behind the thresholds checked into `Benchmarks/Thresholds/` before
/// `make bench-check` fails.
///
/// The thresholds are p90 figures of one run on the project's 2-core VM, where the same
/// benchmark drifts 10-30 % between runs, and more while other builds share the two cores.
/// The tolerances sit well above that drift, so a failure is a real regression (a lost SSE4.2
/// path, an extra copy of every batch, a lock on the hot path), not noise; `check-thresholds.sh`
/// also runs a failing benchmark again before it reports it. They are deliberately loose:
/// these checks catch large regressions, `make bench` measures the engine properly.
public enum Tolerances {
    /// Allowed drop of throughput at p90, in percent of the threshold, for code on one thread:
    /// 50 fails a run that is less than half as fast.
    public static let singleThreadThroughputDropPercentMax = 50.0

    /// Allowed drop of throughput at p90, in percent, for a pipeline between the caller and the
    /// log's I/O thread: 67 fails a run that is less than a third as fast. Two busy threads on
    /// two shared cores: their p90 was seen to differ 2 times over between quiet runs.
    public static let pipelineThroughputDropPercentMax = 67.0

    /// The rise of wall-clock time at p90, in percent, that is the same slowdown as a drop of
    /// throughput by `percent`: 50 % less throughput is 100 % more time.
    public static func wallClockRisePercentMax(throughputDropPercent percent: Double) -> Double {
        100 / (1 - percent / 100) - 100
    }

    /// Allowed extra allocations per measured iteration (an iteration runs `scalingFactor`
    /// operations), at p90, for code on one thread: its allocations are deterministic, so a
    /// new one is a regression whatever it costs in time.
    public static let singleThreadMallocsExtraMax = 0

    /// Allowed rise of allocations at p90, in percent, for a pipeline: the I/O thread
    /// allocates too, at times (and so in amounts per iteration) that depend on scheduling.
    public static let pipelineMallocsRisePercentMax = 50.0
}

/// Which threads a benchmark's measured loop runs on, and so which tolerances it gets.
public enum MeasuredThreads: Sendable {
    /// Everything on the benchmark's thread: codecs, checksums, a reader scan, gets.
    case single
    /// The caller submits, the log's I/O thread writes, in parallel.
    case pipelineWithIOThread

    var throughputDropPercentMax: Double {
        switch self {
        case .single: Tolerances.singleThreadThroughputDropPercentMax
        case .pipelineWithIOThread: Tolerances.pipelineThroughputDropPercentMax
        }
    }

    var mallocs: BenchmarkThresholds {
        switch self {
        case .single: BenchmarkThresholds(absolute: [.p90: Tolerances.singleThreadMallocsExtraMax])
        case .pipelineWithIOThread: BenchmarkThresholds(relative: [.p90: Tolerances.pipelineMallocsRisePercentMax])
        }
    }
}

extension Benchmark.Configuration {
    /// Throughput, wall clock and allocation counts, each with its tolerance from ``Tolerances``.
    ///
    /// - Parameters:
    ///   - scalingFactor: operations per measured iteration (the throughput is operations/s).
    ///   - threads: where the measured code runs, which sets the tolerances.
    ///   - maxDuration: how long the benchmark runs, about a second for each one.
    public static func shipLog(
        scalingFactor: BenchmarkScalingFactor, threads: MeasuredThreads, maxDuration: Duration = .seconds(1)
    ) -> Benchmark.Configuration {
        let throughputDrop = threads.throughputDropPercentMax
        return Benchmark.Configuration(
            metrics: [.throughput, .wallClock, .mallocCountTotal],
            warmupIterations: warmupIterations,
            scalingFactor: scalingFactor,
            maxDuration: maxDuration,
            maxIterations: iterationsUnbounded,
            thresholds: [
                .throughput: BenchmarkThresholds(relative: [.p90: throughputDrop]),
                .wallClock: BenchmarkThresholds(
                    relative: [.p90: Tolerances.wallClockRisePercentMax(throughputDropPercent: throughputDrop)]),
                .mallocCountTotal: threads.mallocs,
            ])
    }

    /// Iterations run and thrown away before measuring: caches, page faults, lazy setup.
    static let warmupIterations = 3

    /// No iteration limit: ``shipLog(scalingFactor:threads:maxDuration:)`` runs for its duration.
    static let iterationsUnbounded = 1_000_000_000
}
