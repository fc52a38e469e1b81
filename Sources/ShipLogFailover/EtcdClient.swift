/// The calls of etcd's v3 API this layer makes, through the JSON gateway (`POST /v3/...`,
/// protobuf's JSON mapping: int64 as decimal strings, bytes as base64, zero values omitted).
/// One kept-alive connection; not thread-safe: its owner serializes calls.
final class EtcdClient {
    let config: ElectionConfig
    private let http: HTTPClient

    init(config: ElectionConfig, http: HTTPClient) {
        self.config = config
        self.http = http
    }

    /// A key with its value and metadata, as a range returns it.
    struct KeyValue {
        var key: [UInt8]
        var value: [UInt8]
        /// The lease the key is bound to, 0 for none.
        var lease: Int64
        var createRevision: Int64
        var modRevision: Int64
    }

    /// An error answer of the gateway: the HTTP status and the gRPC status inside it.
    struct Failure: Error {
        var service: String
        var httpStatus: Int
        var grpcCode: Int64
        var message: String

        /// gRPC NOT_FOUND for a lease ("etcdserver: requested lease not found").
        var isLeaseNotFound: Bool { grpcCode == 5 && message.contains("lease not found") }
    }

    func close() { http.close() }

    // MARK: - Calls

    /// POST /v3/lease/grant: a lease of `ttlSeconds`. Returns its ID and the TTL etcd granted
    /// (etcd raises TTLs below its minimum, 1.5 election timeouts).
    func grantLease(ttlSeconds: Int64, deadline: Deadline) throws(CoordinationError) -> (id: Int64, ttlSeconds: Int64) {
        let reply = try ok(call("/v3/lease/grant", JSON.object(["TTL": .string(String(ttlSeconds))]), deadline: deadline), "grant a lease")
        if let error = reply.json["error"]?.string, !error.isEmpty {
            throw .rejected(service: reply.service, operation: "grant a lease", reason: error)
        }
        guard let id = reply.json["ID"]?.int64, id != 0, let ttl = reply.json["TTL"]?.int64, ttl > 0 else {
            throw malformed(reply, "a lease grant without ID and TTL")
        }
        return (id, ttl)
    }

    /// POST /v3/lease/keepalive (one message on the bidirectional stream): the lease's TTL
    /// after the renewal, nil when the lease no longer exists (expired or revoked).
    func keepAlive(lease: Int64, deadline: Deadline) throws(CoordinationError) -> Int64? {
        let reply = try ok(call("/v3/lease/keepalive", JSON.object(["ID": .string(String(lease))]), deadline: deadline), "renew lease \(lease)")
        // A stream: one {"result": ...} or {"error": ...} message per line.
        guard let line = reply.body.split(separator: 0x0A).first(where: { !$0.isEmpty }) else {
            throw malformed(reply, "an empty keepalive stream")
        }
        let message = try parse(line, reply.service, what: "POST /v3/lease/keepalive")
        if let error = message["error"] {
            throw .rejected(service: reply.service, operation: "renew lease \(lease)", reason: error["message"]?.string ?? "stream error")
        }
        guard let result = message["result"], result["ID"]?.int64 == lease else {
            throw .protocolError(service: reply.service, detail: "keepalive of lease \(lease) answered for another lease")
        }
        let ttl = result["TTL"]?.int64 ?? 0
        return ttl > 0 ? ttl : nil
    }

    /// POST /v3/lease/revoke: deletes the lease and every key bound to it. A lease that is
    /// already gone is no error.
    func revoke(lease: Int64, deadline: Deadline) throws(CoordinationError) {
        switch try call("/v3/lease/revoke", JSON.object(["ID": .string(String(lease))]), deadline: deadline) {
        case .success: return
        case .failure(let failure) where failure.isLeaseNotFound: return
        case .failure(let failure): throw rejected(failure, "revoke lease \(lease)")
        }
    }

    /// POST /v3/kv/txn: puts `key` = `value` bound to `lease` only if the key does not exist
    /// (its create revision is 0). Returns nil when created, the existing key otherwise.
    func createIfAbsent(key: String, value: [UInt8], lease: Int64, deadline: Deadline) throws(CoordinationError) -> KeyValue? {
        let encodedKey = JSON.string(Base64.encode(key))
        let (succeeded, reply) = try transaction(
            on: key, ifModRevision: nil, putting: value, lease: lease,
            otherwise: [.object(["request_range": .object(["key": encodedKey])])], deadline: deadline, operation: "create \(key)")
        if succeeded { return nil }
        guard let responses = reply.json["responses"]?.array, responses.count == 1,
            let range = responses[0]["response_range"]
        else { throw malformed(reply, "a failed transaction on \(key) without its range response") }
        let kvs = try keyValues(range, reply.service)
        guard let existing = kvs.first else {
            // Deleted between the compare and the range: impossible inside one transaction.
            throw malformed(reply, "a failed create-if-absent on \(key) whose key does not exist")
        }
        return existing
    }

