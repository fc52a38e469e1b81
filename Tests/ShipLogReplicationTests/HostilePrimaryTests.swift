import Foundation
import ShipLog
import ShipLogProtocol
import ShipLogReplication
import ShipLogTestSupport
import Testing

/// A follower connected to a fake primary driven by hand: whatever that primary sends that
/// does not verify or does not continue the follower's log must be refused before anything is
/// stored (docs/PROTOCOL.md 7.2; engine rule: never store or return a record whose checksum
/// failed), the follower must say why, and it must keep trying to reconnect.
@Suite(.serialized) struct HostilePrimaryTests {
    /// A follower with an empty log streaming from a listener the test drives, and a real log
    /// to take valid batches from.
    final class Setup: @unchecked Sendable {
        let scratch = ScratchDirectory("hostile-primary")
        let listener: any Listener
        let source: Log
        var follower: KVNode!
        /// Batches 1, 2, 3 of the source log (LSN 1, 2 ... 3, 4 ... 6), chained from an empty log.
        var batches: [Batch] = []

        init(secret: SharedSecret = testSecret) throws {
            listener = try TCPNetwork().listen(on: Endpoint(host: "127.0.0.1", port: 0))
            source = try Log.open(directory: FilePath(scratch.path + "/source"))
            _ = try source.append(putRecord("a", "1"))
            var builder = BatchBuilder()
            try builder.append(putRecord("b", "2"))
            try builder.append(putRecord("c", "3"))
            _ = try source.append(builder)
            builder = BatchBuilder()
            for key in ["d", "e", "f"] { try builder.append(putRecord(key, String(repeating: "x", count: 400))) }
            _ = try source.append(builder)
            var cursor = source.batches(from: .first)
            while let batch = try cursor.next() { batches.append(batch) }
            var options = ReplicationOptions(nodeID: "victim", secret: secret)
            options.reconnectBackoffMin = .milliseconds(20)
            options.reconnectBackoffMax = .milliseconds(100)
            options.keepaliveInterval = .milliseconds(200)
            follower = try KVNode(
                directory: FilePath(scratch.path + "/follower"), role: .follower(primary: listener.endpoint), listen: nil,
                options: options, stateMachineOptions: TestCluster.defaultMachineOptions()
            ) { KeyValueStateMachine() }
        }

        /// The follower's next connection, with the handshake done as primary and its
        /// StartStream read.
        func acceptStream() throws -> (peer: RawPeer, start: Message.StartStream) {
            let peer = try RawPeer(connection: listener.accept(), receiveTimeout: .seconds(5))
            try peer.respond(nodeID: "fake-primary")
            let message = try peer.receive()
            guard case .startStream(let start) = message else { throw ClusterError("expected StartStream, got \(String(describing: message))") }
            return (peer, start)
        }

        /// The follower's `last_error` (status document).
        var lastError: String { (try? StatusDocument(of: follower))?.object["last_error"] as? String ?? "" }

        func remove() {
            follower.shutdown()
            listener.close()
            try? source.close()
            scratch.remove()
        }
    }

    static func frame(_ batches: [Batch], written: LSN? = nil) throws -> [UInt8] {
        let last = written ?? batches.last!.lsnRange.last
        return try Message.batches(Message.Batches(writtenLSN: last, flushedLSN: .zero, timestamp: 0, batches: batches)).encodedFrame()
    }

    /// `frame` with its frame CRC computed again after a change (so only the inner checks can
    /// catch the change).
    static func resealed(_ frame: [UInt8]) -> [UInt8] {
        var bytes = frame
        let crc = CRC32C.checksum(Array(frame[16...]), continuing: CRC32C.checksum(Array(frame[0..<12])))
        withUnsafeBytes(of: crc.littleEndian) { raw in
            for index in 0..<4 { bytes[12 + index] = raw[index] }
        }
        return bytes
    }

