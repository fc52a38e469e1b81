import Foundation
import Glibc
import ShipLogReplication
import ShipLogStorage
import Testing

@testable import ShipLogFailover

// Real etcd and ZooKeeper servers for the tests: found where Debian's etcd-server and
// zookeeper packages put them (`make deps` installs both), started on free loopback ports with
// temporary data directories, and stopped when the test process exits. Each server runs under
// a small shell watchdog that kills it when the test process is gone, so a crashed test run
// leaves no server behind.

enum ServerBinaries {
    /// etcd's server binary (Debian: etcd-server).
    static let etcd: String? = firstExecutable(["/usr/bin/etcd", "/usr/local/bin/etcd"])
    /// ZooKeeper's start script (Debian: zookeeper), usable only with java.
    static let zooKeeper: String? = {
        guard firstExecutable(["/usr/bin/java"]) != nil || findInPath("java") != nil else { return nil }
        return firstExecutable(["/usr/share/zookeeper/bin/zkServer.sh", "/opt/zookeeper/bin/zkServer.sh"])
    }()

    static func available(_ backend: ElectionConfig.Backend) -> Bool {
        switch backend {
        case .etcd: etcd != nil
        case .zookeeper: zooKeeper != nil
        }
    }

    static let anyMissing = etcd == nil || zooKeeper == nil
    static let skipMessage =
        "etcd (\(etcd ?? "missing: apt-get install etcd-server")) and ZooKeeper (\(zooKeeper ?? "missing: apt-get install zookeeper")): "
        + "`make deps` installs both"

    private static func firstExecutable(_ candidates: [String]) -> String? {
        candidates.first { access($0, X_OK) == 0 } ?? candidates.lazy.compactMap { findInPath(($0 as NSString).lastPathComponent) }.first
    }

    private static func findInPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }
}

struct TestServerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One server process under its watchdog.
final class TestServer: @unchecked Sendable {
    let backend: ElectionConfig.Backend
    let port: UInt16
    let directory: String
    private let serverPID: pid_t
    private let watchdogPID: pid_t
    private let lock = NSLock()
    private var stopped = false  // guarded by `lock`

    /// How long a server may take to accept its first request.
    static let startTimeout: Duration = .seconds(60)

    private init(backend: ElectionConfig.Backend, port: UInt16, directory: String, serverPID: pid_t, watchdogPID: pid_t) {
        self.backend = backend
        self.port = port
        self.directory = directory
        self.serverPID = serverPID
        self.watchdogPID = watchdogPID
    }

    /// `backend://127.0.0.1:PORT/PREFIX`.
    func url(prefix: String) -> String { "\(backend.rawValue)://127.0.0.1:\(port)\(prefix)" }

