import Foundation
import Glibc
import ShipLog
import ShipLogTestSupport
import Testing

// End-to-end tests of replication through the `shiplog` tool: real `serve` and `follow`
// processes on 127.0.0.1 (port 0, the address read from their first line), driven by
// `append --server`, `kv put --server` and friends, stopped with SIGTERM or SIGKILL.
//
// The nodes run the key-value state machine, so every record appended is a key-value write
// batch: `kvLine` encodes one as a stdin line for `append --server` (no byte of it is a
// newline).

// MARK: - Nodes

/// A `serve` or `follow` process and the address it listens on.
final class NodeProcess: @unchecked Sendable {
    // @unchecked: used by one test thread at a time (and `kill` from a helper thread).
    let process: ChildProcess
    let address: String
    let directory: String
    let arguments: [String]

    init(_ arguments: [String], directory: String) throws {
        self.arguments = arguments
        self.directory = directory
        process = try ChildProcess(arguments)
        let started = process.waitForStdout(timeout: .seconds(20)) { $0.contains("\n") }
        guard started, let line = process.stdoutLines.first, line.hasPrefix("listening ") else {
            process.signal(SIGKILL)
            process.wait()
            throw ChildProcessError("\(arguments.prefix(1)) did not start: stdout \(process.stdout), stderr \(process.stderr)")
        }
        address = String(line.split(separator: " ")[1])
    }

    /// SIGTERM, then the exit status.
    @discardableResult
    func stop() -> Int32 {
        process.signal(SIGTERM)
        return process.wait()
    }

    /// SIGKILL: no chance to close anything.
    func kill() {
        process.signal(SIGKILL)
        process.wait()
    }

    /// The same node started again on its directory.
    func restarted() throws -> NodeProcess { try NodeProcess(arguments, directory: directory) }
}

/// One primary and followers, each in its own process, sharing a secret file.
final class ProcessCluster: @unchecked Sendable {
    // @unchecked: a test drives it from its own thread; one helper thread only kills the primary.
    static let secret = "replication-process-tests-secret-0123456789"

    let scratch: Scratch
    let secretFile: String
    let tuning: [String]
    var primary: NodeProcess!
    var followers: [NodeProcess] = []

    /// `tuning`: flags given to every node (segment size, checkpoints).
    init(_ name: String = #function, followers count: Int = 2, tuning: [String] = ["--segment-bytes", "1048576"], primaryFlags: [String] = [])
        throws
    {
        scratch = Scratch(name, group: "shiplog-replication-tests")
        secretFile = scratch.root + "/secret"
        self.tuning = tuning
        try Self.secret.write(toFile: secretFile, atomically: true, encoding: .utf8)
        primary = try NodeProcess(
            ["serve", "--dir", directory("primary"), "--listen", "127.0.0.1:0", "--secret-file", secretFile] + tuning + primaryFlags,
            directory: directory("primary"))
        for index in 0..<count { followers.append(try startFollower(index)) }
        try waitForConnectedFollowers(count)
    }

    func directory(_ name: String) -> String { scratch.root + "/" + name }

    func startFollower(_ index: Int) throws -> NodeProcess {
        let dir = directory("follower-\(index)")
        return try NodeProcess(
            ["follow", "--dir", dir, "--primary", primary.address, "--listen", "127.0.0.1:0", "--secret-file", secretFile] + tuning,
            directory: dir)
    }

    /// Runs a client command against `node` (the primary by default) with the cluster's secret.
    func run(_ arguments: [String], on node: NodeProcess? = nil, input: String = "") throws -> (status: Int32, stdout: String, stderr: String) {
        try runShiplog(arguments + ["--server", (node ?? primary).address, "--secret-file", secretFile], input: input)
    }

    /// A long-running `append --server` with its stdin open.
    func appender(level: String?, on node: NodeProcess? = nil) throws -> ChildProcess {
        var arguments = ["append", "--server", (node ?? primary).address, "--secret-file", secretFile]
        if let level { arguments += ["--ack", level] }
        return try ChildProcess(arguments, keepStdinOpen: true)
    }

    /// The node's status document.
    func status(_ node: NodeProcess? = nil) throws -> [String: Any] {
        let result = try run(["status", "--json"], on: node)
        guard result.status == 0, let data = result.stdout.data(using: .utf8),
            let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw ChildProcessError("status failed (\(result.status)): \(result.stdout) \(result.stderr)") }
        return object
    }

    func waitForConnectedFollowers(_ count: Int, timeout: Duration = .seconds(20)) throws {
        try waitUntil("\(count) followers connected", timeout: timeout) { status in
            let followers = status["followers"] as? [[String: Any]] ?? []
            return followers.filter { flag($0["connected"]) }.count >= count
        }
    }

