import ShipLogReplication
import ShipLogStorage
import ShipLogTestSupport
import Testing

@testable import ShipLogFailover

// The tests run against real etcd and ZooKeeper servers: ShipLogTestSupport's
// CoordinationTestServer (one shared server per backend and process, each test under a prefix
// of its own; servers under a watchdog, stopped at exit). The names below take this target's
// ElectionConfig.Backend.

/// Whether both servers are installed, for the suites' `.enabled(if:)` traits.
enum ServerBinaries {
    static let anyMissing = CoordinationTestServer.Backend.anyMissing
    static let skipMessage = CoordinationTestServer.Backend.skipMessage
}

typealias TestServer = CoordinationTestServer

extension CoordinationTestServer {
    /// The server of `backend` shared by the tests (each under a prefix of its own).
    static func shared(_ backend: ElectionConfig.Backend) throws -> CoordinationTestServer {
        try shared(Backend(backend))
    }

    /// A server of its own, for a test that kills it.
    static func start(_ backend: ElectionConfig.Backend) throws -> CoordinationTestServer {
        try start(Backend(backend))
    }
}

extension CoordinationTestServer.Backend {
    /// The test server of an election backend.
    init(_ backend: ElectionConfig.Backend) {
        switch backend {
        case .etcd: self = .etcd
        case .zookeeper: self = .zookeeper
        }
    }
}

/// Runs `body` on a thread of its own (the calls under test block), without blocking Swift's
/// cooperative pool.
func onOwnedThread<T: Sendable>(_ name: String = "failover-test", _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        _ = OwnedThread.start(name: name) {
            continuation.resume(with: Result { try body() })
        }
    }
}

/// A prefix of its own for one test on a shared server.
func uniquePrefix(_ name: String = #function) -> String {
    let safe = name.filter { $0.isLetter || $0.isNumber }.prefix(40)
    return "/test-\(safe)-\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
}

/// Monotonic nanoseconds (the clock of `Leadership.validUntil`).
func now() -> UInt64 { monotonicNanoseconds() }

/// Seconds between two monotonic readings, for messages.
func seconds(_ from: UInt64, _ to: UInt64) -> Double { Double(Int64(bitPattern: to &- from)) / 1e9 }
