import Glibc
import ShipLog

extension Commands {
    static let bench = CommandSpec(
        path: ["bench"],
        summary: "Run the full benchmark scenario (about a minute on defaults) and print a report.",
        discussion: """
            Creates temporary directories and starts a primary and its followers in this process over \
            loopback TCP, then measures: buffered appends; group commit (immediate) with each writer \
            count; asynchronous replication; quorum (flush:1) and all-followers (all) commits; the \
            synchronous replication delay against the model (n-1)/n x latency for 2 and 3 nodes; a \
            follower shut down and caught up; and recovery (reopen and replay). Baselines measured in \
            the same run (fdatasync, loopback RTT, raw LZ4, sequential writes) bound each phase. \
            Ctrl-C stops the current phase, skips the rest, prints what was measured and exits 130.
            """,
        flags: [
            .value(
                "seconds", .number(BenchScenarioCommand.secondsRange), placeholder: "N", help: "Seconds per measured phase.",
                default: "4"),
            .value(
                "record-bytes", .unsignedInteger(BenchScenarioCommand.recordBytesRange), placeholder: "BYTES",
                help: "Size of each record.", default: "100"),
            .value(
                "followers", .unsignedInteger(BenchScenarioCommand.followersRange), placeholder: "N",
                help: "Followers of the replication phases.", default: "2"),
            .value(
                "writers", placeholder: "N[,N...]",
                help: "Concurrent writers of the group-commit phases; the replication phases use the largest.",
                default: "1,16,64"),
            .value("json", placeholder: "FILE", help: "Also write every figure, the parameters and machine facts as JSON."),
            .value("html", placeholder: "FILE", help: "Also write a self-contained HTML page with SVG charts."),
            .value("dir", placeholder: "DIR", help: "Directory for the benchmark's logs (default: $TMPDIR, else /var/tmp)."),
        ])
}

/// `shiplog bench`: runs ``BenchScenario``, prints the report, writes `--json` and `--html`.
struct BenchScenarioCommand {
    /// Limits of the flags: seconds per phase, bytes per record, followers, writers per phase
    /// and writer counts in `--writers`.
    static let secondsRange = 0.05...3600.0
    static let recordBytesRange: ClosedRange<UInt64> = 8...65_536
    static let followersRange: ClosedRange<UInt64> = 1...8
    static let writersRange = 1...256
    static let writerCountsMax = 8
    /// Exit status after Ctrl-C (128 + SIGINT), as shells report it.
    static let interruptedExitStatus: Int32 = 130

    let parameters: BenchScenario.Parameters
    let jsonPath: String?
    let htmlPath: String?

    init(_ arguments: ParsedArguments) throws {
        var parameters = BenchScenario.Parameters()
        parameters.seconds = try arguments.double("seconds") ?? parameters.seconds
        parameters.recordBytes = Int(try arguments.uint64("record-bytes") ?? UInt64(parameters.recordBytes))
        parameters.followers = Int(try arguments.uint64("followers") ?? UInt64(parameters.followers))
        parameters.writers = try Self.writerCounts(arguments.requiredString("writers"), command: arguments.command)
        parameters.directory = arguments.string("dir")
        self.parameters = parameters
        jsonPath = arguments.string("json")
        htmlPath = arguments.string("html")
    }

    /// `1,16,64` → [1, 16, 64]: each in ``writersRange``, at most ``writerCountsMax`` of them.
    static func writerCounts(_ text: String, command: CommandSpec) throws(UsageError) -> [Int] {
        let words = text.split(separator: ",", omittingEmptySubsequences: false)
        let expected = "expected up to \(writerCountsMax) comma-separated counts from \(writersRange.lowerBound) to \(writersRange.upperBound)"
        guard words.count <= writerCountsMax else { throw command.error(CommandSpec.invalid(text, "writers", expected)) }
        var counts: [Int] = []
        for word in words {
            guard let value = CommandSpec.parseSigned(String(word)), writersRange.contains(value) else {
                throw command.error(CommandSpec.invalid(text, "writers", expected))
            }
            counts.append(value)
        }
        return counts
    }

    func run() throws -> Int32 {
        // Fail before a minute of measuring, not after, when an output file cannot be written.
        if let jsonPath { try Self.write("", to: jsonPath, what: "--json") }
        if let htmlPath { try Self.write("", to: htmlPath, what: "--html") }
        let signals = try TerminationSignals.install()
        let stop = AtomicFlag()
        let finished = AtomicFlag()
        // Ctrl-C (or SIGTERM) stops the current phase; a second one ends the process at once.
        let watcher = OwnedThread.start(name: "bench-signals") {
            while !finished.isSet {
                guard let signal = signals.wait(timeout: .milliseconds(100)) else { continue }
                stop.set()
                signals.restoreDefaults()
                Output.error.line("\nshiplog bench: \(TerminationSignals.name(signal)): stopping the current phase, skipping the rest")
                return
            }
        }
        defer {
            finished.set()
            watcher.join()
        }
        let progress = BenchProgress(mode: BenchProgress.mode(quiet: false), stop: stop)
        let result = try BenchScenario(parameters: parameters, progress: progress).run()
        Output.standard.write(result.renderedText())
        Output.standard.flush()
        if let jsonPath { try Self.write(result.json.rendered(pretty: true) + "\n", to: jsonPath, what: "--json") }
        if let htmlPath { try Self.write(BenchHTML.page(result), to: htmlPath, what: "--html") }
        return result.interrupted ? Self.interruptedExitStatus : 0
    }

    /// Writes `text` to a new or truncated file at `path`.
    static func write(_ text: String, to path: String, what: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CommandError("\(what) \(path): cannot create: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw CommandError("\(what) \(path): write failed at byte \(offset): \(String(cString: strerror(errno)))") }
            offset += n
        }
    }
}
