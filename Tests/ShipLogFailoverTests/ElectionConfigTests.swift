import ShipLogReplication
import Testing

@testable import ShipLogFailover

@Suite struct ElectionConfigTests {
    @Test func etcdURLWithPrefixAndSeveralEndpointsParses() throws {
        let config = try ElectionConfig(url: "etcd://10.0.0.1:2379,[::1]:2380/prod/shiplog")
        #expect(config.backend == .etcd)
        #expect(config.endpoints == [Endpoint(host: "10.0.0.1", port: 2379), Endpoint(host: "::1", port: 2380)])
        #expect(config.prefix == "/prod/shiplog")
        #expect(config.description == "etcd://10.0.0.1:2379,[::1]:2380/prod/shiplog")
    }

    @Test func zookeeperURLWithoutPathGetsTheDefaultPrefixAndTiming() throws {
        let config = try ElectionConfig(url: "zookeeper://zk1:2181")
        #expect(config.backend == .zookeeper)
        #expect(config.prefix == ElectionConfig.defaultPrefix)
        #expect(config.ttl == .seconds(5))
        #expect(config.renewInterval == .seconds(5) / 3)
        #expect(config.operationTimeout == .seconds(5) / 3)
        #expect(config.safetyMargin == .milliseconds(500))
    }

    @Test(arguments: [
        ("consul://h:8500", "unknown scheme"),
        ("h:2379", "no scheme"),
        ("etcd://h/p", "is not HOST:PORT"),
        ("etcd://h:0/p", "is not HOST:PORT"),
        ("etcd://h:99999", "is not HOST:PORT"),
        ("etcd://h:1,,h:2", "is not HOST:PORT"),
        ("etcd://user@h:1", "credentials"),
        ("etcd://h:1/p?x=1", "queries"),
        ("etcd://h:1/a//b", "empty component"),
        ("etcd://h:1/a/", "empty component"),
        ("zookeeper://h:1/a/../b", ". or .."),
        ("zookeeper://h:1/a b", "letters, digits"),
    ])
    func malformedURLIsRefusedNamingTheProblem(url: String, expected: String) {
        do {
            _ = try ElectionConfig(url: url)
            Issue.record("\(url) was accepted")
        } catch {
            guard case .invalidConfig(let message) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(message.contains(expected), "\(message)")
        }
    }

    @Test func ttlOutsideOneToSixtySecondsIsRefused() {
        #expect(throws: CoordinationError.self) { try ElectionConfig(url: "etcd://h:1", ttl: .milliseconds(999)) }
        #expect(throws: CoordinationError.self) { try ElectionConfig(url: "etcd://h:1", ttl: .seconds(61)) }
        #expect(throws: Never.self) { try ElectionConfig(url: "etcd://h:1", ttl: .seconds(1)) }
        #expect(throws: Never.self) { try ElectionConfig(url: "etcd://h:1", ttl: .seconds(60)) }
    }

    @Test func renewalThatCouldTimeOutAfterValidUntilIsRefused() throws {
        var config = try ElectionConfig(url: "etcd://h:1", ttl: .seconds(3))
        config.renewInterval = .seconds(2)
        config.operationTimeout = .seconds(1)
        #expect(throws: CoordinationError.self) { try config.validate() }
        config.renewInterval = .seconds(1)
        #expect(throws: Never.self) { try config.validate() }
        config.safetyMargin = .milliseconds(10)
        #expect(throws: CoordinationError.self, "a margin below ttl/100") { try config.validate() }
    }

    @Test func validUntilUsesTheShorterTTLMinusTheMargin() {
        let start: UInt64 = 1_000_000_000
        #expect(LeaseTiming.validUntil(requestStart: start, ttl: .seconds(5), serverTTL: .seconds(6), margin: .milliseconds(500)) == start + 4_500_000_000)
        #expect(LeaseTiming.validUntil(requestStart: start, ttl: .seconds(5), serverTTL: .seconds(2), margin: .milliseconds(500)) == start + 1_500_000_000)
        #expect(LeaseTiming.validUntil(requestStart: start, ttl: .seconds(1), serverTTL: .seconds(1), margin: .seconds(2)) == start)
    }
}

