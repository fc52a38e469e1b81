// ZooKeeper's client protocol: jute records (big-endian integers, length-prefixed buffers and
// strings, -1 for null), each request and reply one frame with a 4-byte length prefix.

/// Request types (`ZooDefs.OpCode`) used here.
enum ZooKeeperOperation: Int32 {
    case create = 1
    case delete = 2
    case exists = 3
    case getData = 4
    case setData = 5
    case getChildren = 8
    case ping = 11
    case closeSession = -11

    var name: String {
        switch self {
        case .create: "create"
        case .delete: "delete"
        case .exists: "exists"
        case .getData: "getData"
        case .setData: "setData"
        case .getChildren: "getChildren"
        case .ping: "ping"
        case .closeSession: "closeSession"
        }
    }
}

/// Reply error codes (`KeeperException.Code`) this layer tells apart.
enum ZooKeeperCode {
    static let ok: Int32 = 0
    static let noNode: Int32 = -101
    static let badVersion: Int32 = -103
    static let noChildrenForEphemerals: Int32 = -108
    static let nodeExists: Int32 = -110
    static let notEmpty: Int32 = -111
    static let sessionExpired: Int32 = -112

    /// The code's name for messages.
    static func name(_ code: Int32) -> String {
        let names: [Int32: String] = [
            0: "OK", -1: "SYSTEMERROR", -2: "RUNTIMEINCONSISTENCY", -3: "DATAINCONSISTENCY", -4: "CONNECTIONLOSS",
            -5: "MARSHALLINGERROR", -6: "UNIMPLEMENTED", -7: "OPERATIONTIMEOUT", -8: "BADARGUMENTS",
            -13: "NEWCONFIGNOQUORUM", -14: "RECONFIGINPROGRESS", -100: "APIERROR", -101: "NONODE", -102: "NOAUTH",
            -103: "BADVERSION", -108: "NOCHILDRENFOREPHEMERALS", -110: "NODEEXISTS", -111: "NOTEMPTY",
            -112: "SESSIONEXPIRED", -113: "INVALIDCALLBACK", -114: "INVALIDACL", -115: "AUTHFAILED", -118: "SESSIONMOVED",
            -119: "NOTREADONLY", -120: "EPHEMERALONLOCALSESSION", -121: "NOWATCHER", -122: "REQUESTTIMEOUT",
            -123: "RECONFIGDISABLED", -124: "SESSIONCLOSEDREQUIRESASLAUTH", -125: "QUOTAEXCEEDED", -127: "THROTTLEDOP",
        ]
        return "\(names[code] ?? "error") (\(code))"
    }
}

/// Special request IDs (`xid`) of the protocol.
enum ZooKeeperXid {
    /// A watch notification from the server.
    static let notification: Int32 = -1
    /// A ping and its reply.
    static let ping: Int32 = -2
}

/// Writes jute records.
struct JuteWriter {
    private(set) var bytes: [UInt8] = []

    mutating func int32(_ value: Int32) {
        let raw = UInt32(bitPattern: value)
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: raw >> UInt32(shift))) }
    }

    mutating func int64(_ value: Int64) {
        int32(Int32(truncatingIfNeeded: value >> 32))
        int32(Int32(truncatingIfNeeded: value))
    }

    mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    mutating func buffer(_ value: [UInt8]) {
        int32(Int32(value.count))
        bytes += value
    }

    mutating func string(_ value: String) { buffer(Array(value.utf8)) }

    /// The ACL list `world:anyone` with every permission (READ|WRITE|CREATE|DELETE|ADMIN).
    mutating func openACL() {
        int32(1)
        int32(31)
        string("world")
        string("anyone")
    }

    /// The record as one frame: its length, then its bytes.
    var framed: [UInt8] {
        var frame = JuteWriter()
        frame.int32(Int32(bytes.count))
        return frame.bytes + bytes
    }
}

/// Reads jute records from one frame; every read is bounds-checked and names what it read.
struct JuteReader {
    let bytes: [UInt8]
    private(set) var offset = 0
    let service: String
    let what: String

    init(_ bytes: [UInt8], service: String, what: String) {
        self.bytes = bytes
        self.service = service
        self.what = what
    }

    var remaining: Int { bytes.count - offset }

    private func truncated(_ field: String) -> CoordinationError {
        .protocolError(service: service, detail: "\(what): frame of \(bytes.count) bytes ends inside \(field) at byte \(offset)")
    }

    mutating func int32(_ field: String) throws(CoordinationError) -> Int32 {
        guard remaining >= 4 else { throw truncated(field) }
        var value: UInt32 = 0
        for index in 0..<4 { value = value << 8 | UInt32(bytes[offset + index]) }
        offset += 4
        return Int32(bitPattern: value)
    }

    mutating func int64(_ field: String) throws(CoordinationError) -> Int64 {
        let high = try int32(field)
        let low = try int32(field)
        return Int64(high) << 32 | Int64(UInt32(bitPattern: low))
    }

    mutating func bool(_ field: String) throws(CoordinationError) -> Bool {
        guard remaining >= 1 else { throw truncated(field) }
        defer { offset += 1 }
        return bytes[offset] != 0
    }

    /// A buffer of at most `bytesMax` bytes; null (-1) reads as empty.
    mutating func buffer(_ field: String, bytesMax: Int) throws(CoordinationError) -> [UInt8] {
        let length = try int32(field)
        if length == -1 { return [] }
        guard length >= 0, Int(length) <= bytesMax else {
            throw .protocolError(service: service, detail: "\(what): \(field) of \(length) bytes (at most \(bytesMax))")
        }
        guard remaining >= Int(length) else { throw truncated(field) }
        defer { offset += Int(length) }
        return Array(bytes[offset..<offset + Int(length)])
    }

    mutating func string(_ field: String, bytesMax: Int) throws(CoordinationError) -> String {
        let raw = try buffer(field, bytesMax: bytesMax)
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw .protocolError(service: service, detail: "\(what): \(field) is not UTF-8")
        }
        return text
    }
}

/// A znode's metadata (`data.Stat`, 68 bytes).
struct ZooKeeperStat {
    var version: Int32
    /// The session that owns the node when it is ephemeral, 0 otherwise.
    var ephemeralOwner: Int64
    var dataLength: Int32
    var childCount: Int32

    static func read(_ reader: inout JuteReader) throws(CoordinationError) -> ZooKeeperStat {
        _ = try reader.int64("stat.czxid")
        _ = try reader.int64("stat.mzxid")
        _ = try reader.int64("stat.ctime")
        _ = try reader.int64("stat.mtime")
        let version = try reader.int32("stat.version")
        _ = try reader.int32("stat.cversion")
        _ = try reader.int32("stat.aversion")
        let owner = try reader.int64("stat.ephemeralOwner")
        let dataLength = try reader.int32("stat.dataLength")
        let children = try reader.int32("stat.numChildren")
        _ = try reader.int64("stat.pzxid")
        return ZooKeeperStat(version: version, ephemeralOwner: owner, dataLength: dataLength, childCount: children)
    }
}

/// A watch notification (`proto.WatcherEvent`).
struct ZooKeeperWatchEvent: Equatable {
    /// NodeCreated 1, NodeDeleted 2, NodeDataChanged 3, NodeChildrenChanged 4, ...
    var type: Int32
    var state: Int32
    var path: String
}

extension String {
    /// A session ID as ZooKeeper's logs write it.
    init(sessionID: Int64) {
        self = "0x" + String(UInt64(bitPattern: sessionID), radix: 16)
    }
}
