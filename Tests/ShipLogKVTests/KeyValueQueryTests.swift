import Foundation
import Testing
import ShipLog
import ShipLogTestSupport

@Suite struct KeyValueQueryTests {
    static func query(_ store: KeyValueStore, _ query: KeyValueQuery) throws -> (KeyValueQueryResult, LSN) {
        let (bytes, lsn) = try store.query(query.encoded())
        return (try KeyValueQueryResult(decoding: bytes), lsn)
    }

    static func entries(_ result: KeyValueQueryResult) -> (keys: [String], more: Bool)? {
        guard case .entries(let entries, let more) = result else { return nil }
        return (entries.map { String(decoding: $0.key, as: UTF8.self) }, more)
    }

    @Test func getAndScanAnswerFromTheAppliedState() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let store = try KeyValueStore(directory: dir.path)
        var batch = WriteBatch()
        for key in ["a", "b", "ba", "c", "d"] { batch.put(bytes(key), bytes(key.uppercased())) }
        try store.write(batch)
        try store.delete(bytes("d"))

        let (value, lsn) = try Self.query(store, .get(key: bytes("ba")))
        #expect(value == .value(bytes("BA")) && lsn == store.appliedLSN)
        #expect(try Self.query(store, .get(key: bytes("d"))).0 == .value(nil))

