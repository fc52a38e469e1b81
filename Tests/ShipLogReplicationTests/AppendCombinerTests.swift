#if canImport(Glibc)
import Glibc
#endif
import ShipLogFormat
import ShipLogStorage
import Testing
@testable import ShipLogReplication

/// The primary's group commit into one batch: appends queued while another thread submits a
/// batch go into the next batch together, each with its own consecutive LSNs and answer.
@Suite struct AppendCombinerTests {
    /// A stand-in for the log that numbers batches from LSN 1, records each batch's record
    /// count, and can hold its first call until released (so that other appends queue).
    final class ScriptedLog: @unchecked Sendable {
        private let lock = ConditionLock()
        private var next = LSN(1)
        private var entered = false
        private var released = false
        private(set) var batches: [UInt32] = []
        /// Calls (1-based) that throw instead of appending.
        var refusing: Set<Int> = []
        let holdFirstCall: Bool

        init(holdFirstCall: Bool) { self.holdFirstCall = holdFirstCall }

        var batchRecordCounts: [UInt32] { lock.withLock { batches } }

        func submit(
            _ batch: BatchBuilder, completion: @escaping @Sendable (Result<LSNRange, LogError>) -> Void
        ) throws(LogError) -> (range: LSNRange, epoch: Epoch) {
            let (call, range): (Int, LSNRange?) = lock.withLock {
                batches.append(batch.recordCount)
                let call = batches.count
                if call == 1 && holdFirstCall {
                    entered = true
                    lock.broadcast()
                    while !released { lock.wait() }
                }
                if refusing.contains(call) { return (call, nil) }
                let range = LSNRange(first: next, count: batch.recordCount)
                next = range.next
                return (call, range)
            }
            guard let range else { throw .failed(underlying: "scripted refusal of batch \(call)") }
            completion(.success(range))  // durable at once: the level `local` is met on assignment
            return (range, Epoch(3))
        }

        func waitUntilFirstCallHeld() { lock.withLock { while !entered { lock.wait() } } }

        func release() {
            lock.withLock { released = true }
            lock.broadcast()
        }
    }

    /// What each append's answer was: its committed range, or the refusal's text.
    final class Answers: @unchecked Sendable {
        private let lock = ConditionLock()
        private var values: [String: String] = [:]

        func record(_ name: String, _ value: String) { lock.withLock { values[name] = value } }
        subscript(name: String) -> String? { lock.withLock { values[name] } }
    }

    static func append(_ name: String, records: [[UInt8]], tracker: CommitTracker, answers: Answers) -> AppendCombiner.Append {
        var builder = BatchBuilder(capacity: 64)
        for record in records { try! builder.append(record) }
        let pending = tracker.makePending(level: .local, timeout: .seconds(30)) { outcome in
            switch outcome {
            case .committed(let range, let epoch): answers.record(name, "\(range.first.rawValue)-\(range.last.rawValue) epoch \(epoch.rawValue)")
            default: answers.record(name, "\(outcome)")
            }
        }
        return AppendCombiner.Append(records: builder, pending: pending) { error in answers.record(name, "refused: \(error)") }
    }

    static func records(_ count: Int, bytes: Int = 8) -> [[UInt8]] {
        (0..<count).map { index in [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: bytes) }
    }

    /// Submits `first` from a thread of its own, which becomes the combiner and is held in the
    /// log; queues `queued` meanwhile (each returns at once), then releases the log.
    static func combine(
        first: AppendCombiner.Append, queued: [AppendCombiner.Append], log: ScriptedLog, combiner: AppendCombiner, tracker: CommitTracker
    ) {
        let submitter = OwnedThread.start(name: "test-combiner") {
            combiner.submit(first, tracker: tracker) { (batch, completion) throws(LogError) in try log.submit(batch, completion: completion) }
        }
        log.waitUntilFirstCallHeld()
        for append in queued {
            combiner.submit(append, tracker: tracker) { (batch, completion) throws(LogError) in try log.submit(batch, completion: completion) }
        }
        #expect(log.batchRecordCounts.count == 1, "appends queued behind a combiner return without submitting")
        log.release()
        submitter.join()
    }

    @Test func appendsQueuedWhileABatchIsSubmittedGoIntoOneBatchWithConsecutiveLSNs() {
        let tracker = CommitTracker(policy: .fail)
        defer { tracker.stop() }
        let answers = Answers()
        let log = ScriptedLog(holdFirstCall: true)
        Self.combine(
            first: Self.append("a", records: Self.records(1), tracker: tracker, answers: answers),
            queued: [
                Self.append("b", records: Self.records(2), tracker: tracker, answers: answers),
                Self.append("c", records: Self.records(3), tracker: tracker, answers: answers),
            ],
            log: log, combiner: AppendCombiner(), tracker: tracker)
        #expect(log.batchRecordCounts == [1, 5])
        #expect(answers["a"] == "1-1 epoch 3")
        #expect(answers["b"] == "2-3 epoch 3")
        #expect(answers["c"] == "4-6 epoch 3")
    }

