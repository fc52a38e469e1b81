import Glibc
import ShipLogReplication
import Testing

@testable import ShipLogFailover

/// Leader election against real etcd and ZooKeeper servers (started by CoordinationServers).
/// TTLs are 1 s, so the expiry tests take a few seconds each; the tests run in parallel, each
/// under a prefix of its own.
@Suite(.enabled(if: !ServerBinaries.anyMissing, "\(ServerBinaries.skipMessage)"))
struct ElectionTests {
    static let ttl: Duration = .seconds(1)
    static let backends = ElectionConfig.Backend.allCases

    /// A service on the shared server of `backend`, under `prefix`.
    static func service(_ backend: ElectionConfig.Backend, prefix: String, ttl: Duration = ttl) throws -> any CoordinationService {
        try makeCoordinationService(TestServer.shared(backend).url(prefix: prefix), ttl: ttl)
    }

    @Test("a second candidate gets nil while the first holds leadership, and nothing of its attempt remains", arguments: backends)
    func secondCandidateDoesNotStealLeadership(_ backend: ElectionConfig.Backend) async throws {
        try await onOwnedThread {
            let prefix = uniquePrefix()
            let a = try Self.service(backend, prefix: prefix)
            let b = try Self.service(backend, prefix: prefix)
            defer { a.close(); b.close() }
            #expect(try a.leader() == nil)
            let won = try #require(try a.campaign(nodeID: "node-a", value: Array("a:1".utf8)))
            defer { won.resign() }
            #expect(won.nodeID == "node-a")
            #expect(won.validUntil > now())
            #expect(try b.campaign(nodeID: "node-b", value: Array("b:1".utf8)) == nil)
            #expect(try a.campaign(nodeID: "node-a", value: Array("a:2".utf8)) == nil, "a second campaign of the leader itself")
            let leader = try #require(try b.leader())
            #expect(leader.nodeID == "node-a")
            #expect(leader.value == Array("a:1".utf8))
            // The lost attempts left no lease or session behind that could delete the key.
            try won.renew()
            #expect(try b.leader()?.nodeID == "node-a")
        }
    }

    @Test("renewing keeps leadership well beyond twice the TTL", arguments: backends)
    func renewingKeepsLeadershipBeyondTwoTTLs(_ backend: ElectionConfig.Backend) async throws {
        try await onOwnedThread {
            // 2 s: a loaded machine (2 cores, every suite at once) must not miss a 1 s TTL here.
            let ttl: Duration = .seconds(2)
            let prefix = uniquePrefix()
            let a = try Self.service(backend, prefix: prefix, ttl: ttl)
            let b = try Self.service(backend, prefix: prefix, ttl: ttl)
            defer { a.close(); b.close() }
            let won = try #require(try a.campaign(nodeID: "node-a", value: []))
            defer { won.resign() }
            let interval = a.config.renewInterval
            let end = now() + (ttl * 2.25).nanoseconds
            var renewals = 0
            while now() < end {
                try Task.checkCancellation()
                usleep(UInt32(interval.nanoseconds / 1000))
                let before = now()
                try won.renew()
                renewals += 1
                #expect(won.validUntil > before, "validUntil moves past the renewal's start")
                #expect(won.validUntil <= before + ttl.nanoseconds, "validUntil is within one TTL of the renewal's start")
            }
            #expect(renewals >= 5)
            #expect(try b.leader()?.nodeID == "node-a")
            #expect(try b.campaign(nodeID: "node-b", value: []) == nil)
        }
    }

