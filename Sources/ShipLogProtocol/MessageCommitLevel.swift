/// How far an append must get before the primary answers (docs/PROTOCOL.md section 8.2).
///
/// Every level includes `local`: the records are durable (fdatasynced) on the primary. The
/// follower levels add that `K` followers have written (`write:K`, in their page cache),
/// flushed (`flush:K`, durable) or applied (`apply:K`, visible to reads on them) the records;
/// `all` waits for every follower of the replica set to flush. These are PostgreSQL's
/// `local`, `remote_write`, `on` and `remote_apply` with a follower count (`ANY K`).
public enum CommitLevel: Hashable, Sendable, CustomStringConvertible {
    case local
    case write(followers: Int)
    case flush(followers: Int)
    case apply(followers: Int)
    case all

    /// Parses `local`, `write:K`, `flush:K`, `apply:K` or `all`, with `K` in 1 ... 255.
    public init?(_ text: String) {
        switch text {
        case "local": self = .local
        case "all": self = .all
        default:
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[1].isEmpty, parts[1].allSatisfy({ $0 >= "0" && $0 <= "9" }), let k = Int(parts[1]),
                (1...ProtocolLimits.commitFollowersMax).contains(k)
            else { return nil }
            switch parts[0] {
            case "write": self = .write(followers: k)
            case "flush": self = .flush(followers: k)
            case "apply": self = .apply(followers: k)
            default: return nil
            }
        }
    }

    public var description: String {
        switch self {
        case .local: "local"
        case .write(let k): "write:\(k)"
        case .flush(let k): "flush:\(k)"
        case .apply(let k): "apply:\(k)"
        case .all: "all"
        }
    }

    /// Wire form: `kind` (0 local, 1 write, 2 flush, 3 apply, 4 all) and `followers`
    /// (1 ... 255 for write, flush, apply; 0 for local and all).
    /// The `commitKind` of an AppendRequest that asks for the primary's default level.
    static let primaryDefaultKind: UInt8 = 5

    var wire: (kind: UInt8, followers: Int) {
        switch self {
        case .local: (0, 0)
        case .write(let k): (1, k)
        case .flush(let k): (2, k)
        case .apply(let k): (3, k)
        case .all: (4, 0)
        }
    }

    init?(kind: UInt8, followers: UInt8) {
        let k = Int(followers)
        switch kind {
        case 0 where k == 0: self = .local
        case 1 where k >= 1: self = .write(followers: k)
        case 2 where k >= 1: self = .flush(followers: k)
        case 3 where k >= 1: self = .apply(followers: k)
        case 4 where k == 0: self = .all
        default: return nil
        }
    }

    /// Whether the follower count is in range (only values built in code can break this).
    var isValid: Bool {
        switch self {
        case .local, .all: true
        case .write(let k), .flush(let k), .apply(let k): (1...ProtocolLimits.commitFollowersMax).contains(k)
        }
    }
}
