import Glibc
import ShipLog

// What the commands that talk to a running node share: `--server` or `--dir`, the cluster's
// shared secret, commit levels, and connecting with errors that say what went wrong.

/// Where a command that works either on a local directory or through a node works.
enum CommandTarget: Equatable {
    case directory(FilePath)
    case server(Endpoint)
}

/// The cluster secret a command uses, and where it came from (for warnings and hints).
struct SecretSource: Equatable {
    enum Origin: Equatable {
        /// `--secret-file F`.
        case flag(String)
        /// The file named by ``Commands/secretFileEnvironment``.
        case environment(String)
        /// Neither: the built-in development secret.
        case development
    }

    var origin: Origin

    /// The secret file's path, `nil` for the development secret.
    var path: String? {
        switch origin {
        case .flag(let path), .environment(let path): path
        case .development: nil
        }
    }

    /// Reads the secret (exit 1 with the file and the reason when it cannot).
    func load() throws -> SharedSecret {
        guard let path else { return try SharedSecret(bytes: Array(Commands.developmentSecret.utf8)) }
        do { return try SharedSecret(contentsOfFile: path) } catch { throw CommandError("\(error)") }
    }
}

extension Commands {
    /// The environment variable naming the secret file when `--secret-file` is not given.
    static let secretFileEnvironment = "SHIPLOG_SECRET_FILE"
    /// The secret used when none is given: public by design, so only for development on one
    /// machine (``requireSecretToListen(on:secret:command:)`` refuses other addresses).
    static let developmentSecret = "shiplog built-in development secret: not a secret"
    /// How long a command waits for a node to accept its connection and handshake.
    static let connectTimeout: Duration = .seconds(5)
    /// Requests one command keeps in flight on its connection (pipelined appends).
    static let clientRequestsInFlightMax = 64

    // MARK: Shared flags

    static func serverFlag() -> FlagSpec {
        .value("server", placeholder: "HOST:PORT", help: "Work through the node listening here instead of a local --dir.")
    }
    static func secretFileFlag() -> FlagSpec {
        .value(
            "secret-file", placeholder: "F",
            help: "File holding the cluster's shared secret (default: $SHIPLOG_SECRET_FILE, else the built-in development secret).")
    }
    static func clusterFlag() -> FlagSpec {
        .value("cluster", placeholder: "ID", help: "Cluster id (1 to 64 bytes); nodes of another cluster are refused.", default: "shiplog")
    }
    static func ackFlag(_ help: String = "Commit level: local, write:K, flush:K, apply:K or all (default: the primary's).") -> FlagSpec {
        .value("ack", placeholder: "LEVEL", help: help)
    }
    /// `--server`, `--secret-file` and `--cluster`: what a command needs to reach a node.
    static func remoteFlags() -> [FlagSpec] { [serverFlag(), secretFileFlag(), clusterFlag()] }

    // MARK: Reading them

    /// `--dir` or `--server`, exactly one. Flags in `localOnly` may not come with `--server`,
    /// flags in `remoteOnly` not with `--dir`.
    static func target(
        _ arguments: ParsedArguments, localOnly: [String] = [], remoteOnly: [String] = []
    ) throws(UsageError) -> CommandTarget {
        let command = arguments.command
        func given(_ name: String) -> Bool { command.flag(named: name) != nil && arguments.contains(name) }
        switch (arguments.string("dir"), arguments.contains("server")) {
        case (nil, false):
            throw command.error("missing required flag --dir (or --server HOST:PORT)")
        case (_?, true):
            throw command.error("--dir and --server cannot be combined")
        case (let directory?, false):
            for name in remoteOnly + ["secret-file", "cluster"] where given(name) {
                throw command.error("--\(name) needs --server (it does not apply to a local --dir)")
            }
            return .directory(FilePath(directory))
        case (nil, true):
            for name in localOnly where given(name) {
                throw command.error("--\(name) applies to a local --dir only, not with --server")
            }
            return .server(try endpoint(arguments, "server"))
        }
    }

    /// The first `HOST:PORT` of `flag`'s value (a comma-separated list is allowed: the other
    /// nodes are where to look for the primary after a failover, see ``endpoints(_:_:)``).
    static func endpoint(_ arguments: ParsedArguments, _ flag: String) throws(UsageError) -> Endpoint {
        try endpoints(arguments, flag)[0]
    }

