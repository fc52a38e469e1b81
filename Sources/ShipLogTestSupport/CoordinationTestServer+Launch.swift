#if canImport(Glibc)
import Glibc

extension CoordinationTestServer {
    /// How long the watchdog may take to report the server's PID.
    static let pidReportTimeout: Duration = .seconds(5)
    /// How often the PID file is looked for while waiting.
    static let pidReportPollInterval: Duration = .milliseconds(10)
    /// Most bytes of the PID file read.
    static let pidFileBytesMax = 64

    /// The command line that runs `backend` in the foreground on `port`, with its data (and
    /// ZooKeeper's configuration) in `directory`.
    static func launchCommand(
        _ backend: Backend, binary: String, directory: String, port: UInt16
    ) throws(CoordinationTestServerError) -> [String] {
        switch backend {
        case .etcd:
            let client = "http://127.0.0.1:\(port)"
            let peer = "http://127.0.0.1:\(try freeLoopbackPort())"
            // Short heartbeats make etcd's minimum lease TTL (1.5 election timeouts) under 1 s.
            return [
                binary, "--name", "test", "--data-dir", directory + "/data", "--listen-client-urls", client,
                "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", "test=\(peer)", "--heartbeat-interval", "50", "--election-timeout", "500",
            ]
        case .zookeeper:
            // Ticks of 250 ms: sessions expire within a tick of their timeout; 1 s sessions
            // allowed. `srvr` answers the readiness check.
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
                4lw.commands.whitelist=srvr

                """
            try TestFiles.write(config, to: directory + "/zoo.cfg")
            return [
                "/usr/bin/env", "JMXDISABLE=true", "SERVER_JVMFLAGS=-Xmx256m -Xss512k -Dzookeeper.log.dir=\(directory)",
                binary, "start-foreground", directory + "/zoo.cfg",
            ]
        }
    }

    /// Runs `command` under `sh`, which kills it when this process is gone (it polls every
    /// 0.2 s), its output in `directory`/server.log. Returns the watchdog's PID and the server's.
    static func spawnUnderWatchdog(_ command: [String], directory: String) throws(CoordinationTestServerError) -> (pid_t, pid_t) {
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
        let watchdog = try spawnShell(arguments, output: directory + "/watchdog.log")
        let deadline = ContinuousClock.now + pidReportTimeout
        while ContinuousClock.now < deadline {
            if let text = TestFiles.readTail(of: pidFile, bytesMax: pidFileBytesMax),
                let pid = text.split(whereSeparator: \.isWhitespace).first.flatMap({ pid_t($0) })
            {
                return (watchdog, pid)
            }
            sleep(for: pidReportPollInterval)
        }
        _ = Glibc.kill(watchdog, SIGKILL)
        throw CoordinationTestServerError("the watchdog of \(command[0]) did not report the server's PID within \(pidReportTimeout)")
    }

    /// posix_spawn of /bin/sh with `arguments`, no blocked signals, default handlers for the
    /// signals that end it, standard input from /dev/null and both outputs to `output`.
    private static func spawnShell(_ arguments: [String], output: String) throws(CoordinationTestServerError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid = pid_t()
        let result = withDefaultSignalSpawnAttributes { attributes in posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, environ) }
        guard result == 0 else { throw CoordinationTestServerError("posix_spawn /bin/sh: \(String(cString: strerror(result)))") }
        return pid
    }

    /// Blocks the calling thread (the tests call from threads they own) for `duration`.
    static func sleep(for duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
    }
}
#endif
