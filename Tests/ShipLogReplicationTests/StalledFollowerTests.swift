import Foundation
import ShipLog
import ShipLogProtocol
@testable import ShipLogReplication
import ShipLogTestSupport
import Testing

/// A follower that asks for the stream and then never reads must cost the primary a bounded
/// window of memory (docs/PROTOCOL.md 7.5), must not slow down the followers that keep up, and
/// must be disconnected after the replication timeout.
@Suite(.serialized) struct StalledFollowerTests {
    /// Megabytes appended while the stalled follower hangs on (`SHIPLOG_STALL_MB` to change).
    static let appendedMegabytes = ProcessInfo.processInfo.environment["SHIPLOG_STALL_MB"].flatMap(Int.init) ?? 200
    static let recordBytes = 64 << 10
    static let recordsPerAppend = 16
    static let windowBytes = 1 << 20
    static let replicationTimeout: Duration = .seconds(2)
    static let keepaliveInterval: Duration = .milliseconds(200)
    /// Resident memory the process may gain while the data passes through the primary: about
    /// 15 MiB when this suite runs alone, 40 MiB next to the other replication suites (the
    /// whole process is measured). A primary that queued the stream for the stalled follower
    /// would gain the whole volume (200 MB).
    static let residentGrowthMaxBytes = 96 << 20

    @Test func stalledFollowerCostsABoundedWindowAndIsDisconnectedWhileTheOthersKeepUp() throws {
        let cluster = try TestCluster("stalled", followers: 1) { node in
            var options = ReplicationOptions(nodeID: node, secret: testSecret)
            options.followerWindowBytes = Self.windowBytes
            options.replicationTimeout = Self.replicationTimeout
            options.keepaliveInterval = Self.keepaliveInterval
            return options
        }
        defer { cluster.remove() }
        let primary = cluster.primary!
        let pool = noiseBytes(4 << 20, seed: 11)
        let client = try cluster.client()
        defer { client.close() }
        func blobs(_ index: Int) throws -> [[UInt8]] {
            // Incompressible values under a few keys, overwritten: the state stays small, the
            // log and the stream carry every byte.
            try (0..<Self.recordsPerAppend).map { record in
                let offset = ((index * Self.recordsPerAppend + record) * 4099) % (pool.count - Self.recordBytes)
                var batch = WriteBatch()
                batch.put(Array("blob-\(record)".utf8), Array(pool[offset..<(offset + Self.recordBytes)]))
                return try batch.encodedRecord()
            }
        }
        // More to ship than the window before the stalled follower connects.
        for index in 0..<8 { _ = try client.append(try blobs(100_000 + index), level: .flush(followers: 1)) }

        let baseline = ProcessProbe.residentBytes()
        let peak = Outcome<Int>()
        let sampling = Outcome<Bool>()
        let sampler = OwnedThread.start(name: "test-rss") {
            var highest = baseline
            while sampling.value == nil {
                highest = max(highest, ProcessProbe.residentBytes())
                peak.set(highest)
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
        // The stalled follower: connects, asks for everything, never reads; when the primary
        // drops it, it comes back and stalls again. Each stall's length is recorded.
        let stalls = StallLog()
        let endpoint = primary.listenEndpoint!
        let staller = OwnedThread.start(name: "test-staller") {
            while !stalls.stopping {
                do {
                    let peer = try RawPeer(connectingTo: endpoint, receiveTimeout: .seconds(30))
                    try peer.authenticate(role: .follower, nodeID: "stalled")
                    try peer.send(.startStream(Message.StartStream(fromLSN: .first)))
                    let started = ContinuousClock.now
                    _ = eventually(within: .seconds(2)) { Self.isConnected("stalled", on: primary) == true }
                    let dropped = eventually(within: .seconds(30)) { stalls.stopping || Self.isConnected("stalled", on: primary) == false }
                    if dropped && !stalls.stopping {
                        stalls.record(ContinuousClock.now - started)
                        // What the primary sent it in all, now that it reads at last.
                        let shipped = peer.receiveUntilEnd().messages.reduce(0) { total, message in
                            guard case .batches(let m) = message else { return total }
                            return total + m.batches.reduce(0) { $0 + $1.bytes.count }
                        }
                        stalls.shipped(shipped)
                    }
                    peer.connection.close()
                } catch {
                    stalls.fail("\(error)")
                    Thread.sleep(forTimeInterval: 0.1)
                }
            }
        }

        var latencies: [Duration] = []
        let appends = Self.appendedMegabytes << 20 / (Self.recordBytes * Self.recordsPerAppend)
        var failures: [String] = []
        for index in 0..<appends {
            let records = try blobs(index)
            let started = ContinuousClock.now
            do {
                _ = try client.append(records, level: .flush(followers: 1), timeout: .seconds(10))
            } catch {
                failures.append("append \(index): \(error)")
            }
            latencies.append(ContinuousClock.now - started)
        }
        // The appends may outrun one replication timeout: let the stall run until the primary
        // has dropped the stalled follower at least once.
        _ = eventually(within: Self.replicationTimeout * 5) { !stalls.durations.isEmpty }
        stalls.stop()
        staller.join()
        sampling.set(true)
        sampler.join()

        let growth = (peak.value ?? baseline) - baseline
        latencies.sort()
        let median = latencies[latencies.count / 2]
        let slowest = latencies.last ?? .zero
        print(
            "stalled follower: \(appends) appends of \(Self.recordsPerAppend * Self.recordBytes >> 10) KiB, resident +\(growth >> 20) MiB at peak, "
                + "append latency p50 \(median), max \(slowest), stalls \(stalls.durations) shipping \(stalls.shippedBytes) bytes, errors \(stalls.errors)")
        #expect(failures.isEmpty, "flush:1 appends failed while a follower was stalled: \(failures.prefix(3))")
        #expect(
            growth < Self.residentGrowthMaxBytes,
            "the primary's process grew by \(growth >> 20) MiB while \(Self.appendedMegabytes) MB passed a follower window of \(Self.windowBytes >> 20) MiB")
        #expect(slowest < .seconds(5), "a flush:1 append took \(slowest) while another follower was stalled")
        #expect(!stalls.durations.isEmpty, "the stalled follower was never disconnected (\(stalls.errors))")
        // Nothing acknowledged: the primary sends one frame (at most the window) and waits.
        for shipped in stalls.shippedBytes {
            #expect(shipped <= Self.windowBytes + (64 << 10), "the primary shipped \(shipped) bytes to a follower that acknowledged none, window \(Self.windowBytes)")
        }
        for stall in stalls.durations {
            #expect(
                stall >= Self.replicationTimeout - .milliseconds(300) && stall < Self.replicationTimeout * 3,
                "a stalled follower was disconnected after \(stall), replicationTimeout \(Self.replicationTimeout)")
        }
        try cluster.waitForFollowers(timeout: .seconds(60))
        #expect(cluster.followers[0].host!.log.writtenLSN == primary.host!.log.writtenLSN)
    }

