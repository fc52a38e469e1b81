import Foundation
import ShipLog
import ShipLogProtocol
import ShipLogReplication
import Testing

@Suite(.serialized) struct ReplicationTests {
    @Test func everyCommitLevelReplicatesByteIdenticalLogsAndEqualState() throws {
        let cluster = try TestCluster("levels", followers: 2)
        defer { cluster.remove() }
        let client = try cluster.client()
        defer { client.close() }
        let levels: [CommitLevel] = [.local, .write(followers: 2), .flush(followers: 2), .apply(followers: 2), .all, .flush(followers: 1)]
        var key = 0
        for level in levels {
            for _ in 0..<40 {
                key += 1
                let result = try client.append([putRecord("k\(key)", "value \(key) at \(level)")], level: level)
                #expect(!result.degraded)
                // What the level promises must hold when the answer arrives.
                let last = result.range.last
                #expect(cluster.primary.host!.log.durableLSN >= last)
                switch level {
                case .write(let k):
                    #expect(cluster.followers.filter { $0.host!.log.writtenLSN >= last }.count >= k)
                case .flush(let k):
                    #expect(cluster.followers.filter { $0.host!.log.durableLSN >= last }.count >= k)
                case .apply(let k):
                    #expect(cluster.followers.filter { $0.host!.appliedLSN >= last }.count >= k)
                case .all:
                    #expect(cluster.followers.allSatisfy { $0.host!.log.durableLSN >= last })
                case .local:
                    break
                }
            }
        }
        try cluster.waitForFollowers()
        let expected = contents(of: cluster.primary)
        #expect(expected.count == key)
        for follower in cluster.followers { #expect(contents(of: follower) == expected) }
        cluster.shutdown()
        for index in 0..<2 {
            let difference = TestCluster.segmentsDiffer(cluster.directory("primary"), cluster.directory("follower-\(index)"))
            #expect(difference == nil, "follower-\(index): \(difference ?? "")")
        }
    }

    @Test func followersServeReadsQueriesAndStatus() throws {
        let cluster = try TestCluster("reads", followers: 1)
        defer { cluster.remove() }
        let client = try cluster.client()
        defer { client.close() }
        let appended = try client.append([putRecord("alpha", "1"), putRecord("beta", "2")], level: .apply(followers: 1))
        let followerClient = try cluster.client(cluster.followers[0])
        defer { followerClient.close() }
        let (applied, bytes) = try followerClient.query(KeyValueQuery.get(key: Array("beta".utf8)).encoded())
        #expect(applied >= appended.range.last)
        #expect(try KeyValueQueryResult(decoding: bytes) == .value(Array("2".utf8)))
        let (last, batches) = try followerClient.read(from: .first)
        #expect(last == appended.range.last)
        #expect(batches.count == 1 && batches[0].lsnRange == appended.range)
        #expect(try followerClient.status().contains("\"role\":\"follower\""))
        let primaryStatus = try client.status()
        #expect(primaryStatus.contains("\"role\":\"primary\""))
        #expect(primaryStatus.contains("\"node_id\":\"follower-0\""))
        // A follower refuses appends and names the primary.
        #expect {
            try followerClient.append([putRecord("x", "y")], level: .local)
        } throws: { error in
            guard case ReplicationError.requestFailed(let failure) = error, case .notPrimary(let address) = failure.reason else { return false }
            return address == cluster.primary.listenEndpoint!.description
        }
    }

    @Test func tooFewFollowersIsRefusedWithoutAppending() throws {
        let cluster = try TestCluster("unavailable", followers: 1)
        defer { cluster.remove() }
        let client = try cluster.client()
        defer { client.close() }
        _ = try client.append([putRecord("a", "1")], level: .flush(followers: 1))
        let before = cluster.primary.host!.log.writtenLSN
        #expect {
            try client.append([putRecord("b", "2")], level: .flush(followers: 2))
        } throws: { error in
            guard case ReplicationError.requestFailed(let failure) = error, case .commitUnavailable = failure.reason else { return false }
            return true
        }
        #expect(cluster.primary.host!.log.writtenLSN == before)
    }

    /// Under an election only the term's synchronous set counts (FAILOVER.md 9.1): a
    /// follower outside it confirms nothing, however far it got, and the status says which
    /// followers count.
    @Test func followerOutsideTheCountedSetConfirmsNothing() throws {
        let cluster = try TestCluster("counted-set", followers: 2)
        defer { cluster.remove() }
        let client = try cluster.client()
        defer { client.close() }
        _ = try client.append([putRecord("a", "1")], level: .flush(followers: 2))
        let counted = cluster.followers[0].options.nodeID
        cluster.primary.countOnlyFollowers([counted])
        _ = try client.append([putRecord("b", "2")], level: .flush(followers: 1))
        #expect {
            try client.append([putRecord("c", "3")], level: .flush(followers: 2), timeout: .milliseconds(300))
        } throws: { error in
            guard case ReplicationError.requestFailed(let failure) = error, case .commitTimedOut = failure.reason else { return false }
            return true
        }
        let status = try StatusDocument(of: cluster.primary)
        let other = cluster.followers[1].options.nodeID
        #expect(status.follower(counted)?["counts"] as? Bool == true, "\(status.text)")
        #expect(status.follower(other)?["counts"] as? Bool == false, "\(status.text)")
        // Nobody counts: follower levels wait; everybody again: they are met at once.
        cluster.primary.countOnlyFollowers([])
        #expect(throws: ReplicationError.self) {
            try client.append([putRecord("d", "4")], level: .flush(followers: 1), timeout: .milliseconds(300))
        }
        cluster.primary.countOnlyFollowers(nil)
        _ = try client.append([putRecord("e", "5")], level: .flush(followers: 2))
        #expect(cluster.primary.acknowledgements.acknowledgedLSN == cluster.primary.host!.log.writtenLSN)
    }

    @Test func commitTimeoutFailsOrDegradesAsConfigured() throws {
        for policy in CommitTimeoutPolicy.allCases {
            let cluster = try TestCluster("timeout-\(policy)", followers: 1) { node in
                var options = ReplicationOptions(nodeID: node, secret: testSecret)
                options.commitTimeoutPolicy = policy
                return options
            }
            defer { cluster.remove() }
            let client = try cluster.client()
            defer { client.close() }
            _ = try client.append([putRecord("a", "1")], level: .flush(followers: 1))
            // The follower goes away; the primary still counts it in the replica set.
            cluster.followers[0].shutdown()
            cluster.followers.removeAll()
            switch policy {
            case .fail:
                #expect {
                    try client.append([putRecord("b", "2")], level: .all, timeout: .milliseconds(200))
                } throws: { error in
                    guard case ReplicationError.requestFailed(let failure) = error, case .commitTimedOut(let range) = failure.reason else { return false }
                    return range.first == LSN(2) && failure.text.contains("will still replicate")
                }
            case .degrade:
                let result = try client.append([putRecord("b", "2")], level: .all, timeout: .milliseconds(200))
                #expect(result.degraded)
                #expect(cluster.primary.isDegraded)
                #expect(try client.status().contains("\"degraded\":true"))
            }
            #expect(cluster.primary.host!.log.writtenLSN == LSN(2))
        }
    }
}
