import Foundation
import Glibc
import Testing

@testable import shiplog

// `shiplog bench`: the full scenario on small settings (its JSON, its report and its HTML
// page), the page rendered by headless Chromium, Ctrl-C, and the parsing of `bench` next to
// `bench append`. One scenario run is shared by the tests that read its output.

/// Output of one `shiplog bench` run on small settings.
private struct ScenarioRun: @unchecked Sendable {
    // @unchecked: the parsed JSON (`[String: Any]`) is only read after the run.
    let status: Int32
    let stdout: String
    let stderr: String
    let json: [String: Any]
    let html: String
    let htmlPath: String

    static let shared: Result<ScenarioRun, any Error> = Result { try ScenarioRun.start() }

    static let root = Scratch("benchScenario", group: "shiplog-bench-tests").root
    static let arguments = [
        "bench", "--seconds", "0.2", "--record-bytes", "64", "--followers", "1", "--writers", "1,4",
        "--json", root + "/bench.json", "--html", root + "/bench.html", "--dir", root,
    ]

    private static func start() throws -> ScenarioRun {
        let child = try ChildProcess(arguments)
        let status = child.wait(timeout: .seconds(120))
        let jsonData = try Data(contentsOf: URL(fileURLWithPath: root + "/bench.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: jsonData) as? [String: Any], "the JSON is an object")
        let html = try String(contentsOfFile: root + "/bench.html", encoding: .utf8)
        return ScenarioRun(
            status: status, stdout: child.stdout, stderr: child.stderr, json: json, html: html, htmlPath: root + "/bench.html")
    }

    static func get() throws -> ScenarioRun {
        switch shared {
        case .success(let run): return run
        case .failure(let error):
            Issue.record("shiplog \(arguments.joined(separator: " ")) failed: \(error)")
            throw error
        }
    }

    var phases: [[String: Any]] { json["phases"] as? [[String: Any]] ?? [] }

    func phase(_ key: String) -> [String: Any]? { phases.first { $0["key"] as? String == key } }
}

private func jsonNumber(_ value: Any?) -> Double? { (value as? NSNumber)?.doubleValue }

/// Headless Chromium, if installed (`make deps` installs Debian's `chromium`).
private enum Chromium {
    static let names = ["chromium", "chromium-browser", "chromium-headless-shell", "google-chrome"]
    static let timeout: TimeInterval = 60

    static let path: String? = {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        for name in names {
            for directory in directories where access("\(directory)/\(name)", X_OK) == 0 { return "\(directory)/\(name)" }
        }
        return nil
    }()

    /// Runs Chromium headless with `arguments`; returns its standard output, or throws after ``timeout``.
    static func run(_ arguments: [String], scratch: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(path))
        process.arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
            "--hide-scrollbars", "--user-data-dir=\(scratch)/profile",
        ] + arguments
        let outputPath = scratch + "/chromium-\(UInt64.random(in: 0...UInt64.max)).out"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline {
                process.terminate()
                Issue.record("chromium \(arguments.joined(separator: " ")) did not finish within \(timeout) s")
                break
            }
            usleep(20_000)
        }
        process.waitUntilExit()
        try output.close()
        return try String(contentsOfFile: outputPath, encoding: .utf8)
    }
}

@Suite(.serialized) struct BenchScenarioTests {
    // MARK: Parsing `bench` next to `bench append`

    private let cli = CommandLineInterface(summary: "test", commands: Commands.all)

    @Test func benchAloneIsTheScenarioWhileBenchSubcommandsKeepParsing() throws {
        guard case .run(let scenario) = try cli.parse(["bench", "--seconds", "1"]) else { Issue.record("no run"); return }
        #expect(scenario.command.path == ["bench"])
        #expect(try scenario.double("seconds") == 1)
        guard case .run(let append) = try cli.parse(["bench", "append", "--seconds", "1"]) else { Issue.record("no run"); return }
        #expect(append.command.path == ["bench", "append"])
        guard case .help(let help) = try cli.parse(["bench", "--help"]) else { Issue.record("no help"); return }
        #expect(help.hasPrefix("Usage: shiplog bench [--seconds N]"))
        #expect(help.contains("bench replicate"), "the help of `bench` lists its subcommands")
        guard case .help(let appendHelp) = try cli.parse(["bench", "append", "-h"]) else { Issue.record("no help"); return }
        #expect(appendHelp.hasPrefix("Usage: shiplog bench append"))
    }