    /// The server's log (its standard output and error).
    var log: String { (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? "" }

    // MARK: Shared servers

    private static let sharedEtcd = Result { try TestServer.start(.etcd) }
    private static let sharedZooKeeper = Result { try TestServer.start(.zookeeper) }

    /// The server shared by the tests of `backend` (each test works under a prefix of its own).
    static func shared(_ backend: ElectionConfig.Backend) throws -> TestServer {
        switch backend {
        case .etcd: try sharedEtcd.get()
        case .zookeeper: try sharedZooKeeper.get()
        }
    }

    // MARK: Starting and stopping

    /// Starts a server of its own (for tests that kill it) and waits until it answers.
    static func start(_ backend: ElectionConfig.Backend) throws -> TestServer {
        let directory = FileManager.default.temporaryDirectory.path + "/shiplog-failover-tests/\(backend.rawValue)-"
            + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        try FileManager.default.createDirectory(atPath: directory + "/data", withIntermediateDirectories: true)
        let port = try freePort()
        let command: [String]
        switch backend {
        case .etcd:
            guard let etcd = ServerBinaries.etcd else { throw TestServerError("etcd is not installed") }
            let client = "http://127.0.0.1:\(port)"
            let peer = "http://127.0.0.1:\(try freePort())"
            // Short heartbeats make etcd's minimum lease TTL (1.5 election timeouts) under 1 s.
            command = [
                etcd, "--name", "test", "--data-dir", directory + "/data", "--listen-client-urls", client,
                "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", "test=\(peer)", "--heartbeat-interval", "50", "--election-timeout", "500",
            ]
        case .zookeeper:
            guard let script = ServerBinaries.zooKeeper else { throw TestServerError("ZooKeeper is not installed") }
            // Ticks of 250 ms: sessions expire within a tick of their timeout; 1 s sessions allowed.
            let config = """
                tickTime=250
                minSessionTimeout=1000
                maxSessionTimeout=60000
                dataDir=\(directory)/data
                clientPort=\(port)
                clientPortAddress=127.0.0.1
                admin.enableServer=false
                preAllocSize=1024
                forceSync=no
                """
            try config.write(toFile: directory + "/zoo.cfg", atomically: true, encoding: .utf8)
            command = [
                "/usr/bin/env", "JMXDISABLE=true", "SERVER_JVMFLAGS=-Xmx256m -Xss512k -Dzookeeper.log.dir=\(directory)",
                script, "start-foreground", directory + "/zoo.cfg",
            ]
        }
        let (watchdog, server) = try spawnUnderWatchdog(command, directory: directory)
        let started = TestServer(backend: backend, port: port, directory: directory, serverPID: server, watchdogPID: watchdog)
        Registry.add(started)
        do {
            try started.waitUntilReady()
        } catch {
            let log = started.log
            started.stop()
            throw TestServerError("\(error)\n--- \(backend.rawValue) log ---\n\(log.suffix(4000))")
        }
        return started
    }

    /// Polls with a real client until the server answers a read.
    private func waitUntilReady() throws {
        let deadline = ContinuousClock.now + Self.startTimeout
        let service = try makeCoordinationService(url(prefix: "/ready"), ttl: .seconds(6))
        defer { service.close() }
        var lastError: (any Error)?
        while ContinuousClock.now < deadline {
            guard Glibc.kill(serverPID, 0) == 0 else { throw TestServerError("\(backend.rawValue) exited at start") }
            do {
                _ = try service.leader()
                return
            } catch {
                lastError = error
                usleep(100_000)
            }
        }
        throw TestServerError("\(backend.rawValue) on port \(port) did not answer within \(Self.startTimeout): \(lastError.map { "\($0)" } ?? "")")
    }

    /// SIGKILL to the server; returns once it is gone.
    func kill() {
        let first = lock.withLock {
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        _ = Glibc.kill(serverPID, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(watchdogPID, &status, 0)  // the watchdog reaps the server and exits
    }

    /// Kills the server and removes its directory.
    func stop() {
        kill()
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: Process plumbing

    /// A free loopback port (bound once, then released).
    static func freePort() throws -> UInt16 {
        let listener = try TCPNetwork().listen(on: Endpoint(host: "127.0.0.1", port: 0))
        defer { listener.close() }
        return listener.endpoint.port
    }

    /// Runs `command` under `sh`, which kills it when this process is gone. Returns the
    /// watchdog's PID and the server's.
    private static func spawnUnderWatchdog(_ command: [String], directory: String) throws -> (pid_t, pid_t) {
        let pidFile = directory + "/server.pid"
        let script = """
            parent=$1; log=$2; pidfile=$3; shift 3
            "$@" >"$log" 2>&1 </dev/null &
            server=$!
            echo $server >"$pidfile.tmp" && mv "$pidfile.tmp" "$pidfile"
            while kill -0 "$parent" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 0.2; done
            kill -9 "$server" 2>/dev/null
            wait "$server"
            """
        let arguments = ["/bin/sh", "-c", script, "shiplog-test-watchdog", String(getpid()), directory + "/server.log", pidFile] + command
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
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, directory + "/watchdog.log", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var watchdog = pid_t()
        let result = posix_spawn(&watchdog, "/bin/sh", &actions, &attributes, argv, environ)
        guard result == 0 else { throw TestServerError("posix_spawn /bin/sh: \(String(cString: strerror(result)))") }
        for _ in 0..<500 {
            if let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
                let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                return (watchdog, pid)
            }
            usleep(10_000)
        }
        Glibc.kill(watchdog, SIGKILL)
        throw TestServerError("the watchdog of \(command[0]) did not report the server's PID")
    }

    /// Every server started, killed when the process exits.
    private enum Registry {
        nonisolated(unsafe) static var servers: [TestServer] = []
        static let lock = NSLock()
        static let registered: Void = { atexit { Registry.stopAll() } }()

        static func add(_ server: TestServer) {
            _ = registered
            lock.withLock { servers.append(server) }
        }

        static func stopAll() {
            for server in lock.withLock({ servers }) { server.stop() }
        }
    }
}

/// Runs `body` on a thread of its own (the calls under test block), without blocking Swift's
/// cooperative pool.
func onOwnedThread<T: Sendable>(_ name: String = "failover-test", _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        _ = OwnedThread.start(name: name) {
            continuation.resume(with: Result { try body() })
        }
    }
}

/// A prefix of its own for one test on a shared server.
func uniquePrefix(_ name: String = #function) -> String {
    let safe = name.filter { $0.isLetter || $0.isNumber }.prefix(40)
    return "/test-\(safe)-\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
}

/// Monotonic nanoseconds (the clock of `Leadership.validUntil`).
func now() -> UInt64 { monotonicNanoseconds() }

/// Seconds between two monotonic readings, for messages.
func seconds(_ from: UInt64, _ to: UInt64) -> Double { Double(Int64(bitPattern: to &- from)) / 1e9 }
