import Glibc
import ShipLog
import ShipLogFailover

extension Commands {
    static let serve = CommandSpec(
        path: ["serve"], summary: "Run a primary: clients append and read, followers stream its log, on one port.",
        discussion: """
            Prints `listening HOST:PORT role=primary node=ID` on standard output once it accepts \
            connections (with the port chosen when PORT is 0), then runs until SIGTERM or SIGINT: \
            it stops accepting, lets appends in flight reach their commit level, and exits 0. \
            Followers must use the same --segment-bytes to hold byte-identical segment files.
            """,
        flags: [
            .value("dir", placeholder: "DIR", help: "Log directory (created when missing).", required: true),
            .value("listen", placeholder: "HOST:PORT", help: "Address for clients and followers (port 0: any free port).", required: true),
            ackFlag("Commit level of the replica set: what degraded mode is measured against, and the CLI's default.")
                .withDefault("local"),
            secretFileFlag(),
            clusterFlag(),
            .value("node", placeholder: "ID", help: "This node's id (1 to 64 bytes).", default: "primary"),
            .value(
                "commit-timeout", .unsignedInteger(1...UInt64(ProtocolLimits.requestWaitMillisMax)), placeholder: "MS",
                help: "How long an append waits for its commit level when it names no timeout.", default: "10000"),
            .value(
                "on-timeout", .choice(CommitTimeoutPolicy.allCases.map(\.rawValue)),
                help: "After a commit timeout: fail the append, or answer it degraded (asynchronous).", default: "fail"),
            .value(
                "elect", placeholder: "URL",
                help: "Take part in a leader election: etcd://HOST:PORT[/prefix] or zookeeper://HOST:PORT[/path]; the winner is the primary, the others follow it."),
            .value(
                "lease-seconds", .unsignedInteger(1...60), placeholder: "S",
                help: "Leader lease TTL with --elect; the leader fences itself before it can run out.", default: "5"),
            .value(
                "advertise", placeholder: "HOST:PORT",
                help: "With --elect: the address the others reach this node at (default: the --listen address)."),
        ] + nodeTuningFlags() + [
            .value(
                "slot-retained-bytes", .unsignedInteger(1...UInt64(Int64.max)), placeholder: "BYTES",
                help: "Log a follower's slot may hold back; a follower further behind re-seeds from a checkpoint.",
                default: "17179869184"),
        ])

    /// Storage tuning shared by `serve` and `follow`.
    static func nodeTuningFlags() -> [FlagSpec] {
        [
            .value(
                "segment-bytes", .unsignedInteger(65_536...UInt64(FormatLimits.segmentBytesMax)), placeholder: "BYTES",
                help: "Segment size; every node of a cluster must use the same.", default: "134217728"),
            .value(
                "checkpoint-bytes", .unsignedInteger(0...UInt64(Int64.max)), placeholder: "BYTES",
                help: "Automatic checkpoint after this many log bytes (0: never).", default: "268435456"),
        ]
    }
}

extension FlagSpec {
    /// The same flag with a default value.
    func withDefault(_ value: String) -> FlagSpec {
        var copy = self
        copy.defaultValue = value
        return copy
    }
}

/// Everything a `serve` or `follow` command line asks for, checked before anything touches
/// the disk or the network.
struct NodeSettings {
    var command: CommandSpec
    var directory: FilePath
    var role: ReplicaRole
    var listen: Endpoint?
    var secret: SecretSource
    var clusterID: String
    var nodeID: String
    var defaultCommitLevel = CommitLevel.local
    var commitTimeout: Duration = .seconds(10)
    var commitTimeoutPolicy = CommitTimeoutPolicy.fail
    var slotRetainedBytes: Int64 = 16 << 30
    /// The other nodes named by `--primary A,B,C` (a follower looks for the primary among them
    /// after a failover).
    var peers: [Endpoint] = []
    /// `--elect`: the coordination service URL, the lease TTL, the advertised address.
    var election: (url: String, ttl: Duration, advertise: Endpoint?)?
    var machineOptions = StateMachineOptions()

