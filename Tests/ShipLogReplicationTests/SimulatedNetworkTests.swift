#if canImport(Glibc)
import Glibc
#endif
import ShipLogStorage
import Testing
import ShipLogReplication
import ShipLogTestSupport

@Suite struct SimulatedNetworkTests {
    let nodeB = Endpoint(host: "node-b", port: 7)

    /// A connected pair from node-a to node-b.
    func connectedPair(_ network: SimulatedNetwork) throws(TransportError)
        -> (client: SimulatedConnection, server: SimulatedConnection, listener: any Listener)
    {
        let listener = try network.listen(on: nodeB)
        let client = try network.host("node-a").connect(to: nodeB, timeout: .seconds(5))
        let server = try listener.accept()
        return (client as! SimulatedConnection, server as! SimulatedConnection, listener)
    }

    // MARK: Behaviour shared with TCP

    @Test func echoRoundTripReturnsTheSameBytes() throws {
        let network = SimulatedNetwork(seed: 1)
        let listener = try network.listen(on: nodeB)
        defer { listener.close() }
        let server = TransportTesting.Background { TransportTesting.echo(try listener.accept()) }
        let client = try network.host("node-a").connect(to: nodeB, timeout: .seconds(5))
        #expect(client.peer == "node-b:7")
        let message = Array("hello, follower".utf8)
        try client.send(message)
        #expect(try TransportTesting.receive(message.count, from: client) == message)
        client.close()
        _ = server.value()
        #expect(network.log.isEmpty)
    }

    @Test func serverSeesTheClientHostAsItsPeer() throws {
        let (client, server, listener) = try connectedPair(SimulatedNetwork())
        defer { listener.close() }
        #expect(server.peer.hasPrefix("node-a:"))
        #expect(client.id == server.id)
        #expect(client.side == .client && server.side == .server)
    }

