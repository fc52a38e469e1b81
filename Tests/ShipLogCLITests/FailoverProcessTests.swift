import Foundation
import Glibc
import ShipLog
import Testing

// Failover end to end: three `shiplog serve --elect` processes on 127.0.0.1 elect their
// primary through a real etcd or ZooKeeper (FailoverProcessSupport.swift starts them), a
// writer `append --server A,B,C --ack flush:1` runs throughout, and the primary is SIGKILLed,
// cut off from the coordination service or from its followers.
//
// SHIPLOG_FAILOVER_KILLS sets the kills per backend (default 20; `make soak` runs 200) and
// SHIPLOG_FAILOVER_LEASE_SECONDS the lease TTL (default 1). Each run prints the failover times
// (primary killed -> the writer's first acknowledgement from the new primary) as one line.

@Suite(.serialized, .enabled(if: !CoordinationBackend.anyMissing, "\(CoordinationBackend.skipMessage)"))
struct FailoverProcessTests {
    static let kills = ProcessInfo.processInfo.environment["SHIPLOG_FAILOVER_KILLS"].flatMap { Int($0) } ?? 20
    /// SHIPLOG_FAILOVER_VERBOSE=1: one line per kill.
    static let verbose = ProcessInfo.processInfo.environment["SHIPLOG_FAILOVER_VERBOSE"] != nil
    static let leaseSeconds = ProcessInfo.processInfo.environment["SHIPLOG_FAILOVER_LEASE_SECONDS"].flatMap { Int($0) } ?? 1
    /// Lines the writer gets acknowledged by each primary before it is killed.
    static let linesBetweenKills = 100
    /// Time between two lines of the writer's input.
    static let lineInterval: Duration = .milliseconds(2)
    /// The longest one failover may take before the test gives up on it.
    static var failoverTimeout: Duration { .seconds(leaseSeconds * 10 + 10) }
    /// How long an elected cluster may take to find its first primary.
    static let electionTimeout: Duration = .seconds(30)
    /// How long a restarted node may take to rejoin and catch up.
    static let catchUpTimeout: Duration = .seconds(30)

    // MARK: 1. Repeated failover under load

    @Test(arguments: CoordinationBackend.allCases)
    func repeatedPrimaryKillsUnderFlushOneLoseNoAcknowledgedWriteAndNodesEndByteIdentical(_ backend: CoordinationBackend) throws {
        // The primaries' default level is flush:1 too: each term keeps its synchronous set in
        // the term record, and each election goes through its candidate rule.
        let cluster = try ElectedCluster("repeated-\(backend)", backend: backend, leaseSeconds: Self.leaseSeconds, flags: ["--ack", "flush:1"])
        defer { cluster.cleanup() }
        try cluster.startAll()
        var primary = try cluster.waitForPrimary(timeout: Self.electionTimeout)
        try cluster.waitForFollowers(of: primary.index, count: 2, timeout: Self.catchUpTimeout)
        let writer = try FailoverWriter(cluster: cluster, level: "flush:1", interval: Self.lineInterval)
        defer { writer.kill() }
        let observer = RoleObserver(cluster, interval: .milliseconds(50))
        defer { observer.stop() }

        var failovers: [Double] = []
        for round in 0..<Self.kills {
            guard let milliseconds = try killPrimary(&primary, of: cluster, writer: writer, round: round + 1) else { break }
            failovers.append(milliseconds)
        }

        let (status, unacknowledged, acknowledged) = writer.finish()
        #expect(status == 0, "the writer ends cleanly: \(writer.process.stderr.suffix(3000))")
        #expect(unacknowledged == 0, "every line given to the last writer is acknowledged once it ends")
        // A writer that stopped was started again from its first unacknowledged line, so the
        // checks below still cover every acknowledgement; but one writer should be enough.
        let writerStops = writer.stops.count
        let firstStops = writer.stops.prefix(2).joined(separator: "; ")
        #expect(
            writerStops == 0,
            "the writer (append --server A,B,C --ack flush:1) rides through every failover; it stopped and was started again \(writerStops) times, first: \(firstStops)"
        )
        try cluster.waitForFollowers(of: primary.index, count: 2, timeout: Self.catchUpTimeout)
        observer.stop()
        cluster.stopAll(primary: primary.index)
        let shared = observer.actingPrimariesPerEpoch.filter { $0.value.count > 1 }
        #expect(shared.isEmpty, "nodes seen accepting appends in the same epoch: \(shared)")
        try checkFinalLogs(cluster, primary: primary.index, acknowledged: acknowledged)
        try checkEachEpochHasOnePrimary(cluster, acknowledged: acknowledged.map(\.lsn), log: cluster.directory(primary.index), finalEpoch: primary.epoch)

