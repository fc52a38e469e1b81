// The znode operations the election uses, each one request and reply.

extension ZooKeeperSession {
    /// Most children a getChildren reply may list (the member records and some slack).
    static let childrenMax = CoordinationLimits.membersMax * 4

    /// Creates `path` with `data`, ephemeral (bound to this session) or persistent. Returns
    /// ``ZooKeeperCode/ok``, ``ZooKeeperCode/nodeExists`` or ``ZooKeeperCode/noNode`` (a parent
    /// is missing); other codes throw. With `retry` false the request is never sent twice
    /// (see ``call(_:_:deadline:what:retry:)``).
    func create(_ path: String, data: [UInt8], ephemeral: Bool, retry: Bool = true, deadline: Deadline) throws(CoordinationError) -> Int32 {
        var body = JuteWriter()
        body.string(path)
        body.buffer(data)
        body.openACL()
        body.int32(ephemeral ? 1 : 0)
        let (code, _) = try call(.create, body, deadline: deadline, what: "create \(path)", retry: retry)
        return try expect(code, [ZooKeeperCode.ok, ZooKeeperCode.nodeExists, ZooKeeperCode.noNode], "create \(path)")
    }

    /// The data and metadata of `path`, nil when it does not exist. With `watch`, a data watch
    /// is left on the node (not on a missing node: use ``exists(_:watch:deadline:)`` then).
    func getData(_ path: String, watch: Bool, deadline: Deadline) throws(CoordinationError) -> (data: [UInt8], stat: ZooKeeperStat)? {
        var body = JuteWriter()
        body.string(path)
        body.bool(watch)
        var (code, reply) = try call(.getData, body, deadline: deadline, what: "getData \(path)")
        if try expect(code, [ZooKeeperCode.ok, ZooKeeperCode.noNode], "getData \(path)") == ZooKeeperCode.noNode { return nil }
        let data = try reply.buffer("data of \(path)", bytesMax: CoordinationLimits.valueBytesMax + CoordinationLimits.nodeIDBytesMax + 1)
        return (data, try ZooKeeperStat.read(&reply))
    }

    /// The metadata of `path`, nil when it does not exist. With `watch`, a watch is left on
    /// the path whether or not the node exists (it fires on creation, change or deletion).
    func exists(_ path: String, watch: Bool, deadline: Deadline) throws(CoordinationError) -> ZooKeeperStat? {
        var body = JuteWriter()
        body.string(path)
        body.bool(watch)
        var (code, reply) = try call(.exists, body, deadline: deadline, what: "exists \(path)")
        if try expect(code, [ZooKeeperCode.ok, ZooKeeperCode.noNode], "exists \(path)") == ZooKeeperCode.noNode { return nil }
        return try ZooKeeperStat.read(&reply)
    }

    /// Replaces the data of `path` if its data version is `version` (-1: whatever it is).
    /// Returns the node's new metadata, nil when it does not exist or its version differs.
    /// With `retry` false the request is never sent twice (see ``call(_:_:deadline:what:retry:)``).
    func setData(
        _ path: String, data: [UInt8], version: Int32 = -1, retry: Bool = true, deadline: Deadline
    ) throws(CoordinationError) -> ZooKeeperStat? {
        var body = JuteWriter()
        body.string(path)
        body.buffer(data)
        body.int32(version)
        let what = version == -1 ? "setData \(path)" : "setData \(path) at version \(version)"
        var (code, reply) = try call(.setData, body, deadline: deadline, what: what, retry: retry)
        guard try expect(code, [ZooKeeperCode.ok, ZooKeeperCode.noNode, ZooKeeperCode.badVersion], what) == ZooKeeperCode.ok else {
            return nil
        }
        return try ZooKeeperStat.read(&reply)
    }

    /// The names of `path`'s children (at most ``childrenMax``), nil when it does not exist.
    func children(_ path: String, deadline: Deadline) throws(CoordinationError) -> [String]? {
        var body = JuteWriter()
        body.string(path)
        body.bool(false)
        var (code, reply) = try call(.getChildren, body, deadline: deadline, what: "getChildren \(path)")
        if try expect(code, [ZooKeeperCode.ok, ZooKeeperCode.noNode], "getChildren \(path)") == ZooKeeperCode.noNode { return nil }
        let count = try reply.int32("child count of \(path)")
        guard count >= 0, Int(count) <= Self.childrenMax else {
            throw .limitExceeded("\(path) has \(count) children (at most \(Self.childrenMax) are read)")
        }
        var names: [String] = []
        names.reserveCapacity(Int(count))
        for _ in 0..<count {
            names.append(try reply.string("child name under \(path)", bytesMax: CoordinationLimits.prefixBytesMax))
        }
        return names
    }

    /// Creates `path` and every missing ancestor as persistent nodes with no data.
    func createPersistentPath(_ path: String, deadline: Deadline) throws(CoordinationError) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            let code = try create(current, data: [], ephemeral: false, deadline: deadline)
            guard code != ZooKeeperCode.noNode else {
                throw .rejected(service: service, operation: "create \(current)", reason: "its parent vanished while it was created")
            }
        }
    }

    /// `code` when it is one of `allowed`; otherwise the error naming it.
    private func expect(_ code: Int32, _ allowed: [Int32], _ operation: String) throws(CoordinationError) -> Int32 {
        guard allowed.contains(code) else {
            throw .rejected(service: service, operation: operation, reason: ZooKeeperCode.name(code))
        }
        return code
    }
}
