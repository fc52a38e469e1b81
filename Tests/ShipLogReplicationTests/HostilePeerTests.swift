import Foundation
import ShipLog
import ShipLogProtocol
@testable import ShipLogReplication
import ShipLogTestSupport
import Testing

/// Strangers, liars and broken peers against a running primary with two followers, over raw
/// TCP connections driven by hand (docs/PROTOCOL.md sections 2, 3.4, 6 and 7.1). After each one
/// the primary must have written nothing for it, made it no replication slot, told it why it
/// was turned away, and still serve its real followers and clients.
@Suite(.serialized) struct HostilePeerTests {
    /// How long a test peer waits for the primary to answer or close: shorter than the
    /// primary's handshake timeout, so a primary that merely lets the handshake time out shows
    /// up as a connection still open.
    static let answerTimeout: Duration = .seconds(2)
    static let handshakeTimeout: Duration = .seconds(4)

    /// A primary with two followers and `records` single-record batches (flush:2).
    func makeCluster(_ label: String, handshakeTimeout: Duration = Self.handshakeTimeout, records: Int = 3) throws -> TestCluster {
        let cluster = try TestCluster(label, followers: 2) { node in
            var options = ReplicationOptions(nodeID: node, secret: testSecret)
            options.handshakeTimeout = handshakeTimeout
            return options
        }
        let client = try cluster.client()
        defer { client.close() }
        for index in 0..<records { _ = try client.append([putRecord("seed-\(index)", "v\(index)")], level: .flush(followers: 2)) }
        return cluster
    }

    func peer(_ cluster: TestCluster, receiveTimeout: Duration = Self.answerTimeout) throws -> RawPeer {
        try RawPeer(connectingTo: cluster.primary.listenEndpoint!, receiveTimeout: receiveTimeout)
    }

