public import ShipLogFormat
public import ShipLogProtocol

/// The election's persistent record `P/term` (docs/FAILOVER.md 9), written only by
/// compare-and-set: by the node that just won the leader key (a new term, a new epoch: the
/// election's epoch counter, so no two terms share an epoch even when the winner never saw
/// the other's), and by the term's leader as followers join or leave its synchronous set.
///
/// The rule it carries: with a synchronous default level that needs K followers, every
/// acknowledged write of the term is on its leader and on at least K members of
/// ``synchronousSet`` (a follower joins the set here before its positions count, and stops
/// counting before it leaves). So among any `|set| - K + 1` members one holds every
/// acknowledged write, and the most advanced of them may lead the next term.
public struct TermRecord: Sendable, Hashable {
    /// The term's epoch.
    public var epoch: Epoch
    /// The node ID of the term's leader.
    public var leader: String
    /// The leader's default commit level.
    public var level: CommitLevel
    /// Followers whose positions count toward the leader's commit levels.
    public var synchronousSet: Set<String>

    public init(epoch: Epoch, leader: String, level: CommitLevel, synchronousSet: Set<String> = []) {
        self.epoch = epoch
        self.leader = leader
        self.level = level
        self.synchronousSet = synchronousSet
    }

    /// The record's name under the prefix.
    public static let name = "term"

    /// Followers that hold every write acknowledged at ``level`` (at least): K of `write:K`,
    /// `flush:K`, `apply:K`; 1 for `all` (the set may have grown since); 0 for `local`.
    public var acknowledgementsRequired: Int {
        switch level {
        case .local: return 0
        case .all: return 1
        case .write(let k), .flush(let k), .apply(let k): return k
        }
    }

    /// Members of the set a candidate must see, itself included, before it may lead: nil when
    /// the level promises nothing beyond the leader (`local`) or nothing was acknowledged with
    /// a follower's help (an empty set).
    public var candidatesRequired: Int? {
        let k = acknowledgementsRequired
        guard k > 0, !synchronousSet.isEmpty else { return nil }
        return max(1, synchronousSet.count - k + 1)
    }

    /// `shiplog-term 1 EPOCH LEADER LEVEL MEMBERS`: node IDs escaped as in key names, MEMBERS
    /// comma-separated and sorted, `-` when empty. UTF-8, one line.
    public var encoded: [UInt8] {
        let members = synchronousSet.isEmpty ? "-" : synchronousSet.sorted().map(ElectionKeys.escape).joined(separator: ",")
        return Array("shiplog-term 1 \(epoch.rawValue) \(ElectionKeys.escape(leader)) \(level) \(members)".utf8)
    }

    /// Parses ``encoded``; nil for anything else.
    public init?(decoding bytes: [UInt8]) {
        guard bytes.count <= CoordinationLimits.valueBytesMax, let text = String(validating: bytes, as: UTF8.self) else { return nil }
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "shiplog-term", parts[1] == "1", let epoch = UInt64(parts[2]),
            let leader = ElectionKeys.unescape(String(parts[3])), let level = CommitLevel(String(parts[4]))
        else { return nil }
        var members: Set<String> = []
        if parts[5] != "-" {
            for part in parts[5].split(separator: ",", omittingEmptySubsequences: false) {
                guard let member = ElectionKeys.unescape(String(part)) else { return nil }
                members.insert(member)
            }
        }
        self.init(epoch: Epoch(epoch), leader: leader, level: level, synchronousSet: members)
    }
}