    /// `serve` or `follow` arguments; usage errors only.
    init(_ arguments: ParsedArguments, environment: (String) -> String? = Commands.environment) throws(UsageError) {
        command = arguments.command
        let dir = try arguments.requiredString("dir")
        directory = FilePath(dir)
        secret = Commands.secretSource(arguments, environment: environment)
        clusterID = try Commands.identifier(arguments, "cluster")
        if arguments.command.path == Commands.serve.path {
            role = .primary
            listen = try Commands.endpoint(arguments, "listen")
            nodeID = try Commands.identifier(arguments, "node")
            defaultCommitLevel = try Commands.commitLevel(arguments) ?? .local
            commitTimeout = .milliseconds(Int(try arguments.uint64("commit-timeout") ?? 10_000))
            commitTimeoutPolicy = try arguments.choice("on-timeout", from: ["fail": .fail, "degrade": .degrade]) ?? .fail
            slotRetainedBytes = Int64(try arguments.uint64("slot-retained-bytes") ?? UInt64(slotRetainedBytes))
            if let url = arguments.string("elect") {
                let ttl = Duration.seconds(Int64(try arguments.uint64("lease-seconds") ?? 5))
                do { _ = try ElectionConfig(url: url, ttl: ttl) } catch {
                    throw arguments.command.error(CommandSpec.invalid(url, "elect", "\(error)"))
                }
                let advertise = arguments.contains("advertise") ? try Commands.endpoint(arguments, "advertise") : nil
                election = (url, ttl, advertise)
            }
        } else {
            let primaries = try Commands.endpoints(arguments, "primary")
            role = .follower(primary: primaries[0])
            peers = Array(primaries.dropFirst())
            listen = arguments.contains("listen") ? try Commands.endpoint(arguments, "listen") : nil
            nodeID = try Commands.identifier(arguments, "node", default: Self.defaultFollowerID(directory: dir))
        }
        if let listen { try Commands.requireSecretToListen(on: listen, secret: secret, command: command) }
        machineOptions.log.segmentBytesMax = Int64(try arguments.uint64("segment-bytes") ?? 128 << 20)
        let checkpointBytes = try arguments.uint64("checkpoint-bytes") ?? 256 << 20
        machineOptions.checkpointIntervalBytes = checkpointBytes == 0 ? nil : Int64(checkpointBytes)
    }

    /// A follower's id when `--node` is not given: the directory's last component, which stays
    /// the same when the follower restarts on the same directory (its replication slot on the
    /// primary is keyed by it).
    static func defaultFollowerID(directory: String) -> String {
        let component = directory.split(separator: "/").last.map(String.init) ?? ""
        return component.isEmpty || component == "." || component == ".." ? "follower" : component
    }

    var isPrimary: Bool { role == .primary }

    /// The node's replication options, with the secret read from its file.
    func replicationOptions() throws -> ReplicationOptions {
        var options = ReplicationOptions(nodeID: nodeID, secret: try secret.load())
        options.clusterID = clusterID
        options.defaultCommitLevel = defaultCommitLevel
        options.commitTimeout = commitTimeout
        options.commitTimeoutPolicy = commitTimeoutPolicy
        options.slotRetainedBytesMax = slotRetainedBytes
        options.peers = peers
        // An elected node accepts appends only while it holds the leader lease.
        options.fencedAtStart = election != nil
        // Under an election the lease fences, not epochs (ReplicationOptions.fencesByEpoch).
        options.fencesByEpoch = election == nil
        return options
    }
}

/// `shiplog serve` and `shiplog follow`: a ``ReplicaNode`` running the key-value state machine
/// until SIGTERM or SIGINT.
struct NodeCommand {
    /// How often the command looks at its node's log for a failure between signals.
    static let healthCheckInterval: Duration = .seconds(1)

    let settings: NodeSettings

    init(_ arguments: ParsedArguments) throws {
        settings = try NodeSettings(arguments)
    }

    private var name: String { settings.command.displayName }

    private func note(_ text: String) { Output.error.line("\(name): \(text)") }

    func run() throws -> Int32 {
        let signals = try TerminationSignals.install()
        let options = try settings.replicationOptions()
        if case .follower(let primary) = settings.role { try probe(primary, options: options) }
        let node: ReplicaNode<KeyValueStateMachine>
        do {
            node = try ReplicaNode(
                directory: settings.directory, role: settings.role, listen: settings.listen, options: options,
                stateMachineOptions: settings.machineOptions
            ) { KeyValueStateMachine() }
        } catch {
            throw CommandError("\(settings.command.name): cannot start \(settings.isPrimary ? "the primary" : "the follower") in \(settings.directory): \(error)")
        }
        if settings.secret.path == nil {
            let address = node.listenEndpoint?.description ?? {
                if case .follower(let primary) = settings.role { return primary.description }
                return "this node"
            }()
            note(Commands.developmentSecretWarning(reachableAt: address))
        }
        if let report = node.host?.recoveryReport {
            for line in report.description.split(separator: "\n") { note(String(line)) }
        }
        var manager: FailoverManager<KeyValueStateMachine>?
        if let election = settings.election {
            manager = try startElection(node, election: election)
        }
        announce(node)
        let status = waitForStop(node, signals: signals, manager: manager)
        return status
    }