    /// A client that pipelines reads of 1 MiB and never reads the answers: the primary queues
    /// at most `clientOutboundBytesMax` for it, stops reading its requests, keeps serving
    /// others, and drops it once a send has made no progress for the replication timeout.
    @Test func clientThatNeverReadsItsAnswersCostsABoundedQueueAndIsDropped() throws {
        let cluster = try TestCluster("deaf-client", followers: 1) { node in
            var options = ReplicationOptions(nodeID: node, secret: testSecret)
            options.replicationTimeout = Self.replicationTimeout
            options.keepaliveInterval = Self.keepaliveInterval
            return options
        }
        defer { cluster.remove() }
        let primary = cluster.primary!
        let pool = noiseBytes(1 << 20, seed: 5)
        let client = try cluster.client()
        defer { client.close() }
        for index in 0..<2 {
            let records = try (0..<16).map { record in
                var batch = WriteBatch()
                batch.put(Array("blob-\(index)-\(record)".utf8), Array(pool[(record << 16)..<((record + 1) << 16)]))
                return try batch.encodedRecord()
            }
            _ = try client.append(records, level: .flush(followers: 1))
        }
        let baselineConnections = primary.lock.withLock { primary.connections.count }
        let baseline = ProcessProbe.residentBytes()
        let deaf = try RawPeer(connectingTo: primary.listenEndpoint!)
        try deaf.authenticate(role: .client, nodeID: "deaf")
        let requests = 400
        let started = ContinuousClock.now
        for id in 1...UInt64(requests) {
            // A sender blocked by a full socket is what a real deaf client meets; stop there.
            do { try deaf.send(.readRequest(Message.ReadRequest(requestID: id, fromLSN: .first, maxBytes: 1 << 20))) } catch { break }
            if ContinuousClock.now - started > .seconds(1) { break }
        }
        var peak = baseline
        let dropped = eventually(within: Self.replicationTimeout * 4) {
            peak = max(peak, ProcessProbe.residentBytes())
            return primary.lock.withLock { primary.connections.count } <= baselineConnections
        }
        // Others are served meanwhile and after.
        _ = try client.append([putRecord("after", "deaf client")], level: .flush(followers: 1), timeout: .seconds(5))
        let growth = peak - baseline
        print("deaf client: resident +\(growth >> 20) MiB at peak, dropped \(dropped) after \(ContinuousClock.now - started)")
        #expect(dropped, "a client that reads nothing was still connected \(Self.replicationTimeout * 4) later")
        // The queue holds up to clientOutboundBytesMax; the sending thread joins what it takes
        // into one buffer, a copy of as much again (measured: +72 MiB alone, +131 MiB next to
        // other suites). Without the limit, 400 MiB of answers would pile up.
        #expect(
            growth < 2 * ReplicationLimits.clientOutboundBytesMax + (48 << 20),
            "the primary's process grew by \(growth >> 20) MiB for a client that reads nothing (queue limit \(ReplicationLimits.clientOutboundBytesMax >> 20) MiB)")
    }

    /// Whether `nodeID` streams from `primary` now, as its status document says; nil when absent.
    static func isConnected(_ nodeID: String, on primary: KVNode) -> Bool? {
        (try? StatusDocument(of: primary))?.follower(nodeID)?["connected"] as? Bool
    }
}

/// What the stalling thread saw.
final class StallLog: @unchecked Sendable {
    // @unchecked: every var is guarded by `lock`.
    private let lock = NSLock()
    private var stopped = false
    private var stalls: [Duration] = []
    private var failures: [String] = []
    private var shippedPerStall: [Int] = []

    var stopping: Bool { lock.withLock { stopped } }
    var durations: [Duration] { lock.withLock { stalls } }
    var errors: [String] { lock.withLock { failures } }
    var shippedBytes: [Int] { lock.withLock { shippedPerStall } }

    func stop() { lock.withLock { stopped = true } }
    func record(_ stall: Duration) { lock.withLock { stalls.append(stall) } }
    func fail(_ error: String) { lock.withLock { failures.append(error) } }
    func shipped(_ bytes: Int) { lock.withLock { shippedPerStall.append(bytes) } }
}