    /// POST /v3/kv/txn: puts `key` = `value`, bound to no lease, only if the key's mod revision
    /// is still `modRevision` (nil: only if the key does not exist). Returns the key's new mod
    /// revision (the transaction's revision), nil when the comparison failed and nothing was
    /// written. Sent once on a new connection, never repeated: a repeat of an applied
    /// transaction whose answer was lost would fail its comparison and report nil wrongly.
    func compareAndPut(key: String, value: [UInt8], modRevision: Int64?, deadline: Deadline) throws(CoordinationError) -> Int64? {
        http.close()  // the HTTP client repeats a request only on a connection it reused
        let (succeeded, reply) = try transaction(
            on: key, ifModRevision: modRevision, putting: value, lease: nil, otherwise: [], deadline: deadline,
            operation: "compare-and-set \(key)")
        return succeeded ? try revision(reply) : nil
    }

    /// POST /v3/kv/range for one key: the store's revision and the key, nil when absent.
    func get(key: String, deadline: Deadline) throws(CoordinationError) -> (revision: Int64, keyValue: KeyValue?) {
        let reply = try ok(call("/v3/kv/range", JSON.object(["key": .string(Base64.encode(key))]), deadline: deadline), "read \(key)")
        let kvs = try keyValues(reply.json, reply.service)
        guard kvs.count <= 1 else { throw malformed(reply, "\(kvs.count) keys for one key \(key)") }
        return (try revision(reply), kvs.first)
    }

    /// POST /v3/kv/range over every key starting with `prefix`, at most `limit` keys.
    /// Returns them in key order and whether more exist.
    func list(prefix: String, limit: Int, deadline: Deadline) throws(CoordinationError) -> (keyValues: [KeyValue], more: Bool) {
        var end = Array(prefix.utf8)
        // The range end of a prefix: the prefix with its last byte incremented.
        while let last = end.last, last == 0xFF { end.removeLast() }
        if !end.isEmpty { end[end.count - 1] += 1 }
        let request = JSON.object([
            "key": .string(Base64.encode(prefix)), "range_end": .string(Base64.encode(end.isEmpty ? [0] : end)),
            "limit": .string(String(limit)),
        ])
        let reply = try ok(call("/v3/kv/range", request, deadline: deadline), "list \(prefix)")
        let kvs = try keyValues(reply.json, reply.service)
        guard kvs.count <= limit else { throw malformed(reply, "\(kvs.count) keys for a limit of \(limit)") }
        return (kvs, reply.json["more"]?.bool ?? false)
    }

    /// POST /v3/kv/put bound to `lease`. Returns false when the lease does not exist.
    func put(key: String, value: [UInt8], lease: Int64, deadline: Deadline) throws(CoordinationError) -> Bool {
        let request = Self.putFields(.string(Base64.encode(key)), value: value, lease: lease)
        switch try call("/v3/kv/put", request, deadline: deadline) {
        case .success: return true
        case .failure(let failure) where failure.isLeaseNotFound: return false
        case .failure(let failure): throw rejected(failure, "put \(key)")
        }
    }

    // MARK: - Plumbing

    /// A `PutRequest`: `key` (base64 already) = `value`, bound to `lease` (nil: to none).
    private static func putFields(_ encodedKey: JSON, value: [UInt8], lease: Int64?) -> JSON {
        var fields: [String: JSON] = ["key": encodedKey, "value": .string(Base64.encode(value))]
        if let lease { fields["lease"] = .string(String(lease)) }
        return .object(fields)
    }