    @Test func peerClosingIsReportedAsZeroBytesAfterItsData() throws {
        let (client, server, listener) = try connectedPair(SimulatedNetwork())
        defer { listener.close() }
        try client.send([1, 2, 3])
        client.close()
        #expect(try TransportTesting.receive(4, from: server) == [1, 2, 3])
        #expect(try TransportTesting.receive(1, from: server) == [])
        // The closed side's peer cannot send any more.
        #expect(TransportTesting.error { try server.send([1]) }
            == .failed(peer: server.peer, operation: "send", errno: EPIPE))
    }

    @Test func listenOnATakenEndpointFailsWithEADDRINUSEAndPortZeroPicksAFreePort() throws {
        let network = SimulatedNetwork()
        let listener = try network.listen(on: nodeB)
        defer { listener.close() }
        #expect(TransportTesting.error { _ = try network.listen(on: nodeB) }
            == .listenFailed(nodeB, errno: EADDRINUSE))
        let first = try network.listen(on: Endpoint(host: "node-b", port: 0))
        let second = try network.listen(on: Endpoint(host: "node-b", port: 0))
        #expect(first.endpoint.port != 0 && second.endpoint.port != 0 && first.endpoint != second.endpoint)
        first.close()
        second.close()
        // Closed listeners free their endpoint.
        listener.close()
        try network.listen(on: nodeB).close()
    }

    @Test func connectWithNobodyListeningFailsWithECONNREFUSED() {
        let network = SimulatedNetwork()
        #expect(TransportTesting.error { _ = try network.connect(to: nodeB, timeout: .seconds(1)) }
            == .connectFailed(nodeB, errno: ECONNREFUSED))
    }

    @Test func receiveWithNothingArrivingTimesOutAndTheConnectionStaysUsable() throws {
        let (client, server, listener) = try connectedPair(SimulatedNetwork())
        defer { listener.close() }
        client.setTimeouts(receive: .milliseconds(50), send: nil)
        let started = ConditionLock.monotonicNanoseconds()
        #expect(TransportTesting.error { _ = try TransportTesting.receive(1, from: client) }
            == .timedOut(operation: "receive", peer: client.peer))
        #expect(ConditionLock.monotonicNanoseconds() - started >= 50_000_000)
        try server.send([5])
        #expect(try TransportTesting.receive(1, from: client) == [5])
    }

    @Test func sendToAPeerThatStoppedReadingTimesOut() throws {
        let (client, server, listener) = try connectedPair(SimulatedNetwork(queueCapacityBytes: 4096))
        defer { listener.close() }
        client.setTimeouts(receive: nil, send: .milliseconds(50))
        #expect(TransportTesting.error { try client.send([UInt8](repeating: 0, count: 10_000)) }
            == .timedOut(operation: "send", peer: client.peer))
        server.close()  // not before: a closed peer fails sends with EPIPE
    }

    @Test func closeFromAnotherThreadUnblocksABlockedReceiveSendAndAccept() throws {
        let network = SimulatedNetwork(queueCapacityBytes: 4096)
        let (client, server, listener) = try connectedPair(network)
        // The server never reads nor sends: the client's receive and send (beyond the
        // queue's capacity) both block.
        let receiving = TransportTesting.Background { _ = try TransportTesting.receive(1, from: client) }
        let sending = TransportTesting.Background { try client.send([UInt8](repeating: 0, count: 10_000)) }
        let accepting = TransportTesting.Background { _ = try listener.accept() }
        usleep(50_000)
        #expect(!receiving.isFinished && !sending.isFinished && !accepting.isFinished)
        client.close()
        listener.close()
        #expect(receiving.value().failure == .closed(peer: client.peer))
        #expect(sending.value().failure == .closed(peer: client.peer))
        #expect(accepting.value().failure == .closed(peer: nodeB.description))
        client.close()  // idempotent
        server.close()  // only now: closing the peer would end the client's calls with EPIPE/EOF
    }

    @Test func backpressureBlocksASenderAtCapacityAndReadsResumeIt() throws {
        let capacity = 64 << 10
        let (client, server, listener) = try connectedPair(SimulatedNetwork(queueCapacityBytes: capacity))
        defer { listener.close() }
        let payload = TransportTesting.pseudoRandomBytes(4 * capacity, seed: 3)
        let sending = TransportTesting.Background { try client.send(payload) }
        usleep(50_000)
        #expect(!sending.isFinished, "the send must block once \(capacity) bytes wait unread")
        let first = try TransportTesting.receive(capacity, from: server)
        let rest = try TransportTesting.receive(3 * capacity, from: server)
        #expect(try sending.value().get() == ())
        #expect(first + rest == payload)
    }

    // MARK: Faults

    @Test func cutAfterNBytesDeliversExactlyThoseThenECONNRESETBothWays() throws {
        let network = SimulatedNetwork()
        let (client, server, listener) = try connectedPair(network)
        defer { listener.close() }
        client.cut(afterSending: 1234)
        let payload = TransportTesting.pseudoRandomBytes(5000, seed: 9)
        #expect(TransportTesting.error { try client.send(payload) }
            == .failed(peer: client.peer, operation: "send", errno: ECONNRESET))
        #expect(TransportTesting.error { try server.send([1]) }
            == .failed(peer: server.peer, operation: "send", errno: ECONNRESET))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let error = TransportTesting.error {
            while true {
                let count = try TransportTesting.receive(into: &buffer, from: server)
                if count == 0 { break }
                received += buffer[..<count]
            }
        }
        #expect(received == Array(payload[..<1234]))
        #expect(error == .failed(peer: server.peer, operation: "receive", errno: ECONNRESET))
        #expect(network.log == ["seed 0: conn 1 node-a -> node-b:7: cut after 1234 bytes client->server by the test"])
    }

    @Test func staleBytesOfACutConnectionArriveAfterTheNewConnectionDelivered() throws {
        var plan = SimulatedNetwork.FaultPlan()
        plan.staleHoldMaximum = .seconds(30)
        let network = SimulatedNetwork(plan: plan)
        let nodeA = network.host("node-a")
        let (old, oldServer, listener) = try connectedPair(network)
        defer { listener.close() }
        old.cut(afterSending: 1000, deliveredStale: true)
        #expect(TransportTesting.error { try old.send([UInt8](repeating: 1, count: 2000)) }
            == .failed(peer: old.peer, operation: "send", errno: ECONNRESET))
        // Held: the old receiver sees nothing yet, not even the reset.
        oldServer.setTimeouts(receive: .milliseconds(30), send: nil)
        #expect(TransportTesting.error { _ = try TransportTesting.receive(1, from: oldServer) }
            == .timedOut(operation: "receive", peer: oldServer.peer))
        // The reconnect delivers first...
        let new = try nodeA.connect(to: nodeB, timeout: .seconds(1))
        let newServer = try listener.accept()
        try new.send([2, 2])
        #expect(try TransportTesting.receive(2, from: newServer) == [2, 2])
        // ...then the old stream's bytes and its end arrive.
        oldServer.setTimeouts(receive: nil, send: nil)
        #expect(try TransportTesting.receive(1000, from: oldServer) == [UInt8](repeating: 1, count: 1000))
        #expect(TransportTesting.error { _ = try TransportTesting.receive(1, from: oldServer) }
            == .failed(peer: oldServer.peer, operation: "receive", errno: ECONNRESET))
    }

    @Test func resetPartitionFailsConnectionsAndRefusesConnectsUntilHealed() throws {
        let network = SimulatedNetwork()
        let (client, server, listener) = try connectedPair(network)
        defer { listener.close() }
        let nodeC = try network.host("node-c").connect(to: nodeB, timeout: .seconds(1))
        let nodeCServer = try listener.accept()
        try client.send([1])
        network.partition("node-b", "node-a")
        #expect(TransportTesting.error { _ = try TransportTesting.receive(1, from: server) }
            == .failed(peer: server.peer, operation: "receive", errno: ECONNRESET))
        #expect(TransportTesting.error { try client.send([1]) }
            == .failed(peer: client.peer, operation: "send", errno: ECONNRESET))
        #expect(TransportTesting.error { _ = try network.host("node-a").connect(to: nodeB, timeout: .seconds(1)) }
            == .connectFailed(nodeB, errno: ECONNREFUSED))
        // Other hosts are not affected.
        try nodeC.send([3])
        #expect(try TransportTesting.receive(1, from: nodeCServer) == [3])
        network.heal("node-a", "node-b")
        _ = try network.host("node-a").connect(to: nodeB, timeout: .seconds(1))
        #expect(network.log == ["seed 0: partition node-a | node-b (reset)", "seed 0: heal node-a | node-b"])
    }

    @Test func silentPartitionHoldsBytesAndTimesOutConnectsUntilHealed() throws {
        let network = SimulatedNetwork()
        let (client, server, listener) = try connectedPair(network)
        defer { listener.close() }
        network.partition("node-a", "node-b", mode: .silent)
        try client.send([1, 2, 3])
        server.setTimeouts(receive: .milliseconds(30), send: nil)
        #expect(TransportTesting.error { _ = try TransportTesting.receive(1, from: server) }
            == .timedOut(operation: "receive", peer: server.peer))
        #expect(TransportTesting.error { _ = try network.host("node-a").connect(to: nodeB, timeout: .milliseconds(30)) }
            == .timedOut(operation: "connect", peer: nodeB.description))
        network.healAll()
        #expect(try TransportTesting.receive(3, from: server) == [1, 2, 3])
    }

    @Test func refuseFaultMakesTheListenerUnreachableForTheDrawnNumberOfAttempts() throws {
        var plan = SimulatedNetwork.FaultPlan()
        plan.refuseProbability = 1
        plan.refusedAttempts = 3...3
        let network = SimulatedNetwork(seed: 5, plan: plan)
        let listener = try network.listen(on: nodeB)
        defer { listener.close() }
        #expect(TransportTesting.error { _ = try network.connect(to: nodeB, timeout: .seconds(1)) }
            == .connectFailed(nodeB, errno: ECONNREFUSED))
        network.plan = .none
        for _ in 0..<2 {
            #expect(TransportTesting.error { _ = try network.connect(to: nodeB, timeout: .seconds(1)) }
                == .connectFailed(nodeB, errno: ECONNREFUSED))
        }
        _ = try network.connect(to: nodeB, timeout: .seconds(1))
        #expect(network.log == ["seed 5: connect client -> node-b:7 refused: unreachable for 3 attempt(s)"])
    }

    @Test func delayedChunksArriveInOrder() throws {
        var plan = SimulatedNetwork.FaultPlan()
        plan.delayProbability = 1
        plan.maximumDelay = .milliseconds(5)
        let (client, server, listener) = try connectedPair(SimulatedNetwork(seed: 2, plan: plan))
        defer { listener.close() }
        let payload = TransportTesting.pseudoRandomBytes(64 << 10, seed: 4)
        let sending = TransportTesting.Background {
            for start in stride(from: 0, to: payload.count, by: 1000) {
                try client.send(Array(payload[start..<min(start + 1000, payload.count)]))
            }
        }
        #expect(try TransportTesting.receive(payload.count, from: server) == payload)
        _ = sending.value()
    }

    // MARK: Seeded runs

    /// What one seeded run saw: the fault log and, per connection, the bytes sent and received
    /// in each direction.
    struct RunRecord: Equatable {
        var log: [String] = []
        var sentToServer: [Int: [UInt8]] = [:]
        var receivedByServer: [Int: [UInt8]] = [:]
        var receivedByClient: [Int: [UInt8]] = [:]
        /// Server-side deliveries in order, by connection id.
        var deliveryOrder: [Int] = []
        var connectAttempts = 0
    }

    /// A client on node-a that sends a counter sequence over `connections` successive
    /// connections (reconnecting after each cut) to a server on node-b that echoes it when
    /// `echo`; every side records what it sent and received per connection.
    func seededRun(seed: UInt64, plan: SimulatedNetwork.FaultPlan, echo: Bool, connections: Int = 24) throws -> RunRecord {
        let network = SimulatedNetwork(seed: seed, plan: plan, queueCapacityBytes: 16 << 10)
        let listener = try network.listen(on: nodeB)
        let record = Locked(RunRecord())
        let handlers = Locked<[OwnedThread]>([])
        let accepted = Locked<Set<Int>>([])
        let acceptor = OwnedThread.start(name: "acceptor") {
            while let connection = try? listener.accept() {
                let id = (connection as! SimulatedConnection).id
                accepted.withLock { _ = $0.insert(id) }
                let handler = OwnedThread.start(name: "echo-\(id)") {
                    var buffer = [UInt8](repeating: 0, count: 3000)
                    var echoing = echo
                    while true {
                        guard let count = try? TransportTesting.receive(into: &buffer, from: connection), count > 0 else { break }
                        let bytes = Array(buffer[..<count])
                        record.withLock {
                            $0.receivedByServer[id, default: []] += bytes
                            $0.deliveryOrder.append(id)
                        }
                        if echoing { echoing = (try? connection.send(bytes)) != nil }
                    }
                    connection.close()
                }
                handlers.withLock { $0.append(handler) }
            }
        }
        let client = network.host("node-a")
        var counter: UInt32 = 0
        var readers: [OwnedThread] = []
        var connected: Set<Int> = []
        for _ in 0..<connections {
            var connection: (any Connection)?
            while connection == nil {
                record.withLock { $0.connectAttempts += 1 }
                connection = try? client.connect(to: nodeB, timeout: .seconds(5))
            }
            let established = connection!
            let id = (established as! SimulatedConnection).id
            connected.insert(id)
            readers.append(
                OwnedThread.start(name: "reader-\(id)") {
                    while let bytes = try? TransportTesting.receive(1000, from: established), !bytes.isEmpty {
                        record.withLock { $0.receivedByClient[id, default: []] += bytes }
                    }
                })
            for _ in 0..<40 {
                var chunk: [UInt8] = []
                for _ in 0..<100 {
                    withUnsafeBytes(of: counter.littleEndian) { chunk += $0 }
                    counter += 1
                }
                record.withLock { $0.sentToServer[id, default: []] += chunk }
                if (try? established.send(chunk)) == nil { break }
            }
            established.close()
        }
        for reader in readers { reader.join() }
        // Closing the listener drops connections not yet accepted: wait for every one the
        // client made, or the server's record would depend on the acceptor's timing.
        let deadline = ContinuousClock.now + .seconds(10)
        while !accepted.withLock({ connected.isSubset(of: $0) }) && ContinuousClock.now < deadline { usleep(1000) }
        listener.close()
        acceptor.join()
        for handler in handlers.withLock({ $0 }) { handler.join() }
        var result = record.withLock { $0 }
        result.log = network.log
        return result
    }

    /// Every received stream must be a prefix of what was sent on that very connection: no
    /// byte reordered, duplicated, or taken from another connection.
    func expectStreamsArePrefixes(_ run: RunRecord, seed: UInt64) {
        let faults = run.log.joined(separator: "\n")
        for (id, received) in run.receivedByServer {
            let sent = run.sentToServer[id] ?? []
            #expect(received.count <= sent.count && Array(sent[..<received.count]) == received,
                "seed \(seed): conn \(id) server received \(received.count) bytes, not a prefix of the \(sent.count) sent\n\(faults)")
        }
        for (id, received) in run.receivedByClient {
            let echoed = run.receivedByServer[id] ?? []
            #expect(received.count <= echoed.count && Array(echoed[..<received.count]) == received,
                "seed \(seed): conn \(id) client got back \(received.count) bytes, not a prefix of the \(echoed.count) echoed\n\(faults)")
        }
    }

    static var hostilePlan: SimulatedNetwork.FaultPlan {
        var plan = SimulatedNetwork.FaultPlan.hostile
        plan.dropOffsets = 0...20_000
        plan.staleHoldMaximum = .milliseconds(200)
        plan.maximumDelay = .microseconds(500)
        return plan
    }

    @Test func sameSeedInjectsTheSameFaultsAtTheSameByteOffsets() throws {
        // Without echo only client->server cuts fire, at offsets fixed by the seed, so what the
        // server receives does not depend on thread timing.
        let plan = Self.hostilePlan
        let first = try seededRun(seed: 42, plan: plan, echo: false)
        let second = try seededRun(seed: 42, plan: plan, echo: false)
        #expect(!first.log.isEmpty)
        #expect(first.log == second.log)
        #expect(first.connectAttempts == second.connectAttempts)
        #expect(first.receivedByServer.mapValues(\.count) == second.receivedByServer.mapValues(\.count))
        let other = try seededRun(seed: 43, plan: plan, echo: false)
        #expect(other.log != first.log)
    }

    @Test(arguments: [UInt64(1), 2, 3, 4])
    func streamsAreNeverReorderedOrDuplicatedAcrossCutsAndReconnects(seed: UInt64) throws {
        let run = try seededRun(seed: seed, plan: Self.hostilePlan, echo: true)
        expectStreamsArePrefixes(run, seed: seed)
        #expect(run.log.contains { $0.contains("drop after") })
        var newestSeen = 0
        var staleDeliveries = 0
        for id in run.deliveryOrder {
            if id < newestSeen { staleDeliveries += 1 }
            newestSeen = max(newestSeen, id)
        }
        print("seed \(seed): \(run.log.count) faults, \(staleDeliveries) reads on a connection older than one read before")
    }
}