    @Test(
        "a leader that stops renewing loses the key about a TTL later, never before validUntil, and another node wins",
        arguments: backends)
    func unrenewedLeadershipExpiresAfterValidUntil(_ backend: ElectionConfig.Backend) async throws {
        try await onOwnedThread {
            let prefix = uniquePrefix()
            let a = try Self.service(backend, prefix: prefix)
            let b = try Self.service(backend, prefix: prefix)
            defer { a.close(); b.close() }
            let won = try #require(try a.campaign(nodeID: "node-a", value: []))
            defer { won.resign() }
            try won.renew()
            let renewed = now()
            let validUntil = won.validUntil
            var gone: UInt64?
            while now() < renewed + (Self.ttl * 6).nanoseconds {
                if try b.leader() == nil {
                    gone = now()
                    break
                }
                usleep(20_000)
            }
            let disappeared = try #require(gone, "the leader key outlived 6 TTLs without renewals")
            #expect(disappeared > validUntil, "the key vanished \(seconds(validUntil, disappeared)) s after validUntil")
            #expect(seconds(renewed, disappeared) < 4, "the key vanished \(seconds(renewed, disappeared)) s after the last renewal")
            let next = try #require(try b.campaign(nodeID: "node-b", value: Array("b".utf8)))
            defer { next.resign() }
            #expect(try a.leader()?.nodeID == "node-b")
            #expect(throws: CoordinationError.self) { try won.renew() }
            #expect(won.validUntil == 0)
        }
    }

    @Test("resigning frees the leader key at once", arguments: backends)
    func resignFreesTheKeyAtOnce(_ backend: ElectionConfig.Backend) async throws {
        try await onOwnedThread {
            let prefix = uniquePrefix()
            let a = try Self.service(backend, prefix: prefix)
            let b = try Self.service(backend, prefix: prefix)
            defer { a.close(); b.close() }
            let won = try #require(try a.campaign(nodeID: "node-a", value: []))
            won.resign()
            #expect(won.validUntil == 0)
            #expect(try b.leader() == nil)
            let next = try #require(try b.campaign(nodeID: "node-b", value: []))
            defer { next.resign() }
            won.resign()  // idempotent, and does not touch the new leader's key
            #expect(try a.leader()?.nodeID == "node-b")
            do {
                try won.renew()
                Issue.record("renew after resign succeeded")
            } catch {
                #expect((error as? CoordinationError)?.meansLeadershipLost == true, "\(error)")
            }
        }
    }

    @Test("member records are listed, updated, and vanish with their lease or session", arguments: backends)
    func memberRecordsFollowTheirOwners(_ backend: ElectionConfig.Backend) async throws {
        try await onOwnedThread {
            let prefix = uniquePrefix()
            let observer = try Self.service(backend, prefix: prefix)
            let one = try Self.service(backend, prefix: prefix)
            let two = try Self.service(backend, prefix: prefix)
            defer { observer.close(); one.close() }
            #expect(try observer.members().isEmpty)
            try one.publish(nodeID: "node-1", value: Array("127.0.0.1:7001 epoch=1 lsn=10".utf8))
            try two.publish(nodeID: "node/2 ü", value: Array("127.0.0.1:7002".utf8))
            var members = try observer.members()
            #expect(members.map(\.nodeID) == ["node-1", "node/2 ü"])
            try one.publish(nodeID: "node-1", value: Array("127.0.0.1:7001 epoch=1 lsn=20".utf8))
            members = try observer.members()
            #expect(members.first?.value == Array("127.0.0.1:7001 epoch=1 lsn=20".utf8))
            // A clean close removes the record at once.
            two.close()
            #expect(try observer.members().map(\.nodeID) == ["node-1"])
            // A node that stops publishing (dies) loses its record about a TTL later.
            var three: (any CoordinationService)? = try Self.service(backend, prefix: prefix)
            try three!.publish(nodeID: "node-3", value: [])
            #expect(try observer.members().count == 2)
            three = nil  // connection closed without ending the session or lease
            _ = three
            let start = now()
            var vanished = false
            while now() < start + (Self.ttl * 6).nanoseconds {
                try one.publish(nodeID: "node-1", value: Array("alive".utf8))
                if try observer.members().map(\.nodeID) == ["node-1"] {
                    vanished = true
                    break
                }
                usleep(UInt32(one.config.renewInterval.nanoseconds / 1000))
            }
            #expect(vanished, "node-3's record outlived 6 TTLs")
            #expect(try observer.members().first?.value == Array("alive".utf8), "a node that keeps publishing keeps its record")
        }
    }