        let ttl = Double(Self.leaseSeconds) * 1000
        let line =
            "failover \(backend), lease TTL \(Self.leaseSeconds) s, \(failovers.count) SIGKILLs of the primary under a flush:1 writer "
            + "(\(acknowledged.count) lines acknowledged): kill -> first acknowledgement by the new primary "
            + "p50 \(Int(percentile(50, of: failovers))) ms, p99 \(Int(percentile(99, of: failovers))) ms, "
            + "max \(Int(failovers.max() ?? 0)) ms (target <= 2 x TTL = \(Int(2 * ttl)) ms); "
            + "\(cluster.rejoinDirectories.count) rejoins cut a divergent suffix"
        print(line)
        #expect(failovers.count == Self.kills)
        #expect(failovers.isEmpty || percentile(50, of: failovers) <= 2 * ttl, "\(line)")
    }

    /// One round: the primary takes load with both followers, is SIGKILLed, and is started
    /// again once the writer has an acknowledgement from its successor; it rejoins as a
    /// follower. Returns the failover time in milliseconds (nil when there was none).
    private func killPrimary(
        _ primary: inout (index: Int, epoch: UInt64), of cluster: ElectedCluster, writer: FailoverWriter, round: Int
    ) throws -> Double? {
        try writer.waitForAcknowledgements(Self.linesBetweenKills, timeout: Self.catchUpTimeout)
        // Its election event must be on its stderr before it dies (nodes print them every 200 ms).
        try cluster.waitForElectionEvent(of: primary.index, epoch: primary.epoch)
        let sentBeforeKill = writer.linesStarted
        let killed = monotonicNanoseconds()
        cluster.kill(primary.index)
        // Failed over once a line given to the writer after the kill is acknowledged: only a
        // new primary can have confirmed it.
        let failedOver = try writer.waitUntilAcknowledged(beyond: sentBeforeKill, timeout: Self.failoverTimeout)
        let recovered = monotonicNanoseconds()
        if !failedOver {
            let message =
                "kill \(round): no acknowledgement within \(Self.failoverTimeout) after SIGKILL of \(cluster.nodeID(primary.index)): "
                + "writer stderr \(String(writer.process.stderr.suffix(2000)))\n\(cluster.diagnostics())"
            Issue.record("\(message)")
        }
        let next = try cluster.waitForPrimary(newerThan: primary.epoch, timeout: Self.failoverTimeout)
        #expect(next.index != primary.index, "a node that was killed cannot be primary before it is restarted")
        if Self.verbose {
            print(
                "kill \(round) of \(cluster.nodeID(primary.index)) (epoch \(primary.epoch)): \(Int(milliseconds(killed, recovered))) ms, "
                    + "\(writer.acknowledgedLines) lines acknowledged, \(writer.stops.count) writer restarts")
        }
        // The killed node restarts on its directory and rejoins as a follower of the new primary
        // (truncating whatever it held beyond the new primary's history).
        try cluster.start(primary.index)
        try cluster.waitForFollowers(of: next.index, count: 2, timeout: Self.catchUpTimeout)
        primary = next
        return failedOver ? milliseconds(killed, recovered) : nil
    }

    /// Every acknowledged line's record is at its LSN on the final primary, and every node's
    /// segments and epoch history are the final primary's.
    private func checkFinalLogs(_ cluster: ElectedCluster, primary: Int, acknowledged: [(line: Int, lsn: UInt64)]) throws {
        let records = try storedRecords(cluster.directory(primary))
        var wrong = 0
        for (line, lsn) in acknowledged where records[lsn] != Array(failoverLine(line).dropLast()) {
            if wrong < 5 { Issue.record("line \(line) was acknowledged as LSN \(lsn), which holds \(records[lsn].map { "\($0)" } ?? "nothing")") }
            wrong += 1
        }
        #expect(wrong == 0, "\(wrong) of \(acknowledged.count) acknowledged lines are not at their LSN on the final primary")
        let history = FileManager.default.contents(atPath: cluster.directory(primary) + "/epoch-history")
        for index in cluster.indices where index != primary {
            let difference = segmentsDiffer(cluster.directory(primary), cluster.directory(index))
            #expect(difference == nil, "\(cluster.nodeID(index)) differs from the final primary: \(difference ?? "")")
            #expect(
                FileManager.default.contents(atPath: cluster.directory(index) + "/epoch-history") == history,
                "\(cluster.nodeID(index)) has the final primary's epoch history")
        }
    }

    /// No two nodes ever acknowledged writes in the same epoch: every epoch was won by one
    /// node (its "primary of epoch E" election event), every epoch starts once in the final
    /// log, and every acknowledged LSN lies in an epoch some node won.
    private func checkEachEpochHasOnePrimary(
        _ cluster: ElectedCluster, acknowledged: [UInt64], log directory: String, finalEpoch: UInt64
    ) throws {
        var winners: [UInt64: Set<String>] = [:]
        for win in cluster.epochWins() { winners[win.epoch, default: []].insert(win.node) }
        for (epoch, nodes) in winners where nodes.count > 1 {
            Issue.record("epoch \(epoch) was won by \(nodes.sorted()): two primaries in one epoch")
        }
        #expect(winners[finalEpoch] != nil, "the final primary's epoch \(finalEpoch) was won in an election: \(winners)")
        // The final log: epochs of its batches never go back, and each epoch starts once.
        let reader = LogDirectoryReader(directory: FilePath(directory), from: .first)
        var epochOfLSN: [(first: UInt64, epoch: UInt64)] = []
        var starts: [UInt64: Int] = [:]
        var previous: UInt64 = 0
        while let batch = try reader.next() {
            let epoch = batch.header.epoch.rawValue
            #expect(epoch >= previous, "batch \(batch.header.lsnRange) of epoch \(epoch) follows epoch \(previous)")
            previous = epoch
            if epochOfLSN.last?.epoch != epoch { epochOfLSN.append((batch.header.baseLSN.rawValue, epoch)) }
            if batch.header.isControl {
                for case .epochStart(let started, _, _) in try batch.controlRecords() { starts[started.rawValue, default: 0] += 1 }
            }
        }
        for (epoch, count) in starts where count != 1 { Issue.record("epoch \(epoch) starts \(count) times in the final log") }
        for lsn in Set(acknowledged) {
            let epoch = epochOfLSN.last { $0.first <= lsn }?.epoch ?? 0
            if winners[epoch] == nil {
                Issue.record("acknowledged LSN \(lsn) is in epoch \(epoch), which no node won in an election")
                return
            }
        }
    }

    // MARK: 2. Split brain

    @Test func primaryCutOffFromEtcdFencesItselfBeforeItsLeaseExpiresAndANewerEpochTakesOver() throws {
        let server = try CoordinationServer.shared(.etcd)
        let proxies = try (0..<3).map { _ in try BlackholeProxy(to: server.endpoint) }
        defer { proxies.forEach { $0.close() } }
        let cluster = try ElectedCluster("cut-from-etcd", backend: .etcd, leaseSeconds: Self.leaseSeconds, proxies: proxies)
        defer { cluster.cleanup() }
        try cluster.startAll()
        let (primary, epoch) = try cluster.waitForPrimary(timeout: Self.electionTimeout)
        try cluster.waitForFollowers(of: primary, count: 2, timeout: Self.catchUpTimeout)
        let before = try cluster.run(["append", "--ack", "flush:1"], on: nil, input: Self.line(1_000_000))
        #expect(before.status == 0, "\(before.stderr)")

        let observer = RoleObserver(cluster)
        // Cut just after a renewal reached etcd: the lease runs out TTL after that keepalive,
        // and the primary must have stopped accepting appends by then.
        let renewed = try #require(
            proxies[primary].cutAfterNextLeaderKeepalive(delay: .milliseconds(80), timeout: .seconds(10)),
            "the leader renews its lease through its proxy")
        let cut = monotonicNanoseconds()
        let leaseEnd = renewed + Self.ttlNanoseconds
        let fenced = observer.waitFor(timeout: .seconds(10)) { $0.index == primary && !$0.acting }
        let successor = observer.waitFor(timeout: Self.failoverTimeout) { $0.index != primary && $0.acting && $0.epoch > epoch }
        observer.stop()

        let fencedAt = try #require(fenced, "the cut-off primary fences itself: \(cluster.diagnostics())")
        // validUntil (docs/FAILOVER.md 5) is at most the keepalive's time + TTL - safetyMargin:
        // a status request sent after that must not find the old primary accepting appends.
        let validUntil = leaseEnd - Self.ttlNanoseconds / 10
        let late = observer.all.filter { $0.index == primary && $0.acting && $0.sent >= validUntil }.map { Int(milliseconds(validUntil, $0.sent)) }
        #expect(late.isEmpty, "the cut-off primary still accepted appends \(late) ms after its lease's validUntil (TTL \(Self.leaseSeconds) s - TTL/10)")
        let fencedAfterCut = Int(milliseconds(cut, fencedAt.time))
        let fencedAfterRenewal = Int(milliseconds(renewed, fencedAt.time))
        #expect(
            fencedAt.time < leaseEnd,
            "fenced \(fencedAfterCut) ms after the cut, \(fencedAfterRenewal) ms after its last renewal: after its lease (TTL \(Self.leaseSeconds) s) had run out"
        )
        let refused = try cluster.run(["append", "--ack", "local"], on: primary, input: Self.line(1_000_001))
        #expect(refused.status != 0 && refused.stdout.isEmpty, "the cut-off primary refuses appends: \(refused)")
        #expect(refused.stderr.contains("fenced"), "\(refused.stderr)")
        let next = try #require(successor, "another node becomes primary of a newer epoch: \(cluster.diagnostics())")
        #expect(fencedAt.time < next.time, "the old primary stopped before the new one started")
        #expect(observer.actingPrimariesPerEpoch.allSatisfy { $0.value.count == 1 }, "one acting primary per epoch: \(observer.actingPrimariesPerEpoch)")
        print(
            "split brain (etcd, lease TTL \(Self.leaseSeconds) s): primary cut off from etcd fenced itself \(fencedAfterCut) ms after the cut "
                + "(\(fencedAfterRenewal) ms after its last renewal), \(cluster.nodeID(next.index)) primary of epoch \(next.epoch) "
                + "\(Int(milliseconds(cut, next.time))) ms after the cut")

        // The new primary takes flush:1 writes with the third node; healed, the old primary
        // follows it and every node ends byte-identical.
        try cluster.waitForFollowers(of: next.index, count: 1, timeout: Self.catchUpTimeout)
        let after = try cluster.run(["append", "--ack", "flush:1"], on: nil, input: Self.line(1_000_002))
        #expect(after.status == 0 && !after.stdout.isEmpty, "\(after.stderr)")
        proxies[primary].heal()
        try cluster.waitForFollowers(of: next.index, count: 2, timeout: Self.catchUpTimeout)
        cluster.stopAll(primary: next.index)
        for index in cluster.indices where index != next.index {
            let difference = segmentsDiffer(cluster.directory(next.index), cluster.directory(index))
            #expect(difference == nil, "\(cluster.nodeID(index)): \(difference ?? "")")
        }
    }

    @Test func primaryIsolatedFromItsFollowersCannotCommitFlushOneButStillCommitsLocal() throws {
        let cluster = try ElectedCluster(
            "isolated-from-followers", backend: .etcd, leaseSeconds: Self.leaseSeconds, flags: ["--commit-timeout", "1500"])
        defer { cluster.cleanup() }
        try cluster.startAll()
        let (primary, _) = try cluster.waitForPrimary(timeout: Self.electionTimeout)
        try cluster.waitForFollowers(of: primary, count: 2, timeout: Self.catchUpTimeout)
        let followers = cluster.indices.filter { $0 != primary }
        for index in followers { cluster.signal(index, SIGSTOP) }

        let started = ContinuousClock.now
        let quorum = try cluster.run(["append", "--ack", "flush:1"], on: primary, input: Self.line(1_000_003))
        let waited = ContinuousClock.now - started
        #expect(quorum.status != 0 && quorum.stdout.isEmpty, "flush:1 is not acknowledged without a follower: \(quorum)")
        #expect(
            quorum.stderr.contains("not confirmed") || quorum.stderr.contains("commit"),
            "it fails with the commit level's timeout: \(quorum.stderr)")
        #expect(waited >= .milliseconds(1400), "it waited for the commit timeout (\(waited))")
        let local = try cluster.run(["append", "--ack", "local"], on: primary, input: Self.line(1_000_004))
        #expect(local.status == 0 && !local.stdout.isEmpty, "local appends still commit: \(local)")
        let status = try #require(cluster.status(primary))
        #expect(ElectedCluster.isActingPrimary(status), "it still holds the lease: \(status)")

        for index in followers { cluster.signal(index, SIGCONT) }
        try cluster.waitForFollowers(of: primary, count: 2, timeout: Self.catchUpTimeout)
        let resumed = try cluster.run(["append", "--ack", "flush:2"], on: primary, input: Self.line(1_000_005))
        #expect(resumed.status == 0, "\(resumed.stderr)")
        try cluster.waitForFollowers(of: primary, count: 2, timeout: Self.catchUpTimeout)
        cluster.stopAll(primary: primary)
        for index in followers {
            let difference = segmentsDiffer(cluster.directory(primary), cluster.directory(index))
            #expect(difference == nil, "\(cluster.nodeID(index)): \(difference ?? "")")
        }
    }

    // MARK: 3. Rejoin

    @Test func oldPrimaryWithUnreplicatedWritesQuarantinesExactlyItsDivergentSuffixAndConverges() throws {
        let cluster = try ElectedCluster("rejoin", backend: .etcd, leaseSeconds: Self.leaseSeconds)
        defer { cluster.cleanup() }
        try cluster.startAll()
        let (old, epoch) = try cluster.waitForPrimary(timeout: Self.electionTimeout)
        try cluster.waitForFollowers(of: old, count: 2, timeout: Self.catchUpTimeout)
        let replicated = (0..<200).flatMap { failoverLine($0) }
        let first = try cluster.run(["append", "--ack", "flush:2"], on: old, input: replicated)
        #expect(first.status == 0, "\(first.stderr)")
        try cluster.waitForFollowers(of: old, count: 2, timeout: Self.catchUpTimeout)
        let common = number(try #require(cluster.status(old))["last_lsn"])

        // The followers go; the old primary keeps its lease and takes `local` writes nobody else
        // has: more than a segment (1 MiB), so the suffix is a segment's tail and a whole segment.
        let followers = cluster.indices.filter { $0 != old }
        for index in followers { cluster.kill(index) }
        let unreplicatedCount = 40
        let unreplicated = (0..<unreplicatedCount).flatMap { kvLine("big-\($0)", noise(seed: UInt64($0), count: 48_000)) }
        let local = try cluster.run(["append", "--ack", "local"], on: old, input: unreplicated)
        #expect(local.status == 0, "\(local.stderr)")
        #expect(printedLSNs(local.stdout) == Array(common + 1...common + UInt64(unreplicatedCount)))
        cluster.kill(old)
        let before = segmentFiles(cluster.directory(old))

        // The followers come back without it and elect one of themselves.
        for index in followers { try cluster.start(index) }
        let (next, nextEpoch) = try cluster.waitForPrimary(newerThan: epoch, timeout: Self.failoverTimeout)
        try cluster.waitForFollowers(of: next, count: 1, timeout: Self.catchUpTimeout)
        let written = try cluster.run(["append", "--ack", "flush:1"], on: nil, input: Self.line(1_000_006))
        #expect(written.status == 0, "\(written.stderr)")

        // The old primary rejoins: it cuts exactly its 40 records into quarantine and follows.
        try cluster.start(old)
        try cluster.waitForFollowers(of: next, count: 2, timeout: Self.catchUpTimeout)
        let status = try #require(cluster.status(old))
        #expect(status["role"] as? String == "follower" && number(status["epoch"]) == nextEpoch, "\(status)")
        #expect(number(status["rejoins"]) >= 1, "the old primary rejoined by truncation: \(status)")
        cluster.stopAll(primary: next)

        let quarantine = cluster.directory(old) + "/quarantine"
        let labels = ((try? FileManager.default.contentsOfDirectory(atPath: quarantine)) ?? []).filter { $0.hasPrefix("rejoin-") }
        #expect(labels.count == 1, "one rejoin directory: \(labels)")
        if let label = labels.first {
            #expect(label.hasPrefix("rejoin-\(common)-"), "the cut is after LSN \(common), the last one the followers had: \(label)")
            try checkQuarantined(
                quarantine + "/" + label, against: before, firstLSN: common + 1, records: unreplicatedCount, epoch: epoch)
        }
        for index in cluster.indices where index != next {
            let difference = segmentsDiffer(cluster.directory(next), cluster.directory(index))
            #expect(difference == nil, "\(cluster.nodeID(index)): \(difference ?? "")")
        }
    }

    // MARK: 4. Candidates after a synchronous term

    /// With `--ack flush:1`, the writes acknowledged while one follower was down are on the
    /// primary and the other follower only. When both of those die, the stale follower must
    /// not take over (it lacks them; Patroni's synchronous mode); once the in-sync follower is
    /// back, it wins, and every acknowledged write is on every node.
    @Test(arguments: CoordinationBackend.allCases)
    func followerMissingAcknowledgedWritesDoesNotTakeOverUntilTheSynchronousSetIsSeen(_ backend: CoordinationBackend) throws {
        let cluster = try ElectedCluster("sync-set-\(backend)", backend: backend, leaseSeconds: Self.leaseSeconds, flags: ["--ack", "flush:1"])
        defer { cluster.cleanup() }
        try cluster.startAll()
        let (primary, epoch) = try cluster.waitForPrimary(timeout: Self.electionTimeout)
        try cluster.waitForFollowers(of: primary, count: 2, timeout: Self.catchUpTimeout)
        let first = try cluster.run(["append"], on: primary, input: (0..<20).flatMap { failoverLine(2_000_000 + $0) })
        #expect(first.status == 0, "\(first.stderr)")
        try cluster.waitForFollowers(of: primary, count: 2, timeout: Self.catchUpTimeout)
        let followers = cluster.indices.filter { $0 != primary }
        let (inSync, stale) = (followers[0], followers[1])

        cluster.kill(stale)
        let acknowledged = try cluster.run(["append"], on: primary, input: (20..<70).flatMap { failoverLine(2_000_000 + $0) })
        #expect(acknowledged.status == 0, "flush:1 is met by the in-sync follower alone: \(acknowledged.stderr)")
        let lastAcknowledged = try #require(printedLSNs(acknowledged.stdout).max())
        cluster.kill(primary)
        cluster.kill(inSync)

        try cluster.start(stale)
        // Four TTLs: the leader key is gone after one; the stale follower must stay out.
        let started = ContinuousClock.now
        while ContinuousClock.now - started < cluster.ttl * 4 {
            let status = cluster.status(stale)
            #expect(status.map(ElectedCluster.isActingPrimary) != true, "the stale follower took over: \(status ?? [:])")
            usleep(100_000)
        }
        let staleOutput = cluster.node(stale)?.process.stderr ?? ""
        #expect(staleOutput.contains("election: not campaigning"), "it says why it waits: \(staleOutput.suffix(2000))")

        try cluster.start(inSync)
        let (winner, nextEpoch) = try cluster.waitForPrimary(newerThan: epoch, timeout: Self.failoverTimeout)
        #expect(winner == inSync, "the in-sync follower wins, not \(cluster.nodeID(winner))")
        try cluster.waitForFollowers(of: winner, count: 1, through: lastAcknowledged, timeout: Self.catchUpTimeout)
        let status = try #require(cluster.status(winner))
        #expect(number(status["last_lsn"]) > lastAcknowledged, "every acknowledged LSN (to \(lastAcknowledged)) is in epoch \(nextEpoch)'s log: \(status)")
        cluster.stopAll(primary: winner)
        let difference = segmentsDiffer(cluster.directory(winner), cluster.directory(stale))
        #expect(difference == nil, "\(cluster.nodeID(stale)): \(difference ?? "")")
        #expect(cluster.rejoinDirectories.isEmpty, "nothing was cut: \(cluster.rejoinDirectories)")
    }

    /// Epochs come from the term record, not from what the winner has seen: a node that was
    /// down while two others led one after the other, and then runs alone, starts an epoch
    /// above both, never one of theirs again (the known issue of session 2's live-members rule).
    @Test(arguments: CoordinationBackend.allCases)
    func nodeReturningAloneAfterOthersLedGetsAnEpochAboveEveryEarlierTerm(_ backend: CoordinationBackend) throws {
        let cluster = try ElectedCluster("epoch-counter-\(backend)", backend: backend, leaseSeconds: Self.leaseSeconds)
        defer { cluster.cleanup() }
        try cluster.startAll()
        let (first, firstEpoch) = try cluster.waitForPrimary(timeout: Self.electionTimeout)
        try cluster.waitForFollowers(of: first, count: 2, timeout: Self.catchUpTimeout)
        let others = cluster.indices.filter { $0 != first }
        let (returning, second) = (others[0], others[1])
        cluster.kill(returning)
        // `second` leads next, then `first` again alone (its log has seen `second`'s epoch).
        cluster.kill(first)
        let (_, secondEpoch) = try cluster.waitForPrimary(newerThan: firstEpoch, timeout: Self.failoverTimeout)
        try cluster.start(first)
        try cluster.waitForFollowers(of: second, count: 1, timeout: Self.catchUpTimeout)
        cluster.kill(second)
        let (again, thirdEpoch) = try cluster.waitForPrimary(newerThan: secondEpoch, timeout: Self.failoverTimeout)
        #expect(again == first)
        cluster.kill(first)
        // The returning node saw only the first epoch; its log and the members it can see
        // (none) would give it the second one again.
        try cluster.start(returning)
        let (winner, epoch) = try cluster.waitForPrimary(newerThan: firstEpoch, timeout: Self.failoverTimeout)
        #expect(winner == returning)
        #expect(epoch > thirdEpoch, "\(cluster.nodeID(returning)) started epoch \(epoch), not above epoch \(thirdEpoch) of \(cluster.nodeID(first))")
        let wins = cluster.epochWins()
        #expect(Set(wins.map(\.epoch)).count == wins.count, "no epoch was started twice: \(wins)")
        // The others come back and follow it, cutting what they hold beyond its history.
        try cluster.start(first)
        try cluster.start(second)
        try cluster.waitForFollowers(of: returning, count: 2, timeout: Self.catchUpTimeout)
        cluster.stopAll(primary: returning)
        for index in others.filter({ $0 != returning }) + [first] {
            let difference = segmentsDiffer(cluster.directory(returning), cluster.directory(index))
            #expect(difference == nil, "\(cluster.nodeID(index)): \(difference ?? "")")
        }
    }

    /// The quarantine directory of a rejoin holds exactly the suffix cut from the old log:
    /// `SEGMENT@OFFSET` equal to the old segment's bytes from OFFSET to its last non-zero byte,
    /// later segments whole and unchanged, and in them the batches of LSN `firstLSN` on,
    /// `records` records of `epoch`, nothing before.
    private func checkQuarantined(_ directory: String, against before: [String: [UInt8]], firstLSN: UInt64, records: Int, epoch: UInt64) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        var headers: [BatchHeader] = []
        for name in names {
            let bytes = Array(try #require(FileManager.default.contents(atPath: directory + "/" + name)))
            let parts = name.split(separator: "@")
            let old = try #require(before[String(parts[0])], "\(name) names a segment of the old log")
            if parts.count == 2, let offset = Int(parts[1]) {
                let end = (old.lastIndex { $0 != 0 } ?? -1) + 1
                #expect(offset <= end && Array(old[offset..<end]) == bytes, "\(name) holds the old segment's bytes from \(offset) to its end")
                headers += batchHeaders(in: bytes, from: 0)
            } else {
                #expect(old == bytes, "\(name) is the old segment, unchanged")
                headers += batchHeaders(in: bytes, from: SegmentHeader.byteCount)
            }
        }
        #expect(names.count >= 2, "the suffix spans a segment's tail and a later segment: \(names)")
        let ranges = headers.map(\.lsnRange)
        #expect(headers.first?.baseLSN.rawValue == firstLSN, "the suffix starts at LSN \(firstLSN): \(ranges)")
        #expect(zip(headers, headers.dropFirst()).allSatisfy { $0.lsnRange.next == $1.baseLSN }, "its LSNs are dense: \(ranges)")
        #expect(headers.reduce(0) { $0 + Int($1.recordCount) } == records, "it holds the \(records) unreplicated records: \(ranges)")
        #expect(headers.allSatisfy { $0.epoch.rawValue == epoch && !$0.isControl }, "all of the old primary's epoch \(epoch)")
    }

    /// `failoverLine(index)` as the input of a one-shot `append`.
    static func line(_ index: Int) -> [UInt8] { failoverLine(index) }

    static var ttlNanoseconds: UInt64 { UInt64(leaseSeconds) * 1_000_000_000 }
}

