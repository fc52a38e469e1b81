import Foundation
import Glibc
import ShipLog
import Testing

// End-to-end tests of the `shiplog` tool: each runs the built binary as a child process
// (posix_spawn with close-on-exec pipes, so concurrently running tests never leak each
// other's pipe ends into their children).

// MARK: - Locating the binary

private enum ShiplogBinary {
    /// The `shiplog` executable built next to the test bundle, or why it cannot be found.
    static let located: Result<String, BinaryNotFound> = {
        var candidates: [String] = []
        // The test bundle (ShipLogPackageTests.xctest) sits in the same build directory.
        if let executable = Bundle.main.executableURL {
            candidates.append(executable.deletingLastPathComponent().appendingPathComponent("shiplog").path)
        }
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("shiplog").path)
        candidates.append(Bundle.main.bundleURL.appendingPathComponent("shiplog").path)
        if let own = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append(URL(fileURLWithPath: own).deletingLastPathComponent().appendingPathComponent("shiplog").path)
        }
        // Tests/ShipLogCLITests/CLITests.swift -> package root.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        candidates.append(root.appendingPathComponent(".build/debug/shiplog").path)
        for candidate in candidates where access(candidate, X_OK) == 0 {
            return .success(candidate)
        }
        return .failure(BinaryNotFound(candidates: candidates))
    }()

    struct BinaryNotFound: Error, CustomStringConvertible {
        let candidates: [String]
        var description: String {
            "the shiplog binary was not found (looked at \(candidates.joined(separator: ", "))): run `swift build` "
                + "(or `make test`, which runs `swift build --build-tests`) before `swift test --skip-build`"
        }
    }

    static func path() throws -> String {
        switch located {
        case .success(let path): return path
        case .failure(let error):
            Issue.record("\(error)")
            throw error
        }
    }
}

// MARK: - Child processes

/// A running `shiplog` process with pipes on its standard input, output and error.
private final class Child: @unchecked Sendable {
    let pid: pid_t
    /// Write end of the child's stdin; -1 once closed.
    private var stdinFD: Int32
    private let condition = NSCondition()
    private var out: [UInt8] = []
    private var err: [UInt8] = []
    private var openStreams = 2
    private var status: Int32?

    private static let ignoreSIGPIPE: Void = { _ = Glibc.signal(SIGPIPE, SIG_IGN) }()
    /// Serializes pipe creation and spawning within this process, so that no child inherits
    /// a pipe end of another (pipe2 is not visible from Swift: the ends get FD_CLOEXEC just
    /// after pipe()).
    private static let spawnLock = NSLock()

