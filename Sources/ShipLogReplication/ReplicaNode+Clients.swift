import ShipLogFormat
import ShipLogProtocol
import ShipLogStateMachine
import ShipLogStorage

/// Counts a connection's requests in flight and blocks its reader at the limit.
final class InFlightLimit: @unchecked Sendable {
    // @unchecked: `count` is guarded by `lock`.
    private let lock = ConditionLock()
    private var count = 0
    private let limit: Int

    init(limit: Int) { self.limit = limit }

    func acquire() {
        lock.withLock {
            while count >= limit { lock.wait() }
            count += 1
        }
    }

    func release() {
        lock.withLock { count -= 1 }
        lock.broadcast()
    }
}

/// A client's connection, on any node: appends (primary only), reads, status and queries.
/// Requests are read on the connection's thread, appended in arrival order, and answered
/// through an ``OutboundQueue`` as they complete, possibly out of order (docs/PROTOCOL.md 8).
struct ClientSession<Machine: QueryableStateMachine>: Sendable {
    let node: ReplicaNode<Machine>
    let peer: PeerInfo
    let sender: MessageSender

    func run(receiver: inout MessageReceiver) {
        let outbound = OutboundQueue(sender: sender, name: "shiplog-reply")
        defer { outbound.finish() }
        let inFlight = InFlightLimit(limit: node.options.clientRequestsInFlightMax)
        while true {
            let message: Message?
            do { message = try receiver.receive() } catch {
                if case .protocolViolation = error {
                    outbound.enqueue(.error(Message.Failure(.protocolViolation, text: "\(error)")))
                }
                return
            }
            guard let message else { return }
            inFlight.acquire()
            let reply: @Sendable (Message) -> Void = { response in
                outbound.enqueue(response)
                inFlight.release()
            }
            switch message {
            case .appendRequest(let request): append(request, reply: reply)
            case .readRequest(let request): read(request, reply: reply)
            case .statusRequest(let request):
                reply(.statusResponse(Message.StatusResponse(requestID: request.requestID, json: node.statusJSON())))
            case .queryRequest(let request): query(request, reply: reply)
            case .promoteRequest(let request): promote(request, reply: reply)
            default:
                outbound.enqueue(.error(Message.Failure(.protocolViolation, text: "a client may not send \(message.type.name)")))
                return
            }
            guard outbound.waitForRoom(limit: ReplicationLimits.clientOutboundBytesMax) else { return }
        }
    }

    // MARK: Appends

    private func append(_ request: Message.AppendRequest, reply: @escaping @Sendable (Message) -> Void) {
        let id = request.requestID
        func fail(_ reason: Message.Failure.Reason, _ text: String) {
            reply(.appendResponse(Message.AppendResponse(requestID: id, outcome: .failed(Message.Failure(reason, text: text)))))
        }
        guard node.isPrimary else { return fail(.notPrimary(primaryAddress: node.primaryAddressHint), "this node is a follower") }
        let stopping = node.lock.withLock { node.stopping }
        if let fenced = node.fencing { return fail(.notPrimary(primaryAddress: ""), "this primary is fenced: \(fenced)") }
        if stopping { return fail(.shuttingDown, "the primary is shutting down") }
        guard let host = node.host else { return fail(.shuttingDown, "the primary is closing") }
        let level = request.commitLevel ?? node.options.defaultCommitLevel
        // Too few followers: `fail` refuses without appending (Kafka's min.insync.replicas);
        // `degrade` appends and answers once durable locally (MySQL semi-sync's fallback).
        let unavailable = node.tracker.unavailability(of: level)
        if let unavailable, node.options.commitTimeoutPolicy == .fail { return fail(.commitUnavailable, unavailable) }
        var builder = BatchBuilder(capacity: request.recordBlock.count + 16)
        do {
            try request.forEachRecord { record in try builder.append(Array(record)) }
            try host.validate(builder)
        } catch {
            return fail(.protocolViolation, "records refused before appending: \(error)")
        }
        let timeout = request.timeoutMillis == 0 ? node.options.commitTimeout : .milliseconds(Int(request.timeoutMillis))
        let tracker = node.tracker
        let pending = tracker.makePending(level: level, timeout: timeout, degradeAtOnce: unavailable != nil) { outcome in
            let response: Message.AppendResponse.Outcome
            switch outcome {
            case .committed(let range, let epoch): response = .appended(range, epoch: epoch)
            case .degraded(let range, let epoch): response = .appendedDegraded(range, epoch: epoch)
            case .timedOut(let range):
                response = .failed(
                    Message.Failure(
                        .commitTimedOut(range),
                        text: "LSNs \(range) are in the primary's log and will still replicate, but \(level) was not confirmed within \(timeout)"))
            case .failed(let error):
                response = .failed(Message.Failure(.logFailed, text: "\(error)"))
            }
            reply(.appendResponse(Message.AppendResponse(requestID: id, outcome: response)))
        }
        let log = host.log
        let refuse: @Sendable (LogError) -> Void = { error in
            let reason: Message.Failure.Reason = log.failure != nil ? .logFailed : .shuttingDown
            reply(.appendResponse(Message.AppendResponse(requestID: id, outcome: .failed(Message.Failure(reason, text: "\(error)")))))
        }
        node.appendCombiner.submit(AppendCombiner.Append(records: builder, pending: pending, refuse: refuse), tracker: tracker) {
            (batch, completion) throws(LogError) in
            let range = try host.submit(batch, durability: .immediate, blockWhenFull: true, completion: completion)
            return (range, log.epoch)
        }
    }

