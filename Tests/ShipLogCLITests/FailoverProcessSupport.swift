import Foundation
import Glibc
import ShipLog
import ShipLogTestSupport
import Testing

// Support for FailoverProcessTests: real etcd and ZooKeeper servers (ShipLogTestSupport's
// CoordinationTestServer, shared with ShipLogFailoverTests), a TCP proxy that can blackhole a
// node's connections to the coordination service, and a cluster of `shiplog serve --elect`
// processes.

// MARK: - Coordination servers

/// The coordination services the failover tests run against.
typealias CoordinationBackend = CoordinationTestServer.Backend

/// One etcd or ZooKeeper server on a free loopback port, under a watchdog.
typealias CoordinationServer = CoordinationTestServer

extension CoordinationTestServer {
    /// A free port below Linux's ephemeral range, for a node that must get its port back
    /// after a restart.
    static func freePortBelowEphemeralRange() throws -> UInt16 { try TestPorts.belowEphemeralRange() }
}

// MARK: - A proxy that can blackhole

/// A TCP proxy from a loopback port to `upstream`, standing between one node and the
/// coordination service. ``cut()`` blackholes it: connections stay open but nothing is
/// forwarded any more in either direction, and new connections are accepted and held without
/// an upstream, so the node sees requests that are never answered (a partition, not a refused
/// connection). ``heal()`` closes every connection and forwards again.
///
/// It also notes when an etcd lease keepalive went through on the connection of a node's
/// leadership (the connection that carried the campaign's `/v3/kv/txn`): the tests cut just
/// after a renewal, the worst moment for a leader that must fence itself in time.
final class BlackholeProxy: @unchecked Sendable {
    // @unchecked: every var is guarded by `lock`.
    let upstream: Endpoint
    let endpoint: Endpoint
    private let listener: any Listener
    private let lock = NSCondition()
    private var isCut = false
    private var closed = false
    private var connections: [ObjectIdentifier: any Connection] = [:]
    private var leadershipConnections: Set<ObjectIdentifier> = []
    private var leaderKeepalives = 0
    private var lastLeaderKeepalive: UInt64 = 0

    /// Bytes forwarded per receive.
    static let chunkBytes = 64 << 10
    /// How long connecting to the upstream may take.
    static let connectTimeout: Duration = .seconds(2)

    init(to upstream: Endpoint) throws {
        self.upstream = upstream
        listener = try TCPNetwork().listen(on: Endpoint(host: "127.0.0.1", port: 0))
        endpoint = listener.endpoint
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "blackhole-proxy-accept"
        thread.start()
    }

    var port: UInt16 { endpoint.port }

    /// Stops forwarding; connections stay open and silent.
    func cut() {
        lock.withLock { isCut = true }
    }

    /// Closes every connection (their streams lost bytes while cut) and forwards again.
    func heal() {
        let open = lock.withLock { () -> [any Connection] in
            isCut = false
            defer { connections.removeAll() }
            return Array(connections.values)
        }
        for connection in open { connection.close() }
    }

    func close() {
        let open = lock.withLock { () -> [any Connection] in
            closed = true
            defer { connections.removeAll() }
            return Array(connections.values)
        }
        listener.close()
        for connection in open { connection.close() }
    }

    /// Waits for the next leadership keepalive to pass (after this call), then `delay` more
    /// (so the renewal's answers get through), and cuts. Returns the monotonic time the
    /// keepalive passed, or nil after `timeout`.
    func cutAfterNextLeaderKeepalive(delay: Duration, timeout: Duration) -> UInt64? {
        let deadline = Date().addingTimeInterval(timeout.seconds)
        let passed = lock.withLock { () -> UInt64? in
            let seen = leaderKeepalives
            while leaderKeepalives == seen {
                if !lock.wait(until: deadline) { return nil }
            }
            return lastLeaderKeepalive
        }
        guard let passed else { return nil }
        usleep(UInt32(delay.nanoseconds / 1000))
        cut()
        return passed
    }

    private var cutNow: Bool { lock.withLock { isCut } }

