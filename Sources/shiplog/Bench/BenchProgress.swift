import Glibc
import ShipLog
import Synchronization

/// Runs benchmark phases with a progress display on standard error, and samples each phase's
/// completed-operations counter into a throughput-over-time series.
///
/// On a terminal one status line is redrawn with `\r` (phase, elapsed, live rate) about
/// ``redrawsPerSecond`` times a second, and a finished phase leaves one summary line. When
/// standard error is not a terminal, each phase prints one line as it starts. All writes to
/// standard error go through this object (one lock), so the sampling thread and the main
/// thread never interleave partial lines.
final class BenchProgress: Sendable {
    enum Mode: Sendable, Equatable {
        /// Nothing on standard error (`--json` to standard output, tests).
        case silent
        /// One line per phase.
        case lines
        /// A redrawn status line.
        case terminal
    }

    /// How often a phase's counter is sampled for the throughput series.
    static let sampleInterval: Duration = .milliseconds(100)
    /// Status-line redraws per second on a terminal.
    static let redrawsPerSecond = 5

    let mode: Mode
    /// Set by Ctrl-C; every phase run here gets it.
    let stop: AtomicFlag
    private let writeLock = Mutex(())

    init(mode: Mode, stop: AtomicFlag) {
        self.mode = mode
        self.stop = stop
    }

    /// `.terminal` when standard error is a terminal, else `.lines`; `.silent` when `quiet`.
    static func mode(quiet: Bool) -> Mode {
        if quiet { return .silent }
        return isatty(2) == 1 ? .terminal : .lines
    }

    /// A step that is not a measured phase (baselines, set-up).
    func note(_ text: String) {
        switch mode {
        case .silent: return
        case .lines: write("… \(text)\n")
        case .terminal: write("\r\u{1B}[2K… \(text)")
        }
    }

    /// Runs one phase of `seconds`: shows its progress, samples its counter every
    /// ``sampleInterval``, and fills in the result's CPU time, throughput series and
    /// `stoppedEarly`.
    func run(
        _ name: String, seconds: Double, unit: String, _ body: (PhaseContext) throws -> BenchPhaseResult
    ) throws -> BenchPhaseResult {
        let context = PhaseContext(seconds: seconds, stop: stop)
        if mode == .lines { write("… \(name)\n") }
        let sampler = CounterSampler(counter: context.completed)
        let finished = AtomicFlag()
        let started = MonotonicClock.now()
        let thread = OwnedThread.start(name: "bench-progress") { [self] in
            sampler.run(until: finished) { elapsed, rate in self.status(name, elapsed: elapsed, rate: rate, unit: unit) }
        }
        let cpuBefore = CPUTime.now()
        let outcome = Result { try body(context) }
        let cpu = CPUTime.now().since(cpuBefore)
        finished.set()
        thread.join()
        var result = try outcome.get()
        result.cpu = cpu
        result.throughputSeries = sampler.series
        result.stoppedEarly = stop.isSet
        if mode == .terminal {
            let elapsed = Double(MonotonicClock.elapsed(since: started)) / 1e9
            write(
                "\r\u{1B}[2K✓ \(name): \(Format.fixed(result.operationsPerSecond, decimals: 0, grouping: true)) \(unit)/s"
                    + " (\(Format.fixed(elapsed, decimals: 1)) s)\(result.stoppedEarly ? ", stopped early" : "")\n")
        }
        return result
    }

    /// Clears the status line (before the report).
    func finish() {
        if mode == .terminal { write("\r\u{1B}[2K") }
    }

    private func status(_ name: String, elapsed: Double, rate: Double, unit: String) {
        guard mode == .terminal else { return }
        write(
            "\r\u{1B}[2K▸ \(name)  \(Format.fixed(elapsed, decimals: 1)) s  "
                + "\(Format.fixed(rate, decimals: 0, grouping: true)) \(unit)/s")
    }

    private func write(_ text: String) {
        writeLock.withLock { _ in
            var bytes = Array(text.utf8)
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress! + offset, $0.count - offset) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }
}

/// Samples a counter at a fixed interval into a rate series, on the thread that calls ``run``.
final class CounterSampler: @unchecked Sendable {
    // @unchecked: `points` is written only by the sampling thread and read after it is joined.
    private let counter: AtomicCounter
    private var points: [SeriesPoint] = []

    init(counter: AtomicCounter) { self.counter = counter }

    /// The samples taken, in time order.
    var series: [SeriesPoint] { points }

    /// Samples every ``BenchProgress/sampleInterval`` until `finished` is set; calls `redraw`
    /// with the elapsed seconds and the latest rate ``BenchProgress/redrawsPerSecond`` times a second.
    func run(until finished: AtomicFlag, redraw: (Double, Double) -> Void) {
        let interval = BenchProgress.sampleInterval.nanoseconds
        let samplesPerRedraw = max(1, Int(1_000_000_000 / UInt64(BenchProgress.redrawsPerSecond) / interval))
        let start = MonotonicClock.now()
        var lastTime = start
        var lastCount = counter.value
        var sample = 0
        while !finished.isSet {
            let next = start + UInt64(sample + 1) * interval
            while !finished.isSet, MonotonicClock.now() < next {
                usleep(UInt32(min(10_000, max(1, (next &- MonotonicClock.now()) / 1000))))
            }
            if finished.isSet { break }
            let now = MonotonicClock.now()
            let count = counter.value
            let rate = Double(count &- lastCount) * 1e9 / Double(max(now &- lastTime, 1))
            points.append(SeriesPoint(seconds: Double(now &- start) / 1e9, value: rate))
            lastTime = now
            lastCount = count
            sample += 1
            if sample % samplesPerRedraw == 0 { redraw(Double(now &- start) / 1e9, rate) }
        }
    }
}
