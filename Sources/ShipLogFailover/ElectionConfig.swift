public import ShipLogReplication

/// Where the election runs and its timing: `etcd://HOST:PORT[,HOST:PORT...][/prefix]` or
/// `zookeeper://HOST:PORT[,HOST:PORT...][/path]`, a TTL, and the intervals derived from it.
///
/// Timing rules (``validate()``): `ttl` is 1 ... 60 s; `renewInterval + operationTimeout +
/// safetyMargin <= ttl`, so a renewal that starts on time and fails only at its timeout still
/// ends before ``Leadership/validUntil``, and the node can demote itself in time; `safetyMargin`
/// is at least ttl/100. The defaults are ttl/3, ttl/3 and ttl/10.
public struct ElectionConfig: Sendable, Hashable, CustomStringConvertible {
    /// The coordination service behind the URL.
    public enum Backend: String, Sendable, Hashable, CaseIterable {
        /// etcd v3 through its JSON gateway (`/v3/...` over HTTP/1.1).
        case etcd
        /// ZooKeeper through its client protocol.
        case zookeeper
    }

    /// The prefix when the URL names none.
    public static let defaultPrefix = "/shiplog"

    public var backend: Backend
    /// The service's client addresses, tried in order when connecting.
    public var endpoints: [Endpoint]
    /// Where the election's keys live: an etcd key prefix or a ZooKeeper path, `/`-separated,
    /// starting with `/`, without a trailing `/` (default ``defaultPrefix``).
    public var prefix: String
    /// The leader's lease TTL (etcd) or session timeout (ZooKeeper), and that of member records.
    public var ttl: Duration
    /// How often the leader renews (and members republish).
    public var renewInterval: Duration
    /// The longest one call to the service may take, connecting included.
    public var operationTimeout: Duration
    /// Subtracted from the TTL in ``Leadership/validUntil``: allowance for clock-rate drift
    /// between this node and the service, and for the time a request travels before the
    /// service starts its TTL.
    public var safetyMargin: Duration

    /// A configuration with the timing derived from `ttl` (not validated: see ``validate()``).
    public init(backend: Backend, endpoints: [Endpoint], prefix: String = ElectionConfig.defaultPrefix,
                ttl: Duration = CoordinationLimits.ttlDefault) {
        self.backend = backend
        self.endpoints = endpoints
        self.prefix = prefix
        self.ttl = ttl
        self.renewInterval = ttl / 3
        self.operationTimeout = ttl / 3
        self.safetyMargin = ttl / 10
    }

    /// Parses and validates an election URL; the timing is derived from `ttl`.
    public init(url: String, ttl: Duration = CoordinationLimits.ttlDefault) throws(CoordinationError) {
        let (backend, endpoints, prefix) = try Self.parse(url)
        self.init(backend: backend, endpoints: endpoints, prefix: prefix, ttl: ttl)
        try validate()
    }

    public var description: String {
        "\(backend.rawValue)://\(endpoints.map(\.description).joined(separator: ","))\(prefix)"
    }

    /// The service as errors name it: `etcd at 127.0.0.1:2379`.
    func serviceName(_ endpoint: Endpoint) -> String { "\(backend.rawValue) at \(endpoint)" }

