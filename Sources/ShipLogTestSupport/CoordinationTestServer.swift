#if canImport(Glibc)
import Glibc
public import ShipLogReplication
import Synchronization

// Real etcd and ZooKeeper servers for the failover tests (ShipLogFailoverTests and the process
// tests of ShipLogCLITests): found where Debian's etcd-server and zookeeper packages put them
// (`make deps` installs both), started on free loopback ports with temporary data directories,
// and stopped when the test process exits. Each server runs under a small shell watchdog that
// kills it when the test process is gone, so a crashed test run leaves no server behind.
// Linux only, like the tests that use it.

/// An error starting a coordination test server, naming the server and what went wrong.
public struct CoordinationTestServerError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }
}

/// One etcd or ZooKeeper server on a free loopback port with a temporary data directory, run
/// under a shell watchdog that kills it when the test process is gone.
///
/// Tests share one server per backend (``shared(_:)``), each working under a prefix of its
/// own; a test that kills its server starts one of its own (``start(_:)``).
public final class CoordinationTestServer: Sendable {
    public let backend: Backend
    /// The loopback port clients connect to.
    public let port: UInt16
    /// The server's temporary directory: its data, configuration, PID file and logs.
    let directory: String
    /// The server process (a child of its watchdog).
    let serverPID: pid_t
    /// The shell that kills the server when this process is gone, and reaps it.
    let watchdogPID: pid_t
    private let stopped = Mutex(false)

    /// How long a server may take to answer its first request (ZooKeeper starts a JVM).
    public static let startTimeout: Duration = .seconds(60)
    /// Most of the server's log read back (its tail), in bytes.
    public static let logBytesMax = 1 << 20
    /// Characters of the server's log a start failure quotes (its tail).
    static let startFailureLogCharacters = 4000
    /// Folder under the temporary directory (`TMPDIR`, else /tmp) holding the servers' directories.
    static let scratchGroup = "shiplog-coordination-test-servers"

    private init(backend: Backend, port: UInt16, directory: String, serverPID: pid_t, watchdogPID: pid_t) {
        self.backend = backend
        self.port = port
        self.directory = directory
        self.serverPID = serverPID
        self.watchdogPID = watchdogPID
    }

    /// `127.0.0.1:PORT`.
    public var endpoint: Endpoint { Endpoint(host: "127.0.0.1", port: port) }

    /// `BACKEND://127.0.0.1:PORT/PREFIX`, the election URL of a prefix on this server, or
    /// through `port` (a proxy in front of it) when given.
    public func url(prefix: String, port: UInt16? = nil) -> String { "\(backend.rawValue)://127.0.0.1:\(port ?? self.port)\(prefix)" }

    /// The tail of the server's standard output and error (at most ``logBytesMax`` bytes).
    public var log: String { TestFiles.readTail(of: directory + "/server.log", bytesMax: Self.logBytesMax) ?? "" }

    // MARK: Shared servers

    private static let sharedEtcd = Result { () throws(CoordinationTestServerError) in try start(.etcd) }
    private static let sharedZooKeeper = Result { () throws(CoordinationTestServerError) in try start(.zookeeper) }

    /// The server of `backend` shared by every test of the process, started on first use.
    /// Each test works under a prefix of its own. A failed start is remembered and rethrown.
    public static func shared(_ backend: Backend) throws(CoordinationTestServerError) -> CoordinationTestServer {
        switch backend {
        case .etcd: try sharedEtcd.get()
        case .zookeeper: try sharedZooKeeper.get()
        }
    }

    // MARK: Starting and stopping

    /// Starts a server of its own (for tests that kill it) and returns once it answers
    /// requests (see ``startTimeout``). The failure names the backend and quotes its log.
    public static func start(_ backend: Backend) throws(CoordinationTestServerError) -> CoordinationTestServer {
        guard let binary = backend.binary else { throw CoordinationTestServerError("\(backend) is not installed: \(Backend.skipMessage)") }
        let directory = try TestFiles.makeUniqueDirectory(in: scratchGroup, prefix: "\(backend)-")
        let started: CoordinationTestServer
        do throws(CoordinationTestServerError) {
            started = try launch(backend, binary: binary, in: directory)
        } catch {
            TestFiles.removeTree(at: directory)
            throw error
        }
        do throws(CoordinationTestServerError) {
            try started.waitUntilReady()
        } catch {
            let log = started.log
            started.stop()
            throw CoordinationTestServerError("\(error)\n--- \(backend) log ---\n\(log.suffix(startFailureLogCharacters))")
        }
        return started
    }

    /// Spawns `binary` for `backend` on a free port under its watchdog, with its data in
    /// `directory`, and registers it to be stopped at exit.
    private static func launch(
        _ backend: Backend, binary: String, in directory: String
    ) throws(CoordinationTestServerError) -> CoordinationTestServer {
        try TestFiles.makeDirectory(directory + "/data")
        let port = try freeLoopbackPort()
        let command = try launchCommand(backend, binary: binary, directory: directory, port: port)
        let (watchdog, server) = try spawnUnderWatchdog(command, directory: directory)
        let started = CoordinationTestServer(backend: backend, port: port, directory: directory, serverPID: server, watchdogPID: watchdog)
        register(started)
        return started
    }

    /// SIGKILL to the server; returns once it is gone (its watchdog reaped it). Keeps its
    /// directory. Idempotent.
    public func kill() {
        let first = stopped.withLock { stopped in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        _ = Glibc.kill(serverPID, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(watchdogPID, &status, 0)  // the watchdog reaps the server and exits
    }

    /// Kills the server and removes its directory. Idempotent.
    public func stop() {
        kill()
        TestFiles.removeTree(at: directory)
    }

    /// Stops every server this process started. Runs at exit on its own.
    public static func stopAll() {
        for server in registry.withLock({ $0 }) { server.stop() }
    }

    /// A free loopback port, as the error of a start.
    static func freeLoopbackPort() throws(CoordinationTestServerError) -> UInt16 {
        do {
            return try TestPorts.free()
        } catch {
            throw CoordinationTestServerError("no free loopback port for a coordination test server: \(error)")
        }
    }

    // MARK: Every server started

    private static let registry = Mutex<[CoordinationTestServer]>([])
    private static let stopAllAtExit: Void = { atexit { CoordinationTestServer.stopAll() } }()

    private static func register(_ server: CoordinationTestServer) {
        _ = stopAllAtExit
        registry.withLock { $0.append(server) }
    }
}
#endif