    private func register(_ connection: any Connection) -> Bool {
        lock.withLock {
            guard !closed else { return false }
            connections[ObjectIdentifier(connection)] = connection
            return true
        }
    }

    private func acceptLoop() {
        while true {
            let client: any Connection
            do { client = try listener.accept() } catch { return }
            guard register(client) else {
                client.close()
                return
            }
            if cutNow {
                // Held: read and drop whatever arrives, answer nothing.
                start("blackhole-proxy-hold") { [self] in pump(from: client, to: nil, fromClient: true, pair: ObjectIdentifier(client)) }
                continue
            }
            start("blackhole-proxy-connect") { [self] in
                guard let server = try? TCPNetwork().connect(to: upstream, timeout: Self.connectTimeout), register(server) else {
                    client.close()
                    return
                }
                let pair = ObjectIdentifier(client)
                start("blackhole-proxy-up") { [self] in pump(from: client, to: server, fromClient: true, pair: pair) }
                pump(from: server, to: client, fromClient: false, pair: pair)
            }
        }
    }

    private func start(_ name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread(block: body)
        thread.name = name
        thread.start()
    }

    /// Forwards `source` to `destination` until either side closes; drops the bytes while cut
    /// (or always, without a destination).
    private func pump(from source: any Connection, to destination: (any Connection)?, fromClient: Bool, pair: ObjectIdentifier) {
        var buffer = [UInt8](repeating: 0, count: Self.chunkBytes)
        defer {
            source.close()
            destination?.close()
            lock.withLock {
                connections[ObjectIdentifier(source)] = nil
                if let destination { connections[ObjectIdentifier(destination)] = nil }
                if fromClient { leadershipConnections.remove(pair) }
            }
        }
        while true {
            let count: Int
            do {
                count = try buffer.withUnsafeMutableBytes { raw in Result { () throws(TransportError) in try source.receive(into: raw) } }.get()
            } catch {
                return
            }
            if count == 0 { return }
            guard let destination, !cutNow else { continue }
            if fromClient { observe(buffer[0..<count], pair: pair) }
            do {
                try buffer.withUnsafeBytes { raw in
                    Result { () throws(TransportError) in try destination.send(UnsafeRawBufferPointer(rebasing: raw[0..<count])) }
                }.get()
            } catch {
                return
            }
        }
    }

    private static let campaignMarker = Array("POST /v3/kv/txn ".utf8)
    private static let keepaliveMarker = Array("POST /v3/lease/keepalive ".utf8)

    private func observe(_ bytes: ArraySlice<UInt8>, pair: ObjectIdentifier) {
        let campaign = bytes.firstRange(of: Self.campaignMarker) != nil
        let keepalive = bytes.firstRange(of: Self.keepaliveMarker) != nil
        guard campaign || keepalive else { return }
        lock.withLock {
            if campaign { leadershipConnections.insert(pair) }
            if keepalive, leadershipConnections.contains(pair) {
                leaderKeepalives += 1
                lastLeaderKeepalive = monotonicNanoseconds()
                lock.broadcast()
            }
        }
    }
}

// MARK: - A cluster of elected nodes

/// Three (or more) `shiplog serve --elect` processes on fixed loopback ports, their data
/// directories, and every process ever started for each (killed ones keep their stderr, which
/// holds the election events).
final class ElectedCluster: @unchecked Sendable {
    // @unchecked: driven by one test thread; pollers only read the fixed fields.
    static let secret = "failover-process-tests-secret-0123456789"

    let backend: CoordinationBackend
    let scratch: Scratch
    let secretFile: String
    let prefix: String
    let leaseSeconds: Int
    let ports: [UInt16]
    /// The election URL of each node (a proxy's port, or the server's).
    let electionURLs: [String]
    let flags: [String]
    private let clientOptions: ClientOptions
    /// Guards `running` and `started`, which a ``RoleObserver`` thread reads.
    private let lock = NSLock()
    private var running: [NodeProcess?]
    private var started: [[NodeProcess]]