    /// Every `HOST:PORT` of `flag`'s value, `A:1,B:2,C:3`; at least one.
    static func endpoints(_ arguments: ParsedArguments, _ flag: String) throws(UsageError) -> [Endpoint] {
        let text = try arguments.requiredString(flag)
        var endpoints: [Endpoint] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let endpoint = Endpoint(String(part)) else {
                throw arguments.command.error(CommandSpec.invalid(text, flag, "expected HOST:PORT (or a comma-separated list of them), port 0 to 65535"))
            }
            endpoints.append(endpoint)
        }
        return endpoints
    }

    /// The `--ack` level, `nil` when the flag is absent.
    static func commitLevel(_ arguments: ParsedArguments, _ flag: String = "ack") throws(UsageError) -> CommitLevel? {
        guard let text = arguments.string(flag) else { return nil }
        guard let level = CommitLevel(text) else {
            throw arguments.command.error(
                CommandSpec.invalid(text, flag, "expected local, write:K, flush:K, apply:K or all, K 1 to \(ProtocolLimits.commitFollowersMax)"))
        }
        return level
    }

    /// An id flag (`--cluster`, `--node`): 1 to 64 bytes.
    static func identifier(_ arguments: ParsedArguments, _ flag: String, default fallback: String? = nil) throws(UsageError) -> String {
        guard let value = arguments.string(flag) ?? fallback else { throw arguments.command.error("missing required flag --\(flag)") }
        guard value.utf8.count <= ProtocolLimits.idBytesMax else {
            throw arguments.command.error(CommandSpec.invalid(value, flag, "expected 1 to \(ProtocolLimits.idBytesMax) bytes"))
        }
        return value
    }

    /// `--secret-file`, else the file named by `$SHIPLOG_SECRET_FILE`, else the development
    /// secret.
    static func secretSource(_ arguments: ParsedArguments, environment: (String) -> String? = Commands.environment)
        -> SecretSource
    {
        if let path = arguments.string("secret-file") { return SecretSource(origin: .flag(path)) }
        if let path = environment(secretFileEnvironment), !path.isEmpty { return SecretSource(origin: .environment(path)) }
        return SecretSource(origin: .development)
    }

    static func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

    /// Listening with the development secret would let anyone who reaches the address join the
    /// cluster: allowed on loopback addresses only.
    static func requireSecretToListen(on endpoint: Endpoint, secret: SecretSource, command: CommandSpec) throws(UsageError) {
        guard secret.path == nil, !isLoopback(endpoint.host) else { return }
        throw command.error(
            "\(endpoint) is not a loopback address: give --secret-file (or $\(secretFileEnvironment)) to listen on it")
    }

    /// `localhost`, `127.0.0.0/8` or `::1`.
    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    /// The warning printed once by a node that uses the development secret.
    static func developmentSecretWarning(reachableAt address: String) -> String {
        "no --secret-file: using the built-in development secret; anyone who can reach \(address) can join the cluster"
    }

    // MARK: Connecting

    /// Connects to the node among `endpoints` that is the primary of the highest epoch,
    /// retrying for `patience` (a failover in progress has no primary for a moment).
    static func connectToPrimary(_ arguments: ParsedArguments, among endpoints: [Endpoint], knownEpoch: Epoch, patience: Duration) throws -> ReplicationClient {
        let source = secretSource(arguments)
        var options = ClientOptions(nodeID: "shiplog-cli-\(getpid())", secret: try source.load())
        options.clusterID = try identifier(arguments, "cluster")
        options.connectTimeout = connectTimeout
        options.requestsInFlightMax = clientRequestsInFlightMax
        options.knownEpoch = knownEpoch
        let deadline = ContinuousClock.now + patience
        while true {
            if let client = ReplicationClient.connectToPrimary(among: endpoints, options: options) { return client }
            guard ContinuousClock.now < deadline else {
                throw CommandError("no primary among \(endpoints.map(\.description).joined(separator: ",")) within \(patience)")
            }
            usleep(100_000)
        }
    }

    /// Connects and authenticates to `endpoint`, with the secret and cluster of `arguments`.
    static func connect(_ arguments: ParsedArguments, to endpoint: Endpoint) throws -> ReplicationClient {
        let source = secretSource(arguments)
        var options = ClientOptions(nodeID: "shiplog-cli-\(getpid())", secret: try source.load())
        options.clusterID = try identifier(arguments, "cluster")
        options.connectTimeout = connectTimeout
        options.requestsInFlightMax = clientRequestsInFlightMax
        do {
            return try ReplicationClient(connectingTo: endpoint, options: options)
        } catch {
            throw CommandError("cannot connect to \(endpoint): \(error)\(hint(for: error, secret: source))")
        }
    }

    /// A hint after a refused handshake: which secret this side used.
    static func hint(for error: ReplicationError, secret: SecretSource) -> String {
        let refusedAuthentication: Bool
        switch error {
        case .refused(_, let failure):
            if case .authFailed = failure.reason { refusedAuthentication = true } else { refusedAuthentication = false }
        case .handshakeFailed: refusedAuthentication = true
        default: refusedAuthentication = false
        }
        guard refusedAuthentication else { return "" }
        switch secret.origin {
        case .flag(let path): return " (the secret came from --secret-file \(path))"
        case .environment(let path): return " (the secret came from $\(secretFileEnvironment) = \(path))"
        case .development: return " (no --secret-file given: the built-in development secret was used)"
        }
    }
}
