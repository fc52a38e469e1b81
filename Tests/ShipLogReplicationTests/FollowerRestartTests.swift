import Foundation
import ShipLog
import ShipLogProtocol
import ShipLogReplication
import Testing

/// A follower shut down in the middle of a stream and started again on the same directory must
/// resume from exactly where its log ends: nothing lost, nothing stored twice, the same bytes as
/// the primary's (docs/PROTOCOL.md 7.1, the follower's Hello carries its position).
@Suite(.serialized) struct FollowerRestartTests {
    @Test func followerStoppedMidStreamResumesExactlyWhereItsLogEnds() throws {
        let cluster = try TestCluster("restart", followers: 2)
        defer { cluster.remove() }
        let primary = cluster.primary!
        let writer = ContinuousWriter(cluster: cluster)
        defer { writer.stop() }

        // Three stops, each while batches (several KiB each, so frames are large) are flowing.
        for round in 0..<3 {
            let target = primary.host!.log.writtenLSN.advanced(by: 1500)
            #expect(eventually(within: .seconds(20)) { primary.host!.log.writtenLSN >= target }, "round \(round): the writer stalled")
            cluster.followers[0].shutdown()
            let stoppedAt = primary.host!.log.writtenLSN
            let resumeTarget = stoppedAt.advanced(by: 1500)
            #expect(
                eventually(within: .seconds(20)) { primary.host!.log.writtenLSN >= resumeTarget },
                "round \(round): flush:1 appends stopped while one of two followers was down")
            cluster.followers[0] = try cluster.startFollower(0)
            try cluster.waitForConnections(2)
        }
        let failures = writer.stop()
        #expect(failures.isEmpty, "appends failed: \(failures.prefix(3))")
        try cluster.waitForFollowers(timeout: .seconds(30))
        let expected = contents(of: primary)
        #expect(!expected.isEmpty)
        for (index, follower) in cluster.followers.enumerated() {
            #expect(contents(of: follower) == expected, "follower-\(index)'s key-value state differs from the primary's")
        }
        cluster.shutdown()
        for index in 0..<2 {
            let difference = TestCluster.segmentsDiffer(cluster.directory("primary"), cluster.directory("follower-\(index)"))
            #expect(difference == nil, "follower-\(index): \(difference ?? "")")
            let quarantine = cluster.directory("follower-\(index)").string + "/quarantine"
            #expect(!FileManager.default.fileExists(atPath: quarantine), "follower-\(index) had to cut its log after a clean restart")
        }
    }
}

extension FollowerRestartTests {
    /// A Hello's `lastLSN` is the end of the follower's log, written but not necessarily durable
    /// (docs/PROTOCOL.md 6.2); only a FollowerStatus's `flushedLSN` says durable (7.4). A
    /// follower that reconnects right after storing a batch, before its fdatasync, must not
    /// confirm flush:K for that batch by its Hello alone.
    @Test func reconnectingFollowersHelloDoesNotConfirmAFlushLevel() throws {
        let cluster = try TestCluster("hello-flush", followers: 0)
        defer { cluster.remove() }
        let primary = cluster.primary!
        let client = try cluster.client()
        defer { client.close() }
        _ = try client.append([putRecord("a", "1")], level: .local)
        let crc1 = try #require(try primary.host!.log.batchCRC(endingAt: LSN(1)))

        // A follower that has LSN 1, streams, receives LSN 2 and never reports a status.
        let first = try RawPeer(connectingTo: primary.listenEndpoint!)
        try first.authenticate(role: .follower, nodeID: "forgetful", epoch: .initial, lastLSN: LSN(1), lastBatchCRC: crc1)
        try first.send(.startStream(Message.StartStream(fromLSN: LSN(2))))
        #expect(eventually(within: .seconds(5)) { primary.connectedFollowerCount == 1 })
        let answer = Outcome<Result<AppendResult, ReplicationError>>()
        client.submitAppend([putRecord("b", "2")], level: .flush(followers: 1), timeout: .seconds(3)) { answer.set($0) }
        var received: Batch?
        while received == nil, let message = try first.receive() {
            if case .batches(let m) = message { received = m.batches.first { $0.lsnRange.contains(LSN(2)) } }
        }
        let batch = try #require(received)
        first.connection.close()
        #expect(eventually(within: .seconds(5)) { primary.connectedFollowerCount == 0 })

        // It reconnects announcing LSN 2 as the end of its log, and still reports nothing.
        let second = try RawPeer(connectingTo: primary.listenEndpoint!)
        try second.authenticate(role: .follower, nodeID: "forgetful", epoch: .initial, lastLSN: LSN(2), lastBatchCRC: batch.header.batchCRC)
        try second.send(.startStream(Message.StartStream(fromLSN: LSN(3))))
        #expect(eventually(within: .seconds(5)) { answer.value != nil })
        switch answer.value {
        case .success(let result)?:
            Issue.record("flush:1 confirmed for \(result.range) though no follower ever reported it durable")
        case .failure(let error)?:
            guard case .requestFailed(let failure) = error, case .commitTimedOut = failure.reason else {
                Issue.record("expected commitTimedOut, got \(error)")
                return
            }
        case nil:
            Issue.record("no answer within the commit timeout")
        }
    }
}

/// Appends flush:1 batches of 8 records of a few KiB from its own thread until stopped.
final class ContinuousWriter: @unchecked Sendable {
    // @unchecked: every var is guarded by `lock`.
    private let lock = NSLock()
    private var stopping = false
    private var failures: [String] = []
    private var thread: OwnedThread?

    init(cluster: TestCluster) {
        let client = try? cluster.client()
        thread = OwnedThread.start(name: "test-writer") { [self] in
            guard let client else {
                lock.withLock { failures.append("cannot connect a client") }
                return
            }
            defer { client.close() }
            var index = 0
            while !lock.withLock({ stopping }) {
                let records = (0..<8).map { putRecord("key-\((index * 8 + $0) % 997)", String(repeating: "v\(index)-", count: 300)) }
                do { _ = try client.append(records, level: .flush(followers: 1), timeout: .seconds(10)) } catch {
                    lock.withLock { failures.append("append \(index): \(error)") }
                }
                index += 1
            }
        }
    }

    /// Stops the writer (idempotent); the failures it met.
    @discardableResult
    func stop() -> [String] {
        let thread = lock.withLock { () -> OwnedThread? in
            stopping = true
            return self.thread
        }
        thread?.join()
        return lock.withLock { failures }
    }
}
