public import ShipLogFormat
public import ShipLogProtocol
import ShipLogStateMachine
public import ShipLogStorage

/// Why a role change was refused.
public enum RoleChangeError: Error, Sendable, CustomStringConvertible {
    /// The node is already in the role asked for.
    case alreadyInRole(String)
    /// The node is shutting down.
    case shuttingDown
    /// The log failed or refused the epoch-start record.
    case log(LogError)

    public var description: String {
        switch self {
        case .alreadyInRole(let role): "the node is already \(role)"
        case .shuttingDown: "the node is shutting down"
        case .log(let error): "\(error)"
        }
    }
}

extension ReplicaNode {
    /// Makes this follower (or a fenced primary) the primary of a new epoch: it stops following, raises its log's
    /// epoch to at least `minimumEpoch` and one above its own, appends the epoch-start control
    /// record (durable before this returns), and accepts appends. The other nodes learn the new
    /// epoch from its handshakes: a primary of an older epoch that hears of it stops accepting
    /// appends (fencing), followers follow it once pointed at it (``follow(_:)``, or an
    /// election).
    /// - Returns: the new epoch and the LSN of its epoch-start record.
    @discardableResult
    public func promote(minimumEpoch: Epoch = Epoch(0)) throws(RoleChangeError) -> (epoch: Epoch, firstLSN: LSN) {
        let link = try lock.withLock { () throws(RoleChangeError) -> FollowerLink<Machine>? in
            if stopping { throw .shuttingDown }
            // A fenced primary (one that waits to hold the leader lease) may start a new epoch
            // too: every leadership term is an epoch of its own.
            if case .primary = currentRole, fencedReason == nil, fencedBy == nil { throw .alreadyInRole("the primary") }
            let link = self.link
            self.link = nil
            return link
        }
        link?.stop()
        guard let host else {
            if let failure = lock.withLock({ hostFailure }) { throw .log(failure) }
            throw .shuttingDown
        }
        let log = host.log
        let previous = log.epoch
        let epoch = max(Epoch(previous.rawValue + 1), minimumEpoch)
        let range: LSNRange
        do {
            try log.raiseEpoch(to: epoch)
            let done = ResultBox<LSNRange>()
            _ = try host.submitControl(
                [.epochStart(epoch: epoch, previousEpoch: previous, previousEpochLastLSN: log.writtenLSN)], durability: .immediate
            ) { result in done.set(result.mapError { .log($0) }) }
            range = try done.wait().get()
        } catch let error as LogError {
            throw .log(error)
        } catch {
            throw .log(.failed(underlying: "\(error)"))
        }
        lock.withLock {
            currentRole = .primary
            fencedBy = nil
            fencedReason = nil
        }
        tracker.resume()
        loadSlotsIntoTracker()
        refreshRetentionHold()
        return (epoch, range.first)
    }

    /// Makes this primary a follower of `primary` (after losing an election, or by an
    /// operator): it stops accepting appends at once, ends its follower streams, and follows
    /// `primary`; if its log has records the new primary does not, it truncates them into
    /// quarantine when the new primary says where the histories diverge (docs/PROTOCOL.md 7.1).
    public func demote(toFollowerOf primary: Endpoint) throws(RoleChangeError) {
        let streams = try lock.withLock { () throws(RoleChangeError) -> [FollowerStream] in
            if stopping { throw .shuttingDown }
            guard case .primary = currentRole else { throw .alreadyInRole("a follower") }
            currentRole = .follower(primary: primary)
            let all = Array(self.streams.values)
            self.streams.removeAll()
            return all
        }
        for stream in streams { stream.close() }
        for nodeID in tracker.followerPositions.keys { tracker.followerRemoved(nodeID) }
        refreshRetentionHold()
        startLink(to: primary)
    }

    /// Points this follower at another primary (it found the new one after a failover).
    public func follow(_ primary: Endpoint) throws(RoleChangeError) {
        let old = try lock.withLock { () throws(RoleChangeError) -> FollowerLink<Machine>? in
            if stopping { throw .shuttingDown }
            guard case .follower(let current) = currentRole else { throw .alreadyInRole("the primary") }
            if current == primary, link != nil { return nil }
            currentRole = .follower(primary: primary)
            let old = link
            link = nil
            return old
        }
        old?.stop()
        startLink(to: primary)
    }

    /// Stops accepting appends at once and answers every append still waiting for its commit
    /// level with `commitTimedOut` (its records are in the log but may not survive the
    /// failover): the primary lost, or could not renew, its leader lease.
    public func fence(reason: String) {
        let first = lock.withLock { () -> Bool in
            guard fencedReason == nil else { return false }
            fencedReason = reason
            return true
        }
        if first { tracker.abandonWaiting() }
    }

    /// Accepts appends again (the node holds the leader lease again).
    public func unfence() {
        lock.withLock {
            fencedReason = nil
            fencedBy = nil
        }
        tracker.resume()
    }

    /// Why the node refuses appends, if it does.
    public var fencing: String? {
        lock.withLock {
            if let fencedReason { return fencedReason }
            return fencedBy.map { "a node of epoch \($0) has replaced this primary" }
        }
    }

    func startLink(to primary: Endpoint) {
        let link = FollowerLink(node: self, primary: primary)
        let started = lock.withLock { () -> Bool in
            guard !stopping, self.link == nil else { return false }
            self.link = link
            return true
        }
        if started { link.start() }
    }
}