    init(_ arguments: [String], keepStdinOpen: Bool = false) throws {
        _ = Self.ignoreSIGPIPE
        let binary = try ShiplogBinary.path()
        Self.spawnLock.lock()
        defer { Self.spawnLock.unlock() }
        var input: [Int32] = [0, 0]
        var output: [Int32] = [0, 0]
        var error: [Int32] = [0, 0]
        guard pipe(&input) == 0, pipe(&output) == 0, pipe(&error) == 0 else {
            throw ChildError("pipe: \(String(cString: strerror(errno)))")
        }
        for fd in input + output + error { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, error[1], 2)
        let argv: [UnsafeMutablePointer<CChar>?] = ([binary] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        // The child starts with no blocked signals and default dispositions, whatever the
        // spawning thread has (worker threads block SIGTERM; this process ignores SIGPIPE).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGTERM, SIGINT, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid = pid_t()
        let result = posix_spawn(&pid, binary, &actions, &attributes, argv, environ)
        close(input[0])
        close(output[1])
        close(error[1])
        guard result == 0 else {
            close(input[1])
            close(output[0])
            close(error[0])
            throw ChildError("posix_spawn \(binary): \(String(cString: strerror(result)))")
        }
        self.pid = pid
        self.stdinFD = input[1]
        startReader(output[0], isError: false)
        startReader(error[0], isError: true)
        if !keepStdinOpen { closeStdin() }
    }

    private func startReader(_ fd: Int32, isError: Bool) {
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                condition.lock()
                if n > 0 {
                    if isError { err.append(contentsOf: buffer[0..<n]) } else { out.append(contentsOf: buffer[0..<n]) }
                } else {
                    openStreams -= 1
                }
                condition.broadcast()
                condition.unlock()
                if n <= 0 { break }
            }
            close(fd)
        }
        thread.start()
    }

    /// Writes to the child's stdin; false once the child has gone (EPIPE).
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(stdinFD, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += n
        }
        return true
    }

    func write(_ text: String) { write(Array(text.utf8)) }

    func closeStdin() {
        if stdinFD >= 0 {
            close(stdinFD)
            stdinFD = -1
        }
    }

    var stdout: String { condition.withLock { String(decoding: out, as: UTF8.self) } }
    var stderr: String { condition.withLock { String(decoding: err, as: UTF8.self) } }

    /// Complete lines of stdout so far.
    var stdoutLines: [String] {
        let text = stdout
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // after the last newline: empty, or a line still being written
        return lines
    }

    /// Waits until `predicate` holds for stdout (true) or `timeout` passes (false).
    func waitForStdout(timeout: Duration = .seconds(10), until predicate: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds))
        condition.lock()
        defer { condition.unlock() }
        while !predicate(String(decoding: out, as: UTF8.self)) {
            if openStreams == 0 { return predicate(String(decoding: out, as: UTF8.self)) }
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }

    /// Sends `signal` unless the child was already reaped (its pid may belong to another
    /// process by then).
    func signal(_ signal: Int32) {
        if condition.withLock({ status == nil }) { kill(pid, signal) }
    }

    /// Waits for the child to exit (killing it after `timeout`) and for its output to end.
    /// Returns the exit status, or 128 + the signal that ended it.
    @discardableResult
    func wait(timeout: Duration = .seconds(20)) -> Int32 {
        if let status = condition.withLock({ status }) { return status }
        closeStdin()
        let deadline = ContinuousClock.now + timeout
        var raw: Int32 = 0
        while true {
            let result = waitpid(pid, &raw, WNOHANG)
            if result == pid { break }
            if result < 0 && errno != EINTR { break }
            if ContinuousClock.now > deadline {
                Issue.record("shiplog (pid \(pid)) did not exit within \(timeout); killing it")
                kill(pid, SIGKILL)
                _ = waitpid(pid, &raw, 0)
                break
            }
            usleep(2000)
        }
        condition.lock()
        while openStreams > 0 { condition.wait() }
        condition.unlock()
        let termination = raw & 0x7f
        let code = termination == 0 ? (raw >> 8) & 0xff : 128 + termination
        condition.withLock { status = code }
        return code
    }

    struct ChildError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}

/// Runs `shiplog arguments` with `input` on stdin to completion.
private func shiplog(_ arguments: [String], input: String = "") throws -> (status: Int32, stdout: String, stderr: String) {
    let child = try Child(arguments, keepStdinOpen: true)
    child.write(input)
    let status = child.wait()
    return (status, child.stdout, child.stderr)
}

/// A fresh temporary directory; the log goes in its `log` subdirectory.
private struct Scratch {
    let root: String
    var log: String { root + "/log" }

