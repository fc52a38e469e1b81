import Foundation
import Glibc
import ShipLog
import Testing

// End-to-end tests of the `shiplog` tool: each runs the built binary as a child process
// (ChildProcess, in ChildProcess.swift).

/// Parses `read` output: `LSN<TAB>record` lines.
private func parseRead(_ text: String) -> [(UInt64, String)] {
    text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { line in
        let parts = line.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
        return (UInt64(parts[0]) ?? 0, parts.count > 1 ? String(parts[1]) : "<no tab>")
    }
}

/// Reads every record of the log in `directory` after a recovering open.
private func recoveredRecords(_ directory: String) throws -> [UInt64: String] {
    let log = try Log.open(directory: FilePath(directory))
    defer { try? log.close() }
    var out: [UInt64: String] = [:]
    try log.forEachRecord(from: .first) { lsn, bytes in out[lsn.rawValue] = String(decoding: bytes, as: UTF8.self) }
    return out
}

// MARK: - Tests

@Suite struct CLITests {
    @Test func appendThenReadRoundTrip() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let lines = (1...200).map { "record \($0) " + String(repeating: "ab", count: $0 % 17) }
        let appended = try runShiplog(["append", "--dir", scratch.log], input: lines.joined(separator: "\n") + "\n")
        #expect(appended.status == 0, "stderr: \(appended.stderr)")
        #expect(appended.stdout == (1...200).map { "\($0)\n" }.joined(), "one LSN per line, in order")
        #expect(appended.stderr.isEmpty)
        let read = try runShiplog(["read", "--dir", scratch.log])
        #expect(read.status == 0, "stderr: \(read.stderr)")
        #expect(read.stdout == zip(1...200, lines).map { "\($0)\t\($1)\n" }.joined())
        // A second append continues the LSNs.
        let more = try runShiplog(["append", "--dir", scratch.log], input: "x\ny\n")
        #expect(more.stdout == "201\n202\n")
        let again = try runShiplog(["read", "--dir", scratch.log])
        #expect(parseRead(again.stdout).suffix(2).map(\.1) == ["x", "y"])
        #expect(parseRead(again.stdout).map(\.0) == Array(1...202))
    }

    @Test func readFromAnLSN() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        // Several batches (one per append) so that --from lands inside and between them.
        for chunk in 0..<5 {
            let input = (0..<10).map { "c\(chunk)-\($0)" }.joined(separator: "\n") + "\n"
            #expect(try runShiplog(["append", "--dir", scratch.log], input: input).status == 0)
        }
        for from in [1, 2, 10, 11, 37, 50] as [UInt64] {
            let read = try runShiplog(["read", "--dir", scratch.log, "--from", "\(from)"])
            #expect(read.status == 0, "stderr: \(read.stderr)")
            let records = parseRead(read.stdout)
            #expect(records.map(\.0) == Array(from...50), "--from \(from)")
            let expected = "c\((from - 1) / 10)-\((from - 1) % 10)"
            #expect(records.first?.1 == expected, "--from \(from)")
        }
        let past = try runShiplog(["read", "--dir", scratch.log, "--from", "51"])
        #expect(past.status == 0)
        #expect(past.stdout.isEmpty)
    }

    @Test(arguments: ["buffered", "interval", "immediate"], ["lz4", "none"])
    func appendWithEachDurabilityAndCompression(durability: String, compression: String) throws {
        let scratch = Scratch("\(durability)\(compression)")
        defer { scratch.cleanup() }
        // Compressible and incompressible lines.
        var rng = SystemRandomNumberGenerator()
        let lines = (0..<300).map { i in
            i % 2 == 0
                ? String(repeating: "compressible-\(i % 7) ", count: 20)
                : (0..<60).map { _ in String(UInt8.random(in: 33...126, using: &rng), radix: 16) }.joined()
        }
        var arguments = ["append", "--dir", scratch.log, "--durability", durability, "--compression", compression]
        if durability == "interval" { arguments += ["--sync-interval-ms", "5"] }
        let appended = try runShiplog(arguments, input: lines.joined(separator: "\n") + "\n")
        #expect(appended.status == 0, "stderr: \(appended.stderr)")
        #expect(appended.stdout == (1...300).map { "\($0)\n" }.joined())
        let read = try runShiplog(["read", "--dir", scratch.log])
        #expect(parseRead(read.stdout).map(\.1) == lines)
        #expect(parseRead(read.stdout).map(\.0) == Array(1...300))
        let verify = try runShiplog(["verify", "--dir", scratch.log])
        #expect(verify.status == 0, "verify: \(verify.stdout) \(verify.stderr)")
    }

    @Test func lastLineWithoutNewlineIsARecord() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let appended = try runShiplog(["append", "--dir", scratch.log], input: "first\n\nthird\nlast without newline")
        #expect(appended.status == 0, "stderr: \(appended.stderr)")
        #expect(appended.stdout == "1\n2\n3\n4\n")
        let read = try runShiplog(["read", "--dir", scratch.log])
        #expect(read.stdout == "1\tfirst\n2\t\n3\tthird\n4\tlast without newline\n")
    }

    @Test func verifyPassesAGoodLogAndNamesTheFileAndOffsetOfAFlippedByte() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        // Three appends: three batches in one (closed) segment.
        for chunk in 0..<3 {
            let input = (0..<20).map { "batch-\(chunk)-record-\($0)" }.joined(separator: "\n") + "\n"
            #expect(try runShiplog(["append", "--dir", scratch.log, "--compression", "none"], input: input).status == 0)
        }
        let good = try runShiplog(["verify", "--dir", scratch.log])
        #expect(good.status == 0, "verify of a good log: \(good.stdout) \(good.stderr)")
        #expect(good.stdout.hasPrefix("OK"))
        #expect(good.stdout.contains("3 batches"))
        #expect(good.stdout.contains("LSN 1...60"))

        let segmentName = SegmentName.fileName(baseLSN: .first)
        let segmentPath = scratch.log + "/" + segmentName
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: segmentPath)))
        // A byte inside the first batch's payload (after the segment and batch headers).
        let batchOffset = SegmentHeader.byteCount
        let flipped = batchOffset + BatchHeader.byteCount + 10
        bytes[flipped] ^= 0x20
        try Data(bytes).write(to: URL(fileURLWithPath: segmentPath))

        let bad = try runShiplog(["verify", "--dir", scratch.log])
        #expect(bad.status == 1, "verify of a damaged log: \(bad.stdout) \(bad.stderr)")
        #expect(bad.stderr.contains(segmentName), "names the segment: \(bad.stderr)")
        #expect(bad.stderr.contains("byte \(batchOffset)"), "names the byte offset of the damaged batch: \(bad.stderr)")
        #expect(bad.stdout.hasPrefix("FAILED"))
        // Read refuses to return damaged data too.
        let read = try runShiplog(["read", "--dir", scratch.log])
        #expect(read.status == 1, "read of a damaged log: \(read.stdout.prefix(200)) \(read.stderr)")
        #expect(read.stderr.contains(segmentName))
    }

    @Test func inspectJSONParsesAndListsSegments() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let input = (0..<50).map { "inspect-\($0)" }.joined(separator: "\n") + "\n"
        #expect(try runShiplog(["append", "--dir", scratch.log], input: input).status == 0)
        let inspect = try runShiplog(["inspect", "--dir", scratch.log, "--json"])
        #expect(inspect.status == 0, "stderr: \(inspect.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8))
        let document = try #require(object as? [String: Any], "inspect --json prints an object: \(inspect.stdout)")
        let segments = try #require(document["segments"] as? [[String: Any]], "with a segments array")
        #expect(segments.count == 1)
        #expect(segments.first?["file"] as? String == SegmentName.fileName(baseLSN: .first))
        #expect((segments.first?["first_lsn"] as? NSNumber)?.intValue == 1)
        #expect((segments.first?["last_lsn"] as? NSNumber)?.intValue == 50)
        #expect((document["last_lsn"] as? NSNumber)?.intValue == 50)
        // The table form works too.
        let table = try runShiplog(["inspect", "--dir", scratch.log])
        #expect(table.status == 0)
        #expect(table.stdout.contains(SegmentName.fileName(baseLSN: .first)))
    }

    @Test(arguments: [
        ["append", "--dir", "DIR", "--bogus"],
        ["append", "--dir", "DIR", "--durability", "sometimes"],
        ["append", "--dir", "DIR", "--compression", "zstd"],
        ["append"],
        ["read"],
        ["verify"],
        ["inspect", "--json"],
        ["read", "--dir", "DIR", "--from", "zero"],
        ["frobnicate", "--dir", "DIR"],
        [],
    ])
    func usageErrorsExitTwoWithOneLine(arguments: [String]) throws {
        let scratch = Scratch("usage\(arguments.joined())")
        defer { scratch.cleanup() }
        let result = try runShiplog(arguments.map { $0 == "DIR" ? scratch.log : $0 }, input: "never read\n")
        #expect(result.status == 2, "\(arguments): exit \(result.status), stderr: \(result.stderr)")
        #expect(result.stderr.hasSuffix("\n"))
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "one line on stderr: \(result.stderr)")
        #expect(lines.first?.hasPrefix("shiplog") == true, "\(result.stderr)")
        #expect(result.stdout.isEmpty)
        // A usage error never creates or touches the log.
        #expect(!FileManager.default.fileExists(atPath: scratch.log))
    }

    @Test(arguments: [["append"], ["read"], ["verify"], ["inspect"], ["bench", "append"], []])
    func helpExitsZero(command: [String]) throws {
        let result = try runShiplog(command + ["--help"])
        #expect(result.status == 0, "\(command) --help: \(result.stderr)")
        #expect(result.stdout.hasPrefix("Usage: shiplog"), "\(result.stdout.prefix(100))")
        if !command.isEmpty {
            #expect(result.stdout.contains("shiplog " + command.joined(separator: " ")))
        }
        #expect(result.stderr.isEmpty)
    }

    @Test func secondAppendOnTheSameLogFailsOnTheLock() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let first = try ChildProcess(["append", "--dir", scratch.log], keepStdinOpen: true)
        defer { first.signal(SIGKILL); first.wait() }
        first.write("held\n")
        #expect(first.waitForStdout { $0 == "1\n" }, "the first append acknowledged: \(first.stdout) \(first.stderr)")
        let second = try runShiplog(["append", "--dir", scratch.log], input: "intruder\n")
        #expect(second.status == 1, "stderr: \(second.stderr)")
        #expect(second.stderr.contains("LOCK"), "names the lock: \(second.stderr)")
        #expect(second.stderr.contains(scratch.log), "names the directory: \(second.stderr)")
        #expect(second.stdout.isEmpty, "nothing acknowledged")
        // The first keeps working and ends cleanly.
        first.write("still mine\n")
        first.closeStdin()
        #expect(first.wait() == 0, "first append: \(first.stderr)")
        #expect(first.stdout == "1\n2\n")
        let read = try runShiplog(["read", "--dir", scratch.log])
        #expect(read.stdout == "1\theld\n2\tstill mine\n")
    }

    @Test func readFollowSeesRecordsAppendedByAnotherProcess() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        #expect(try runShiplog(["append", "--dir", scratch.log], input: "before\n").status == 0)
        let follower = try ChildProcess(["read", "--dir", scratch.log, "--follow"])
        defer { follower.signal(SIGKILL); follower.wait() }
        #expect(follower.waitForStdout { $0 == "1\tbefore\n" }, "follow prints what is there: \(follower.stdout)")
        // Appends from other processes, in several batches.
        #expect(try runShiplog(["append", "--dir", scratch.log], input: "live-1\nlive-2\n").status == 0)
        #expect(try runShiplog(["append", "--dir", scratch.log, "--durability", "buffered"], input: "live-3\n").status == 0)
        let expected = "1\tbefore\n2\tlive-1\n3\tlive-2\n4\tlive-3\n"
        let sawAppends = follower.waitForStdout(timeout: .seconds(3)) { $0 == expected }
        #expect(sawAppends, "follow sees new records: \(follower.stdout)")
        if sawAppends {
            // And a writer that stays open, appending batch by batch.
            let writer = try ChildProcess(["append", "--dir", scratch.log, "--durability", "buffered"], keepStdinOpen: true)
            for i in 5...8 {
                writer.write("streamed-\(i)\n")
                #expect(follower.waitForStdout { $0.hasSuffix("\(i)\tstreamed-\(i)\n") }, "record \(i): \(follower.stdout)")
            }
            writer.closeStdin()
            #expect(writer.wait() == 0)
        }
        follower.signal(SIGTERM)
        _ = follower.wait()
        if sawAppends { #expect(parseRead(follower.stdout).map(\.0) == Array(1...8)) }
        #expect(follower.stderr.isEmpty, "\(follower.stderr)")
    }

    /// SIGKILL an `append --durability immediate` at random moments: every LSN it printed
    /// is there after a recovering open, holding the line that was sent for it.
    @Test func killedImmediateAppendKeepsEveryPrintedLSN() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        var rng = SystemRandomNumberGenerator()
        var acknowledged: [UInt64: String] = [:]
        var kills = 0
        for run in 0..<10 {
            // Where this run's LSNs start: after whatever survived the previous kill.
            let before = FileManager.default.fileExists(atPath: scratch.log) ? try recoveredRecords(scratch.log) : [:]
            let base = UInt64(before.count + 1)
            for (lsn, line) in acknowledged {
                #expect(before[lsn] == line, "LSN \(lsn) acknowledged earlier is intact after reopen (before run \(run))")
            }
            let child = try ChildProcess(["append", "--dir", scratch.log, "--durability", "immediate"], keepStdinOpen: true)
            let sent = SentLines()
            let feeder = Thread {
                var i = 0
                while !sent.stopped {
                    let chunk = (0..<Int.random(in: 1...40)).map { j in "run\(run)-line\(i + j)-" + String(repeating: "z", count: (i + j) % 90) }
                    // Recorded before it is written: a line the child got is always known.
                    sent.append(chunk)
                    guard child.write(Array((chunk.joined(separator: "\n") + "\n").utf8)) else { break }
                    i += chunk.count
                    usleep(UInt32.random(in: 0...2000))
                }
                sent.finish()
            }
            feeder.start()
            // Let some appends be acknowledged (most runs), then kill at a random moment.
            let threshold = Int.random(in: 0...3, using: &rng)
            _ = child.waitForStdout(timeout: .seconds(5)) { $0.split(separator: "\n").count >= threshold }
            usleep(UInt32.random(in: 0...150_000, using: &rng))
            child.signal(SIGKILL)
            // The feeder stops (its writes fail once the child is gone) before wait() closes stdin.
            sent.stop()
            let lines = sent.waitForFeeder()
            let status = child.wait()
            #expect(status == 128 + SIGKILL, "the child was killed, not exited (\(status)): \(child.stderr)")
            if status == 128 + SIGKILL { kills += 1 }
            let printed = child.stdoutLines.compactMap { UInt64($0) }
            #expect(printed.count == child.stdoutLines.count, "only LSNs on stdout: \(child.stdoutLines.prefix(5))")
            #expect(printed == Array(base..<base + UInt64(printed.count)), "LSNs printed densely, in order, from \(base)")
            for lsn in printed {
                let index = Int(lsn - base)
                guard index < lines.count else {
                    Issue.record("LSN \(lsn) printed for line \(index), which was never sent")
                    continue
                }
                acknowledged[lsn] = lines[index]
            }
        }
        let after = try recoveredRecords(scratch.log)
        var missing: [UInt64] = []
        for (lsn, line) in acknowledged.sorted(by: { $0.key < $1.key }) where after[lsn] != line { missing.append(lsn) }
        #expect(missing.isEmpty, "printed LSNs missing or changed after reopen: \(missing.prefix(10))")
        #expect(after.keys.sorted() == (0..<UInt64(after.count)).map { $0 + 1 }, "LSNs dense from 1 after reopen")
        #expect(kills == 10)
        #expect(acknowledged.count > 0, "some appends were acknowledged before the kills")
        let verify = try runShiplog(["verify", "--dir", scratch.log])
        #expect(verify.status == 0, "verify after the kills and a recovering open: \(verify.stdout) \(verify.stderr)")
    }
}
