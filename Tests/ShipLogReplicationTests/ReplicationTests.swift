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

    /// The async API suspends tasks instead of blocking threads: 64 concurrent appends through
    /// a client that allows only 2 requests in flight all complete, each with its own LSN; and
    /// while 6 appends wait (for their answers, or for room), another task still gets a
    /// thread of the cooperative pool at once (a blocking implementation would hold them all).
    @Test func asyncClientSuspendsInsteadOfBlockingEvenAtItsInFlightLimit() async throws {
        let cluster = try TestCluster("async-client", followers: 1)
        defer { cluster.remove() }
        var options = ClientOptions(nodeID: "async-app", secret: testSecret)
        options.requestsInFlightMax = 2
        let client = try ReplicationClient(connectingTo: cluster.primary.listenEndpoint!, options: options, network: cluster.network)
        defer { client.close() }
        let ranges = try await withThrowingTaskGroup(of: LSNRange.self) { group in
            for index in 0..<64 {
                group.addTask { try await client.append([putRecord("key-\(index)", "\(index)")], level: .flush(followers: 1)).range }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(ranges.map(\.first.rawValue).sorted() == Array(1...64))
        let (applied, bytes) = try await client.query(KeyValueQuery.get(key: Array("key-63".utf8)).encoded())
        #expect(applied >= LSN(64))
        #expect(try KeyValueQueryResult(decoding: bytes) == .value(Array("63".utf8)))
        let (last, batches) = try await client.read(from: .first)
        #expect(last == LSN(64) && batches.reduce(0) { $0 + Int($1.header.recordCount) } == 64)
        #expect(try await client.status().contains("\"role\":\"primary\""))

        // With the follower gone, `all` waits for its timeout: 6 appends waiting (2 in flight,
        // 4 waiting for room) on an executor of ONE thread (so other tests cannot take it)
        // must leave that thread free for another task meanwhile. A blocking call would hold
        // it for at least one timeout (1.5 s). The other task is queued on that thread right
        // after the six appends and timed there, so a busy cooperative pool (other suites'
        // blocking tests) cannot delay the measurement.
        cluster.followers[0].shutdown()
        cluster.followers.removeAll()
        let executor = OneThreadExecutor()
        defer { executor.stop() }
        let waiting = Task(executorPreference: executor) { () -> (timedOut: Int, otherWaited: Duration) in
            await withTaskGroup(of: Bool.self) { group in
                for index in 0..<6 {
                    group.addTask { (try? await client.append([putRecord("late-\(index)", "x")], level: .all, timeout: .milliseconds(1500))) == nil }
                }
                // Queued behind the six appends' first steps: it runs once they have suspended.
                let asked = ContinuousClock.now
                let otherWaited = await Task(executorPreference: executor) { ContinuousClock.now - asked }.value
                return (await group.reduce(0) { $0 + ($1 ? 1 : 0) }, otherWaited)
            }
        }
        let (timedOut, otherTaskWaited) = await waiting.value
        #expect(otherTaskWaited < .milliseconds(1000), "another task waited \(otherTaskWaited) for the executor's thread")
        #expect(timedOut == 6, "every append to a gone follower at `all` times out")
        client.close()
        await #expect(throws: ReplicationError.self) { try await client.status() }
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

/// A task executor with one thread of its own: a job that blocks it blocks every task that
/// prefers it, whatever else runs in the process.
final class OneThreadExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: `jobs` and `stopped` are guarded by `lock`.
    private let lock = ConditionLock()
    private var jobs: [UnownedJob] = []
    private var stopped = false
    private var thread: OwnedThread?

    init() {
        thread = OwnedThread.start(name: "one-thread-executor") { [self] in run() }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        lock.withLock { jobs.append(job) }
        lock.broadcast()
    }

    /// Ends the thread once the jobs queued so far have run.
    func stop() {
        lock.withLock { stopped = true }
        lock.broadcast()
        thread?.join()
    }

    private func run() {
        while true {
            let next = lock.withLock { () -> [UnownedJob]? in
                while jobs.isEmpty && !stopped { lock.wait() }
                if jobs.isEmpty { return nil }
                defer { jobs.removeAll() }
                return jobs
            }
            guard let next else { return }
            for job in next { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
    }
}
