public import ShipLogFormat

/// What a primary knows of one follower, for an election's synchronous set.
public struct FollowerProgress: Sendable, Hashable {
    /// Every LSN up to this is durable on the follower, as it last reported.
    public var flushedLSN: LSN
    /// Whether the follower is connected now.
    public var isConnected: Bool
}

/// The primary's side of an election's synchronous set (docs/FAILOVER.md 9): which followers
/// count toward commit levels, and what has been acknowledged with their help.
extension ReplicaNode {
    /// Counts only the positions of `nodeIDs` toward commit levels from now on (nil: every
    /// follower's, the default without an election). Waiters whose level the change meets are
    /// answered at once.
    public func countOnlyFollowers(_ nodeIDs: Set<String>?) {
        tracker.countOnly(nodeIDs)
    }

    /// The highest LSN this primary acknowledged at a follower level (write, flush, apply,
    /// all), and every follower of its replica set with its progress.
    public var acknowledgements: (acknowledgedLSN: LSN, followers: [String: FollowerProgress]) {
        let (acknowledged, followers) = tracker.acknowledgements
        return (acknowledged, followers.mapValues { FollowerProgress(flushedLSN: $0.flushed, isConnected: $0.connected) })
    }
}
