import Glibc
import ShipLog
import Testing

@testable import shiplog

// MARK: - Fixtures: the commands of the brief, declared as main will declare them.

private let durabilityWords = ["buffered", "interval", "immediate"]

private let appendSpec = CommandSpec(
    path: ["append"], summary: "Append records read from standard input, one per line.",
    flags: [
        .value("dir", placeholder: "DIR", help: "Log directory.", required: true),
        .value("durability", .choice(durabilityWords), help: "When appends are made durable.", default: "interval"),
        .value("compression", .choice(["lz4", "none"]), help: "Batch codec.", default: "lz4"),
    ])

private let readSpec = CommandSpec(
    path: ["read"], summary: "Print records.",
    flags: [
        .value("dir", placeholder: "DIR", help: "Log directory.", required: true),
        .value("from", .unsignedInteger, placeholder: "LSN", help: "First LSN to print."),
        .flag("follow", help: "Keep waiting for new records."),
        .value("lsn", .unsignedInteger(1...UInt64.max), placeholder: "LSN", help: "A bounded value, for tests."),
    ])

private let benchAppendSpec = CommandSpec(
    path: ["bench", "append"], summary: "Measure append throughput and latency.",
    flags: [
        .flag("json", help: "Print JSON instead of a table."),
        .value("seconds", .number(0.001...86_400), placeholder: "N", help: "Duration of each phase.", default: "10"),
        .value("writers", .integer(1...1024), placeholder: "N", help: "Concurrent writers."),
        .value("offset", .integer, placeholder: "N", help: "A signed value, for tests."),
    ])

private let cli = CommandLineInterface(
    summary: "ShipLog: a write-ahead-log storage engine.", commands: [appendSpec, readSpec, benchAppendSpec])

/// Parses `line` (split on spaces) into the arguments of a command to run.
private func run(_ line: String) throws(UsageError) -> ParsedArguments {
    switch try cli.parse(words(line)) {
    case .run(let arguments): return arguments
    case .help: Issue.record("unexpected help for '\(line)'"); throw UsageError(command: "test", message: "help")
    }
}

/// The one-line message that parsing `line` fails with, or `nil`.
private func failure(_ line: String) -> String? {
    do {
        _ = try cli.parse(words(line))
        return nil
    } catch {
        return error.description
    }
}

private func help(_ line: String) -> String? {
    guard case .help(let text)? = try? cli.parse(words(line)) else { return nil }
    return text
}

private func words(_ line: String) -> [String] { line.split(separator: " ").map(String.init) }

// MARK: - Parser

@Suite struct CommandLineParsing {
    @Test func bothValueForms() throws {
        let a = try run("append --dir /tmp/log --durability immediate")
        #expect(a.command.name == "append")
        #expect(a.string("dir") == "/tmp/log")
        #expect(a.string("durability") == "immediate")
        let b = try run("append --dir=/tmp/log --durability=buffered")
        #expect(b.string("dir") == "/tmp/log")
        #expect(b.string("durability") == "buffered")
        // Everything after the first `=` is the value, including further `=` and leading dashes.
        let c = try run("append --dir=a=b")
        #expect(c.string("dir") == "a=b")
        let d = try run("append --dir=--weird")
        #expect(d.string("dir") == "--weird")
    }

    @Test func defaultsAndPresence() throws {
        let a = try run("append --dir d")
        #expect(a.string("durability") == "interval")
        #expect(!a.contains("durability"))
        #expect(a.contains("dir"))
        #expect(try a.requiredString("dir") == "d")
    }

    @Test func booleanFlags() throws {
        #expect(try run("read --dir d --follow").flag("follow"))
        #expect(try !run("read --dir d").flag("follow"))
        #expect(try run("bench append --json").flag("json"))
    }

    @Test func typedAccessors() throws {
        let r = try run("read --dir d --from 18446744073709551615")
        #expect(try r.uint64("from") == UInt64.max)
        #expect(try run("read --dir d").uint64("from") == nil)

        let b = try run("bench append --seconds 2.5 --writers 8 --offset -5")
        #expect(try b.double("seconds") == 2.5)
        #expect(try b.int("writers") == 8)
        #expect(try b.int("offset") == -5)
        #expect(try run("bench append").double("seconds") == 10)
        #expect(try run("bench append --seconds 1e-2").double("seconds") == 0.01)
        #expect(try run("bench append --seconds .5").double("seconds") == 0.5)
    }

