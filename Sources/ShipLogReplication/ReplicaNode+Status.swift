import ShipLogFormat
import ShipLogProtocol
import ShipLogStorage

/// A JSON object written key by key, in order (the status document of docs/PROTOCOL.md 8.5).
struct JSONObjectWriter {
    private var text = "{"
    private var first = true

    mutating func field(_ key: String, _ value: String) { raw(key, Self.quoted(value)) }
    mutating func field(_ key: String, _ value: UInt64) { raw(key, String(value)) }
    mutating func field(_ key: String, _ value: Int64) { raw(key, String(value)) }
    mutating func field(_ key: String, _ value: Double) { raw(key, value.isFinite ? String(value) : "null") }
    mutating func field(_ key: String, _ value: Bool) { raw(key, value ? "true" : "false") }
    mutating func field(_ key: String, _ value: LSN) { raw(key, String(value.rawValue)) }

    mutating func raw(_ key: String, _ json: String) {
        if !first { text += "," }
        first = false
        text += Self.quoted(key) + ":" + json
    }

    var json: String { text + "}" }

    static func quoted(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let digits = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

extension ReplicaNode {
    /// The status document: role, epoch, positions and, on a primary, every follower of the
    /// replica set with its positions and lag (PostgreSQL's `pg_stat_replication`).
    public func statusJSON() -> String {
        var object = JSONObjectWriter()
        let log = host?.log
        object.field("role", isPrimary ? "primary" : "follower")
        object.field("node_id", options.nodeID)
        object.field("cluster_id", options.clusterID)
        object.field("epoch", log?.epoch.rawValue ?? 0)
        object.field("first_lsn", log?.firstLSN ?? .zero)
        object.field("last_lsn", log?.writtenLSN ?? .zero)
        object.field("durable_lsn", log?.durableLSN ?? .zero)
        object.field("applied_lsn", host?.appliedLSN ?? .zero)
        if isPrimary {
            object.field("commit_level", options.defaultCommitLevel.description)
            object.field("commit_timeout_policy", options.commitTimeoutPolicy.rawValue)
            object.field("degraded", tracker.isDegraded)
            object.field("degraded_answers", tracker.degradedAnswers)
            let fenced = lock.withLock { fencedBy }
            if let fenced { object.field("fenced_by_epoch", fenced.rawValue) }
            if let reason = fencing { object.field("fenced", reason) }
            let (followers, omitted) = followersJSON(written: log?.writtenLSN ?? .zero)
            object.raw("followers", followers)
            if omitted > 0 { object.field("followers_omitted", UInt64(omitted)) }
        } else {
            object.field("primary", primaryAddressHint)
            let link = lock.withLock { self.link }
            if let link {
                object.field("connected", link.isConnected)
                object.field("primary_last_lsn", link.primaryWrittenLSN)
                object.field("last_error", link.lastError ?? "")
                object.field("reseeds", link.reseedCount)
                object.field("rejoins", link.rejoinCount)
            }
            object.raw("followers", "[]")
        }
        return object.json
    }

    /// Room for the followers array in the status document, leaving the rest of the 64 KiB.
    static var followersJSONBytesMax: Int { ProtocolLimits.statusJSONBytesMax - 4096 }

    private func followersJSON(written: LSN) -> (json: String, omitted: Int) {
        let positions = tracker.followerPositions
        let counted = tracker.counted
        let streams = lock.withLock { self.streams }
        let slotPositions = slots.positions
        let log = host?.log
        var items: [String] = []
        for nodeID in positions.keys.sorted() {
            let position = positions[nodeID]!
            let stream = streams[nodeID]
            var item = JSONObjectWriter()
            item.field("node_id", nodeID)
            item.field("address", stream?.address ?? "")
            item.field("connected", position.connected && stream != nil)
            item.field("written_lsn", position.written)
            item.field("flushed_lsn", position.flushed)
            item.field("applied_lsn", position.applied)
            item.field("counts", counted?.contains(nodeID) ?? true)
            let lagRecords = written.rawValue &- min(written.rawValue, position.flushed.rawValue)
            item.field("lag_records", lagRecords)
            item.field("lag_bytes", lagBytes(after: position.flushed, log: log))
            item.field("lag_ms", lagMilliseconds(after: position.flushed, written: written, log: log))
            item.field("last_contact_ms_ago", (stream?.lastContactNanosecondsAgo ?? 0) / 1_000_000)
            // The oldest LSN kept for this follower: the one after its durable slot position.
            item.field("slot_lsn", slotPositions[nodeID].map { $0.advanced(by: 1) } ?? .zero)
            items.append(item.json)
        }
        // The whole document must fit a StatusResponse (64 KiB): later followers are counted, not listed.
        var kept: [String] = []
        var bytes = 0
        for item in items {
            guard bytes + item.utf8.count + 1 < Self.followersJSONBytesMax else { break }
            kept.append(item)
            bytes += item.utf8.count + 1
        }
        return ("[" + kept.joined(separator: ",") + "]", items.count - kept.count)
    }

    /// Milliseconds since the primary wrote the oldest record a follower durable through
    /// `flushed` does not have yet (by the batch's timestamp); 0 when it has everything.
    private func lagMilliseconds(after flushed: LSN, written: LSN, log: Log?) -> UInt64 {
        guard let log, flushed < written, let batch = try? log.batch(containing: flushed.advanced(by: 1)) else { return 0 }
        let now = wallClockNanoseconds()
        return now > batch.header.timestamp ? (now - batch.header.timestamp) / 1_000_000 : 0
    }

    /// Log bytes of the segments holding LSNs after `lsn` (an upper bound, to the segment).
    private func lagBytes(after lsn: LSN, log: Log?) -> Int64 {
        guard let log else { return 0 }
        return log.segments.filter { $0.lastLSN > lsn }.reduce(Int64(0)) { $0 + $1.dataBytes }
    }
}