    /// Waits until every connected follower has flushed and applied all the primary wrote.
    func waitForConvergence(followers count: Int = 2, timeout: Duration = .seconds(30)) throws {
        try waitUntil("\(count) followers caught up", timeout: timeout) { status in
            let last = number(status["last_lsn"])
            let followers = status["followers"] as? [[String: Any]] ?? []
            return followers.filter {
                flag($0["connected"]) && number($0["flushed_lsn"]) >= last && number($0["applied_lsn"]) >= last
            }.count >= count
        }
    }

    func waitUntil(_ what: String, timeout: Duration, _ condition: ([String: Any]) -> Bool) throws {
        let deadline = ContinuousClock.now + timeout
        var last: [String: Any] = [:]
        while ContinuousClock.now < deadline {
            last = try status()
            if condition(last) { return }
            usleep(50_000)
        }
        throw ChildProcessError("not \(what) after \(timeout): \(last); \(diagnostics())")
    }

    /// Each follower's own status and standard error, for failure messages.
    func diagnostics() -> String {
        followers.enumerated().map { index, follower in
            let status = (try? run(["status", "--json"], on: follower).stdout) ?? "no status"
            return "follower-\(index): \(status) stderr: \(follower.process.stderr.suffix(2000))"
        }.joined(separator: "; ") + "; primary files: \(FileManager.default.subpaths(atPath: directory("primary"))?.sorted() ?? [])"
    }

    /// SIGTERM to every node, followers first; each must exit 0.
    func stopAll() {
        for follower in followers { #expect(follower.stop() == 0, "follower: \(follower.process.stderr)") }
        #expect(primary.stop() == 0, "primary: \(primary.process.stderr)")
    }

    func cleanup() {
        for node in followers + [primary].compactMap({ $0 }) { node.kill() }
        scratch.cleanup()
    }
}

// MARK: - Records and logs

/// The key-value record putting `key` = `value`, as a stdin line for `append --server`.
func kvLine(_ key: String, _ value: String) -> [UInt8] {
    var batch = WriteBatch()
    batch.put(Array(key.utf8), Array(value.utf8))
    let record = try! batch.encodedRecord()
    precondition(!record.contains(UInt8(ascii: "\n")), "pick key and value lengths other than 10")
    return record + [UInt8(ascii: "\n")]
}

/// `count` pseudo-random letters and digits from `seed`: values LZ4 cannot shrink much.
func noise(seed: UInt64, count: Int) -> String {
    let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
    var generator = SplitMix64(seed: seed)
    return String(decoding: (0..<count).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }, as: UTF8.self)
}

/// The records of the log in `directory`, by LSN (read as stored, without recovery).
func storedRecords(_ directory: String) throws -> [UInt64: [UInt8]] {
    let reader = LogDirectoryReader(directory: FilePath(directory), from: .first)
    var records: [UInt64: [UInt8]] = [:]
    while let batch = try reader.next() {
        var lsn = batch.header.baseLSN.rawValue
        for record in try batch.records() {
            records[lsn] = Array(record)
            lsn += 1
        }
    }
    return records
}

/// Why the segment files of two log directories differ, or `nil` when they are identical.
func segmentsDiffer(_ a: String, _ b: String) -> String? {
    let fm = FileManager.default
    let namesA = ((try? fm.contentsOfDirectory(atPath: a)) ?? []).filter { $0.hasSuffix(".seg") }.sorted()
    let namesB = ((try? fm.contentsOfDirectory(atPath: b)) ?? []).filter { $0.hasSuffix(".seg") }.sorted()
    guard namesA == namesB else { return "segment names differ: \(namesA) vs \(namesB)" }
    guard !namesA.isEmpty else { return "no segments" }
    for name in namesA {
        guard let dataA = fm.contents(atPath: a + "/" + name), let dataB = fm.contents(atPath: b + "/" + name) else {
            return "\(name) unreadable"
        }
        if dataA != dataB {
            let offset = zip(dataA, dataB).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(dataA.count, dataB.count)
            return "\(name) differs at byte \(offset) (sizes \(dataA.count), \(dataB.count))"
        }
    }
    return nil
}

/// A JSON number from JSONSerialization as an unsigned integer (0 when absent).
func number(_ value: Any?) -> UInt64 { (value as? NSNumber)?.uint64Value ?? 0 }

/// A JSON boolean from JSONSerialization (false when absent).
func flag(_ value: Any?) -> Bool { (value as? NSNumber)?.boolValue ?? false }

/// LSNs printed by an appender: one decimal per line.
func printedLSNs(_ stdout: String) -> [UInt64] {
    stdout.split(separator: "\n").compactMap { UInt64($0) }
}

// MARK: - Tests