    init(
        _ name: String, backend: CoordinationBackend, nodes count: Int = 3, leaseSeconds: Int, proxies: [BlackholeProxy]? = nil,
        flags: [String] = []
    ) throws {
        let server = try CoordinationServer.shared(backend)
        self.backend = backend
        scratch = Scratch(name, group: "shiplog-failover-process-tests")
        secretFile = scratch.root + "/secret"
        try Self.secret.write(toFile: secretFile, atomically: true, encoding: .utf8)
        let safe = name.filter { $0.isLetter || $0.isNumber }.prefix(40)
        let prefix = "/failover-\(safe)-\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
        self.prefix = prefix
        self.leaseSeconds = leaseSeconds
        // Below Linux's ephemeral range (32768-60999): a node restarted after a SIGKILL must get
        // its port back, and an outgoing connection of another node could hold a port that was
        // handed out from that range.
        ports = try (0..<count).map { _ in try CoordinationServer.freePortBelowEphemeralRange() }
        electionURLs = (0..<count).map { server.url(prefix: prefix, port: proxies?[$0].port) }
        self.flags = flags
        var options = ClientOptions(nodeID: "failover-test", secret: try SharedSecret(bytes: Array(Self.secret.utf8)))
        options.connectTimeout = .seconds(1)
        options.responseTimeout = .seconds(3)
        clientOptions = options
        running = Array(repeating: nil, count: count)
        started = Array(repeating: [], count: count)
    }

    /// The process of node `index` now, nil when it is not running.
    func node(_ index: Int) -> NodeProcess? { lock.withLock { running[index] } }
    /// Every process started for node `index`, oldest first.
    func incarnations(_ index: Int) -> [NodeProcess] { lock.withLock { started[index] } }

    var count: Int { ports.count }
    var indices: Range<Int> { 0..<count }
    func nodeID(_ index: Int) -> String { "n\(index + 1)" }
    func address(_ index: Int) -> String { "127.0.0.1:\(ports[index])" }
    func directory(_ index: Int) -> String { scratch.root + "/" + nodeID(index) }
    /// `A,B,C` for `--server`.
    var serverList: String { indices.map(address).joined(separator: ",") }
    var ttl: Duration { .seconds(leaseSeconds) }

    /// Starts node `index` on its directory and port (again, after a kill).
    @discardableResult
    func start(_ index: Int) throws -> NodeProcess {
        precondition(node(index) == nil, "\(nodeID(index)) is running")
        let arguments =
            [
                "serve", "--dir", directory(index), "--listen", address(index), "--node", nodeID(index), "--secret-file", secretFile,
                "--elect", electionURLs[index], "--lease-seconds", "\(leaseSeconds)", "--segment-bytes", "1048576",
            ] + flags
        let node = try NodeProcess(arguments, directory: directory(index))
        lock.withLock {
            running[index] = node
            started[index].append(node)
        }
        return node
    }

    func startAll() throws {
        for index in indices { try start(index) }
    }

    /// SIGKILL to node `index` (SIGCONT first, in case it was stopped).
    func kill(_ index: Int) {
        guard let node = node(index) else { return }
        node.kill()
        lock.withLock { running[index] = nil }
    }

    func signal(_ index: Int, _ signal: Int32) { node(index)?.process.signal(signal) }

    /// Runs a `shiplog` client command with the cluster's secret; `server`: a node index, or
    /// nil for every node (`--server A,B,C`).
    func run(_ arguments: [String], on server: Int?, input: [UInt8] = []) throws -> (status: Int32, stdout: String, stderr: String) {
        let child = try ChildProcess(
            arguments + ["--server", server.map(address) ?? serverList, "--secret-file", secretFile], keepStdinOpen: true)
        child.write(input)
        let status = child.wait()
        return (status, child.stdout, child.stderr)
    }

    /// A long-running `append --server A,B,C --ack LEVEL` with its stdin open.
    func writer(level: String) throws -> ChildProcess {
        try ChildProcess(["append", "--server", serverList, "--secret-file", secretFile, "--ack", level], keepStdinOpen: true)
    }

    // MARK: Status