    @Test func unknownBenchSubcommandIsNamedAsACommandNotAStrayArgument() {
        #expect(throws: UsageError.self) { try cli.parse(["bench", "frob"]) }
        do {
            _ = try cli.parse(["bench", "frob"])
        } catch {
            #expect(error.description == "shiplog bench: unknown command 'frob' (expected append, recovery, kv or replicate)")
        }
    }

    @Test func writerListsOutOfRangeOrMalformedAreUsageErrors() throws {
        for bad in ["0", "1,,2", "1,300", "a", "1,2,3,4,5,6,7,8,9", "-1", ""] {
            #expect(throws: UsageError.self, "\(bad)") { try BenchScenarioCommand.writerCounts(bad, command: Commands.bench) }
        }
        #expect(try BenchScenarioCommand.writerCounts("1,16,64", command: Commands.bench) == [1, 16, 64])
    }

    // MARK: `bench replicate`

    /// The JSON keys the issue names and the ceilings of the 16-client figure, each a positive
    /// number: every phase committed something. (No comparison between figures: they are
    /// measured seconds apart on a machine the other tests keep busy.)
    @Test func benchReplicatePrintsEveryPhaseAndItsCeilingsAsJSON() throws {
        let scratch = Scratch(group: "shiplog-bench-tests")
        defer { try? FileManager.default.removeItem(atPath: scratch.root) }
        let child = try ChildProcess(["bench", "replicate", "--json", "--seconds", "0.2", "--dir", scratch.root])
        #expect(child.wait(timeout: .seconds(120)) == 0, "stderr: \(child.stderr)")
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(child.stdout.utf8)) as? [String: Any], "stdout is a JSON object: \(child.stdout)")
        for key in [
            "local_records_per_second", "local_lag_p99_ms", "flush1_commits_per_second_1", "flush1_commits_per_second_16",
            "flush1_commits_per_second_64", "flush1_latency_p50_ms_1", "fdatasync_plus_rtt_ms", "local_commits_per_second_16",
            "local_commits_per_second_16_no_followers", "local_commits_per_second_16_followers_fdatasyncs_only",
        ] {
            let value = try #require(jsonNumber(json[key]), "\(key) is a number")
            #expect(value > 0, "\(key) = \(value)")
        }
        let rates = try #require(json["follower_fdatasyncs_per_second"] as? [Any], "one flush-load rate per follower")
        #expect(rates.count == 2 && rates.allSatisfy { (jsonNumber($0) ?? 0) > 0 }, "\(rates)")
    }

    // MARK: Charts

    @Test func chartTextIsEscapedSoANameCannotInjectMarkup() {
        let chart = SVGChart(
            kind: "throughput\"><script>", title: "<script>alert(1)</script>", xLabel: "a & b", yLabel: "'y'",
            series: [SVGChart.Series(name: "</svg><img src=x>", points: [SeriesPoint(seconds: 0, value: 1), SeriesPoint(seconds: 1, value: 2)])],
            attributes: [("data-phase", "\"onload=\"x")])
        let svg = chart.rendered()
        #expect(!svg.contains("<script"))
        #expect(!svg.contains("<img"))
        #expect(!svg.contains("\"onload"))
        #expect(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        #expect(svg.contains("a &amp; b"))
        #expect(svg.hasSuffix("</svg>") && svg.components(separatedBy: "</svg>").count == 2)
    }

    @Test func chartLeavesOutPointsItCannotPlaceAndDrawsALonePoint() {
        let points = [
            SeriesPoint(seconds: .nan, value: 1), SeriesPoint(seconds: 1, value: .infinity), SeriesPoint(seconds: 0, value: 5),
            SeriesPoint(seconds: 2, value: -1),
        ]
        let log = SVGChart(kind: "x", title: "t", xLabel: "x", yLabel: "y", xScale: .logarithmic, yScale: .logarithmic, series: [SVGChart.Series(name: "s", points: points)])
        #expect(log.rendered().contains("no data"), "no point is positive on both axes")
        let linear = SVGChart(kind: "x", title: "t", xLabel: "x", yLabel: "y", series: [SVGChart.Series(name: "s", points: points)])
        let svg = linear.rendered()
        #expect(!svg.contains("nan") && !svg.contains("inf"))
        #expect(svg.contains("<path d=\"M"))
        let lone = SVGChart(kind: "x", title: "t", xLabel: "x", yLabel: "y", series: [SVGChart.Series(name: "s", points: [SeriesPoint(seconds: 1, value: 1)])])
        #expect(lone.rendered().contains("<circle"))
    }

    @Test func latencyCDFRisesToOneAtTheMaximum() {
        var histogram = Histogram()
        for value in [100, 200, 5_000, 1_000_000, 3] as [UInt64] { histogram.record(value) }
        let cdf = histogram.cdf()
        #expect(cdf.first?.value == 3)
        #expect(cdf.last?.value == 1_000_000 && cdf.last?.fraction == 1)
        #expect(zip(cdf, cdf.dropFirst()).allSatisfy { $0.value < $1.value && $0.fraction < $1.fraction })
        #expect(Histogram().cdf().isEmpty)
    }

    // MARK: The scenario end to end

    @Test func scenarioReportsEveryPhaseWithSaneFiguresInTheTextAndTheJSON() throws {
        let run = try ScenarioRun.get()
        #expect(run.status == 0, "stderr: \(run.stderr)")
        #expect(run.json["format"] as? String == "shiplog-bench/1")
        #expect(run.json["interrupted"] as? Bool == false)
        let parameters = try #require(run.json["parameters"] as? [String: Any])
        #expect(jsonNumber(parameters["seconds_per_phase"]) == 0.2)
        #expect(jsonNumber(parameters["record_bytes"]) == 64)
        #expect(jsonNumber(parameters["followers"]) == 1)
        #expect((parameters["writers"] as? [Int]) == [1, 4])
        let machine = try #require(run.json["machine"] as? [String: Any])
        #expect((jsonNumber(machine["cpus"]) ?? 0) >= 1)
        #expect(machine["build"] as? String != nil)
        let baselines = try #require(run.json["baselines"] as? [String: Any])
        #expect((jsonNumber((baselines["fdatasync_4k"] as? [String: Any])?["per_second"]) ?? 0) > 0)
        #expect((jsonNumber((baselines["loopback_rtt"] as? [String: Any])?["p50_ns"]) ?? 0) > 0)
        #expect((jsonNumber((baselines["lz4"] as? [String: Any])?["ratio"]) ?? 0) > 1.5, "log-like records compress")

        let keys = run.phases.compactMap { $0["key"] as? String }
        #expect(keys == [
            "append-buffered", "group-commit-1", "group-commit-4", "replication-async", "commit-local-1", "quorum-flush1-4",
            "commit-all-4", "follower-catch-up", "recovery",
        ])
        for phase in run.phases {
            let key = phase["key"] as? String ?? "?"
            #expect((jsonNumber(phase["operations"]) ?? 0) > 0, "\(key)")
            #expect((jsonNumber(phase["per_second"]) ?? 0) > 0, "\(key)")
            #expect((jsonNumber(phase["cpu_seconds"]) ?? -1) >= 0, "\(key)")
            #expect(phase["stopped_early"] as? Bool == false, "\(key)")
            #expect((jsonNumber((phase["bound"] as? [String: Any])?["ratio"]) ?? 0) > 0, "\(key) is compared with its bound")
            if let latency = phase["latency"] as? [String: Any] {
                let p50 = jsonNumber(latency["p50_ns"]) ?? 0, p99 = jsonNumber(latency["p99_ns"]) ?? 0
                let p999 = jsonNumber(latency["p999_ns"]) ?? 0, max = jsonNumber(latency["max_ns"]) ?? 0
                #expect(0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max, "\(key): \(latency)")
                let cdf = phase["latency_cdf"] as? [[Double]] ?? []
                #expect(cdf.last?.last == 1, "\(key): the CDF ends at 1")
            }
            if key != "recovery" {
                #expect(!(phase["throughput_series"] as? [[Double]] ?? []).isEmpty, "\(key) has a throughput series")
            }
        }
        #expect((jsonNumber(run.phase("append-buffered")?["compression_ratio"]) ?? 0) > 1.5)
        for key in ["group-commit-1", "commit-local-1", "quorum-flush1-4", "commit-all-4"] {
            #expect(run.phase(key)?["latency"] is [String: Any], "\(key) measures latency")
        }
        #expect(run.phase("replication-async")?["follower_lag"] is [String: Any])
        let catchUpLag = run.phase("follower-catch-up")?["lag_series_ms"] as? [[Double]] ?? []
        #expect(!catchUpLag.isEmpty, "the lag of the follower that was down is charted")

        // Recovery replays exactly what the primary acknowledged: nothing lost, nothing invented.
        let model = run.json["replication_delay_model"] as? [[String: Any]] ?? []
        let acknowledged = ["replication-async", "commit-local-1", "quorum-flush1-4", "commit-all-4"]
            .compactMap { jsonNumber(run.phase($0)?["operations"]) }.reduce(0, +)
            + (jsonNumber((run.phase("follower-catch-up")?["extra"] as? [String: Any])?["records_appended_while_down"]) ?? 0)
            + model.filter { $0["on_main_cluster"] as? Bool == true }.compactMap { jsonNumber($0["commits"]) }.reduce(0, +)
        #expect(jsonNumber(run.phase("recovery")?["operations"]) == acknowledged)

        #expect(model.compactMap { jsonNumber($0["nodes"]) } == [2, 3])
        for row in model {
            let nodes = jsonNumber(row["nodes"]) ?? 0, local = jsonNumber(row["local_latency_p50_ns"]) ?? 0
            let modelDelay = jsonNumber(row["model_delay_ns"]) ?? 0
            #expect(abs(modelDelay - (nodes - 1) / nodes * local) <= 1e-6 * max(1, modelDelay))
            #expect(jsonNumber(row["measured_delay_ns"]) == (jsonNumber(row["all_latency_p50_ns"]) ?? 0) - local)
            #expect((row["explanation"] as? String)?.hasPrefix("n = \(Int(nodes)): measured") == true)
            #expect((jsonNumber(row["commits"]) ?? 0) >= 2, "both levels were measured")
        }

        for text in ["append (buffered)", "group commit (immediate), 4 writers", "quorum (flush:1), 4 clients",
                     "follower killed and caught up", "recovery (reopen and replay)", "baselines (same run",
                     "synchronous replication delay: model Delay = (n−1)/n × Latency", "n = 3: measured"] {
            #expect(run.stdout.contains(text), "the report shows \(text)")
        }
    }

    @Test func htmlPageIsSelfContainedWithEveryChartDrawn() throws {
        let run = try ScenarioRun.get()
        let html = run.html
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        for external in ["<script", "http://", "https://", "src=", "href=", "@import", "url("] {
            #expect(!html.contains(external), "nothing external or executable: found \(external)")
        }
        let svgs = html.components(separatedBy: "<svg ").dropFirst()
        let kinds = svgs.compactMap { $0.split(separator: "\"").dropFirst().first.map(String.init) }
        #expect(kinds.filter { $0 == "throughput" }.count == run.phases.count, "one throughput chart per phase")
        #expect(kinds.filter { $0 == "latency-cdf" }.count == 1)
        #expect(kinds.filter { $0 == "follower-lag" }.count == 1)
        for svg in svgs where !svg.contains("data-phase=\"recovery\"") {
            let element = svg.components(separatedBy: "</svg>")[0]
            #expect(element.contains("<title>"), "\(element.prefix(80))")
            #expect(element.contains("<path d=\"M"), "a drawn line: \(element.prefix(120))")
        }
    }

    @Test(.enabled(if: Chromium.path != nil, "Chromium is not installed (`make deps` installs Debian's chromium)"))
    func headlessChromiumRendersEveryChartAndAScreenshotIsNotBlank() throws {
        let run = try ScenarioRun.get()
        let scratch = Scratch()
        defer { scratch.cleanup() }
        // A copy of the page with a probe that measures each chart's drawn lines in the browser.
        let probe = """
            <pre id="render-probe"></pre><script>
            document.getElementById('render-probe').textContent = Array.from(document.querySelectorAll('svg[data-chart]')).map(function (svg) {
              var box = svg.getBoundingClientRect(), drawn = 0, paths = svg.querySelectorAll('path');
              paths.forEach(function (p) { var b = p.getBBox(); if (p.getTotalLength() > 0 || b.width > 0 || b.height > 0) drawn++; });
              return 'chart ' + svg.getAttribute('data-chart') + ' ' + Math.round(box.width) + ' ' + Math.round(box.height) + ' ' + paths.length + ' ' + drawn;
            }).join('\\n');
            </script>
            """
        let probed = scratch.root + "/probed.html"
        try run.html.replacingOccurrences(of: "</body>", with: probe + "</body>").write(toFile: probed, atomically: true, encoding: .utf8)
        let dom = try Chromium.run(["--dump-dom", "file://" + probed], scratch: scratch.root)
        let probeOutput = try #require(
            dom.components(separatedBy: "<pre id=\"render-probe\">").dropFirst().first?.components(separatedBy: "</pre>").first,
            "the probe ran: \(dom.suffix(2000))")
        let lines = probeOutput.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(lines.count == run.phases.count + 2, "every chart was laid out: \(dom.suffix(2000))")
        for fields in lines where fields.count == 6 {
            let (kind, width, height, paths, drawn) = (fields[1], Int(fields[2]) ?? 0, Int(fields[3]) ?? 0, Int(fields[4]) ?? 0, Int(fields[5]) ?? 0)
            #expect(width > 100 && height > 100, "\(kind) has a size: \(fields)")
            if kind != "throughput" || paths > 0 { #expect(drawn > 0 && drawn == paths, "\(kind) draws its lines: \(fields)") }
        }

        // A screenshot of the real page (no probe) against one of a blank page of the same size:
        // PNG compresses a blank page to almost nothing.
        let blank = scratch.root + "/blank.html"
        try "<!DOCTYPE html><html><body></body></html>".write(toFile: blank, atomically: true, encoding: .utf8)
        var sizes: [Int] = []
        for (page, shot) in [(run.htmlPath, "page.png"), (blank, "blank.png")] {
            let path = scratch.root + "/" + shot
            _ = try Chromium.run(["--screenshot=\(path)", "--window-size=1100,2400", "file://" + page], scratch: scratch.root)
            let png = try Data(contentsOf: URL(fileURLWithPath: path))
            #expect(png.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]), "\(shot) is a PNG")
            sizes.append(png.count)
        }
        #expect(sizes[0] > 10 * sizes[1], "the page's screenshot (\(sizes[0]) bytes) is not blank (\(sizes[1]) bytes)")
    }

    @Test func anOutputFileThatCannotBeCreatedFailsBeforeMeasuring() throws {
        let started = Date()
        let missing = "/nonexistent-\(UInt64.random(in: 0...UInt64.max))/bench.html"
        let result = try runShiplog(["bench", "--seconds", "60", "--html", missing])
        #expect(result.status == 1)
        #expect(result.stderr.contains("--html \(missing): cannot create"), "\(result.stderr)")
        #expect(Date().timeIntervalSince(started) < 10, "nothing was measured first")
    }

    // MARK: Ctrl-C

    @Test func ctrlCStopsTheCurrentPhaseSkipsTheRestAndStillReports() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let json = scratch.root + "/stopped.json"
        let started = Date()
        let child = try ChildProcess([
            "bench", "--seconds", "60", "--followers", "1", "--writers", "1", "--json", json, "--dir", scratch.root,
        ])
        defer { child.signal(SIGKILL) }
        let deadline = Date().addingTimeInterval(60)
        while !child.stderr.contains("… append (buffered)") && Date() < deadline { usleep(20_000) }
        usleep(300_000)
        child.signal(SIGINT)
        let status = child.wait(timeout: .seconds(30))
        #expect(Date().timeIntervalSince(started) < 50, "the 60 s phase ended early")
        #expect(status == 130, "stderr: \(child.stderr)")
        #expect(child.stderr.contains("SIGINT: stopping the current phase"))
        #expect(child.stdout.contains("append (buffered) (stopped)"), "the report of what was measured: \(child.stdout)")
        #expect(child.stdout.contains("interrupted: stopped early"))
        #expect(!child.stdout.contains("group commit"), "the phases after it were skipped")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
        #expect(document["interrupted"] as? Bool == true)
        let phases = document["phases"] as? [[String: Any]] ?? []
        #expect(phases.count == 1 && phases.first?["stopped_early"] as? Bool == true)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: scratch.root).filter { $0.hasPrefix("shiplog-bench-") }
        #expect(leftovers.isEmpty, "the benchmark's directories were removed: \(leftovers)")
    }
}