    // MARK: Reads

    private func read(_ request: Message.ReadRequest, reply: @escaping @Sendable (Message) -> Void) {
        let id = request.requestID
        guard let log = node.host?.log else {
            return reply(.readResponse(Message.ReadResponse(requestID: id, outcome: .failed(Message.Failure(.shuttingDown)))))
        }
        let first = log.firstLSN
        let written = log.writtenLSN
        guard request.fromLSN >= first, request.fromLSN <= written.advanced(by: 1) else {
            return reply(
                .readResponse(
                    Message.ReadResponse(
                        requestID: id,
                        outcome: .failed(
                            Message.Failure(.lsnOutOfRange(first: first, last: written), text: "this node holds LSNs \(first) ... \(written)")))))
        }
        let maxBytes = request.maxBytes == 0 ? ReplicationLimits.readResponseBytesDefault : Int(request.maxBytes)
        if request.fromLSN <= written || request.waitMillis == 0 {
            return reply(readResponse(id: id, log: log, from: request.fromLSN, maxBytes: maxBytes))
        }
        node.readWaiters.add(after: request.fromLSN.predecessor, timeout: .milliseconds(Int(request.waitMillis))) {
            reply(readResponse(id: id, log: log, from: request.fromLSN, maxBytes: maxBytes))
        }
    }

    private func readResponse(id: UInt64, log: Log, from lsn: LSN, maxBytes: Int) -> Message {
        var cursor = log.batches(from: lsn)
        var batches: [Batch] = []
        var bytes = 0
        let budget = min(maxBytes, ProtocolLimits.framePayloadBytesMax - 64)
        do throws(LogError) {
            while batches.count < ProtocolLimits.batchesPerFrameMax, let batch = try cursor.next() {
                if !batches.isEmpty && bytes + batch.bytes.count > budget { break }
                batches.append(batch)
                bytes += batch.bytes.count
                if bytes >= budget { break }
            }
        } catch {
            let reason: Message.Failure.Reason =
                error.isBeforeStart ? .lsnOutOfRange(first: log.firstLSN, last: log.writtenLSN) : .logFailed
            return .readResponse(Message.ReadResponse(requestID: id, outcome: .failed(Message.Failure(reason, text: "\(error)"))))
        }
        let last = max(log.writtenLSN, batches.last?.lsnRange.last ?? .zero)
        return .readResponse(Message.ReadResponse(requestID: id, outcome: .batches(lastLSN: last, batches)))
    }

    // MARK: Promotion

    private func promote(_ request: Message.PromoteRequest, reply: @escaping @Sendable (Message) -> Void) {
        let outcome: Message.PromoteResponse.Outcome
        do {
            let (epoch, first) = try node.promote(minimumEpoch: request.minimumEpoch)
            outcome = .promoted(epoch: epoch, firstLSN: first)
        } catch {
            outcome = .failed(Message.Failure(.roleChangeRefused, text: "\(error)"))
        }
        reply(.promoteResponse(Message.PromoteResponse(requestID: request.requestID, outcome: outcome)))
    }

    // MARK: Queries

    private func query(_ request: Message.QueryRequest, reply: @escaping @Sendable (Message) -> Void) {
        let id = request.requestID
        guard let host = node.host else {
            return reply(.queryResponse(Message.QueryResponse(requestID: id, outcome: .failed(Message.Failure(.shuttingDown)))))
        }
        do {
            let (result, applied) = try host.query(request.query)
            reply(.queryResponse(Message.QueryResponse(requestID: id, outcome: .result(appliedLSN: applied, result))))
        } catch {
            reply(.queryResponse(Message.QueryResponse(requestID: id, outcome: .failed(Message.Failure(.queryFailed, text: "\(error)")))))
        }
    }
}