    /// POST /v3/kv/txn on `key`: if its mod revision is `modRevision` (nil: if its create
    /// revision is 0, the key does not exist), put `value` bound to `lease` (nil: to none); else
    /// the requests `otherwise`. Returns whether the comparison held, and the reply.
    private func transaction(
        on key: String, ifModRevision modRevision: Int64?, putting value: [UInt8], lease: Int64?, otherwise: [JSON],
        deadline: Deadline, operation: String
    ) throws(CoordinationError) -> (succeeded: Bool, reply: Reply) {
        let encodedKey = JSON.string(Base64.encode(key))
        let compare: JSON
        if let modRevision {
            compare = .object([
                "key": encodedKey, "target": .string("MOD"), "result": .string("EQUAL"), "mod_revision": .string(String(modRevision)),
            ])
        } else {
            compare = .object(["key": encodedKey, "target": .string("CREATE"), "result": .string("EQUAL"), "create_revision": .string("0")])
        }
        let request = JSON.object([
            "compare": .array([compare]),
            "success": .array([.object(["request_put": Self.putFields(encodedKey, value: value, lease: lease)])]),
            "failure": .array(otherwise),
        ])
        let reply = try ok(call("/v3/kv/txn", request, deadline: deadline), operation)
        return (reply.json["succeeded"]?.bool == true, reply)
    }

    struct Reply {
        var json: JSON
        var body: [UInt8]
        var service: String
    }

    /// One POST; a 200 answer parsed (streams are parsed by their callers), an error answer as a ``Failure``.
    private func call(_ path: String, _ request: JSON, deadline: Deadline) throws(CoordinationError) -> Result<Reply, Failure> {
        let response = try http.post(path, body: request.encoded, deadline: deadline)
        guard response.status == 200 else {
            let error = try? JSON.parse(response.body[...], bytesMax: CoordinationLimits.httpBodyBytesMax)
            let message = error?["message"]?.string ?? error?["error"]?.string ?? HTTPResponseHead.printable(response.body[...])
            return .failure(Failure(service: response.service, httpStatus: response.status, grpcCode: error?["code"]?.int64 ?? -1, message: message))
        }
        let isStream = path == "/v3/lease/keepalive"
        let json = isStream ? JSON.null : try parse(response.body[...], response.service, what: "POST \(path)")
        return .success(Reply(json: json, body: response.body, service: response.service))
    }

    private func ok(_ result: Result<Reply, Failure>, _ operation: String) throws(CoordinationError) -> Reply {
        switch result {
        case .success(let reply): return reply
        case .failure(let failure): throw rejected(failure, operation)
        }
    }

    private func rejected(_ failure: Failure, _ operation: String) -> CoordinationError {
        .rejected(
            service: failure.service, operation: operation, reason: "HTTP \(failure.httpStatus), gRPC code \(failure.grpcCode): \(failure.message)")
    }

    private func parse(_ bytes: ArraySlice<UInt8>, _ service: String, what: String) throws(CoordinationError) -> JSON {
        do {
            return try JSON.parse(bytes, bytesMax: CoordinationLimits.httpBodyBytesMax)
        } catch {
            throw .protocolError(service: service, detail: "\(what): \(error)")
        }
    }

    private func malformed(_ reply: Reply, _ detail: String) -> CoordinationError {
        .protocolError(service: reply.service, detail: detail)
    }

    private func revision(_ reply: Reply) throws(CoordinationError) -> Int64 {
        guard let revision = reply.json["header"]?["revision"]?.int64, revision > 0 else {
            throw malformed(reply, "a response without header.revision")
        }
        return revision
    }

    /// The `kvs` of a range response (absent when empty).
    func keyValues(_ range: JSON, _ service: String) throws(CoordinationError) -> [KeyValue] {
        guard let kvs = range["kvs"] else { return [] }
        guard let items = kvs.array else { throw .protocolError(service: service, detail: "kvs is not an array") }
        var result: [KeyValue] = []
        result.reserveCapacity(items.count)
        for item in items {
            result.append(try Self.keyValue(item, service))
        }
        return result
    }

    /// One `mvccpb.KeyValue` (a range's or a watch event's).
    static func keyValue(_ item: JSON, _ service: String) throws(CoordinationError) -> KeyValue {
        guard let key = item["key"]?.base64Bytes else {
            throw .protocolError(service: service, detail: "a key-value without a base64 key")
        }
        let value: [UInt8]
        if let encoded = item["value"] {
            guard let decoded = encoded.base64Bytes else {
                throw .protocolError(service: service, detail: "the value of \(String(decoding: key, as: UTF8.self)) is not base64")
            }
            value = decoded
        } else {
            value = []
        }
        return KeyValue(
            key: key, value: value, lease: item["lease"]?.int64 ?? 0, createRevision: item["create_revision"]?.int64 ?? 0,
            modRevision: item["mod_revision"]?.int64 ?? 0)
    }
}