    init(_ name: String = #function) {
        let safe = name.filter { $0.isLetter || $0.isNumber }
        root = FileManager.default.temporaryDirectory.path + "/shiplog-cli-tests/" + safe + "-"
            + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: root) }
}

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
        let appended = try shiplog(["append", "--dir", scratch.log], input: lines.joined(separator: "\n") + "\n")
        #expect(appended.status == 0, "stderr: \(appended.stderr)")
        #expect(appended.stdout == (1...200).map { "\($0)\n" }.joined(), "one LSN per line, in order")
        #expect(appended.stderr.isEmpty)
        let read = try shiplog(["read", "--dir", scratch.log])
        #expect(read.status == 0, "stderr: \(read.stderr)")
        #expect(read.stdout == zip(1...200, lines).map { "\($0)\t\($1)\n" }.joined())
        // A second append continues the LSNs.
        let more = try shiplog(["append", "--dir", scratch.log], input: "x\ny\n")
        #expect(more.stdout == "201\n202\n")
        let again = try shiplog(["read", "--dir", scratch.log])
        #expect(parseRead(again.stdout).suffix(2).map(\.1) == ["x", "y"])
        #expect(parseRead(again.stdout).map(\.0) == Array(1...202))
    }

    @Test func readFromAnLSN() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        // Several batches (one per append) so that --from lands inside and between them.
        for chunk in 0..<5 {
            let input = (0..<10).map { "c\(chunk)-\($0)" }.joined(separator: "\n") + "\n"
            #expect(try shiplog(["append", "--dir", scratch.log], input: input).status == 0)
        }
        for from in [1, 2, 10, 11, 37, 50] as [UInt64] {
            let read = try shiplog(["read", "--dir", scratch.log, "--from", "\(from)"])
            #expect(read.status == 0, "stderr: \(read.stderr)")
            let records = parseRead(read.stdout)
            #expect(records.map(\.0) == Array(from...50), "--from \(from)")
            let expected = "c\((from - 1) / 10)-\((from - 1) % 10)"
            #expect(records.first?.1 == expected, "--from \(from)")
        }
        let past = try shiplog(["read", "--dir", scratch.log, "--from", "51"])
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
        let appended = try shiplog(arguments, input: lines.joined(separator: "\n") + "\n")
        #expect(appended.status == 0, "stderr: \(appended.stderr)")
        #expect(appended.stdout == (1...300).map { "\($0)\n" }.joined())
        let read = try shiplog(["read", "--dir", scratch.log])
        #expect(parseRead(read.stdout).map(\.1) == lines)
        #expect(parseRead(read.stdout).map(\.0) == Array(1...300))
        let verify = try shiplog(["verify", "--dir", scratch.log])
        #expect(verify.status == 0, "verify: \(verify.stdout) \(verify.stderr)")
    }

    @Test func lastLineWithoutNewlineIsARecord() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let appended = try shiplog(["append", "--dir", scratch.log], input: "first\n\nthird\nlast without newline")
        #expect(appended.status == 0, "stderr: \(appended.stderr)")
        #expect(appended.stdout == "1\n2\n3\n4\n")
        let read = try shiplog(["read", "--dir", scratch.log])
        #expect(read.stdout == "1\tfirst\n2\t\n3\tthird\n4\tlast without newline\n")
    }

    @Test func verifyPassesAGoodLogAndNamesTheFileAndOffsetOfAFlippedByte() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        // Three appends: three batches in one (closed) segment.
        for chunk in 0..<3 {
            let input = (0..<20).map { "batch-\(chunk)-record-\($0)" }.joined(separator: "\n") + "\n"
            #expect(try shiplog(["append", "--dir", scratch.log, "--compression", "none"], input: input).status == 0)
        }
        let good = try shiplog(["verify", "--dir", scratch.log])
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

        let bad = try shiplog(["verify", "--dir", scratch.log])
        #expect(bad.status == 1, "verify of a damaged log: \(bad.stdout) \(bad.stderr)")
        #expect(bad.stderr.contains(segmentName), "names the segment: \(bad.stderr)")
        #expect(bad.stderr.contains("byte \(batchOffset)"), "names the byte offset of the damaged batch: \(bad.stderr)")
        #expect(bad.stdout.hasPrefix("FAILED"))
        // Read refuses to return damaged data too.
        let read = try shiplog(["read", "--dir", scratch.log])
        #expect(read.status == 1, "read of a damaged log: \(read.stdout.prefix(200)) \(read.stderr)")
        #expect(read.stderr.contains(segmentName))
    }

    @Test func inspectJSONParsesAndListsSegments() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let input = (0..<50).map { "inspect-\($0)" }.joined(separator: "\n") + "\n"
        #expect(try shiplog(["append", "--dir", scratch.log], input: input).status == 0)
        let inspect = try shiplog(["inspect", "--dir", scratch.log, "--json"])
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
        let table = try shiplog(["inspect", "--dir", scratch.log])
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
        let result = try shiplog(arguments.map { $0 == "DIR" ? scratch.log : $0 }, input: "never read\n")
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
        let result = try shiplog(command + ["--help"])
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
        let first = try Child(["append", "--dir", scratch.log], keepStdinOpen: true)
        defer { first.signal(SIGKILL); first.wait() }
        first.write("held\n")
        #expect(first.waitForStdout { $0 == "1\n" }, "the first append acknowledged: \(first.stdout) \(first.stderr)")
        let second = try shiplog(["append", "--dir", scratch.log], input: "intruder\n")
        #expect(second.status == 1, "stderr: \(second.stderr)")
        #expect(second.stderr.contains("LOCK"), "names the lock: \(second.stderr)")
        #expect(second.stderr.contains(scratch.log), "names the directory: \(second.stderr)")
        #expect(second.stdout.isEmpty, "nothing acknowledged")
        // The first keeps working and ends cleanly.
        first.write("still mine\n")
        first.closeStdin()
        #expect(first.wait() == 0, "first append: \(first.stderr)")
        #expect(first.stdout == "1\n2\n")
        let read = try shiplog(["read", "--dir", scratch.log])
        #expect(read.stdout == "1\theld\n2\tstill mine\n")
    }

    @Test func readFollowSeesRecordsAppendedByAnotherProcess() throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        #expect(try shiplog(["append", "--dir", scratch.log], input: "before\n").status == 0)
        let follower = try Child(["read", "--dir", scratch.log, "--follow"])
        defer { follower.signal(SIGKILL); follower.wait() }
        #expect(follower.waitForStdout { $0 == "1\tbefore\n" }, "follow prints what is there: \(follower.stdout)")
        // Appends from other processes, in several batches.
        #expect(try shiplog(["append", "--dir", scratch.log], input: "live-1\nlive-2\n").status == 0)
        #expect(try shiplog(["append", "--dir", scratch.log, "--durability", "buffered"], input: "live-3\n").status == 0)
        let expected = "1\tbefore\n2\tlive-1\n3\tlive-2\n4\tlive-3\n"
        let sawAppends = follower.waitForStdout(timeout: .seconds(3)) { $0 == expected }
        #expect(sawAppends, "follow sees new records: \(follower.stdout)")
        if sawAppends {
            // And a writer that stays open, appending batch by batch.
            let writer = try Child(["append", "--dir", scratch.log, "--durability", "buffered"], keepStdinOpen: true)
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
            let child = try Child(["append", "--dir", scratch.log, "--durability", "immediate"], keepStdinOpen: true)
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
        let verify = try shiplog(["verify", "--dir", scratch.log])
        #expect(verify.status == 0, "verify after the kills and a recovering open: \(verify.stdout) \(verify.stderr)")
    }
}

/// Lines a feeder thread has written to a child's stdin, in order.
private final class SentLines: @unchecked Sendable {
    private let condition = NSCondition()
    private var lines: [String] = []
    private var stopRequested = false
    private var done = false

    var stopped: Bool { condition.withLock { stopRequested } }
    func append(_ chunk: [String]) { condition.withLock { lines += chunk } }
    func stop() { condition.withLock { stopRequested = true } }

    func finish() {
        condition.withLock { done = true }
        condition.broadcast()
    }

    func waitForFeeder() -> [String] {
        condition.lock()
        defer { condition.unlock() }
        while !done { condition.wait() }
        return lines
    }
}
