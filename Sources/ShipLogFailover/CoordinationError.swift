import ShipLogReplication

/// Why a coordination call failed. Every case names the service, the setting or the key concerned.
public enum CoordinationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The election URL or a timing setting is invalid, or the service's own settings cannot
    /// honour it (a ZooKeeper that negotiates a shorter session timeout than the TTL).
    case invalidConfig(String)
    /// A node ID or value given to a call is invalid (too long, control characters, ...).
    case invalidArgument(String)
    /// The service could not be reached or stopped answering within the operation timeout;
    /// `service` names it (`etcd at 127.0.0.1:2379`).
    case unreachable(service: String, reason: String)
    /// The service answered with bytes that are not what its protocol allows.
    case protocolError(service: String, detail: String)
    /// The service refused a request (an HTTP error status, a ZooKeeper error code).
    case rejected(service: String, operation: String, reason: String)
    /// A leadership's lease is gone: it expired, was revoked, or the leader key no longer
    /// belongs to it. Final for that ``Leadership``.
    case leaseLost(String)
    /// A ZooKeeper session expired (its ephemeral nodes are gone). Final for that session.
    case sessionExpired(String)
    /// More records than a limit of ``CoordinationLimits`` allows.
    case limitExceeded(String)
    /// The service or leadership was closed by this process.
    case closed(String)

    public var description: String {
        switch self {
        case .invalidConfig(let problem): "invalid election configuration: \(problem)"
        case .invalidArgument(let problem): "invalid argument: \(problem)"
        case .unreachable(let service, let reason): "\(service) unreachable: \(reason)"
        case .protocolError(let service, let detail): "protocol error from \(service): \(detail)"
        case .rejected(let service, let operation, let reason): "\(service) refused \(operation): \(reason)"
        case .leaseLost(let reason): "leadership lost: \(reason)"
        case .sessionExpired(let reason): "session expired: \(reason)"
        case .limitExceeded(let problem): "limit exceeded: \(problem)"
        case .closed(let what): "\(what) is closed"
        }
    }

    /// True when the error means leadership is certainly gone (not merely unconfirmed).
    public var meansLeadershipLost: Bool {
        switch self {
        case .leaseLost, .sessionExpired, .closed: true
        default: false
        }
    }

    static func unreachable(_ service: String, _ error: TransportError) -> CoordinationError {
        .unreachable(service: service, reason: "\(error)")
    }
}