    /// The first line on standard output, which scripts and tests wait for.
    private func announce(_ node: ReplicaNode<KeyValueStateMachine>) {
        var line = node.listenEndpoint.map { "listening \($0)" } ?? "started (no --listen)"
        line += " role=\(settings.isPrimary ? "primary" : "follower") node=\(settings.nodeID)"
        if case .follower(let primary) = settings.role { line += " primary=\(primary)" }
        Output.standard.line(line)
        Output.standard.flush()
    }

    /// Runs until a signal (exit 0 after a clean shutdown) or a failed log (exit 1).
    private func waitForStop(
        _ node: ReplicaNode<KeyValueStateMachine>, signals: TerminationSignals, manager: FailoverManager<KeyValueStateMachine>?
    ) -> Int32 {
        var reported = 0
        while true {
            if let manager {
                let history = manager.history
                for line in history.dropFirst(reported) { note("election: \(line)") }
                reported = history.count
            }
            if let signal = signals.wait(timeout: manager == nil ? Self.healthCheckInterval : .milliseconds(200)) {
                signals.restoreDefaults()
                note("\(TerminationSignals.name(signal)): stopping (no new connections; appends in flight get their answers)")
                // A leader resigns first, so another node can take over at once.
                manager?.stop()
                node.shutdown()
                note("stopped")
                return 0
            }
            if let failure = node.host?.log.failure {
                note("the log in \(settings.directory) failed: \(failure); stopping")
                signals.restoreDefaults()
                node.shutdown()
                return 1
            }
        }
    }

    /// Starts the election loop (docs/FAILOVER.md): the node starts fenced and accepts appends
    /// only while it holds the leader lease.
    private func startElection(
        _ node: ReplicaNode<KeyValueStateMachine>, election: (url: String, ttl: Duration, advertise: Endpoint?)
    ) throws -> FailoverManager<KeyValueStateMachine> {
        guard let advertised = election.advertise ?? node.listenEndpoint else {
            throw CommandError("--elect needs an address the other nodes reach: give --advertise HOST:PORT")
        }
        do {
            let config = try ElectionConfig(url: election.url, ttl: election.ttl)
            let service = try makeCoordinationService(config: config)
            let manager = FailoverManager(node: node, service: service, advertised: advertised, config: config)
            manager.start()
            note("election through \(config) with a \(election.ttl) lease, advertising \(advertised)")
            return manager
        } catch {
            node.shutdown()
            throw CommandError("--elect \(election.url): \(error)")
        }
    }

    /// Checks the secret and cluster against the primary before following it: a follower
    /// that would be refused forever stops with the reason instead. A primary that cannot be
    /// reached yet is only noted; the follower keeps trying to connect.
    private func probe(_ primary: Endpoint, options: ReplicationOptions) throws {
        var clientOptions = ClientOptions(nodeID: settings.nodeID + "-probe", secret: options.secret)
        if clientOptions.nodeID.utf8.count > ProtocolLimits.idBytesMax { clientOptions.nodeID = "shiplog-follow-probe" }
        clientOptions.clusterID = options.clusterID
        clientOptions.connectTimeout = Commands.connectTimeout
        do {
            let client = try ReplicationClient(connectingTo: primary, options: clientOptions)
            client.close()
        } catch {
            switch error {
            case .refused(_, let failure):
                switch failure.reason {
                case .authFailed, .wrongCluster, .unsupportedVersion:
                    throw CommandError("\(settings.command.name): primary \(primary) refused this follower: \(failure)\(Commands.hint(for: error, secret: settings.secret))")
                default: break
                }
            case .handshakeFailed:
                throw CommandError("\(settings.command.name): handshake with primary \(primary) failed: \(error)\(Commands.hint(for: error, secret: settings.secret))")
            default: break
            }
            note("primary \(primary) not reachable yet (\(error)); retrying in the background")
        }
    }
}