    /// What the follower sent after the bad frame, and that it closed, told why, and stored
    /// nothing.
    func expectRefused(
        _ setup: Setup, _ peer: RawPeer, _ what: String, lastErrorBefore: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let (messages, end) = peer.receiveUntilEnd()
        #expect(end != .stillOpen, "\(what): the follower kept the connection", sourceLocation: sourceLocation)
        let errors = messages.compactMap { message -> Message.Failure? in
            if case .error(let failure) = message { return failure }
            return nil
        }
        #expect(
            errors.count == 1 && errors.first?.reason == .protocolViolation && errors.first?.text.isEmpty == false,
            "\(what): expected one Error protocolViolation with a reason, got \(messages)", sourceLocation: sourceLocation)
        #expect(setup.follower.host?.log.writtenLSN == .zero, "\(what): the follower stored something", sourceLocation: sourceLocation)
        let said = eventually(within: .seconds(2)) { !setup.lastError.isEmpty && setup.lastError != lastErrorBefore }
        #expect(said, "\(what): the follower's status does not say what went wrong", sourceLocation: sourceLocation)
    }

    @Test func batchWhosePayloadChecksumFailsIsNeverStored() throws {
        let setup = try Setup()
        defer { setup.remove() }
        let (peer, start) = try setup.acceptStream()
        #expect(start.fromLSN == .first)
        var frame = try Self.frame(Array(setup.batches[0...1]))
        frame[frame.count - 1] ^= 0x01  // the last payload byte of batch 2
        try peer.send(bytes: Self.resealed(frame))
        expectRefused(setup, peer, "a damaged batch payload", lastErrorBefore: "")
        // The follower comes back and accepts the intact stream.
        let (again, restart) = try setup.acceptStream()
        #expect(restart.fromLSN == .first)
        try again.send(bytes: Self.frame(setup.batches))
        #expect(eventually(within: .seconds(5)) { setup.follower.host?.log.durableLSN == LSN(6) })
        #expect(contents(of: setup.follower).count == 6)
    }

    @Test func batchesThatDoNotContinueTheLogAreRefused() throws {
        let setup = try Setup()
        defer { setup.remove() }
        // Another log whose first batch has the same LSN but other contents (another chain).
        let other = try Log.open(directory: FilePath(setup.scratch.path + "/other"))
        defer { try? other.close() }
        _ = try other.append(putRecord("z", "26"))
        var builder = BatchBuilder()
        try builder.append(putRecord("y", "25"))
        try builder.append(putRecord("x", "24"))
        _ = try other.append(builder)
        var cursor = other.batches(from: LSN(2))
        let foreign = try #require(try cursor.next())
        let cases: [(String, [UInt8])] = [
            ("a gap: LSN 2 ... 3 first", try Self.frame([setup.batches[1]])),
            ("LSN 1, then a batch of another chain at LSN 2 ... 3", try Self.frame([setup.batches[0]]) + Self.frame([foreign])),
            ("LSN 1 twice", try Self.frame([setup.batches[0]]) + Self.frame([setup.batches[0]])),
        ]
        for (what, bytes) in cases {
            let (peer, _) = try setup.acceptStream()
            try peer.send(bytes: bytes)
            let (messages, end) = peer.receiveUntilEnd()
            #expect(end != .stillOpen, "\(what)")
            #expect(
                messages.contains { if case .error(let f) = $0 { f.reason == .protocolViolation && !f.text.isEmpty } else { false } },
                "\(what): no Error protocolViolation in \(messages)")
            // Only what continued the log may have been stored: LSN 1 at most.
            let written = setup.follower.host?.log.writtenLSN ?? .zero
            #expect(written <= LSN(1), "\(what): the follower stored up to \(written)")
            if written == LSN(1) {
                #expect(try setup.follower.host?.log.batchCRC(endingAt: LSN(1)) == setup.batches[0].header.batchCRC)
            }
        }
    }

    @Test func invalidFramesFromThePrimaryAreRefusedFromTheHeader() throws {
        let setup = try Setup()
        defer { setup.remove() }
        // A header claiming 2 GiB, after authentication (the limit is then about 16 MiB).
        var (peer, _) = try setup.acceptStream()
        try peer.send(bytes: RawPeer.frameHeader(type: MessageType.batches.rawValue, payloadLength: 2 << 30))
        expectRefused(setup, peer, "a Batches header claiming 2 GiB", lastErrorBefore: "")
        // A frame whose CRC does not match.
        (peer, _) = try setup.acceptStream()
        var frame = try Self.frame([setup.batches[0]])
        frame[20] ^= 0x40
        var before = setup.lastError
        try peer.send(bytes: frame)
        expectRefused(setup, peer, "a Batches frame with a wrong frame CRC", lastErrorBefore: before)
        // A client's message on a replication stream.
        (peer, _) = try setup.acceptStream()
        before = setup.lastError
        try peer.send(.appendRequest(Message.AppendRequest(requestID: 1, commitLevel: .local, records: [putRecord("q", "1")])))
        expectRefused(setup, peer, "an AppendRequest from the primary", lastErrorBefore: before)
    }

    @Test func primaryWithoutTheSecretIsRefusedAuthFailed() throws {
        let setup = try Setup()
        defer { setup.remove() }
        let peer = try RawPeer(connection: setup.listener.accept(), receiveTimeout: .seconds(5))
        let first = try peer.receive()
        guard case .hello(let hello) = first else {
            Issue.record("expected Hello, got \(String(describing: first))")
            return
        }
        #expect(hello.role == .follower && hello.nodeID == "victim")
        try peer.send(
            .helloAck(
                Message.HelloAck(
                    version: ProtocolVersion.v1, nodeID: "fake-primary", role: .primary, epoch: .initial, lastLSN: .zero, lastBatchCRC: 0,
                    nonce: peer.nonce.bytes)))
        guard case .authProof = try peer.receive() else {
            Issue.record("expected the follower's AuthProof")
            return
        }
        try peer.send(
            .authProof(
                Message.AuthProof(
                    proof: Authentication.proof(
                        secret: wrongSecret, role: .primary, ownNonce: peer.nonce, peerNonce: try #require(Nonce(bytes: hello.nonce)),
                        clusterID: Array("shiplog".utf8), nodeID: Array("fake-primary".utf8)))))
        // Stream data right behind the proof: must never be stored.
        try peer.send(bytes: Self.frame(setup.batches))
        let (messages, end) = peer.receiveUntilEnd()
        #expect(end != .stillOpen)
        #expect(
            messages.contains { if case .refuse(let f) = $0 { f.reason == .authFailed && !f.text.isEmpty } else { false } },
            "expected Refuse authFailed, got \(messages)")
        #expect(!messages.contains { if case .startStream = $0 { true } else { false } }, "the follower asked an unauthenticated primary for a stream")
        #expect(setup.follower.host?.log.writtenLSN == .zero)
    }
}