    /// Node `index`'s status document (asked in this process), or nil when it does not answer.
    func status(_ index: Int) -> [String: Any]? {
        guard node(index) != nil else { return nil }
        guard let client = try? ReplicationClient(connectingTo: Endpoint(host: "127.0.0.1", port: ports[index]), options: clientOptions)
        else { return nil }
        defer { client.close() }
        guard let json = try? client.status(), let data = json.data(using: .utf8) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    /// Whether a status document is that of a primary accepting appends (not fenced).
    static func isActingPrimary(_ status: [String: Any]) -> Bool {
        status["role"] as? String == "primary" && status["fenced"] == nil && status["fenced_by_epoch"] == nil
    }

    /// The node acting as primary with the highest epoch above `epoch`, once there is one.
    func waitForPrimary(newerThan epoch: UInt64 = 0, timeout: Duration) throws -> (index: Int, epoch: UInt64) {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var best: (index: Int, epoch: UInt64)?
            for index in indices {
                guard let status = status(index), Self.isActingPrimary(status) else { continue }
                let current = number(status["epoch"])
                if current > epoch, current > best?.epoch ?? 0 { best = (index, current) }
            }
            if let best { return best }
            usleep(20_000)
        }
        throw ChildProcessError("no primary of an epoch above \(epoch) after \(timeout); \(diagnostics())")
    }

    /// Waits until `primary` has `count` connected followers that have made durable (and
    /// applied) at least `lsn` (default: the primary's last LSN when the wait began).
    func waitForFollowers(of primary: Int, count: Int, through lsn: UInt64? = nil, timeout: Duration) throws {
        let deadline = ContinuousClock.now + timeout
        var target = lsn
        var last: [String: Any] = [:]
        while ContinuousClock.now < deadline {
            if let status = status(primary) {
                last = status
                if target == nil { target = number(status["last_lsn"]) }
                let followers = status["followers"] as? [[String: Any]] ?? []
                let ready = followers.filter {
                    flag($0["connected"]) && number($0["flushed_lsn"]) >= target! && number($0["applied_lsn"]) >= target!
                }
                if ready.count >= count { return }
            }
            usleep(20_000)
        }
        throw ChildProcessError(
            "\(nodeID(primary)) has not \(count) followers through LSN \(target ?? 0) after \(timeout): \(last); \(diagnostics())")
    }

    /// Every node's status and the tail of its standard error, for failure messages.
    func diagnostics() -> String {
        indices.map { index in
            let status = self.status(index).map { "\($0)" } ?? "no status"
            let stderr = incarnations(index).last?.process.stderr ?? ""
            return "\(nodeID(index)): \(status) stderr: \(stderr.suffix(1500))"
        }.joined(separator: "\n")
    }

    // MARK: Election events

    /// (epoch, node) for every "primary of epoch E" election event of every process started.
    func epochWins() -> [(epoch: UInt64, node: String)] {
        var wins: [(UInt64, String)] = []
        for index in indices {
            for node in incarnations(index) {
                for line in node.process.stderr.split(separator: "\n") {
                    guard let range = line.range(of: "election: leader: primary of epoch ") else { continue }
                    let digits = line[range.upperBound...].prefix { $0.isNumber }
                    if let epoch = UInt64(digits) { wins.append((epoch, nodeID(index))) }
                }
            }
        }
        return wins
    }

    /// Waits until node `index` has printed that it became primary of `epoch`.
    func waitForElectionEvent(of index: Int, epoch: UInt64, timeout: Duration = .seconds(5)) throws {
        guard let process = node(index)?.process else { throw ChildProcessError("\(nodeID(index)) is not running") }
        let event = "election: leader: primary of epoch \(epoch) "
        let deadline = ContinuousClock.now + timeout
        while !process.stderr.contains(event) {
            guard ContinuousClock.now < deadline else {
                throw ChildProcessError("\(nodeID(index)) did not print \"\(event)\" within \(timeout): \(process.stderr.suffix(2000))")
            }
            usleep(10_000)
        }
    }

    /// The `quarantine/rejoin-*` directories of every node: each one a divergent suffix cut.
    var rejoinDirectories: [String] {
        indices.flatMap { index in
            let quarantine = directory(index) + "/quarantine"
            return ((try? FileManager.default.contentsOfDirectory(atPath: quarantine)) ?? []).filter { $0.hasPrefix("rejoin-") }.map {
                quarantine + "/" + $0
            }
        }
    }