/// Polls every node's status on a thread of its own and keeps the first time each (node,
/// acting primary or not, epoch) was seen, and which nodes acted as primary in each epoch.
final class RoleObserver: @unchecked Sendable {
    // @unchecked: every var is guarded by `lock`.
    struct Observation {
        var index: Int
        var acting: Bool
        var epoch: UInt64
        /// When the status request was sent, and when its answer arrived (monotonic ns).
        var sent: UInt64
        var time: UInt64
    }

    private let lock = NSCondition()
    private var observations: [Observation] = []
    private var stopRequested = false
    private var finished = false
    private var primaries: [UInt64: Set<Int>] = [:]
    /// Between two rounds of status requests.
    private let interval: Duration

    init(_ cluster: ElectedCluster, interval: Duration = .milliseconds(10)) {
        self.interval = interval
        let thread = Thread { [self] in run(cluster) }
        thread.name = "failover-role-observer"
        thread.start()
    }

    private func run(_ cluster: ElectedCluster) {
        defer {
            lock.withLock { finished = true }
            lock.broadcast()
        }
        while !lock.withLock({ stopRequested }) {
            for index in cluster.indices {
                let sent = monotonicNanoseconds()
                guard let status = cluster.status(index) else { continue }
                let seen = Observation(
                    index: index, acting: ElectedCluster.isActingPrimary(status), epoch: number(status["epoch"]), sent: sent,
                    time: monotonicNanoseconds())
                lock.withLock {
                    observations.append(seen)
                    if seen.acting { primaries[seen.epoch, default: []].insert(index) }
                }
                lock.broadcast()
            }
            usleep(UInt32(interval.nanoseconds / 1000))
        }
    }

    /// The first observation since the observer started that satisfies `predicate`, waiting
    /// for later ones up to `timeout`; nil when none does.
    func waitFor(timeout: Duration, _ predicate: (Observation) -> Bool) -> Observation? {
        let deadline = Date().addingTimeInterval(timeout.seconds)
        return lock.withLock {
            var checked = 0
            while true {
                if let found = observations[checked...].first(where: predicate) { return found }
                checked = observations.count
                if finished || !lock.wait(until: deadline) { return observations[checked...].first(where: predicate) }
            }
        }
    }

    /// Every observation so far.
    var all: [Observation] { lock.withLock { observations } }

    /// Nodes seen acting as primary (not fenced), per epoch.
    var actingPrimariesPerEpoch: [UInt64: Set<Int>] { lock.withLock { primaries } }

    func stop() {
        lock.withLock {
            stopRequested = true
            while !finished { lock.wait() }
        }
    }
}
