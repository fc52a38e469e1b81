import ShipLogFormat
import ShipLogStorage

/// Client appends that arrive together, combined into one batch (docs/ARCHITECTURE.md
/// section 11, "An append on the primary"): one encoding, one log submit and one replicated batch for all of them
/// instead of one each, and no connection thread waiting for another's submit.
///
/// Flat combining: a connection thread queues its append; if no thread is combining, it
/// becomes the combiner and submits everything queued, including what other connections
/// queue meanwhile, until the queue is empty. Each request keeps its own LSNs (consecutive
/// within the batch), commit level, timeout and answer.
final class AppendCombiner: @unchecked Sendable {
    // @unchecked: `queue` and `combining` are guarded by `lock`.
    struct Append: Sendable {
        /// The request's records, validated.
        var records: BatchBuilder
        let pending: CommitTracker.Pending
        /// Answers the request when its batch could not be appended.
        let refuse: @Sendable (LogError) -> Void
    }

    /// Submits one combined batch: its LSN range and epoch, or why it was not appended;
    /// `completion` runs once the batch is durable locally (or failed).
    typealias SubmitBatch = (
        _ batch: BatchBuilder, _ completion: @escaping @Sendable (Result<LSNRange, LogError>) -> Void
    ) throws(LogError) -> (range: LSNRange, epoch: Epoch)

    /// Uncompressed bytes beyond which queued appends go into another batch (a single append
    /// larger than this is a batch of its own). Keeps one combined batch from holding the
    /// log's I/O thread, the followers and the answers of every request in it for long.
    static let combinedBytesMax = 1 << 20

    /// Uncompressed bytes queued behind a combining thread beyond which connection threads
    /// wait to queue more (one append larger than this still enters an empty queue). While
    /// the combining thread waits for room in a full write buffer, this keeps the connections
    /// from reading request after request into memory: they wait, and TCP pushes back on
    /// their clients, as when each connection submitted on its own.
    static let queuedBytesMax = 16 << 20

    private let lock = ConditionLock()
    private var queue: [Append] = []
    private var queuedBytes = 0
    private var combining = false
    /// Connection threads waiting for the queue to drain below ``queuedBytesMax``.
    private var waitingForRoom = 0

    /// Queues `append`. Returns at once when another thread is combining (it submits this
    /// append too), after waiting while ``queuedBytesMax`` is queued; otherwise submits
    /// everything queued, through `submitBatch`, before returning. A full write buffer blocks
    /// the combining thread, and through the queue's bound every connection.
    func submit(_ append: Append, tracker: CommitTracker, submitBatch: SubmitBatch) {
        lock.lock()
        while combining && queuedBytes >= Self.queuedBytesMax {
            waitingForRoom += 1
            lock.wait()
            waitingForRoom -= 1
        }
        queue.append(append)
        queuedBytes += append.records.uncompressedByteCount
        if combining {
            lock.unlock()
            return
        }
        combining = true
        while !queue.isEmpty {
            let taken = queue
            queue.removeAll(keepingCapacity: true)
            queuedBytes = 0
            let wake = waitingForRoom > 0
            lock.unlock()
            if wake { lock.broadcast() }
            submitCombined(taken, tracker: tracker, submitBatch: submitBatch)
            lock.lock()
        }
        combining = false
        lock.unlock()
    }

    /// Submits `appends` in order, in as few batches as ``combinedBytesMax`` and the batch
    /// limits allow.
    private func submitCombined(_ appends: [Append], tracker: CommitTracker, submitBatch: SubmitBatch) {
        var index = 0
        while index < appends.count {
            var builder = appends[index].records
            var members = [appends[index]]
            index += 1
            while index < appends.count, builder.uncompressedByteCount + appends[index].records.uncompressedByteCount <= Self.combinedBytesMax,
                builder.canAppend(contentsOf: appends[index].records)
            {
                try? builder.append(contentsOf: appends[index].records)
                members.append(appends[index])
                index += 1
            }
            submit(builder, of: members, tracker: tracker, submitBatch: submitBatch)
        }
    }

    /// Submits one batch holding the records of `members` and hands each its part of the LSNs.
    private func submit(_ builder: BatchBuilder, of members: [Append], tracker: CommitTracker, submitBatch: SubmitBatch) {
        let counts = members.map(\.records.recordCount)
        let pendings = members.map(\.pending)
        do {
            let (range, epoch) = try submitBatch(builder) { result in
                switch result {
                case .success(let range):
                    for (pending, part) in zip(pendings, Self.split(range, counts: counts)) { tracker.localCompleted(pending, .success(part)) }
                case .failure(let error):
                    for pending in pendings { tracker.localCompleted(pending, .failure(error)) }
                }
            }
            for (pending, part) in zip(pendings, Self.split(range, counts: counts)) { tracker.assigned(pending, range: part, epoch: epoch) }
        } catch {
            for member in members { member.refuse(error) }
        }
    }

    /// `range` cut into consecutive parts of `counts` records each.
    static func split(_ range: LSNRange, counts: [UInt32]) -> [LSNRange] {
        var parts: [LSNRange] = []
        parts.reserveCapacity(counts.count)
        var first = range.first
        for count in counts {
            parts.append(LSNRange(first: first, count: count))
            first = first.advanced(by: UInt64(count))
        }
        precondition(parts.last?.last == range.last, "the appends of a batch cover its LSNs exactly")
        return parts
    }
}