    // MARK: Stopping

    /// SIGTERM to every running node, followers first (a stopping leader resigns, and nobody
    /// should take over at the end); each must exit 0.
    func stopAll(primary: Int?) {
        for index in indices.filter({ $0 != primary }) + (primary.map { [$0] } ?? []) {
            guard let node = node(index) else { continue }
            #expect(node.stop() == 0, "\(nodeID(index)): \(node.process.stderr.suffix(3000))")
            lock.withLock { running[index] = nil }
        }
    }

    func cleanup() {
        for index in indices {
            signal(index, SIGCONT)
            kill(index)
        }
        scratch.cleanup()
    }
}

// MARK: - Records and figures

/// Line `index` of the failover writer: a key-value record putting `k<7 base-36 digits>` (8
/// bytes) = `v<same digits>-<11 letters>` (20 bytes). Neither length is 10, so no byte of
/// the record is a newline, and the key names the line.
func failoverLine(_ index: Int) -> [UInt8] {
    let digits = String(index, radix: 36)
    let padded = String(repeating: "0", count: max(0, 7 - digits.count)) + digits
    return kvLine("k" + padded, "v" + padded + "-" + noise(seed: UInt64(index), count: 11))
}

/// Feeds `failoverLine`s from index `first` on to a writer's stdin on a thread of its own,
/// one every `interval`, until stopped or the writer has gone.
final class LineFeeder: @unchecked Sendable {
    // @unchecked: every var is guarded by `lock`.
    private let writer: ChildProcess
    private let interval: Duration
    private let lock = NSCondition()
    private var next: Int
    private var stopRequested = false
    private var finished = false

    init(writer: ChildProcess, first: Int = 0, interval: Duration) {
        self.writer = writer
        self.interval = interval
        next = first
        let thread = Thread { [self] in run() }
        thread.name = "failover-feeder"
        thread.start()
    }

    /// The index of the next line to write: every line before it has been handed to the writer
    /// (or is being), none from it on.
    var nextLine: Int { lock.withLock { next } }

    private func run() {
        defer {
            lock.withLock { finished = true }
            lock.broadcast()
        }
        while true {
            let index = lock.withLock { () -> Int? in
                guard !stopRequested else { return nil }
                next += 1
                return next - 1
            }
            guard let index, writer.write(failoverLine(index)) else { return }
            usleep(UInt32(interval.nanoseconds / 1000))
        }
    }

    /// Stops feeding; returns the index after the last line written.
    @discardableResult
    func stop() -> Int {
        lock.withLock {
            stopRequested = true
            while !finished { lock.wait() }
            return next
        }
    }
}

/// `append --server A,B,C --ack LEVEL` fed with `failoverLine`s, started again (from the
/// first line it did not acknowledge) if it stops: the acknowledgements of every writer are
/// kept, and why each one stopped.
final class FailoverWriter {
    let cluster: ElectedCluster
    let level: String
    let interval: Duration
    private(set) var process: ChildProcess
    private var feeder: LineFeeder
    /// The line index the current writer started at.
    private var base = 0
    /// (line index, LSN) acknowledged by the writers that stopped.
    private var earlier: [(line: Int, lsn: UInt64)] = []
    /// How each writer that stopped ended (exit status and the tail of its stderr).
    private(set) var stops: [String] = []

    /// Writers started again at most: one that cannot make progress ends the test.
    static let restartsMax = 2_000
    /// The pause before a writer is started again.
    static let restartDelay: Duration = .milliseconds(50)

    init(cluster: ElectedCluster, level: String, interval: Duration) throws {
        self.cluster = cluster
        self.level = level
        self.interval = interval
        process = try cluster.writer(level: level)
        feeder = LineFeeder(writer: process, interval: interval)
    }

    /// Lines acknowledged so far: every line before this index has its LSN.
    var acknowledgedLines: Int { base + printedLineCount(process) }
    /// Lines handed to a writer so far.
    var linesStarted: Int { feeder.nextLine }

