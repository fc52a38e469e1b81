public import ShipLogFormat
public import ShipLogProtocol

/// The client for Swift concurrency: each call suspends the task instead of blocking a thread.
/// The answer is read by the client's own threads (a blocking caller's or its reading thread)
/// and resumes the task from there; no call blocks a thread of the cooperative pool, not even
/// at `requestsInFlightMax` (the task waits for room suspended).
extension ReplicationClient {
    /// Appends `records` as one batch on the primary and suspends until the commit level
    /// (`nil`: the primary's default) is confirmed, or fails (`commitTimedOut` says the
    /// records were appended anyway).
    public func append(_ records: [[UInt8]], level: CommitLevel? = nil, timeout: Duration? = nil) async throws(ReplicationError) -> AppendResult {
        let (wait, build) = Self.appendRequest(records, level: level, timeout: timeout)
        return try await answer(waiting: wait, build).flatMap(Self.appendResult).get()
    }

    /// Batches from the one holding `lsn` (see the blocking ``read(from:maxBytes:wait:)``).
    public func read(from lsn: LSN, maxBytes: Int = 0, wait: Duration = .zero) async throws(ReplicationError) -> (lastLSN: LSN, batches: [Batch]) {
        let (waiting, build) = Self.readRequest(from: lsn, maxBytes: maxBytes, wait: wait)
        return try await answer(waiting: waiting, build).flatMap(Self.readResult).get()
    }

    /// The node's status document (JSON, docs/PROTOCOL.md 8.5).
    public func status() async throws(ReplicationError) -> String {
        try await answer(waiting: .zero, Self.statusRequest).flatMap(Self.statusResult).get()
    }

    /// Runs a state-machine query on the node (see the blocking ``query(_:)``).
    public func query(_ query: [UInt8]) async throws(ReplicationError) -> (appliedLSN: LSN, result: [UInt8]) {
        try await answer(waiting: .zero, Self.queryRequest(query)).flatMap(Self.queryResult).get()
    }

    /// Sends the request once there is room and suspends until its answer.
    private func answer(waiting: Duration, _ build: @escaping (UInt64) -> Message) async -> Result<Message, ReplicationError> {
        while true {
            let sent: Result<Message, ReplicationError>? = await withCheckedContinuation { continuation in
                let requested = requestIfRoom(waiting: waiting, build) { continuation.resume(returning: $0) }
                if !requested { whenRoom { continuation.resume(returning: nil) } }
            }
            if let sent { return sent }
        }
    }
}