    @Test func appendsBeyondTheCombinedByteLimitGoIntoSeparateBatchesInOrder() {
        let tracker = CommitTracker(policy: .fail)
        defer { tracker.stop() }
        let answers = Answers()
        let log = ScriptedLog(holdFirstCall: true)
        let large = AppendCombiner.combinedBytesMax * 6 / 10
        Self.combine(
            first: Self.append("a", records: Self.records(1), tracker: tracker, answers: answers),
            queued: [
                Self.append("b", records: Self.records(1, bytes: large), tracker: tracker, answers: answers),
                Self.append("c", records: Self.records(1, bytes: large), tracker: tracker, answers: answers),
                Self.append("d", records: Self.records(2), tracker: tracker, answers: answers),
            ],
            log: log, combiner: AppendCombiner(), tracker: tracker)
        #expect(log.batchRecordCounts == [1, 1, 3], "b alone, then c with d")
        #expect(answers["b"] == "2-2 epoch 3")
        #expect(answers["c"] == "3-3 epoch 3")
        #expect(answers["d"] == "4-5 epoch 3")
    }

    @Test func aBatchTheLogRefusesAnswersEveryAppendInItAndLaterAppendsStillGo() {
        let tracker = CommitTracker(policy: .fail)
        defer { tracker.stop() }
        let answers = Answers()
        let log = ScriptedLog(holdFirstCall: true)
        log.refusing = [2]
        let combiner = AppendCombiner()
        Self.combine(
            first: Self.append("a", records: Self.records(1), tracker: tracker, answers: answers),
            queued: [
                Self.append("b", records: Self.records(2), tracker: tracker, answers: answers),
                Self.append("c", records: Self.records(1), tracker: tracker, answers: answers),
            ],
            log: log, combiner: combiner, tracker: tracker)
        combiner.submit(Self.append("d", records: Self.records(1), tracker: tracker, answers: answers), tracker: tracker) {
            (batch, completion) throws(LogError) in try log.submit(batch, completion: completion)
        }
        #expect(log.batchRecordCounts == [1, 3, 1])
        #expect(answers["a"] == "1-1 epoch 3")
        #expect(answers["b"]?.hasPrefix("refused: ") == true && answers["b"]?.contains("scripted refusal of batch 2") == true)
        #expect(answers["b"] == answers["c"], "every append of the refused batch gets the same answer")
        #expect(answers["d"] == "2-2 epoch 3", "a refused batch takes no LSNs")
    }

    /// While the combining thread is held (a full write buffer) and `queuedBytesMax` is
    /// queued, another connection's append waits instead of piling up in memory, and goes
    /// in once the combiner takes the queue.
    @Test func appendsWaitWhileTheQueueBehindAHeldCombinerIsFull() throws {
        let tracker = CommitTracker(policy: .fail)
        defer { tracker.stop() }
        let answers = Answers()
        let log = ScriptedLog(holdFirstCall: true)
        let combiner = AppendCombiner()
        let first = OwnedThread.start(name: "test-combiner") {
            combiner.submit(Self.append("a", records: Self.records(1), tracker: tracker, answers: answers), tracker: tracker) {
                (batch, completion) throws(LogError) in try log.submit(batch, completion: completion)
            }
        }
        log.waitUntilFirstCallHeld()
        // Three appends of two ~4 MiB records each: more than queuedBytesMax queued.
        let recordBytes = FormatLimits.recordBytesMax - 16
        #expect(3 * 2 * recordBytes >= AppendCombiner.queuedBytesMax)
        for name in ["big-1", "big-2", "big-3"] {
            combiner.submit(Self.append(name, records: Self.records(2, bytes: recordBytes), tracker: tracker, answers: answers), tracker: tracker) {
                (batch, completion) throws(LogError) in try log.submit(batch, completion: completion)
            }
        }
        let returned = Locked(false)
        let late = OwnedThread.start(name: "test-late") {
            combiner.submit(Self.append("late", records: Self.records(1), tracker: tracker, answers: answers), tracker: tracker) {
                (batch, completion) throws(LogError) in try log.submit(batch, completion: completion)
            }
            returned.withLock { $0 = true }
        }
        usleep(100_000)
        #expect(returned.withLock { !$0 }, "an append was queued beyond queuedBytesMax")
        log.release()
        late.join()
        first.join()
        #expect(returned.withLock { $0 })
        #expect(log.batchRecordCounts == [1, 2, 2, 2, 1], "each large append alone (combinedBytesMax), the late one after them")
        #expect(answers["big-3"] == "6-7 epoch 3")
        #expect(answers["late"] == "8-8 epoch 3")
    }

    @Test func splitCutsARangeIntoConsecutiveParts() {
        let parts = AppendCombiner.split(LSNRange(first: LSN(10), count: 6), counts: [1, 2, 3])
        #expect(parts == [LSNRange(first: LSN(10), count: 1), LSNRange(first: LSN(11), count: 2), LSNRange(first: LSN(13), count: 3)])
    }
}