@Suite(.serialized) struct ReplicationProcessTests {
    @Test(arguments: ["local", "write:2", "flush:2", "apply:2", "all"])
    func everyCommitLevelLeavesFollowersByteIdenticalWithEqualState(level: String) throws {
        let cluster = try ProcessCluster("levels\(level)")
        defer { cluster.cleanup() }
        // Enough incompressible bytes for more than one 1 MiB segment.
        let count = 2400
        var input: [UInt8] = []
        for i in 0..<count { input += kvLine("key-\(i)", "value \(i) " + noise(seed: UInt64(i), count: 1000)) }
        let writer = try cluster.appender(level: level)
        writer.write(input)
        #expect(writer.wait() == 0, "append: \(writer.stderr)")
        #expect(printedLSNs(writer.stdout) == Array(1...UInt64(count)), "one LSN per line, in input order")
        let put = try cluster.run(["kv", "put", "--ack", level, "last", "one"])
        #expect(put.status == 0 && put.stdout == "\(count + 1)\n", "kv put: \(put.stderr)")

        try cluster.waitForConvergence()
        let scans = try ([cluster.primary] + cluster.followers).map { try cluster.run(["kv", "scan"], on: $0) }
        #expect(scans.allSatisfy { $0.status == 0 })
        #expect(scans[0].stdout.split(separator: "\n").count == count + 1)
        for scan in scans.dropFirst() { #expect(scan.stdout == scans[0].stdout, "followers hold the primary's state") }
        let read = try cluster.run(["read", "--from", "\(count + 1)"], on: cluster.followers[1])
        #expect(read.stdout.hasPrefix("\(count + 1)\t") && read.stdout.contains("last") && read.stdout.hasSuffix("one\n"), "read --server: \(read.stdout)")

        cluster.stopAll()
        let segments = try FileManager.default.contentsOfDirectory(atPath: cluster.directory("primary")).filter { $0.hasSuffix(".seg") }
        #expect(segments.count >= 2, "the log spans segments: \(segments)")
        for follower in cluster.followers {
            let difference = segmentsDiffer(cluster.directory("primary"), follower.directory)
            #expect(difference == nil, "\(follower.directory): \(difference ?? "")")
            let verify = try runShiplog(["verify", "--dir", follower.directory])
            #expect(verify.status == 0, "the follower's CRC chain verifies: \(verify.stdout) \(verify.stderr)")
        }
    }

    @Test func followerKilledMidStreamConvergesAfterRestart() throws {
        let cluster = try ProcessCluster()
        defer { cluster.cleanup() }
        let writer = try cluster.appender(level: "local")
        var sent = 0
        func send(_ lines: Int) {
            for _ in 0..<lines {
                writer.write(kvLine("k\(sent)", "v\(sent) " + String(repeating: "y", count: 300)))
                sent += 1
                if sent % 50 == 0 { usleep(2_000) }
            }
        }
        send(1000)
        cluster.followers[1].kill()
        send(1000)
        cluster.followers[1] = try cluster.followers[1].restarted()
        send(1000)
        #expect(writer.wait() == 0, "append: \(writer.stderr)")
        #expect(printedLSNs(writer.stdout) == Array(1...UInt64(sent)))

        try cluster.waitForConvergence()
        cluster.stopAll()
        for follower in cluster.followers {
            let difference = segmentsDiffer(cluster.directory("primary"), follower.directory)
            #expect(difference == nil, "\(follower.directory): \(difference ?? "")")
        }
        #expect(try storedRecords(cluster.followers[1].directory).count == sent)
    }

    @Test func followerStoppedPastRetentionReseedsFromACheckpoint() throws {
        // Small segments and checkpoints, and a slot that holds back at most 64 KiB of log.
        let tuning = ["--segment-bytes", "65536", "--checkpoint-bytes", "65536"]
        let cluster = try ProcessCluster(tuning: tuning, primaryFlags: ["--slot-retained-bytes", "65536"])
        defer { cluster.cleanup() }
        func write(_ range: Range<Int>, level: String) throws {
            let writer = try cluster.appender(level: level)
            for i in range { writer.write(kvLine("key-\(i % 700)", "round \(i) " + String(repeating: "z", count: 500))) }
            #expect(writer.wait() == 0, "append: \(writer.stderr)")
        }
        try write(0..<200, level: "all")
        let stopped = cluster.followers[1]
        #expect(stopped.stop() == 0)
        // The primary re-evaluates its slots' holds about once a second and drops segments
        // after checkpoints: write until it has dropped the log the stopped follower needs.
        var written = 200
        let deadline = ContinuousClock.now + .seconds(20)
        while number(try cluster.status()["first_lsn"]) <= 201 && ContinuousClock.now < deadline {
            try write(written..<written + 300, level: "write:1")
            written += 300
            usleep(100_000)
        }
        let status = try cluster.status()
        #expect(number(status["first_lsn"]) > 201, "the primary dropped the log the stopped follower needs: \(status)")

        // Nothing is written while it re-seeds: the primary starts the stream with the batch
        // holding the checkpoint's own LSN, so the follower installs the checkpoint at once even
        // when the checkpoint covers the primary's last LSN.
        cluster.followers[1] = try stopped.restarted()
        try cluster.waitForConvergence()
        let followerStatus = try cluster.status(cluster.followers[1])
        #expect(number(followerStatus["first_lsn"]) > 1, "the follower's log starts after a checkpoint: \(followerStatus)")
        let scans = try ([cluster.primary] + cluster.followers).map { try cluster.run(["kv", "scan"], on: $0).stdout }
        #expect(scans[0].split(separator: "\n").count == 700)
        for scan in scans.dropFirst() { #expect(scan == scans[0], "re-seeded state equals the primary's") }
        cluster.stopAll()
    }

    @Test func primaryKilledWithFlushOneLosesNoAcknowledgedRecord() throws {
        let cluster = try ProcessCluster()
        defer { cluster.cleanup() }
        let writer = try cluster.appender(level: "flush:1")
        var lines: [[UInt8]] = []
        // Keep appending while the primary is killed; the writer stops at its first failure.
        let killed = SharedFlag(false)
        let killer = Thread {
            _ = writer.waitForStdout(timeout: .seconds(20)) { $0.split(separator: "\n").count >= 300 }
            cluster.primary.kill()
            killed.set(true)
        }
        killer.start()
        func send() -> Bool {
            let line = kvLine("k-\(lines.count)", "val-\(lines.count)")  // keys and values under 10 bytes
            lines.append(line)
            return writer.write(line)
        }
        while !killed.value && lines.count < 90_000 {
            guard send() else { break }
            if lines.count % 20 == 0 { usleep(1_000) }
        }
        while !killed.value { usleep(1_000) }
        // Lines after the kill: the writer has a request in flight to fail, whatever its timing.
        for _ in 0..<10 where lines.count < 90_000 { _ = send() }
        usleep(200_000)
        let exit = writer.wait()
        #expect(exit == 1, "the writer reports the lost primary: \(writer.stderr)")
        let acknowledged = printedLSNs(writer.stdout)
        #expect(acknowledged.count >= 300)
        #expect(acknowledged == Array(1...UInt64(acknowledged.count)), "acknowledged LSNs are the first lines, in order")

        for follower in cluster.followers { #expect(follower.stop() == 0, "\(follower.process.stderr)") }
        let stored = try cluster.followers.map { try storedRecords($0.directory) }
        for lsn in acknowledged {
            let expected = Array(lines[Int(lsn) - 1].dropLast())
            let copies = stored.compactMap { $0[lsn] }
            #expect(!copies.isEmpty, "acknowledged LSN \(lsn) survives on a follower")
            #expect(copies.allSatisfy { $0 == expected }, "LSN \(lsn) holds the line it was acknowledged for")
            if copies.isEmpty || !copies.allSatisfy({ $0 == expected }) { break }
        }
    }

    @Test func wrongSecretIsRefusedWithOneLine() throws {
        let cluster = try ProcessCluster(followers: 0)
        defer { cluster.cleanup() }
        let wrong = cluster.scratch.root + "/wrong-secret"
        try "a different secret of enough bytes".write(toFile: wrong, atomically: true, encoding: .utf8)
        for arguments in [["status"], ["kv", "get", "k"], ["read"]] {
            let result = try runShiplog(arguments + ["--server", cluster.primary.address, "--secret-file", wrong])
            #expect(result.status == 1, "\(arguments): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1 && result.stderr.contains("authentication failed"), "\(result.stderr)")
        }
        let follower = try runShiplog([
            "follow", "--dir", cluster.directory("intruder"), "--primary", cluster.primary.address, "--listen", "127.0.0.1:0",
            "--secret-file", wrong,
        ])
        #expect(follower.status == 1, "\(follower.stderr)")
        #expect(follower.stderr.contains("authentication failed"), "\(follower.stderr)")
        #expect(follower.stdout.isEmpty)
        let status = try cluster.run(["status"])
        #expect(status.status == 0 && status.stdout.contains("role") && status.stdout.contains("primary"), "\(status.stdout)")
    }

    @Test func listeningBeyondLoopbackNeedsASecretFile() throws {
        guard ProcessInfo.processInfo.environment["SHIPLOG_SECRET_FILE"] == nil else { return }
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let result = try runShiplog(["serve", "--dir", scratch.log, "--listen", "0.0.0.0:0"])
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1 && result.stderr.contains("--secret-file"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: scratch.log), "a usage error creates no log")
    }
}

/// A flag shared between threads.
final class SharedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Bool
    init(_ value: Bool) { stored = value }
    var value: Bool { lock.withLock { stored } }
    func set(_ value: Bool) { lock.withLock { stored = value } }
}