    @Test func choiceAccessors() throws {
        enum Durability: Equatable { case buffered, interval, immediate }
        let table: KeyValuePairs<String, Durability> = ["buffered": .buffered, "interval": .interval, "immediate": .immediate]
        #expect(try run("append --dir d --durability buffered").choice("durability", from: table) == .buffered)
        #expect(try run("append --dir d").choice("durability", from: table) == .interval)
        #expect(try run("append --dir d --compression none").choice("compression", as: CompressionCodec.self) == CompressionCodec.none)
        #expect(try run("append --dir d").choice("compression", as: CompressionCodec.self) == .lz4)

        // An accessor table stricter than the declaration still reports the value precisely.
        let narrow: KeyValuePairs<String, Durability> = ["buffered": .buffered, "interval": .interval]
        let parsed = try run("append --dir d --durability immediate")
        #expect(throws: UsageError(
            command: "shiplog append",
            message: "invalid value 'immediate' for --durability (expected buffered or interval)")) {
            try parsed.choice("durability", from: narrow)
        }
    }

    @Test func invalidChoiceNamesFlagValueAndChoices() {
        #expect(failure("append --dir d --durability fast")
            == "shiplog append: invalid value 'fast' for --durability (expected buffered, interval or immediate)")
        #expect(failure("append --dir d --durability=Immediate")
            == "shiplog append: invalid value 'Immediate' for --durability (expected buffered, interval or immediate)")
        #expect(failure("append --dir d --compression zstd")
            == "shiplog append: invalid value 'zstd' for --compression (expected lz4 or none)")
    }

    @Test(arguments: [
        ("read --dir d --from -3", "invalid value '-3' for --from (expected an unsigned integer)"),
        ("read --dir d --from +3", "invalid value '+3' for --from (expected an unsigned integer)"),
        ("read --dir d --from 12abc", "invalid value '12abc' for --from (expected an unsigned integer)"),
        ("read --dir d --from 0x10", "invalid value '0x10' for --from (expected an unsigned integer)"),
        ("read --dir d --from 1_000", "invalid value '1_000' for --from (expected an unsigned integer)"),
        ("read --dir d --from 18446744073709551616", "invalid value '18446744073709551616' for --from (expected an unsigned integer)"),
        ("bench append --seconds nan", "invalid value 'nan' for --seconds (expected a number)"),
        ("bench append --seconds inf", "invalid value 'inf' for --seconds (expected a number)"),
        ("bench append --seconds 1e999", "invalid value '1e999' for --seconds (expected a number)"),
        ("bench append --seconds 10s", "invalid value '10s' for --seconds (expected a number)"),
        ("bench append --seconds 0", "invalid value '0' for --seconds (expected 0.001 to 86400)"),
        ("bench append --seconds -1", "invalid value '-1' for --seconds (expected 0.001 to 86400)"),
        ("bench append --writers 0", "invalid value '0' for --writers (expected 1 to 1024)"),
        ("read --dir d --lsn 0", "invalid value '0' for --lsn (expected at least 1)"),
        ("bench append --writers 2.5", "invalid value '2.5' for --writers (expected an integer)"),
        ("bench append --offset --5", "missing value for --offset (expected N)"),
        ("bench append --offset -", "invalid value '-' for --offset (expected an integer)"),
    ])
    func invalidNumbers(line: String, message: String) {
        let command = line.hasPrefix("bench") ? "shiplog bench append" : "shiplog read"
        #expect(failure(line) == "\(command): \(message)")
    }

    @Test func unknownFlags() {
        #expect(failure("append --dir d --bogus") == "shiplog append: unknown flag --bogus")
        #expect(failure("append --dir d --bogus=1") == "shiplog append: unknown flag --bogus")
        #expect(failure("append --dir d --durabilty immediate")
            == "shiplog append: unknown flag --durabilty (did you mean --durability?)")
        #expect(failure("append -d x") == "shiplog append: unknown flag -d")
        #expect(failure("append -dir x") == "shiplog append: unknown flag -dir (did you mean --dir?)")
        #expect(failure("read --dir d --Follow") == "shiplog read: unknown flag --Follow (did you mean --follow?)")
    }

    @Test func missingRequiredFlag() {
        #expect(failure("append") == "shiplog append: missing required flag --dir")
        #expect(failure("append --durability immediate") == "shiplog append: missing required flag --dir")
    }

    @Test func missingValues() {
        #expect(failure("append --dir") == "shiplog append: missing value for --dir (expected DIR)")
        #expect(failure("append --dir --durability immediate") == "shiplog append: missing value for --dir (expected DIR)")
        #expect(failure("append --dir d --durability")
            == "shiplog append: missing value for --durability (expected buffered|interval|immediate)")
        #expect(failure("append --dir=") == "shiplog append: invalid value '' for --dir (expected a non-empty value)")
        #expect(throws: UsageError.self) { try cli.parse(["append", "--dir", ""]) }
    }

    @Test func duplicatedFlags() {
        #expect(failure("append --dir a --dir b") == "shiplog append: --dir given more than once")
        #expect(failure("append --dir a --dir=a") == "shiplog append: --dir given more than once")
        #expect(failure("read --dir a --follow --follow") == "shiplog read: --follow given more than once")
    }

    @Test func booleanFlagRejectsValue() {
        #expect(failure("read --dir d --follow=true") == "shiplog read: --follow does not take a value")
        // `--follow true`: the flag takes no value, so `true` is a stray argument.
        #expect(failure("read --dir d --follow true") == "shiplog read: unexpected argument 'true'")
    }

    @Test func strayPositionalArguments() {
        #expect(failure("append --dir d extra") == "shiplog append: unexpected argument 'extra'")
        #expect(failure("append extra --dir d") == "shiplog append: unexpected argument 'extra'")
        #expect(failure("append --dir d -") == "shiplog append: unexpected argument '-'")
        #expect(failure("append --dir d --") == "shiplog append: unexpected argument '--'")
        #expect(failure("bench append now") == "shiplog bench append: unexpected argument 'now'")
    }

    @Test func unknownAndMissingCommands() {
        #expect(failure("") == "shiplog: missing command (expected append, read or bench)")
        #expect(failure("frob --dir d") == "shiplog: unknown command 'frob' (expected append, read or bench)")
        #expect(failure("--dir d append") == "shiplog: missing command before --dir (expected append, read or bench)")
        #expect(failure("bench") == "shiplog bench: missing command (expected append)")
        #expect(failure("bench read") == "shiplog bench: unknown command 'read' (expected append)")
        #expect(failure("Append --dir d") == "shiplog: unknown command 'Append' (expected append, read or bench)")
    }

    @Test func helpAnywhereWins() throws {
        for line in [
            "append --help", "append -h", "append --dir d --help", "append --help --dir d",
            "append --bogus --help", "append --dir --help", "append -h extra --durability fast",
        ] {
            let text = try #require(help(line), "\(line)")
            #expect(text.hasPrefix("Usage: shiplog append --dir DIR"), "\(line)")
        }
        #expect(help("bench append --seconds x -h")?.hasPrefix("Usage: shiplog bench append") == true)
        #expect(help("--help")?.contains("bench append") == true)
        #expect(help("-h")?.hasPrefix("Usage: shiplog <command>") == true)
        #expect(help("bench --help")?.hasPrefix("Usage: shiplog bench <command>") == true)
        #expect(help("frob --help")?.hasPrefix("Usage: shiplog <command>") == true)
        // Only whole tokens ask for help.
        #expect(failure("append --dir d --help=yes") == "shiplog append: --help does not take a value")
        #expect(try run("append --dir=--help").string("dir") == "--help")
    }

    @Test func helpTextComesFromTheDeclaration() {
        let text = appendSpec.helpText()
        #expect(text == """
            Usage: shiplog append --dir DIR [--durability buffered|interval|immediate] [--compression lz4|none]

            Append records read from standard input, one per line.

            Flags:
              --dir DIR               Log directory. (required)
              --durability buffered|interval|immediate
                                      When appends are made durable. (default: interval)
              --compression lz4|none  Batch codec. (default: lz4)
              -h, --help              Show this help.

            """)
        let top = cli.groupHelpText()
        #expect(top.contains("  append        Append records read from standard input, one per line.\n"))
        #expect(top.contains("  bench append  Measure append throughput and latency.\n"))
    }

    @Test func usageErrorIsDistinctWithExitStatus2() {
        #expect(UsageError.exitStatus == 2)
        do {
            _ = try cli.parse(["append"])
            Issue.record("expected a usage error")
        } catch {
            // Typed throws: `error` is statically a UsageError; main catches it separately.
            let usage: UsageError = error
            #expect(usage.command == "shiplog append")
            #expect(usage.message == "missing required flag --dir")
            #expect(!usage.description.contains("\n"))
        }
    }

    @Test func parsingWithoutTheCommandLayer() throws {
        let parsed = try readSpec.parse(["--dir", "d", "--from=7"])
        #expect(try parsed.uint64("from") == 7)
        #expect(throws: UsageError(command: "shiplog read", message: "unexpected --help")) {
            try readSpec.parse(["--help"])
        }
        #expect(CommandSpec.asksForHelp(["--dir", "d", "-h"]))
        #expect(!CommandSpec.asksForHelp(["--dir=-h"]))
    }

    @Test func listing() {
        #expect(CommandSpec.listing(["a"]) == "a")
        #expect(CommandSpec.listing(["a", "b"]) == "a or b")
        #expect(CommandSpec.listing(["a", "b", "c"]) == "a, b or c")
    }
}

// MARK: - Histogram

@Suite struct HistogramAccuracy {
    static let percentiles: [Double] = [0, 0.1, 1, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100]

    /// The value of rank ⌈p/100 · n⌉ (at least 1) of the sorted values: the definition the
    /// histogram approximates.
    static func exactPercentile(_ sorted: [UInt64], _ p: Double) -> UInt64 {
        if p == 0 { return sorted[0] }
        let rank = max(1, min(sorted.count, Int((p / 100 * Double(sorted.count)).rounded(.up))))
        return sorted[rank - 1]
    }

    static func check(_ values: [UInt64], _ label: String) {
        var histogram = Histogram()
        for value in values { histogram.record(value) }
        let sorted = values.sorted()
        #expect(histogram.count == UInt64(values.count))
        #expect(histogram.min == sorted.first)
        #expect(histogram.max == sorted.last)
        let exactMean = Double(values.reduce(UInt128(0)) { $0 + UInt128($1) }) / Double(values.count)
        #expect(abs(histogram.mean - exactMean) <= exactMean * 1e-12, "\(label)")
        for p in percentiles {
            let exact = exactPercentile(sorted, p)
            let approximate = histogram.percentile(p)
            let error = abs(Double(approximate) - Double(exact))
            // Midpoint reporting: within half a bucket, i.e. 1/128 of the value (< 0.8 %).
            #expect(error <= Double(exact) / 128 + 0.5, "\(label) p\(p): \(approximate) vs exact \(exact)")
        }
    }

    @Test func uniformWideRange() {
        var random = SplitMix64(seed: 1)
        Self.check((0..<100_000).map { _ in random.next(below: UInt64(10_000_000_000)) }, "uniform 0..10 s")
    }

    @Test func logUniformLatencies() {
        // Latency-like: spread evenly over 9 decades (1 ns ... 1000 s).
        var random = SplitMix64(seed: 2)
        Self.check((0..<100_000).map { _ in
            let exponent = Double(random.next(below: 1 << 20)) / Double(1 << 20) * 12
            return UInt64(_pow10(exponent))
        }, "log-uniform")
    }

    @Test func heavyTail() {
        // 99 % fast around 50 µs, 1 % slow around 20 ms: p99/p99.9 land in the tail.
        var random = SplitMix64(seed: 3)
        Self.check((0..<50_000).map { _ in
            random.chance(1, in: 100) ? 20_000_000 + random.next(below: UInt64(5_000_000)) : 40_000 + random.next(below: UInt64(20_000))
        }, "bimodal")
    }

    @Test func smallValuesAreExact() {
        var random = SplitMix64(seed: 4)
        let values: [UInt64] = (0..<10_000).map { _ in random.next(below: UInt64(128)) }
        var histogram = Histogram()
        for value in values { histogram.record(value) }
        let sorted = values.sorted()
        for p in Self.percentiles { #expect(histogram.percentile(p) == Self.exactPercentile(sorted, p)) }
    }

    @Test func fewValues() {
        Self.check([42], "one")
        Self.check([1_000_000, 5], "two")
        Self.check([7, 7, 7, 3_000_000_000_000], "outlier")
    }

    @Test func emptyHistogram() {
        let histogram = Histogram()
        #expect(histogram.count == 0 && histogram.min == 0 && histogram.max == 0 && histogram.mean == 0)
        #expect(histogram.percentile(50) == 0)
    }

    @Test func mergeEqualsRecordingEverything() {
        var random = SplitMix64(seed: 5)
        var a = Histogram(), b = Histogram(), all = Histogram()
        for i in 0..<20_000 {
            let value: UInt64 = random.next(below: UInt64(1) << UInt64(10 + i % 25))
            if i % 3 == 0 { a.record(value) } else { b.record(value) }
            all.record(value)
        }
        var merged = a
        merged.merge(b)
        #expect(merged == all)
        merged.merge(Histogram())
        #expect(merged == all)
        var empty = Histogram()
        empty.merge(all)
        #expect(empty == all)
    }

    @Test func bucketLayout() {
        #expect(Histogram.bucketCount == 2368)
        // Every bucket's bounds map back to it, buckets tile the range without gaps, and each
        // is at most 1/64 of its lower bound wide.
        var expectedLower: UInt64 = 0
        for index in 0..<Histogram.bucketCount {
            let (lower, width) = Histogram.bounds(ofBucket: index)
            #expect(lower == expectedLower)
            #expect(Histogram.index(of: lower) == index)
            #expect(Histogram.index(of: lower + width - 1) == index)
            if lower >= 128 { #expect(width * 64 <= lower) }
            expectedLower = lower + width
        }
        #expect(expectedLower - 1 == Histogram.highestTrackableValue)
    }

    @Test func valuesBeyondTheRangeAreClamped() {
        var histogram = Histogram()
        histogram.record(UInt64.max)
        histogram.record(10)
        #expect(histogram.max == UInt64.max)
        #expect(histogram.percentile(100) == UInt64.max)
        #expect(histogram.percentile(99) >= Histogram.highestTrackableValue - Histogram.highestTrackableValue / 64)
        #expect(histogram.percentile(50) == 10)
    }

    @Test func recordTimesAndDurations() {
        var a = Histogram(), b = Histogram()
        a.record(1_500, times: 3)
        for _ in 0..<3 { b.record(.nanoseconds(1_500)) }
        #expect(a == b)
        a.reset()
        #expect(a == Histogram())
    }
}

private func _pow10(_ x: Double) -> Double {
    var result = 1.0
    var whole = Int(x)
    while whole > 0 {
        result *= 10
        whole -= 1
    }
    // 10^f = e^(f ln 10) by a short series; precision is irrelevant for a test distribution.
    let f = (x - Double(Int(x))) * 2.302585092994046
    var term = 1.0, sum = 1.0
    for k in 1..<20 {
        term *= f / Double(k)
        sum += term
    }
    return result * sum
}

// MARK: - Reports

@Suite struct Reports {
    @Test func jsonKeepsOrderAndEscapes() {
        var object = JSONObject()
        object["zeta"] = 1
        object["alpha"] = "a\"b\\c\nd\te\u{01}\u{1F}/é😀\u{2028}"
        object["nested"] = ["list": [true, false, nil, 1.5, .uint(UInt64.max), .int(-3)], "empty": [:], "none": []]
        object["zeta"] = 2  // replaced in place
        let text = JSONValue.object(object).rendered()
        #expect(text == #"{"zeta":2,"alpha":"a\"b\\c\nd\te\u0001\u001f/é😀\u2028","nested":{"list":[true,false,null,1.5,18446744073709551615,-3],"empty":{},"none":[]}}"#)
        #expect(JSONValue.double(.nan).rendered() == "null")
        #expect(JSONValue.double(.infinity).rendered() == "null")
        #expect(JSONValue.double(1e-7).rendered() == "1e-07")
        #expect(JSONValue.double(3).rendered() == "3.0")
        #expect(JSONValue.string("").rendered() == "\"\"")
    }

    @Test func prettyJSON() {
        let value: JSONValue = ["a": 1, "b": [1, 2], "c": [:]]
        #expect(value.rendered(pretty: true) == """
            {
              "a": 1,
              "b": [
                1,
                2
              ],
              "c": {}
            }
            """)
    }

    @Test func table() {
        var table = TextTable([("name", .left), ("ops/s", .right), ("p99", .right)])
        table.addRow(["fsync", "5,194", "301 µs"])
        table.addRow(["lz4 compress", "12"])
        #expect(table.rendered() == """
            name          ops/s     p99
            ------------  -----  ------
            fsync         5,194  301 µs
            lz4 compress     12

            """)
    }

    @Test func numberFormatting() {
        #expect(Format.fixed(1234.5678, decimals: 2) == "1234.57")
        #expect(Format.fixed(1234567.891, decimals: 1, grouping: true) == "1,234,567.9")
        #expect(Format.fixed(-0.04, decimals: 1) == "0.0")
        #expect(Format.fixed(-2.5, decimals: 0) == "-3")
        #expect(Format.fixed(0.05, decimals: 3) == "0.050")
        #expect(Format.nanoseconds(UInt64(850)) == "850 ns")
        #expect(Format.nanoseconds(UInt64(12_345)) == "12.3 µs")
        #expect(Format.nanoseconds(UInt64(1_500_000)) == "1.50 ms")
        #expect(Format.nanoseconds(UInt64(9_996)) == "10.0 µs")
        #expect(Format.bytes(512) == "512 B")
        #expect(Format.bytes(64 << 10) == "64.0 KiB")
        #expect(Format.megabytesPerSecond(812.4) == "812 MB/s")
        #expect(Format.megabytesPerSecond(25_000) == "25.0 GB/s")
    }
}

// MARK: - Workloads

@Suite struct Workloads {
    @Test func deterministicAndIndependentOfBatching() throws {
        var a = Workload(kind: .logLike, seed: 9)
        var b = Workload(kind: .logLike, seed: 9)
        var recordsA: [[UInt8]] = []
        for _ in 0..<1000 { recordsA.append(a.withNextRecord { Array($0) }) }
        // b: the same stream through small batches, with records held back when a batch is full.
        var builder = BatchBuilder()
        var recordsB: [[UInt8]] = []
        while recordsB.count < 1000 {
            builder.removeAll()
            b.fill(&builder, upToBytes: 777)
            let raw = builder.encode(codec: .none).bytes.dropFirst(BatchHeader.byteCount)
            recordsB += decodeRecords(Array(raw))
        }
        #expect(Array(recordsB.prefix(1000)) == recordsA)
        var c = Workload(kind: .logLike, seed: 10)
        #expect(c.withNextRecord { Array($0) } != recordsA[0])
    }

    @Test func logLinesLookLikeLogs() {
        var workload = Workload(kind: .logLike, seed: 1)
        for _ in 0..<500 {
            let line = workload.withNextRecord { String(decoding: $0, as: UTF8.self) }
            #expect(line.utf8.count >= 90 && line.utf8.count <= 125, "\(line)")
            #expect(line.hasPrefix("2026-09-"), "\(line)")
            #expect(line.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F })
        }
        #expect(Double(workload.bytesProduced) / Double(workload.recordsProduced) > 90)
        #expect(Double(workload.bytesProduced) / Double(workload.recordsProduced) < 115)
    }

    @Test(arguments: [UInt64(1), 2, 0xDEAD_BEEF])
    func compressionRatios(seed: UInt64) {
        var logs = Workload(kind: .logLike, seed: seed)
        let logRatio = Baselines.lz4Ratio(of: logs.makeRecordBlocks(count: 16))
        #expect(logRatio > 2.3 && logRatio < 3.1, "log-like ratio \(logRatio)")
        var random = Workload(kind: .random, seed: seed)
        let randomRatio = Baselines.lz4Ratio(of: random.makeRecordBlocks(count: 4))
        #expect(randomRatio < 1.01, "random ratio \(randomRatio)")
    }

    @Test func randomRecordsHaveTheRequestedSize() {
        var workload = Workload(kind: .random, seed: 3, recordSize: 37)
        for _ in 0..<10 { #expect(workload.withNextRecord { $0.count } == 37) }
        var empty = Workload(kind: .random, seed: 3, recordSize: 0)
        #expect(empty.withNextRecord { $0.count } == 0)
    }

    @Test func splitMixReferenceValues() {
        // Reference outputs of SplitMix64 seeded with 0 (from the public-domain C version).
        var random = SplitMix64(seed: 0)
        #expect(random.next() == 0xE220_A839_7B1D_CDAF)
        #expect(random.next() == 0x6E78_9E6A_A1B9_65F4)
    }

    /// Splits a record block (LEB128 length, bytes)* into records.
    private func decodeRecords(_ block: [UInt8]) -> [[UInt8]] {
        var records: [[UInt8]] = []
        var i = 0
        while i < block.count {
            var length = 0, shift = 0
            while true {
                let byte = block[i]
                i += 1
                length |= Int(byte & 0x7F) << shift
                if byte < 0x80 { break }
                shift += 7
            }
            records.append(Array(block[i..<(i + length)]))
            i += length
        }
        return records
    }
}

// MARK: - Baselines (short runs)

@Suite struct BaselineSmoke {
    @Test func lz4AndCRC() {
        var workload = Workload(kind: .logLike, seed: 1)
        let blocks = workload.makeRecordBlocks(count: 4)
        let lz4 = Baselines.lz4(blocks: blocks, duration: .milliseconds(20))
        #expect(lz4.compression.bytes > 0 && lz4.decompression.bytes > 0)
        #expect(lz4.ratio > 2)
        let crc = Baselines.crc32c(blocks: blocks, duration: .milliseconds(10))
        #expect(crc.megabytesPerSecond > 0)
    }

    @Test func syncedWritesCleanUp() throws {
        var template = Array("/tmp/shiplog-baseline-test-XXXXXX".utf8CString)
        let directory = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
        defer { rmdir(directory) }
        let result = try Baselines.syncedWrites(directory: directory, duration: .milliseconds(50))
        #expect(result.operations > 0)
        #expect(result.latency.count == result.operations)
        #expect(result.fileSystem != nil)
        #expect(rmdir(directory) == 0, "the baseline left a file behind")
        #expect(throws: BaselineError.self) {
            try Baselines.syncedWrites(directory: directory + "/missing", duration: .milliseconds(1))
        }
    }
}

// MARK: - Replication commands (the real declarations)

private let shiplogCLI = CommandLineInterface(summary: "shiplog", commands: Commands.all)

/// Parses `line` with the tool's own commands.
private func parseReal(_ line: String) throws -> ParsedArguments {
    switch try shiplogCLI.parse(words(line)) {
    case .run(let arguments): return arguments
    case .help: throw UsageError(command: "test", message: "unexpected help for '\(line)'")
    }
}

/// The usage error `body` throws for `line`, or `nil` when it throws none.
private func usageFailure(_ line: String, _ body: (ParsedArguments) throws -> Void = { _ in }) -> String? {
    do {
        try body(try parseReal(line))
        return nil
    } catch let error as UsageError {
        return error.description
    } catch {
        return "not a usage error: \(error)"
    }
}

private func noEnvironment(_: String) -> String? { nil }

@Suite struct ReplicationArgumentParserTests {
    @Test func serveDefaultsAndFlags() throws {
        let plain = try NodeSettings(try parseReal("serve --dir d --listen 127.0.0.1:0"), environment: noEnvironment)
        #expect(plain.role == .primary)
        #expect(plain.listen == Endpoint(host: "127.0.0.1", port: 0))
        #expect(plain.nodeID == "primary" && plain.clusterID == "shiplog")
        #expect(plain.defaultCommitLevel == .local && plain.commitTimeoutPolicy == .fail && plain.commitTimeout == .seconds(10))
        #expect(plain.secret.origin == .development)
        #expect(plain.machineOptions.log.segmentBytesMax == 128 << 20 && plain.machineOptions.checkpointIntervalBytes == 256 << 20)

        let tuned = try NodeSettings(
            try parseReal(
                "serve --dir d --listen [::1]:7000 --ack flush:2 --secret-file s --cluster c --node n --commit-timeout 250 "
                    + "--on-timeout degrade --segment-bytes 65536 --checkpoint-bytes 0 --slot-retained-bytes 4096"),
            environment: noEnvironment)
        #expect(tuned.listen == Endpoint(host: "::1", port: 7000))
        #expect(tuned.defaultCommitLevel == .flush(followers: 2) && tuned.commitTimeoutPolicy == .degrade)
        #expect(tuned.commitTimeout == .milliseconds(250) && tuned.slotRetainedBytes == 4096)
        #expect(tuned.secret.origin == .flag("s") && tuned.clusterID == "c" && tuned.nodeID == "n")
        #expect(tuned.machineOptions.log.segmentBytesMax == 65536 && tuned.machineOptions.checkpointIntervalBytes == nil)
    }

    @Test func followerIDDefaultsToTheDirectoryName() throws {
        let settings = try NodeSettings(
            try parseReal("follow --dir /data/replica-2/ --primary db1:7000 --listen localhost:0"), environment: noEnvironment)
        #expect(settings.role == .follower(primary: Endpoint(host: "db1", port: 7000)))
        #expect(settings.nodeID == "replica-2")
        let unlisted = try NodeSettings(try parseReal("follow --dir r --primary 10.0.0.1:7000"), environment: noEnvironment)
        #expect(unlisted.listen == nil && unlisted.nodeID == "r")
    }

    @Test func secretFileComesFromTheFlagThenTheEnvironment() throws {
        let environment: (String) -> String? = { $0 == "SHIPLOG_SECRET_FILE" ? "/etc/shiplog/secret" : nil }
        let fromEnvironment = try NodeSettings(try parseReal("serve --dir d --listen 0.0.0.0:7000"), environment: environment)
        #expect(fromEnvironment.secret.origin == .environment("/etc/shiplog/secret"))
        let fromFlag = try NodeSettings(try parseReal("serve --dir d --listen 0.0.0.0:7000 --secret-file f"), environment: environment)
        #expect(fromFlag.secret.origin == .flag("f"))
    }

    @Test(arguments: [
        ("serve --dir d --listen 0.0.0.0:7000", "0.0.0.0:7000 is not a loopback address: give --secret-file"),
        ("follow --dir d --primary 127.0.0.1:1 --listen 192.168.1.5:0", "192.168.1.5:0 is not a loopback address"),
        ("serve --dir d --listen nowhere", "invalid value 'nowhere' for --listen (expected HOST:PORT"),
        ("serve --dir d --listen 127.0.0.1:70000", "invalid value '127.0.0.1:70000' for --listen"),
        ("serve --dir d --listen 127.0.0.1:0 --ack flush", "invalid value 'flush' for --ack (expected local, write:K"),
        ("serve --dir d --listen 127.0.0.1:0 --ack write:0", "invalid value 'write:0' for --ack"),
        ("serve --dir d --listen 127.0.0.1:0 --ack all:2", "invalid value 'all:2' for --ack"),
        ("serve --dir d --listen 127.0.0.1:0 --on-timeout wait", "invalid value 'wait' for --on-timeout (expected fail or degrade)"),
        ("serve --dir d --listen 127.0.0.1:0 --commit-timeout 0", "invalid value '0' for --commit-timeout (expected 1 to 600000)"),
        ("serve --dir d --listen 127.0.0.1:0 --segment-bytes 1024", "invalid value '1024' for --segment-bytes"),
        ("serve --dir d --listen 127.0.0.1:0 --node " + String(repeating: "n", count: 65), "for --node (expected 1 to 64 bytes)"),
        ("serve --dir d", "missing required flag --listen"),
        ("follow --dir d --listen 127.0.0.1:0", "missing required flag --primary"),
        ("follow --dir d --primary 127.0.0.1:1 --slot-retained-bytes 1", "unknown flag --slot-retained-bytes"),
    ])
    func nodeUsageErrors(line: String, message: String) {
        let failure = usageFailure(line) { _ = try NodeSettings($0, environment: noEnvironment) }
        #expect(failure?.contains(message) == true, "\(line): \(failure ?? "accepted")")
    }

    @Test func dirOrServerSelectsTheTarget() throws {
        #expect(try Commands.target(try parseReal("read --dir d")) == .directory(FilePath("d")))
        #expect(try Commands.target(try parseReal("read --server 127.0.0.1:9 --follow")) == .server(Endpoint(host: "127.0.0.1", port: 9)))
        let append = try parseReal("append --server h:1 --ack apply:1 --secret-file s --cluster c")
        #expect(try Commands.target(append, localOnly: Commands.localAppendFlags, remoteOnly: ["ack"]) == .server(Endpoint(host: "h", port: 1)))
        #expect(try Commands.commitLevel(append) == .apply(followers: 1))
        #expect(try Commands.commitLevel(try parseReal("append --server h:1")) == nil, "no --ack: the primary's default")
        #expect(try Commands.target(try parseReal("kv get --server h:1 k")) == .server(Endpoint(host: "h", port: 1)))
    }

    @Test(arguments: [
        ("read", "missing required flag --dir (or --server HOST:PORT)"),
        ("read --dir d --server h:1", "--dir and --server cannot be combined"),
        ("read --server h", "invalid value 'h' for --server"),
        ("read --dir d --secret-file s", "--secret-file needs --server"),
        ("append --dir d --ack local", "--ack needs --server"),
        ("append --server h:1 --durability buffered", "--durability applies to a local --dir only"),
        ("append --server h:1 --compression none", "--compression applies to a local --dir only"),
        ("kv put --server h:1 --durability immediate k v", "--durability applies to a local --dir only"),
        ("kv del --dir d --ack all k", "--ack needs --server"),
        ("kv put k v", "missing required flag --dir"),
    ])
    func targetUsageErrors(line: String, message: String) {
        let failure = usageFailure(line) { arguments in
            _ = try Commands.target(arguments, localOnly: Commands.localAppendFlags, remoteOnly: ["ack"])
        }
        #expect(failure?.contains(message) == true, "\(line): \(failure ?? "accepted")")
    }

    @Test func statusNeedsAServer() {
        #expect(usageFailure("status")?.contains("missing required flag --server") == true)
        #expect(usageFailure("status --server h:1 --json") == nil)
        #expect(usageFailure("kv checkpoint --server h:1 --dir d")?.contains("unknown flag --server") == true)
    }

    @Test func loopbackAddresses() {
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "::1"] { #expect(Commands.isLoopback(host), "\(host)") }
        for host in ["0.0.0.0", "10.0.0.1", "::", "example.com", "127.0.0", "127.0.0.256"] { #expect(!Commands.isLoopback(host), "\(host)") }
    }

    @Test func statusTableListsFollowers() throws {
        let document = """
            {"role":"primary","node_id":"p","epoch":1,"last_lsn":12,"degraded":false,"followers":[\
            {"node_id":"f1","connected":true,"written_lsn":12,"flushed_lsn":11,"applied_lsn":10,"lag_records":1,"lag_bytes":300,"lag_ms":0.5,"address":"127.0.0.1:4"}]}
            """
        guard case .object(let fields) = try ParsedJSON.parse(document) else {
            Issue.record("not an object")
            return
        }
        let table = StatusCommand.table(fields)
        #expect(table.contains("role       primary\n"))
        #expect(table.contains("followers  1\n"))
        #expect(table.contains("  NODE  CONNECTED  WRITTEN  FLUSHED  APPLIED  LAG_RECORDS  LAG_BYTES  LAG_MS  ADDRESS\n"))
        #expect(table.contains("  f1    yes        12       11       10       1            300        0.5     127.0.0.1:4\n"))
    }

    @Test func statusJSONParserIsStrict() throws {
        for bad in ["", "{", "{\"a\":}", "[1,]", "{\"a\":1} x", "\"\u{01}\"", "tru", String(repeating: "[", count: 40) + String(repeating: "]", count: 40)] {
            #expect(throws: ParsedJSON.SyntaxError.self, "\(bad)") { try ParsedJSON.parse(bad) }
        }
        #expect(try ParsedJSON.parse(#"{"s":"a\"b\\c\u0041","n":-1.5e2,"b":[true,false,null]}"#)
            == .object(["s": .string("a\"b\\cA"), "n": .number(-150), "b": .array([.bool(true), .bool(false), .null])]))
    }

    @Test func prefixScanEndsAtTheNextKey() {
        #expect(RemoteKeyValueCommand.keyAfterPrefix(Array("ab".utf8)) == Array("ac".utf8))
        #expect(RemoteKeyValueCommand.keyAfterPrefix([0x61, 0xFF]) == [0x62])
        #expect(RemoteKeyValueCommand.keyAfterPrefix([0xFF, 0xFF]) == nil)
        #expect(RemoteKeyValueCommand.keyAfterPrefix([]) == nil)
    }
}