    /// Starts a new writer when the current one has exited; true if it did.
    func restartIfStopped() throws -> Bool {
        guard process.hasExited, stops.count < Self.restartsMax else { return false }
        feeder.stop()
        let status = process.wait()
        let lsns = printedLSNs(process.stdout)
        earlier += lsns.enumerated().map { (base + $0.offset, $0.element) }
        stops.append("writer \(stops.count + 1) (from line \(base)) exited \(status): \(process.stderr.suffix(300))")
        base += lsns.count
        usleep(UInt32(Self.restartDelay.nanoseconds / 1000))
        process = try cluster.writer(level: level)
        feeder = LineFeeder(writer: process, first: base, interval: interval)
        return true
    }

    /// Waits until `count` more lines are acknowledged (starting writers again as needed).
    func waitForAcknowledgements(_ count: Int, timeout: Duration) throws {
        _ = try waitUntilAcknowledged(beyond: acknowledgedLines + count - 1, timeout: timeout)
    }

    /// Waits until line `line` is acknowledged (starting writers again as needed); false after
    /// `timeout`.
    func waitUntilAcknowledged(beyond line: Int, timeout: Duration) throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while acknowledgedLines <= line {
            guard ContinuousClock.now < deadline else { return false }
            if try !restartIfStopped() { usleep(5_000) }
        }
        return true
    }

    /// Stops feeding, closes the writer's input and waits for it: its exit status, the lines
    /// handed to the last writer that it did not acknowledge, and every (line, LSN)
    /// acknowledged.
    func finish() -> (status: Int32, unacknowledged: Int, acknowledged: [(line: Int, lsn: UInt64)]) {
        let end = feeder.stop()
        process.closeStdin()
        let status = process.wait(timeout: .seconds(60))
        let lsns = printedLSNs(process.stdout)
        return (status, end - base - lsns.count, earlier + lsns.enumerated().map { (base + $0.offset, $0.element) })
    }

    /// Kills whatever is left (after a failure).
    func kill() {
        feeder.stop()
        process.closeStdin()
        process.signal(SIGKILL)
        process.wait()
    }
}

extension ChildProcess {
    /// Whether the process has ended (an unreaped zombie counts), read from /proc so that it
    /// never reaps the child behind ``wait(timeout:)``'s back.
    var hasExited: Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let paren = stat.lastIndex(of: ")") else {
            return true
        }
        let state = stat[stat.index(after: paren)...].first { $0 != " " }
        return state == "Z" || state == "X"
    }
}

/// Lines a process has printed so far (complete ones).
func printedLineCount(_ process: ChildProcess) -> Int {
    process.stdout.utf8.reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
}

/// The nearest-rank percentile `p` (0...100) of `samples`.
func percentile(_ p: Double, of samples: [Double]) -> Double {
    guard !samples.isEmpty else { return .nan }
    let sorted = samples.sorted()
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
    return sorted[min(max(rank, 1), sorted.count) - 1]
}

/// The segment files of a log directory: name and bytes.
func segmentFiles(_ directory: String) -> [String: [UInt8]] {
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".seg") }
    var files: [String: [UInt8]] = [:]
    for name in names { files[name] = FileManager.default.contents(atPath: directory + "/" + name).map { Array($0) } }
    return files
}

/// The batch headers in `bytes` from `offset` up to the first that does not decode (zeros, a
/// segment footer, the end).
func batchHeaders(in bytes: [UInt8], from offset: Int) -> [BatchHeader] {
    var headers: [BatchHeader] = []
    var offset = offset
    while offset + BatchHeader.byteCount <= bytes.count {
        let decoded = bytes.withUnsafeBytes { BatchHeader.decode(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
        guard case .header(let header) = decoded, offset + header.batchByteCount <= bytes.count else { break }
        headers.append(header)
        offset += header.batchByteCount
    }
    return headers
}

extension Duration {
    /// The duration in seconds, for Foundation's date arithmetic.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Milliseconds between two monotonic readings.
func milliseconds(_ from: UInt64, _ to: UInt64) -> Double { Double(Int64(bitPattern: to &- from)) / 1e6 }
