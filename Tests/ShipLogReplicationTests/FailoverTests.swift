import Foundation
import ShipLog
import ShipLogProtocol
@testable import ShipLogReplication
import Testing

/// Promotion, fencing and rejoin with truncation (docs/ARCHITECTURE.md section 11, "Roles").
@Suite(.serialized) struct FailoverTests {
    func waitUntil(_ what: String, timeout: Duration = .seconds(20), _ condition: () -> Bool) throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else { throw ClusterError("\(what) did not happen within \(timeout)") }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    @Test func promotedFollowerStartsANewEpochAndTheOldPrimaryRejoinsAsItsFollower() throws {
        let cluster = try TestCluster("promote", followers: 2)
        defer { cluster.remove() }
        let client = try cluster.client()
        for i in 0..<50 { _ = try client.append([putRecord("k\(i)", "before \(i)")], level: .flush(followers: 2)) }
        client.close()
        let oldEpoch = cluster.primary.host!.log.epoch

        // Promote follower-0 through the protocol, as `shiplog promote` does.
        let promoter = try cluster.client(cluster.followers[0])
        let (epoch, first) = try promoter.promote()
        promoter.close()
        #expect(epoch == Epoch(oldEpoch.rawValue + 1))
        #expect(first == LSN(51))
        let newPrimary = cluster.followers[0]
        #expect(newPrimary.role == .primary)
        #expect(newPrimary.host!.log.epochHistory.last == EpochStart(epoch: epoch, firstLSN: first))

        // The others follow it; the old primary is demoted and rejoins without truncating.
        try cluster.followers[1].follow(newPrimary.listenEndpoint!)
        try cluster.primary.demote(toFollowerOf: newPrimary.listenEndpoint!)
        try waitUntil("both followers streaming from the new primary") { newPrimary.connectedFollowerCount == 2 }

        var options = ClientOptions(nodeID: "after", secret: testSecret)
        options.knownEpoch = epoch
        let after = try ReplicationClient(connectingTo: newPrimary.listenEndpoint!, options: options)
        for i in 0..<50 { _ = try after.append([putRecord("k\(i)", "after \(i)")], level: .flush(followers: 2)) }
        after.close()
        // A client that has seen the new epoch refuses the old primary.
        #expect(throws: ReplicationError.self) {
            _ = try ReplicationClient(connectingTo: cluster.followers[1].listenEndpoint!, options: options).append([putRecord("x", "y")])
        }

        let nodes = [newPrimary, cluster.followers[1], cluster.primary!]
        let target = newPrimary.host!.log.writtenLSN
        try waitUntil("all nodes at LSN \(target)") { nodes.allSatisfy { ($0.host?.log.durableLSN ?? .zero) >= target } }
        let expected = contents(of: newPrimary)
        for node in nodes { #expect(contents(of: node) == expected) }
        #expect(expected[Array("k7".utf8)] == Array("after 7".utf8))
        cluster.shutdown()
        for name in ["follower-1", "primary"] {
            #expect(TestCluster.segmentsDiffer(cluster.directory("follower-0"), cluster.directory(name)) == nil, "\(name)")
        }
    }

    @Test func formerPrimaryWithUnreplicatedWritesQuarantinesExactlyItsDivergentSuffix() throws {
        let cluster = try TestCluster("rejoin", followers: 1)
        defer { cluster.remove() }
        let client = try cluster.client()
        for i in 0..<20 { _ = try client.append([putRecord("k\(i)", "common \(i)")], level: .flush(followers: 1)) }
        let common = cluster.primary.host!.log.writtenLSN
        // The follower goes away; the primary writes what nobody else gets.
        cluster.followers[0].shutdown()
        for i in 0..<7 { _ = try client.append([putRecord("lost\(i)", "only on the old primary")], level: .local) }
        client.close()
        let oldEnd = cluster.primary.host!.log.writtenLSN
        #expect(oldEnd == common.advanced(by: 7))
        cluster.primary.shutdown()

        // The follower comes back and is promoted; it writes in the new epoch.
        let follower = try cluster.startFollower(0)
        cluster.followers[0] = follower
        let (epoch, first) = try follower.promote()
        #expect(first == common.advanced(by: 1))
        var options = ClientOptions(nodeID: "new", secret: testSecret)
        options.knownEpoch = epoch
        let newClient = try ReplicationClient(connectingTo: follower.listenEndpoint!, options: options)
        for i in 0..<30 { _ = try newClient.append([putRecord("n\(i)", "new epoch \(i)")], level: .local) }

        // The old primary restarts as a follower of the new one: it truncates after `common`.
        let old = try KVNode(
            directory: cluster.directory("primary"), role: .follower(primary: follower.listenEndpoint!),
            listen: Endpoint(host: "127.0.0.1", port: 0), options: cluster.options("primary"),
            stateMachineOptions: cluster.machineOptions, network: cluster.network
        ) { KeyValueStateMachine() }
        cluster.primary = old
        try waitUntil("the old primary following") { follower.connectedFollowerCount == 1 }
        _ = try newClient.append([putRecord("last", "1")], level: .flush(followers: 1))
        newClient.close()
        let target = follower.host!.log.writtenLSN
        try waitUntil("the old primary at LSN \(target)") { (old.host?.log.durableLSN ?? .zero) >= target }
        #expect(contents(of: old) == contents(of: follower))
        #expect(contents(of: old)[Array("lost0".utf8)] == nil)
        // The divergent suffix is kept in quarantine, not deleted.
        let quarantine = cluster.directory("primary").string + "/quarantine"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: quarantine)) ?? []
        #expect(entries.contains { $0.hasPrefix("rejoin-\(common.rawValue)-") }, "\(entries)")
        #expect(try status(of: old).contains("\"rejoins\":1"))
        cluster.shutdown()
        #expect(TestCluster.segmentsDiffer(cluster.directory("follower-0"), cluster.directory("primary")) == nil)
    }

    @Test func fencedPrimaryRefusesAppendsAndAbandonsWaitingCommits() throws {
        let cluster = try TestCluster("fence", followers: 1)
        defer { cluster.remove() }
        let client = try cluster.client()
        defer { client.close() }
        _ = try client.append([putRecord("a", "1")], level: .flush(followers: 1))
        cluster.followers[0].shutdown()
        cluster.followers.removeAll()
        let box = Locked<Result<AppendResult, ReplicationError>?>(nil)
        client.submitAppend([putRecord("b", "2")], level: .all, timeout: .seconds(30)) { result in box.withLock { $0 = result } }
        Thread.sleep(forTimeInterval: 0.2)
        cluster.primary.fence(reason: "test: lease lost")
        try waitUntil("the waiting append answered") { box.withLock { $0 } != nil }
        let answer = box.withLock { $0 }
        guard case .failure(.requestFailed(let failure))? = answer, case .commitTimedOut = failure.reason else {
            Issue.record("expected commitTimedOut, got \(String(describing: answer))")
            return
        }
        #expect {
            try client.append([putRecord("c", "3")], level: .local)
        } throws: { error in
            guard case ReplicationError.requestFailed(let failure) = error, case .notPrimary = failure.reason else { return false }
            return failure.text.contains("lease lost")
        }
    }

    private func status(of node: KVNode) throws -> String { node.statusJSON() }
}