        let all = try Self.query(store, .scan(start: [], end: nil, limit: 100)).0
        #expect(all == .entries([(bytes("a"), bytes("A")), (bytes("b"), bytes("B")), (bytes("ba"), bytes("BA")), (bytes("c"), bytes("C"))], more: false))
        #expect(Self.entries(try Self.query(store, .scan(start: bytes("b"), end: bytes("c"), limit: 100)).0)! == (["b", "ba"], false))
        #expect(Self.entries(try Self.query(store, .scan(start: bytes("a"), end: nil, limit: 2)).0)! == (["a", "b"], true))
        #expect(Self.entries(try Self.query(store, .scan(start: bytes("ba"), end: nil, limit: 2)).0)! == (["ba", "c"], false))
        #expect(Self.entries(try Self.query(store, .scan(start: bytes("c"), end: bytes("a"), limit: 5)).0)! == ([], false))
        try store.close()
    }

    /// One scan may not build a result that the protocol cannot carry.
    @Test func scanStopsBeforeTheResultOutgrowsItsLimit() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let store = try KeyValueStore(directory: dir.path)
        for i in 0..<5 { try store.put(bytes("big\(i)"), [UInt8](repeating: UInt8(i), count: KeyValueLimits.valueBytesMax)) }
        let (first, _) = try store.query(KeyValueQuery.scan(start: [], end: nil, limit: 100).encoded())
        #expect(first.count <= KeyValueLimits.queryResultBytesMax)
        #expect(Self.entries(try KeyValueQueryResult(decoding: first))! == (["big0", "big1", "big2"], true))
        let next = try Self.query(store, .scan(start: bytes("big2") + [0], end: nil, limit: 100)).0
        #expect(Self.entries(next)! == (["big3", "big4"], false))
        try store.close()
    }

    @Test func scanReturnsNoMoreThanScanEntriesMaxWhateverItsLimit() throws {
        let machine = KeyValueStateMachine()
        var batch = WriteBatch()
        for i in 0..<(KeyValueLimits.scanEntriesMax + 5) { batch.put(bytes(String(format: "k%06d", i)), []) }
        let record = try batch.encodedRecord()
        try record.withUnsafeBytes { try machine.apply($0, at: .first) }
        let result = machine.answer(.scan(start: [], end: nil, limit: 1_000_000))
        guard case .entries(let entries, let more) = result else { Issue.record("not entries"); return }
        #expect(entries.count == KeyValueLimits.scanEntriesMax && more)
        // Over the wire a limit above the cap is malformed.
        #expect(throws: StateMachineError.self) { try machine.query(KeyValueQuery.scan(start: [], end: nil, limit: 1_000_000).encoded()) }
    }

    static let sampleQueries: [KeyValueQuery] = [
        .get(key: []), .get(key: bytes("key")), .get(key: [UInt8](repeating: 7, count: KeyValueLimits.keyBytesMax)),
        .scan(start: [], end: nil, limit: 1), .scan(start: bytes("a"), end: bytes("b"), limit: KeyValueLimits.scanEntriesMax),
    ]
    static let sampleResults: [KeyValueQueryResult] = [
        .value(nil), .value([]), .value(bytes("value")), .entries([], more: false),
        .entries([(bytes("k1"), bytes("v1")), ([], []), (bytes("k3"), [UInt8](repeating: 1, count: 300))], more: true),
    ]

    @Test func queriesAndResultsRoundTrip() throws {
        for query in Self.sampleQueries { #expect(try KeyValueQuery(decoding: query.encoded()) == query) }
        for result in Self.sampleResults { #expect(try KeyValueQueryResult(decoding: result.encoded()) == result) }
    }

    /// Requests come from the network: a cut or padded one must be refused, never crash.
    @Test func everyTruncationOrExtensionIsRejected() throws {
        for query in Self.sampleQueries {
            let encoded = query.encoded()
            for length in 0..<encoded.count {
                #expect(throws: KeyValueError.self, "\(query) cut to \(length)") { try KeyValueQuery(decoding: Array(encoded.prefix(length))) }
            }
            #expect(throws: KeyValueError.self) { try KeyValueQuery(decoding: encoded + [0]) }
        }
        for result in Self.sampleResults {
            let encoded = result.encoded()
            for length in 0..<encoded.count {
                #expect(throws: KeyValueError.self, "cut to \(length)") { try KeyValueQueryResult(decoding: Array(encoded.prefix(length))) }
            }
            #expect(throws: KeyValueError.self) { try KeyValueQueryResult(decoding: encoded + [0]) }
        }
    }

    @Test func hostileLengthsAndFieldsAreRejectedBeforeAllocating() throws {
        func le(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
        let queries: [(String, [UInt8])] = [
            ("version 2", [2, 1] + le(0)),
            ("kind 3", [1, 3] + le(0)),
            ("key over keyBytesMax", [1, 1] + le(UInt32(KeyValueLimits.keyBytesMax + 1)) + [UInt8](repeating: 0, count: KeyValueLimits.keyBytesMax + 1)),
            ("key length 4 GiB", [1, 1] + le(.max)),
            ("hasEnd 2", [1, 2] + le(0) + [2] + le(1)),
            ("limit 0", [1, 2] + le(0) + [0] + le(0)),
            ("limit over scanEntriesMax", [1, 2] + le(0) + [0] + le(UInt32(KeyValueLimits.scanEntriesMax + 1))),
        ]
        for (what, bytes) in queries {
            #expect(throws: KeyValueError.self, "\(what)") { try KeyValueQuery(decoding: bytes) }
        }
        let results: [(String, [UInt8])] = [
            ("present 2", [1, 1, 2]),
            ("value over valueBytesMax", [1, 1, 1] + le(UInt32(KeyValueLimits.valueBytesMax + 1))),
            ("flags 2", [1, 2, 2] + le(0)),
            ("count 4 G", [1, 2, 0] + le(.max)),
            ("count beyond the bytes", [1, 2, 0] + le(1_000) + [UInt8](repeating: 0, count: 16)),
            ("over queryResultBytesMax", [1, 1, 0] + [UInt8](repeating: 0, count: KeyValueLimits.queryResultBytesMax)),
        ]
        for (what, bytes) in results {
            #expect(throws: KeyValueError.self, "\(what)") { try KeyValueQueryResult(decoding: bytes) }
        }
        // Random bytes: each is either a valid encoding that round-trips, or refused.
        var rng = SplitMix64(seed: 42)
        for _ in 0..<5_000 {
            var input = (0..<rng.uniform(below: 40)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if input.count > 1 && rng.coin() { input[0] = 1; input[1] = UInt8(1 + rng.uniform(below: 2)) }
            if let query = try? KeyValueQuery(decoding: input) { #expect(query.encoded() == input) }
            if let result = try? KeyValueQueryResult(decoding: input) { #expect(result.encoded() == input) }
        }
    }

    @Test func malformedRequestToTheHostIsAnErrorNotACrash() throws {
        let dir = StoreDirectory()
        defer { dir.cleanup() }
        let store = try KeyValueStore(directory: dir.path)
        #expect(throws: StateMachineError.self) { try store.host.query([]) }
        #expect(throws: StateMachineError.self) { try store.host.query([1, 9, 9, 9]) }
        try store.close()
    }
}
