import Foundation
import ShipLog
import ShipLogProtocol
import ShipLogReplication
import Testing

/// A scratch directory under /tmp, removed with everything in it by `remove()`.
struct ScratchDirectory {
    let path: String

    init(_ label: String) {
        path = NSTemporaryDirectory() + "shiplog-\(label)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

let testSecret = try! SharedSecret(bytes: Array(repeating: 0x5A, count: 32))

typealias KVNode = ReplicaNode<KeyValueStateMachine>

/// A primary and followers in this process, over loopback TCP (or another network).
final class TestCluster: @unchecked Sendable {
    let scratch: ScratchDirectory
    let network: any Network
    var primary: KVNode!
    var followers: [KVNode] = []
    var options: (String) -> ReplicationOptions
    var machineOptions: StateMachineOptions

    init(
        _ label: String, followers count: Int, network: any Network = TCPNetwork(),
        machineOptions: StateMachineOptions = TestCluster.defaultMachineOptions(),
        options: @escaping (String) -> ReplicationOptions = { ReplicationOptions(nodeID: $0, secret: testSecret) }
    ) throws {
        scratch = ScratchDirectory(label)
        self.network = network
        self.options = options
        self.machineOptions = machineOptions
        primary = try startPrimary()
        for index in 0..<count { followers.append(try startFollower(index)) }
        try waitForConnections(count)
    }

    /// Waits until `count` followers stream from the primary.
    func waitForConnections(_ count: Int, timeout: Duration = .seconds(20)) throws {
        let deadline = ContinuousClock.now + timeout
        while primary.connectedFollowerCount < count {
            guard ContinuousClock.now < deadline else {
                throw ClusterError("\(primary.connectedFollowerCount) of \(count) followers connected after \(timeout)")
            }
            Thread.sleep(forTimeInterval: 0.005)
        }
    }

    static func defaultMachineOptions() -> StateMachineOptions {
        var options = StateMachineOptions()
        options.log.segmentBytesMax = 1 << 20
        options.checkpointIntervalBytes = nil
        return options
    }

    func directory(_ name: String) -> FilePath { FilePath(scratch.path + "/" + name) }

    func startPrimary() throws -> KVNode {
        try KVNode(
            directory: directory("primary"), role: .primary, listen: Endpoint(host: "127.0.0.1", port: 0),
            options: options("primary"), stateMachineOptions: machineOptions, network: network
        ) { KeyValueStateMachine() }
    }

    func startFollower(_ index: Int) throws -> KVNode {
        try KVNode(
            directory: directory("follower-\(index)"), role: .follower(primary: primary.listenEndpoint!),
            listen: Endpoint(host: "127.0.0.1", port: 0), options: options("follower-\(index)"),
            stateMachineOptions: machineOptions, network: network
        ) { KeyValueStateMachine() }
    }

    func client(_ node: KVNode? = nil) throws -> ReplicationClient {
        var options = ClientOptions(nodeID: "test-client", secret: testSecret)
        options.responseTimeout = .seconds(30)
        return try ReplicationClient(connectingTo: (node ?? primary).listenEndpoint!, options: options, network: network)
    }

    /// Waits until every follower has applied (and made durable) everything the primary wrote.
    func waitForFollowers(timeout: Duration = .seconds(20)) throws {
        let deadline = ContinuousClock.now + timeout
        let target = primary.host!.log.writtenLSN
        while ContinuousClock.now < deadline {
            if followers.allSatisfy({ ($0.host?.appliedLSN ?? .zero) >= target && ($0.host?.log.durableLSN ?? .zero) >= target }) {
                return
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        let positions = followers.map { "\($0.host?.appliedLSN ?? .zero)/\($0.host?.log.durableLSN ?? .zero)" }
        throw ClusterError("followers did not catch up with LSN \(target) in \(timeout): applied/durable \(positions)")
    }

    func shutdown() {
        for follower in followers { follower.shutdown() }
        primary?.shutdown()
    }

    func remove() {
        shutdown()
        scratch.remove()
    }

    /// Every segment file of `a` and `b`, compared byte for byte.
    static func segmentsDiffer(_ a: FilePath, _ b: FilePath) -> String? {
        let fm = FileManager.default
        let namesA = ((try? fm.contentsOfDirectory(atPath: a.string)) ?? []).filter { $0.hasSuffix(".seg") }.sorted()
        let namesB = ((try? fm.contentsOfDirectory(atPath: b.string)) ?? []).filter { $0.hasSuffix(".seg") }.sorted()
        guard namesA == namesB else { return "segments differ: \(namesA) vs \(namesB)" }
        guard !namesA.isEmpty else { return "no segments" }
        for name in namesA {
            let dataA = fm.contents(atPath: a.string + "/" + name)
            let dataB = fm.contents(atPath: b.string + "/" + name)
            guard let dataA, let dataB else { return "\(name) unreadable" }
            if dataA != dataB {
                let offset = zip(dataA, dataB).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(dataA.count, dataB.count)
                return "\(name) differs at byte \(offset) (sizes \(dataA.count), \(dataB.count))"
            }
        }
        return nil
    }
}

struct ClusterError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The key-value contents of a node.
func contents(of node: KVNode) -> [[UInt8]: [UInt8]] {
    node.host!.withMachine { machine, _ in
        var all: [[UInt8]: [UInt8]] = [:]
        for (key, value) in machine.tree { all[key] = value }
        return all
    }
}

/// A record putting `key` = `value`.
func putRecord(_ key: String, _ value: String) -> [UInt8] {
    var batch = WriteBatch()
    batch.put(Array(key.utf8), Array(value.utf8))
    return try! batch.encodedRecord()
}