    /// Checks the endpoints, the prefix and the timing rules.
    public func validate() throws(CoordinationError) {
        guard !endpoints.isEmpty else { throw .invalidConfig("no endpoint") }
        guard endpoints.count <= CoordinationLimits.endpointsMax else {
            throw .invalidConfig("\(endpoints.count) endpoints (at most \(CoordinationLimits.endpointsMax))")
        }
        for endpoint in endpoints where endpoint.port == 0 || endpoint.host.isEmpty {
            throw .invalidConfig("endpoint \(endpoint) needs a host and a port 1 ... 65535")
        }
        if let problem = Self.prefixProblem(prefix) { throw .invalidConfig("prefix \"\(prefix)\" \(problem)") }
        guard ttl >= CoordinationLimits.ttlMin, ttl <= CoordinationLimits.ttlMax else {
            throw .invalidConfig("ttl \(ttl) is outside \(CoordinationLimits.ttlMin) ... \(CoordinationLimits.ttlMax)")
        }
        guard renewInterval > .zero, operationTimeout > .zero else {
            throw .invalidConfig("renewInterval (\(renewInterval)) and operationTimeout (\(operationTimeout)) must be positive")
        }
        let marginMin = ttl / CoordinationLimits.safetyMarginMinDivisor
        guard safetyMargin >= marginMin else {
            throw .invalidConfig("safetyMargin \(safetyMargin) is below ttl/\(CoordinationLimits.safetyMarginMinDivisor) (\(marginMin))")
        }
        guard renewInterval + operationTimeout + safetyMargin <= ttl else {
            throw .invalidConfig(
                "renewInterval (\(renewInterval)) + operationTimeout (\(operationTimeout)) + safetyMargin (\(safetyMargin)) "
                    + "exceeds ttl (\(ttl)): a renewal that times out would end after the leadership's deadline")
        }
    }

    // MARK: - Parsing

    /// Splits `scheme://HOSTS[/prefix]`.
    static func parse(_ url: String) throws(CoordinationError) -> (Backend, [Endpoint], String) {
        guard url.utf8.count <= CoordinationLimits.urlBytesMax else {
            throw .invalidConfig("election URL of \(url.utf8.count) bytes (at most \(CoordinationLimits.urlBytesMax))")
        }
        guard let schemeEnd = Self.find("://", in: url) else {
            throw .invalidConfig("election URL \"\(url)\" has no scheme (expected etcd://HOST:PORT[/prefix] or zookeeper://HOST:PORT[/path])")
        }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard let backend = Backend(rawValue: scheme) else {
            throw .invalidConfig("election URL \"\(url)\": unknown scheme \"\(scheme)\" (expected etcd or zookeeper)")
        }
        let rest = url[schemeEnd.upperBound...]
        guard !rest.contains("?"), !rest.contains("#"), !rest.contains("@") else {
            throw .invalidConfig("election URL \"\(url)\": credentials, queries and fragments are not supported")
        }
        let hostsEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let hosts = rest[..<hostsEnd]
        var prefix = String(rest[hostsEnd...])
        if prefix.isEmpty || prefix == "/" { prefix = defaultPrefix }
        var endpoints: [Endpoint] = []
        for text in hosts.split(separator: ",", omittingEmptySubsequences: false) {
            guard let endpoint = Endpoint(String(text)), endpoint.port != 0 else {
                throw .invalidConfig("election URL \"\(url)\": \"\(text)\" is not HOST:PORT (port 1 ... 65535)")
            }
            endpoints.append(endpoint)
        }
        return (backend, endpoints, prefix)
    }

    /// The range of the first `needle` in `text`.
    private static func find(_ needle: String, in text: String) -> Range<String.Index>? {
        var start = text.startIndex
        while start < text.endIndex {
            if text[start...].hasPrefix(needle) { return start..<text.index(start, offsetBy: needle.count) }
            start = text.index(after: start)
        }
        return nil
    }

    /// Why `prefix` cannot be a prefix, or nil. Components are letters, digits, `-`, `_` and
    /// `.`, and never `.` or `..` (ZooKeeper refuses those paths).
    static func prefixProblem(_ prefix: String) -> String? {
        guard prefix.utf8.count <= CoordinationLimits.prefixBytesMax else {
            return "is longer than \(CoordinationLimits.prefixBytesMax) bytes"
        }
        guard prefix.hasPrefix("/") else { return "must start with /" }
        let components = prefix.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        for component in components {
            if component.isEmpty { return "has an empty component (// or a trailing /)" }
            if component == "." || component == ".." { return "has a . or .. component" }
            let allowed = component.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
            }
            if !allowed { return "may hold only letters, digits, -, _ and . between the slashes" }
        }
        return nil
    }
}