    /// The primary answered with exactly one Refuse (`refuse`) or Error carrying a reason
    /// `expected` accepts and a non-empty text, then closed the connection.
    /// With `answerRequired` false, a primary that closes without a word passes too (an
    /// invalid frame: the Error is a SHOULD, docs/PROTOCOL.md 2).
    func expectTurnedAway(
        _ peer: RawPeer, refuse: Bool, _ what: String, answerRequired: Bool = true, sourceLocation: SourceLocation = #_sourceLocation,
        _ expected: (Message.Failure.Reason) -> Bool
    ) {
        let (messages, end) = peer.receiveUntilEnd()
        #expect(end != .stillOpen, "\(what): the primary kept the connection open", sourceLocation: sourceLocation)
        #expect(
            messages.count == 1 || (!answerRequired && messages.isEmpty), "\(what): expected one Refuse/Error, got \(messages)",
            sourceLocation: sourceLocation)
        guard let message = messages.last else { return }
        let failure: Message.Failure
        switch message {
        case .refuse(let f) where refuse: failure = f
        case .error(let f) where !refuse: failure = f
        default:
            Issue.record("\(what): expected \(refuse ? "Refuse" : "Error"), got \(message)", sourceLocation: sourceLocation)
            return
        }
        #expect(expected(failure.reason), "\(what): unexpected reason \(failure.reason)", sourceLocation: sourceLocation)
        #expect(!failure.text.isEmpty, "\(what): the failure has no text for people", sourceLocation: sourceLocation)
    }

    /// Nothing was written since `writtenBefore`, `intruder` has no follower entry nor slot, both
    /// followers still stream, and a client's flush:2 append succeeds.
    ///
    /// `streamedFollowers`: authenticated peers that were allowed to stream for a while (they
    /// keep their place in the replica set once gone).
    func expectUnharmed(
        _ cluster: TestCluster, writtenBefore: LSN, intruder: String? = nil, streamedFollowers: [String] = [],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let primary = cluster.primary!
        #expect(primary.host!.log.writtenLSN == writtenBefore, "the hostile peer got records written", sourceLocation: sourceLocation)
        #expect(
            eventually(within: .seconds(3)) { primary.connectedFollowerCount == 2 },
            "\(primary.connectedFollowerCount) followers connected, expected the 2 real ones", sourceLocation: sourceLocation)
        let status = try StatusDocument(of: primary)
        #expect(
            status.followerIDs.sorted() == (["follower-0", "follower-1"] + streamedFollowers).sorted(), "followers: \(status.followerIDs)",
            sourceLocation: sourceLocation)
        if let intruder {
            let slots = (try? String(contentsOfFile: cluster.directory("primary").string + "/replication-slots", encoding: .utf8)) ?? ""
            #expect(!slots.contains(" \(intruder)\n"), "the hostile peer got a replication slot: \(slots)", sourceLocation: sourceLocation)
        }
        let client = try cluster.client()
        defer { client.close() }
        let appended = try client.append([putRecord("after", "still serving")], level: .flush(followers: 2), timeout: .seconds(10))
        #expect(appended.range.first == writtenBefore.advanced(by: 1), sourceLocation: sourceLocation)
    }

    // MARK: Authentication

    @Test func followerWithTheWrongSecretIsRefusedAuthFailedAndGetsNoSlot() throws {
        let cluster = try makeCluster("wrong-secret-follower")
        defer { cluster.remove() }
        let before = cluster.primary.host!.log.writtenLSN
        let peer = try peer(cluster)
        let answer = try peer.hello(role: .follower, nodeID: "intruder")
        guard case .helloAck(let ack) = answer else {
            Issue.record("expected HelloAck, got \(String(describing: answer))")
            return
        }
        // The log position in a HelloAck is public by design (docs/PROTOCOL.md 6.3).
        try peer.prove(ack, role: .follower, nodeID: "intruder", secret: wrongSecret)
        // Pipelined at once, as an eager follower would: never to be acted on.
        try peer.send(.startStream(Message.StartStream(fromLSN: .first)))
        expectTurnedAway(peer, refuse: true, "wrong secret, follower") { $0 == .authFailed }
        try expectUnharmed(cluster, writtenBefore: before, intruder: "intruder")
    }

    @Test func clientWithTheWrongSecretIsRefusedAuthFailedAndItsPipelinedAppendIsNotWritten() throws {
        let cluster = try makeCluster("wrong-secret-client")
        defer { cluster.remove() }
        let before = cluster.primary.host!.log.writtenLSN
        let peer = try peer(cluster)
        guard case .helloAck(let ack) = try peer.hello(role: .client, nodeID: "intruder") else {
            Issue.record("expected HelloAck")
            return
        }
        try peer.prove(ack, role: .client, nodeID: "intruder", secret: wrongSecret)
        try peer.send(.appendRequest(Message.AppendRequest(requestID: 1, commitLevel: .local, records: [putRecord("evil", "1")])))
        expectTurnedAway(peer, refuse: true, "wrong secret, client") { $0 == .authFailed }

        // The same through ReplicationClient: the error names the refusal.
        var options = ClientOptions(nodeID: "intruder", secret: wrongSecret)
        options.connectTimeout = .seconds(5)
        #expect {
            _ = try ReplicationClient(connectingTo: cluster.primary.listenEndpoint!, options: options)
        } throws: { error in
            guard case ReplicationError.refused(_, let failure) = error else { return false }
            return failure.reason == .authFailed && !failure.text.isEmpty && !"\(error)".isEmpty
        }
        try expectUnharmed(cluster, writtenBefore: before, intruder: "intruder")
    }

    @Test func appendRequestInPlaceOfAnAuthProofIsRefusedAndNotWritten() throws {
        let cluster = try makeCluster("no-proof")
        defer { cluster.remove() }
        let before = cluster.primary.host!.log.writtenLSN
        let peer = try peer(cluster)
        guard case .helloAck = try peer.hello(role: .client, nodeID: "intruder") else {
            Issue.record("expected HelloAck")
            return
        }
        try peer.send(.appendRequest(Message.AppendRequest(requestID: 1, commitLevel: .local, records: [putRecord("evil", "1")])))
        expectTurnedAway(peer, refuse: true, "AppendRequest instead of AuthProof") { $0 == .authFailed }
        try expectUnharmed(cluster, writtenBefore: before, intruder: "intruder")
    }

    /// Fencing (docs/PROTOCOL.md 6.1) must not be in the hands of anyone who can reach the port:
    /// the cluster id travels in clear, so a Hello with a huge epoch costs a stranger nothing.
    @Test func unauthenticatedHelloWithANewerEpochDoesNotFenceThePrimary() throws {
        let cluster = try makeCluster("epoch-stranger")
        defer { cluster.remove() }
        let before = cluster.primary.host!.log.writtenLSN
        let peer = try peer(cluster)
        let answer = try peer.hello(role: .follower, nodeID: "intruder", epoch: Epoch(1 << 40), lastLSN: LSN(1), lastBatchCRC: 1)
        if case .helloAck(let ack) = answer {
            try peer.prove(ack, role: .follower, nodeID: "intruder", secret: wrongSecret)
        }
        _ = peer.receiveUntilEnd()
        #expect(try StatusDocument(of: cluster.primary).object["fenced_by_epoch"] == nil, "a stranger fenced the primary")
        try expectUnharmed(cluster, writtenBefore: before, intruder: "intruder")
    }

    // MARK: Records the state machine refuses

    /// An authenticated client is not trusted with the state machine's encoding: a record the
    /// key-value machine cannot apply must be refused before it is appended, not appended and
    /// then fail the primary's log (and every follower's, and every replay after a restart).
    @Test func recordTheStateMachineRefusesIsNotAppendedAndDoesNotStopTheLog() throws {
        let cluster = try makeCluster("poison")
        defer { cluster.remove() }
        let before = cluster.primary.host!.log.writtenLSN
        let client = try cluster.client()
        defer { client.close() }
        #expect {
            _ = try client.append([[0x80, 0x01, 0x02, 0x03]], level: .local, timeout: .seconds(5))
        } throws: { error in
            guard case ReplicationError.requestFailed(let failure) = error else { return false }
            return !failure.text.isEmpty
        }
        #expect(cluster.primary.host!.log.failure == nil, "one bad record stopped the primary's log: \(String(describing: cluster.primary.host!.log.failure))")
        try expectUnharmed(cluster, writtenBefore: before)
        // The primary's directory still opens (a stored bad record would fail every replay).
        cluster.shutdown()
        cluster.followers.removeAll()
        cluster.primary = try cluster.startPrimary()
    }

    // MARK: Bytes that are not frames

    @Test func garbageBytesAreAnsweredWithProtocolViolationAndClosed() throws {
        let cluster = try makeCluster("garbage")
        defer { cluster.remove() }
        let before = cluster.primary.host!.log.writtenLSN
        let inputs: [(String, [UInt8])] = [
            ("random bytes", noiseBytes(1000, seed: 42)),
            ("an HTTP request", Array("GET / HTTP/1.1\r\nHost: shiplog\r\n\r\n".utf8)),
            ("zeros", [UInt8](repeating: 0, count: 64)),
            ("a TLS ClientHello start", [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03] + noiseBytes(32, seed: 7)),
        ]
        for (what, bytes) in inputs {
            let peer = try peer(cluster)
            try peer.send(bytes: bytes)
            expectTurnedAway(peer, refuse: false, what, answerRequired: false) { $0 == .protocolViolation }
        }
        try expectUnharmed(cluster, writtenBefore: before)
    }

    /// docs/PROTOCOL.md 2: a receiver of an invalid frame SHOULD send Error protocolViolation
    /// before it closes; during the handshake too, so that a misconfigured peer (wrong port,
    /// TLS on one side only, an old framing version) learns why.
    @Test func invalidFrameDuringTheHandshakeIsAnsweredWithAnErrorNamingTheProblem() throws {
        let cluster = try makeCluster("garbage-answer")
        defer { cluster.remove() }
        let hello = try Message.hello(
            Message.Hello(
                clusterID: "shiplog", nodeID: "broken", role: .follower, epoch: Epoch(0), lastLSN: .zero, lastBatchCRC: 0,
                nonce: Nonce.random().bytes)
        ).encodedFrame()
        var badCRC = hello
        badCRC[hello.count - 1] ^= 0xff
        var badVersion = hello
        badVersion[4] = 2
        let inputs: [(String, [UInt8])] = [
            ("an HTTP request", Array("GET / HTTP/1.1\r\nHost: shiplog\r\n\r\n".utf8)),
            ("a Hello with a damaged byte", badCRC),
            ("a Hello in framing version 2", badVersion),
            ("a header claiming 2 GiB", RawPeer.frameHeader(type: MessageType.hello.rawValue, payloadLength: 2 << 30)),
        ]
        for (what, bytes) in inputs {
            let peer = try peer(cluster)
            try peer.send(bytes: bytes)
            expectTurnedAway(peer, refuse: false, what) { $0 == .protocolViolation }
        }
    }

    @Test func frameHeaderClaimingTwoGiBIsRejectedFromItsSixteenBytes() throws {
        let cluster = try makeCluster("two-gib")
        defer { cluster.remove() }
        let before = cluster.primary.host!.log.writtenLSN
        let residentBefore = ProcessProbe.residentBytes()
        // Before authentication the limit is handshakeFrameBytesMax (4 KiB): 2 GiB, and also
        // a size a full-size decoder would take.
        for claimed in [UInt32(2) << 30, UInt32(ProtocolLimits.handshakeFrameBytesMax), 1 << 20] {
            let peer = try peer(cluster)
            try peer.send(bytes: RawPeer.frameHeader(type: MessageType.hello.rawValue, payloadLength: claimed))
            expectTurnedAway(peer, refuse: false, "an unauthenticated header claiming \(claimed) bytes", answerRequired: false) {
                $0 == .protocolViolation
            }
        }
        // After authentication the limit is frameBytesMax (about 16 MiB): still far below 2 GiB.
        let client = try peer(cluster)
        try client.authenticate(role: .client, nodeID: "big-client")
        try client.send(bytes: RawPeer.frameHeader(type: MessageType.appendRequest.rawValue, payloadLength: 2 << 30))
        expectTurnedAway(client, refuse: false, "an authenticated client's header claiming 2 GiB") { $0 == .protocolViolation }

        let follower = try peer(cluster)
        try follower.authenticate(role: .follower, nodeID: "big-follower")
        try follower.send(.startStream(Message.StartStream(fromLSN: .first)))
        try follower.send(bytes: RawPeer.frameHeader(type: MessageType.followerStatus.rawValue, payloadLength: 2 << 30))
        let (messages, end) = follower.receiveUntilEnd()
        #expect(end != .stillOpen)
        let errors = messages.compactMap { message -> Message.Failure? in
            if case .error(let failure) = message { return failure }
            return nil
        }
        #expect(errors.count == 1 && errors.first?.reason == .protocolViolation && errors.first?.text.isEmpty == false, "\(errors)")
        #expect(ProcessProbe.residentBytes() - residentBefore < 256 << 20, "nothing may be allocated from a claimed length")
        try expectUnharmed(cluster, writtenBefore: before, streamedFollowers: ["big-follower"])
    }

    @Test func truncatedFramesThenCloseLeaveNoConnectionBehind() throws {
        let cluster = try makeCluster("truncated")
        defer { cluster.remove() }
        let before = cluster.primary.host!.log.writtenLSN
        let primary = cluster.primary!
        let baseline = primary.lock.withLock { primary.connections.count }
        let hello = try Message.hello(
            Message.Hello(
                clusterID: "shiplog", nodeID: "half", role: .follower, epoch: Epoch(0), lastLSN: .zero, lastBatchCRC: 0,
                nonce: Nonce.random().bytes)
        ).encodedFrame()
        for cut in [1, 8, 15, 16, 17, hello.count / 2, hello.count - 1] {
            let peer = try peer(cluster)
            try peer.send(bytes: Array(hello[..<cut]))
            peer.connection.close()
        }
        // Half an AuthProof after a complete Hello, then close.
        let peer = try peer(cluster)
        guard case .helloAck = try peer.hello(role: .follower, nodeID: "half") else {
            Issue.record("expected HelloAck")
            return
        }
        try peer.send(bytes: Array(RawPeer.frameHeader(type: MessageType.authProof.rawValue, payloadLength: 32) + [1, 2, 3]))
        peer.connection.close()
        #expect(
            eventually(within: .seconds(3)) { primary.lock.withLock { primary.connections.count } <= baseline },
            "connections still open: \(primary.lock.withLock { primary.connections.count }), baseline \(baseline)")
        try expectUnharmed(cluster, writtenBefore: before, intruder: "half")
    }

    // MARK: Authenticated peers that lie or break the order

    @Test func followerClaimingADivergedHistoryIsRefusedWithThePrimarysBoundary() throws {
        let cluster = try makeCluster("diverged", records: 0)
        defer { cluster.remove() }
        let client = try cluster.client()
        defer { client.close() }
        // Batches ending at LSN 1, 2, 3, then one of three records, 4 ... 6.
        for index in 0..<3 { _ = try client.append([putRecord("k\(index)", "v")], level: .flush(followers: 2)) }
        let wide = try client.append((0..<3).map { putRecord("w\($0)", "v") }, level: .flush(followers: 2))
        #expect(wide.range == LSNRange(first: LSN(4), last: LSN(6)))
        let log = cluster.primary.host!.log
        let crcAt2 = try #require(try log.batchCRC(endingAt: LSN(2)))
        let crcAt3 = try #require(try log.batchCRC(endingAt: LSN(3)))
        let crcAt6 = try #require(try log.batchCRC(endingAt: LSN(6)))
        let before = log.writtenLSN
        let cases: [(String, lastLSN: LSN, lastBatchCRC: UInt32, boundary: LSN, boundaryCRC: UInt32)] = [
            ("a boundary of the primary with another batchCRC", LSN(2), crcAt2 ^ 0xdead_beef, LSN(2), crcAt2),
            ("an LSN inside one of the primary's batches", LSN(5), crcAt6, LSN(3), crcAt3),
            ("an LSN after the primary's end", LSN(100), crcAt6, LSN(6), crcAt6),
            ("the primary's end with another batchCRC", LSN(6), crcAt6 &+ 1, LSN(6), crcAt6),
        ]
        for (what, lastLSN, lastBatchCRC, boundary, boundaryCRC) in cases {
            let peer = try peer(cluster)
            try peer.authenticate(role: .follower, nodeID: "liar", epoch: Epoch.initial, lastLSN: lastLSN, lastBatchCRC: lastBatchCRC)
            try peer.send(.startStream(Message.StartStream(fromLSN: lastLSN.advanced(by: 1))))
            expectTurnedAway(peer, refuse: true, what) { $0 == .diverged(lsn: boundary, batchCRC: boundaryCRC) }
        }
        try expectUnharmed(cluster, writtenBefore: before, intruder: "liar")
    }

    @Test func authenticatedPeersBreakingTheMessageOrderGetProtocolViolation() throws {
        let cluster = try makeCluster("order")
        defer { cluster.remove() }
        let before = cluster.primary.host!.log.writtenLSN

        // A follower reporting a status before it asked for a stream.
        let early = try peer(cluster)
        try early.authenticate(role: .follower, nodeID: "early")
        try early.send(
            .followerStatus(Message.FollowerStatus(writtenLSN: before, flushedLSN: before, appliedLSN: before, timestamp: 0)))
        expectTurnedAway(early, refuse: false, "FollowerStatus before StartStream") { $0 == .protocolViolation }

        // A follower asking for a stream from somewhere else than its Hello said.
        let elsewhere = try peer(cluster)
        try elsewhere.authenticate(role: .follower, nodeID: "elsewhere")
        try elsewhere.send(.startStream(Message.StartStream(fromLSN: LSN(2))))
        expectTurnedAway(elsewhere, refuse: false, "StartStream.fromLSN is not Hello.lastLSN + 1") { $0 == .protocolViolation }

        // A peer claiming to be a primary initiating a connection.
        let primaryPeer = try peer(cluster)
        try primaryPeer.authenticate(role: .primary, nodeID: "other-primary")
        expectTurnedAway(primaryPeer, refuse: false, "a primary initiating") { $0 == .protocolViolation }

        // A client sending Batches (real ones, read from the primary).
        let reader = try cluster.client()
        let (_, batches) = try reader.read(from: .first)
        reader.close()
        #expect(!batches.isEmpty)
        let client = try peer(cluster)
        try client.authenticate(role: .client, nodeID: "pushy-client")
        try client.send(
            .batches(Message.Batches(writtenLSN: before.advanced(by: 100), flushedLSN: .zero, timestamp: 0, batches: batches)))
        expectTurnedAway(client, refuse: false, "a client sending Batches") { $0 == .protocolViolation }

        // A client sending a second Hello.
        let twice = try peer(cluster)
        try twice.authenticate(role: .client, nodeID: "twice")
        try twice.send(
            .hello(
                Message.Hello(
                    clusterID: "shiplog", nodeID: "twice", role: .client, epoch: Epoch(0), lastLSN: .zero, lastBatchCRC: 0,
                    nonce: Nonce.random().bytes)))
        expectTurnedAway(twice, refuse: false, "a second Hello") { $0 == .protocolViolation }

        try expectUnharmed(cluster, writtenBefore: before, intruder: "early")
        #expect(try StatusDocument(of: cluster.primary).follower("elsewhere") == nil)
    }

    // MARK: Peers that hold a connection without finishing the handshake

    @Test func silentPeerIsDisconnectedAfterTheHandshakeTimeout() throws {
        let timeout = Duration.milliseconds(500)
        let cluster = try makeCluster("silent", handshakeTimeout: timeout)
        defer { cluster.remove() }
        let before = cluster.primary.host!.log.writtenLSN
        for stage in ["nothing", "a Hello"] {
            let peer = try peer(cluster, receiveTimeout: .seconds(10))
            let started = ContinuousClock.now
            if stage == "a Hello" {
                guard case .helloAck = try peer.hello(role: .follower, nodeID: "silent") else {
                    Issue.record("expected HelloAck")
                    continue
                }
            }
            let (_, end) = peer.receiveUntilEnd()
            let elapsed = ContinuousClock.now - started
            #expect(end != .stillOpen, "after \(stage)")
            #expect(elapsed >= timeout - .milliseconds(50) && elapsed < timeout * 4, "after \(stage): disconnected after \(elapsed)")
        }
        try expectUnharmed(cluster, writtenBefore: before, intruder: "silent")
    }

    /// `handshakeTimeout` promises that "an unauthenticated peer cannot hold a connection
    /// longer"; a peer sending one byte now and then must not stretch it.
    @Test func tricklingPeerIsDisconnectedAfterTheHandshakeTimeout() throws {
        let timeout = Duration.milliseconds(600)
        let cluster = try makeCluster("trickle", handshakeTimeout: timeout)
        defer { cluster.remove() }
        let hello = try Message.hello(
            Message.Hello(
                clusterID: "shiplog", nodeID: "trickle", role: .follower, epoch: Epoch(0), lastLSN: .zero, lastBatchCRC: 0,
                nonce: Nonce.random().bytes)
        ).encodedFrame()
        let peer = try peer(cluster)
        let started = ContinuousClock.now
        var sent = 0
        var refusedAt: Duration?
        // One byte every 200 ms: each receive of the primary gets a byte well within its timeout.
        while sent < hello.count - 1 && ContinuousClock.now - started < timeout * 5 {
            do { try peer.send(bytes: [hello[sent]]) } catch {
                refusedAt = ContinuousClock.now - started
                break
            }
            sent += 1
            Thread.sleep(forTimeInterval: 0.2)
        }
        let closed = refusedAt != nil || peer.receiveUntilEnd().end != .stillOpen
        let elapsed = refusedAt ?? (ContinuousClock.now - started)
        #expect(closed && elapsed < timeout * 5, "a peer trickling a Hello (\(sent) bytes so far) held its connection for \(elapsed) with handshakeTimeout \(timeout)")
    }

    // MARK: Resources

    /// A primary serves clients for months: each closed connection must give back its thread.
    @Test func closedClientConnectionsLeaveNoThreadBehind() throws {
        let cluster = try makeCluster("threads")
        defer { cluster.remove() }
        let primary = cluster.primary!
        let connections = 100
        // Warm up, then measure.
        for _ in 0..<5 { try cluster.client().close() }
        _ = eventually(within: .seconds(2)) { primary.lock.withLock { primary.connections.count } <= 2 }
        let threadsBefore = primary.lock.withLock { primary.threads.count }
        let virtualBefore = ProcessProbe.virtualBytes()
        for _ in 0..<connections {
            let client = try cluster.client()
            _ = try client.status()
            client.close()
        }
        #expect(eventually(within: .seconds(5)) { primary.lock.withLock { primary.connections.count } <= 2 })
        let threadsKept = primary.lock.withLock { primary.threads.count } - threadsBefore
        let virtualGrowth = ProcessProbe.virtualBytes() - virtualBefore
        #expect(
            threadsKept < connections / 2,
            "\(connections) closed client connections left \(threadsKept) unjoined threads (virtual size +\(virtualGrowth >> 20) MiB): a long-running primary runs out of threads or address space")
    }

    /// Reads that wait for new records (ReadRequest.waitMillis) must not hold the threads that
    /// answer other clients' reads.
    @Test func waitingReadsOfOneClientDoNotStarveAnotherClientsReads() throws {
        let cluster = try makeCluster("waiting-reads")
        defer { cluster.remove() }
        let next = cluster.primary.host!.log.writtenLSN.advanced(by: 1)
        let hog = try peer(cluster)
        try hog.authenticate(role: .client, nodeID: "hog")
        for id in 1...UInt64(16) {
            try hog.send(.readRequest(Message.ReadRequest(requestID: id, fromLSN: next, waitMillis: 60_000)))
        }
        Thread.sleep(forTimeInterval: 0.2)
        let other = try cluster.client()
        defer { other.close() }
        let answered = Outcome<Duration>()
        let reader = OwnedThread.start(name: "test-read") {
            let started = ContinuousClock.now
            _ = try? other.read(from: next, wait: .milliseconds(100))
            answered.set(ContinuousClock.now - started)
        }
        let inTime = eventually(within: .seconds(3)) { answered.value != nil }
        // Release everything: a record ends every wait.
        let writer = try cluster.client()
        _ = try writer.append([putRecord("wake", "up")], level: .local)
        writer.close()
        reader.join()
        #expect(inTime, "another client's 100 ms read was not answered within 3 s while one client had 16 reads waiting")
    }

    // MARK: A node that never answers

    @Test func clientRequestToANodeThatNeverAnswersFailsAfterTheResponseTimeout() throws {
        let listener = try TCPNetwork().listen(on: Endpoint(host: "127.0.0.1", port: 0))
        defer { listener.close() }
        let endpoint = listener.endpoint
        let node = OwnedThread.start(name: "test-mute-node") {
            guard let connection = try? listener.accept(), let peer = try? RawPeer(connection: connection, receiveTimeout: .seconds(20)) else { return }
            _ = try? peer.respond(nodeID: "mute")
            // Reads requests, answers none.
            _ = peer.receiveUntilEnd()
        }
        var options = ClientOptions(nodeID: "patient", secret: testSecret)
        options.responseTimeout = .seconds(1)
        let client = try ReplicationClient(connectingTo: endpoint, options: options)
        let result = Outcome<Duration>()
        let caller = OwnedThread.start(name: "test-status") {
            let started = ContinuousClock.now
            _ = try? client.status()
            result.set(ContinuousClock.now - started)
        }
        let answered = eventually(within: .seconds(4)) { result.value != nil }
        client.close()
        caller.join()
        node.join()
        #expect(answered, "a request to a node that never answers was still waiting after 4 s with responseTimeout 1 s")
    }

    // MARK: Node ids

    /// Node ids are 1 ... 64 bytes of UTF-8 without control characters (docs/PROTOCOL.md 5.1):
    /// quotes, backslashes, spaces and any other character are allowed and must neither break
    /// the status document nor the replication slot file the primary reads when it starts again.
    @Test func followerIDWithQuotesAndSpacesBreaksNeitherStatusNorSlotsNorRestart() throws {
        let cluster = try makeCluster("odd-ids")
        defer { cluster.remove() }
        let log = cluster.primary.host!.log
        let last = log.writtenLSN
        let crc = try #require(try log.batchCRC(endingAt: last))
        let odd = "x\"},{\"node_id\":\"y\\ 7 z é"
        let peer = try peer(cluster)
        try peer.authenticate(role: .follower, nodeID: odd, epoch: log.epoch, lastLSN: last, lastBatchCRC: crc)
        try peer.send(.startStream(Message.StartStream(fromLSN: last.advanced(by: 1))))
        try peer.send(.followerStatus(Message.FollowerStatus(writtenLSN: last, flushedLSN: last, appliedLSN: last, timestamp: 0)))
        #expect(eventually(within: .seconds(3)) { cluster.primary.connectedFollowerCount == 3 })
        let status = try StatusDocument(of: cluster.primary)
        #expect(status.followerIDs.sorted() == ["follower-0", "follower-1", odd].sorted(), "\(status.text)")
        peer.connection.close()
        // The primary starts again on its directory, with the slot of that follower.
        cluster.shutdown()
        cluster.followers.removeAll()
        cluster.primary = try cluster.startPrimary()
        let restarted = try StatusDocument(of: cluster.primary)
        #expect(restarted.followerIDs.sorted() == ["follower-0", "follower-1", odd].sorted(), "\(restarted.text)")
    }

    /// A node id with a newline or another control character could forge lines of the slot
    /// file: the handshake refuses it, and nothing about the peer is recorded.
    @Test func followerIDWithControlCharactersIsRefused() throws {
        let cluster = try makeCluster("control-ids")
        defer { cluster.remove() }
        let before = cluster.primary.host!.log.writtenLSN
        for odd in ["x\n7 z", "tab\there", "bell\u{7}", "del\u{7f}", "c1\u{85}"] {
            let peer = try peer(cluster)
            let answer = try peer.hello(role: .follower, nodeID: odd)
            guard case .refuse(let failure) = answer else {
                Issue.record("\(odd.debugDescription): expected Refuse, got \(String(describing: answer))")
                continue
            }
            #expect(failure.reason == .protocolViolation && failure.text.contains("control characters"))
        }
        try expectUnharmed(cluster, writtenBefore: before)
    }

    // MARK: Status document

    /// docs/PROTOCOL.md 8.5: every integer is decimal digits only (no fraction, no exponent).
    @Test func statusDocumentWritesEveryIntegerAsDigitsOnly() throws {
        let cluster = try makeCluster("status-integers")
        defer { cluster.remove() }
        let text = cluster.primary.statusJSON()
        let integerKeys = [
            "epoch", "first_lsn", "last_lsn", "durable_lsn", "applied_lsn", "written_lsn", "flushed_lsn", "lag_records",
            "lag_bytes", "lag_ms", "last_contact_ms_ago", "slot_lsn", "followers_omitted",
        ]
        for key in integerKeys {
            var rest = Substring(text)
            while let range = rest.range(of: "\"\(key)\":") {
                let value = rest[range.upperBound...].prefix { $0 != "," && $0 != "}" && $0 != "]" }
                let digitsOnly = !value.isEmpty && value.allSatisfy(\.isASCII) && value.allSatisfy(\.isNumber)
                    && (value == "0" || value.first != "0")
                #expect(digitsOnly, "\"\(key)\": \(value) is not an integer of digits only")
                rest = rest[range.upperBound...]
            }
        }
    }
}
