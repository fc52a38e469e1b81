import Foundation
import Testing
import ShipLog
import ShipLogTestSupport

/// A deterministic, single-threaded scenario on one simulator: appends through `submit` (so
/// that every batch's LSNs are known even when the append fails), a model of what was
/// appended and what the log promised, and checks of crashed copies.
struct Scenario {
    static let directory = FilePath("log")

    var options: LogOptions
    var model = Model()
    var ledger = Ledger()
    var maker = RecordMaker(rng: SplitMix64(seed: 0x5CE7A210))

    init(segmentBytesMax: Int64 = 8 << 10, preallocate: Bool = true, indexIntervalBytes: Int64 = 512) {
        var options = LogOptions()
        options.segmentBytesMax = segmentBytesMax
        options.preallocateSegments = preallocate
        options.indexIntervalBytes = indexIntervalBytes
        options.compression = .none
        self.options = options
    }

    func open(_ fileSystem: any FileSystem) throws(LogError) -> (log: Log, report: RecoveryReport) {
        try LogRecovery.open(directory: Self.directory, options: options, fileSystem: fileSystem)
    }

    /// Appends `count` incompressible records of `bytes` bytes as one batch and waits for the
    /// completion. Returns the LSNs (nil when the log refused the batch) and whether it was
    /// acknowledged.
    @discardableResult
    mutating func append(
        _ log: Log, count: Int = 1, bytes: Int = 1000, _ durability: Durability
    ) -> (range: LSNRange?, acknowledged: Bool) {
        let batch = (0..<count).map { _ in maker.bytes(bytes) }
        let encoded = BatchBuilder(records: batch).encode(codec: options.compression)
        let latch = Latch()
        let box = ResultBox()
        let ledger = self.ledger
        do {
            let range = try log.submit(encoded, durability: durability) { result in
                ledger.record(result, durability)
                box.set(result)
                latch.signal()
            }
            model.assign(range, batch)
            guard latch.wait(seconds: Latch.hangSeconds) else {
                Issue.record("the completion of append \(range) (\(durability)) never came: the log hung")
                return (range, false)
            }
            if case .success = box.value { return (range, true) }
            return (range, false)
        } catch {
            return (nil, false)
        }
    }

    /// Takes the log's own durability claims into the model.
    mutating func noteClaims(_ log: Log) {
        model.durableThrough = max(model.durableThrough, log.durableLSN.rawValue, ledger.snapshot.immediate)
        model.retainedFrom = log.firstLSN.rawValue
    }

    /// Opens `fileSystem` and checks the log against the model: nothing durable lost, nothing
    /// foreign, dense LSNs, random access, verify, and that what it recovered is durable.
    /// Then appends and checks that a second crash (`secondCrashSeed`) keeps it all.
    func check(
        _ simulator: SimulatedFileSystem, requiredThrough: UInt64, secondCrashSeed: UInt64? = nil
    ) -> [String] {
        let power = PowerSwitch(simulator)
        let log: Log
        do {
            log = try open(power).log
        } catch {
            return ["reopening threw (a crash state was refused): \(error)"]
        }
        var rng = SplitMix64(seed: requiredThrough)
        var problems = checkRecovered(
            log, model: model,
            expect: RecoveryExpectation(
                requiredThrough: requiredThrough, startsNoLaterThan: model.retainedFrom,
                startsNoEarlierThan: model.removedBelow),
            fileSystem: power, directory: Self.directory, rng: &rng)
        problems += checkRecoveredIsDurable(log, simulator: simulator, directory: Self.directory)
        if problems.isEmpty, let secondCrashSeed {
            // The recovered log keeps working, and survives the next crash.
            var next = self
            next.ledger = Ledger()
            next.model.truncate(after: log.nextLSN.rawValue - 1)
            next.model.durableThrough = log.nextLSN.rawValue - 1
            for durability in [Durability.buffered, .immediate, .buffered] {
                let (range, acknowledged) = next.append(log, count: 2, bytes: 300, durability)
                if range == nil || !acknowledged { problems.append("append after recovery failed") }
            }
            next.noteClaims(log)
            power.cut(.powerLoss(seed: secondCrashSeed))
            try? log.close()
            problems += next.check(simulator, requiredThrough: next.model.durableThrough).map { "after a second crash: \($0)" }
            return problems
        }
        power.cut(.processDeath)
        try? log.close()
        return problems
    }

    /// Crashes copies of `snapshot` with each seed and checks them; records an issue per failing
    /// seed (a known issue when it is an instance of a known bug). Returns the failing seeds.
    @discardableResult
    func crashCopies(
        of snapshot: SimulatedFileSystem, seeds: Range<UInt64>, requiredThrough: UInt64, context: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> [UInt64] {
        var failing: [UInt64] = []
        for seed in seeds {
            let copy = snapshot.clone()
            copy.crash(seed: seed)
            let problems = check(copy, requiredThrough: requiredThrough, secondCrashSeed: seed &+ 0x9E37)
            guard !problems.isEmpty else { continue }
            failing.append(seed)
            recordProblems(problems, context: "\(context), crash seed \(seed)", sourceLocation: sourceLocation)
        }
        return failing
    }
}

/// Records problems as an issue, or as a known issue when they are an instance of a known bug.
func recordProblems(_ problems: [String], context: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let text = "\(context):\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
    if let bug = KnownBug.classify(problems) {
        withKnownIssue(Comment(rawValue: bug.rawValue), isIntermittent: true) {
            Issue.record(Comment(rawValue: text), sourceLocation: sourceLocation)
        }
    } else {
        Issue.record(Comment(rawValue: text), sourceLocation: sourceLocation)
    }
}
