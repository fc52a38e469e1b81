import Glibc
import ShipLogReplication
import Testing

@testable import ShipLogFailover

/// The persistent compare-and-set record (`P/<name>`, the term record) against real etcd and
/// ZooKeeper servers (started by CoordinationServers), each test under a prefix of its own.
@Suite(.enabled(if: !ServerBinaries.anyMissing, "\(ServerBinaries.skipMessage)"))
struct RecordTests {
    static let backends = ElectionConfig.Backend.allCases
    static let name = "term"

    /// A service on the shared server of `backend`, under `prefix`.
    static func service(_ backend: ElectionConfig.Backend, prefix: String) throws -> any CoordinationService {
        try makeCoordinationService(TestServer.shared(backend).url(prefix: prefix), ttl: ElectionTests.ttl)
    }

    /// Runs `body` on a thread of its own with two services under one new prefix, and closes them.
    static func withTwoServices(
        _ backend: ElectionConfig.Backend, test: String = #function,
        _ body: @escaping @Sendable (any CoordinationService, any CoordinationService) throws -> Void
    ) async throws {
        let prefix = uniquePrefix(test)
        try await onOwnedThread {
            let a = try Self.service(backend, prefix: prefix)
            let b = try Self.service(backend, prefix: prefix)
            defer { a.close(); b.close() }
            try body(a, b)
        }
    }

    @Test("an absent record reads nil, and only the first create-if-absent creates it", arguments: backends)
    func secondCreateIfAbsentDoesNotOverwrite(_ backend: ElectionConfig.Backend) async throws {
        try await Self.withTwoServices(backend) { a, b in
            #expect(try a.readRecord(Self.name) == nil)
            let version = try #require(try a.compareAndSetRecord(Self.name, value: Array("epoch=1".utf8), expectedVersion: nil))
            #expect(try b.compareAndSetRecord(Self.name, value: Array("epoch=9".utf8), expectedVersion: nil) == nil)
            #expect(try a.compareAndSetRecord(Self.name, value: Array("epoch=9".utf8), expectedVersion: nil) == nil, "by the creator itself")
            #expect(try b.readRecord(Self.name) == VersionedValue(value: Array("epoch=1".utf8), version: version))
        }
    }

    @Test("a compare-and-set naming the current version writes and returns a new version", arguments: backends)
    func compareAndSetWithCurrentVersionWrites(_ backend: ElectionConfig.Backend) async throws {
        try await Self.withTwoServices(backend) { a, b in
            let first = try #require(try a.compareAndSetRecord(Self.name, value: [1], expectedVersion: nil))
            let second = try #require(try b.compareAndSetRecord(Self.name, value: [2, 2], expectedVersion: first))
            #expect(second != first)
            #expect(try a.readRecord(Self.name) == VersionedValue(value: [2, 2], version: second))
            let third = try #require(try a.compareAndSetRecord(Self.name, value: [], expectedVersion: second), "an empty value")
            #expect(Set([first, second, third]).count == 3)
            #expect(try b.readRecord(Self.name) == VersionedValue(value: [], version: third))
            let largest = [UInt8](repeating: 0x5A, count: CoordinationLimits.valueBytesMax)
            let fourth = try #require(try b.compareAndSetRecord(Self.name, value: largest, expectedVersion: third), "the largest value")
            #expect(try a.readRecord(Self.name) == VersionedValue(value: largest, version: fourth))
        }
    }

    @Test("a compare-and-set naming a stale version writes nothing", arguments: backends)
    func compareAndSetWithStaleVersionWritesNothing(_ backend: ElectionConfig.Backend) async throws {
        try await Self.withTwoServices(backend) { a, b in
            let first = try #require(try a.compareAndSetRecord(Self.name, value: Array("a".utf8), expectedVersion: nil))
            let second = try #require(try b.compareAndSetRecord(Self.name, value: Array("b".utf8), expectedVersion: first))
            #expect(try a.compareAndSetRecord(Self.name, value: Array("stale".utf8), expectedVersion: first) == nil)
            #expect(try a.compareAndSetRecord(Self.name, value: Array("made up".utf8), expectedVersion: second + 1000) == nil)
            #expect(try a.readRecord(Self.name) == VersionedValue(value: Array("b".utf8), version: second))
        }
    }

    @Test("a compare-and-set naming a version of an absent record creates nothing", arguments: backends)
    func compareAndSetOnAbsentRecordCreatesNothing(_ backend: ElectionConfig.Backend) async throws {
        try await onOwnedThread {
            let a = try Self.service(backend, prefix: uniquePrefix())
            defer { a.close() }
            // 0 is ZooKeeper's first version, and an etcd compare with mod revision 0 matches an absent key.
            for version: Int64 in [0, 1, 7, Int64(Int32.max) + 1] {
                #expect(try a.compareAndSetRecord(Self.name, value: [1], expectedVersion: version) == nil, "version \(version)")
            }
            #expect(try a.readRecord(Self.name) == nil)
        }
    }