    @Test("waitForLeaderChange sees a new leader, a resignation, and returns the unchanged leader at its timeout", arguments: backends)
    func waitForLeaderChangeSeesChanges(_ backend: ElectionConfig.Backend) async throws {
        try await onOwnedThread {
            let prefix = uniquePrefix()
            let watcher = try Self.service(backend, prefix: prefix, ttl: .seconds(3))
            let candidate = try Self.service(backend, prefix: prefix)
            defer { watcher.close(); candidate.close() }
            let campaigner = OwnedThread.start(name: "campaigner") {
                usleep(300_000)
                let won = try? candidate.campaign(nodeID: "node-a", value: Array("a".utf8))
                usleep(1_200_000)  // the wait below must see the resignation, not an expiry
                won?.resign()
            }
            defer { campaigner.join() }
            var started = now()
            let first = try watcher.waitForLeaderChange(from: nil, timeout: .seconds(10))
            #expect(first?.nodeID == "node-a")
            #expect(first?.value == Array("a".utf8))
            #expect(seconds(started, now()) < 2, "the new leader was seen \(seconds(started, now())) s later")
            started = now()
            let second = try watcher.waitForLeaderChange(from: "node-a", timeout: .seconds(10))
            #expect(second == nil)
            #expect(seconds(started, now()) < 2, "the resignation was seen \(seconds(started, now())) s later")
            // Unchanged: returns the same (absent) leader when the timeout passes; the wait pings
            // its session meanwhile (the timeout is beyond the 3 s TTL).
            started = now()
            let unchanged = try watcher.waitForLeaderChange(from: nil, timeout: .milliseconds(3500))
            #expect(unchanged == nil)
            #expect(seconds(started, now()) >= 3.4)
            // Still usable after a long wait.
            #expect(try watcher.leader() == nil)
        }
    }

    @Test("close does not wait for a wait in progress, and later calls are refused", arguments: backends)
    func closeDuringAWaitReturnsAtOnce(_ backend: ElectionConfig.Backend) async throws {
        try await onOwnedThread {
            let service = try Self.service(backend, prefix: uniquePrefix())
            let waiter = OwnedThread.start(name: "waiter") {
                _ = try? service.waitForLeaderChange(from: nil, timeout: .milliseconds(1500))
            }
            usleep(300_000)
            let started = now()
            service.close()
            #expect(seconds(started, now()) < 0.5, "close took \(seconds(started, now())) s")
            waiter.join()
            do {
                _ = try service.waitForLeaderChange(from: nil, timeout: .seconds(1))
                Issue.record("a wait after close succeeded")
            } catch {
                guard case .closed = error as? CoordinationError else {
                    Issue.record("unexpected \(error)")
                    return
                }
            }
            service.close()  // idempotent
        }
    }

    @Test("a killed service makes renew fail within the operation timeout", arguments: backends)
    func renewFailsWithinTheOperationTimeoutWhenTheServiceDies(_ backend: ElectionConfig.Backend) async throws {
        try await onOwnedThread {
            let server = try TestServer.start(backend)
            defer { server.stop() }
            let service = try makeCoordinationService(server.url(prefix: "/kill"), ttl: .seconds(2))
            defer { service.close() }
            let won = try #require(try service.campaign(nodeID: "node-a", value: []))
            try won.renew()
            let validUntil = won.validUntil
            server.kill()
            let started = now()
            #expect(throws: CoordinationError.self) { try won.renew() }
            let took = seconds(started, now())
            let limit = Double(service.config.operationTimeout.nanoseconds) / 1e9 + 0.25
            #expect(took < limit, "renew took \(took) s after the kill (operation timeout \(service.config.operationTimeout))")
            #expect(won.validUntil == validUntil, "a failed renewal must not move validUntil")
            #expect(throws: CoordinationError.self) { _ = try service.leader() }
        }
    }
}
