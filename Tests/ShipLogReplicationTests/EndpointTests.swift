import Testing
@testable import ShipLogReplication

@Suite struct EndpointTests {
    @Test func parsesHostAndPort() {
        #expect(Endpoint("127.0.0.1:7000") == Endpoint(host: "127.0.0.1", port: 7000))
        #expect(Endpoint("[::1]:80") == Endpoint(host: "::1", port: 80))
        #expect(Endpoint("localhost:0")?.port == 0)
        #expect(Endpoint("[::1]:80")?.description == "[::1]:80")
    }

    @Test func rejectsMalformedAddresses() {
        for text in ["", "host", ":80", "host:", "host:65536", "host:-1", "a:b:c", "[::1]80", "host:8x", "host:123456"] {
            #expect(Endpoint(text) == nil, "\(text)")
        }
    }
}