    @Test("of writers racing from the same version exactly one wins", arguments: backends)
    func racingWritersHaveOneWinner(_ backend: ElectionConfig.Backend) async throws {
        let prefix = uniquePrefix()
        let start = try await onOwnedThread {
            let setup = try Self.service(backend, prefix: prefix)
            defer { setup.close() }
            return try #require(try setup.compareAndSetRecord(Self.name, value: [0], expectedVersion: nil))
        }
        let writers = 4
        let wins = try await withThrowingTaskGroup(of: (UInt8, Int64?).self) { group in
            for writer in 1...UInt8(writers) {
                group.addTask {
                    try await onOwnedThread {
                        let service = try Self.service(backend, prefix: prefix)
                        defer { service.close() }
                        return (writer, try service.compareAndSetRecord(Self.name, value: [writer], expectedVersion: start))
                    }
                }
            }
            var wins: [(writer: UInt8, version: Int64)] = []
            for try await (writer, version) in group {
                if let version { wins.append((writer, version)) }
            }
            return wins
        }
        #expect(wins.count == 1, "\(wins.count) of \(writers) writers won")
        let record = try await onOwnedThread {
            let reader = try Self.service(backend, prefix: prefix)
            defer { reader.close() }
            return try reader.readRecord(Self.name)
        }
        if let win = wins.first {
            #expect(record == VersionedValue(value: [win.writer], version: win.version))
        }
    }

    @Test("the record outlives the service that wrote it and every lease and session", arguments: backends)
    func recordOutlivesItsWriter(_ backend: ElectionConfig.Backend) async throws {
        try await onOwnedThread {
            let prefix = uniquePrefix()
            let writer = try Self.service(backend, prefix: prefix)
            try writer.publish(nodeID: "node-a", value: [])
            let won = try #require(try writer.campaign(nodeID: "node-a", value: []))
            let first = try #require(try writer.compareAndSetRecord(Self.name, value: Array("epoch=1".utf8), expectedVersion: nil))
            let version = try #require(try writer.compareAndSetRecord(Self.name, value: Array("epoch=2".utf8), expectedVersion: first))
            won.resign()
            writer.close()
            let reader = try Self.service(backend, prefix: prefix)
            defer { reader.close() }
            #expect(try reader.leader() == nil, "the leadership ended")
            #expect(try reader.members().isEmpty, "the member lease or session ended")
            #expect(try reader.readRecord(Self.name) == VersionedValue(value: Array("epoch=2".utf8), version: version))
            #expect(throws: CoordinationError.self) { try writer.readRecord(Self.name) }
            #expect(throws: CoordinationError.self) { try writer.compareAndSetRecord(Self.name, value: [], expectedVersion: version) }
        }
    }

    @Test("a compare-and-set after the service sat idle past its TTL (its session expired) still writes", arguments: backends)
    func compareAndSetAfterIdleSessionExpiryWrites(_ backend: ElectionConfig.Backend) async throws {
        try await Self.withTwoServices(backend) { a, _ in
            try a.publish(nodeID: "node-a", value: [])  // a member session or lease, left to expire
            let first = try #require(try a.compareAndSetRecord(Self.name, value: [1], expectedVersion: nil))
            usleep(UInt32((ElectionTests.ttl * 3).nanoseconds / 1000))
            let second = try #require(try a.compareAndSetRecord(Self.name, value: [2], expectedVersion: first))
            #expect(try a.readRecord(Self.name) == VersionedValue(value: [2], version: second))
        }
    }

    @Test("invalid record names, oversized values and negative versions are refused before any request", arguments: backends)
    func invalidArgumentsAreRefused(_ backend: ElectionConfig.Backend) async throws {
        try await onOwnedThread {
            let a = try Self.service(backend, prefix: uniquePrefix())
            defer { a.close() }
            let tooLong = String(repeating: "a", count: CoordinationLimits.recordNameBytesMax + 1)
            for name in ["", "Term", "a/b", "term.1", "te rm", "ü", "..", tooLong, "leader", "members"] {
                #expect(throws: CoordinationError.self, "read \(name.debugDescription)") { try a.readRecord(name) }
                #expect(throws: CoordinationError.self, "write \(name.debugDescription)") {
                    try a.compareAndSetRecord(name, value: [], expectedVersion: nil)
                }
                #expect(Self.isInvalidArgument { try a.readRecord(name) }, "\(name.debugDescription)")
            }
            let longest = String(repeating: "a", count: CoordinationLimits.recordNameBytesMax)
            #expect(try a.readRecord(longest) == nil, "a name of \(CoordinationLimits.recordNameBytesMax) bytes")
            let oversized = [UInt8](repeating: 0, count: CoordinationLimits.valueBytesMax + 1)
            #expect(Self.isInvalidArgument { try a.compareAndSetRecord(Self.name, value: oversized, expectedVersion: nil) })
            #expect(Self.isInvalidArgument { try a.compareAndSetRecord(Self.name, value: [], expectedVersion: -1) })
            #expect(try a.readRecord(Self.name) == nil, "nothing was written")
        }
    }

    /// Whether `body` throws `.invalidArgument`.
    static func isInvalidArgument<T>(_ body: () throws -> T) -> Bool {
        do {
            _ = try body()
            return false
        } catch {
            if case .invalidArgument = error as? CoordinationError { return true }
            return false
        }
    }
}