@Suite struct ElectionKeysTests {
    @Test(arguments: ["node-1", "a.b_c~d", "node/2", "100%", ".", "..", "ü", "space here", String(repeating: "x", count: 64)])
    func nodeIDsSurviveEscapingAsOneComponent(nodeID: String) throws {
        let escaped = ElectionKeys.escape(nodeID)
        #expect(!escaped.contains("/"))
        #expect(escaped != "." && escaped != "..")
        #expect(ElectionKeys.unescape(escaped) == nodeID)
    }

    @Test(arguments: ["%2", "%zz", "a%2Fb%", "%61", "a/b", ""])
    func foreignComponentsAreNotTakenForNodeIDs(component: String) {
        #expect(ElectionKeys.unescape(component) == nil)
    }

    @Test func leaderRecordSplitsAtTheFirstNewline() throws {
        let record = ElectionKeys.leaderRecord(nodeID: "node-a", value: Array("x\ny".utf8))
        let parsed = try #require(ElectionKeys.parseLeaderRecord(record))
        #expect(parsed.nodeID == "node-a")
        #expect(parsed.value == Array("x\ny".utf8))
        #expect(ElectionKeys.parseLeaderRecord(Array("no newline".utf8)) == nil)
        #expect(ElectionKeys.parseLeaderRecord(Array("\nempty id".utf8)) == nil)
    }

    @Test func oversizedValueAndBadNodeIDsAreRefusedBeforeAnyIO() {
        #expect(throws: CoordinationError.self) { try ElectionKeys.check(nodeID: "", value: []) }
        #expect(throws: CoordinationError.self) { try ElectionKeys.check(nodeID: "a\tb", value: []) }
        #expect(throws: CoordinationError.self) { try ElectionKeys.check(nodeID: String(repeating: "x", count: 65), value: []) }
        #expect(throws: CoordinationError.self) {
            try ElectionKeys.check(nodeID: "a", value: [UInt8](repeating: 0, count: CoordinationLimits.valueBytesMax + 1))
        }
    }
}

@Suite struct JSONTests {
    @Test func etcdResponseParsesWithInt64StringsAndBase64() throws {
        let text = #"{"header":{"revision":"42"},"kvs":[{"key":"L3QvbGVhZGVy","value":"YQp4eA==","lease":"4111120280440211465"}],"count":"1"}"#
        let json = try JSON.parse(Array(text.utf8)[...], bytesMax: 1 << 20)
        #expect(json["header"]?["revision"]?.int64 == 42)
        let kv = try EtcdClient.keyValue(try #require(json["kvs"]?.array?.first), "test")
        #expect(kv.key == Array("/t/leader".utf8))
        #expect(kv.value == Array("a\nxx".utf8))
        #expect(kv.lease == 4_111_120_280_440_211_465)
    }

    @Test func encodingIsCompactSortedAndEscaped() {
        let json = JSON.object(["b": .string("q\"\\\n"), "a": .array([.number("1"), .bool(true), .null])])
        #expect(String(decoding: json.encoded, as: UTF8.self) == #"{"a":[1,true,null],"b":"q\"\\\u000a"}"#)
    }

    @Test(arguments: [#"{"a":1"#, #"{"a":1}x"#, #"{"a":1,"a":2}"#, "\"\u{01}\"", #"[1,]"#, #"{"a":+1}"#, #""\ud800""#])
    func malformedDocumentsAreRefused(text: String) {
        #expect(throws: JSON.SyntaxError.self) { try JSON.parse(Array(text.utf8)[...], bytesMax: 1 << 20) }
    }

    @Test func documentsOverTheLimitOrTooDeepAreRefused() {
        #expect(throws: JSON.SyntaxError.self) { try JSON.parse(Array("[1]".utf8)[...], bytesMax: 2) }
        let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        #expect(throws: JSON.SyntaxError.self) { try JSON.parse(Array(deep.utf8)[...], bytesMax: 1 << 20) }
    }

    @Test func surrogatePairsDecode() throws {
        #expect(try JSON.parse(Array(#""\ud83d\ude00""#.utf8)[...], bytesMax: 64).string == "😀")
    }

    @Test func base64RoundTripsEveryLengthAndRefusesGarbage() {
        for length in 0..<20 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 200) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        #expect(Base64.encode(Array("/t/leader".utf8)) == "L3QvbGVhZGVy")
        #expect(Base64.decode("abc") == nil)
        #expect(Base64.decode("ab!d") == nil)
        #expect(Base64.decode("a===") == nil)
    }
}
