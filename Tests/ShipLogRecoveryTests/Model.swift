import Foundation
import ShipLog
import ShipLogTestSupport
import Synchronization

/// What the tests know about a log: the bytes appended at every LSN, and how far the log has
/// promised durability.
struct Model {
    /// Record bytes by LSN (index `lsn - 1`); nil where nothing known was appended.
    private(set) var records: [[UInt8]?] = []
    /// Every LSN up to this one was promised durable: an `.immediate` append or a `sync()`
    /// returned, `durableLSN` said so, or a reopen read it back (recovery syncs what it reads).
    var durableThrough: UInt64 = 0
    /// The log's first LSN when it was last seen (after retention): the recovered log may start
    /// earlier (unsynced removals come back) but never later.
    var retainedFrom: UInt64 = 1
    /// Retention removed everything below this LSN and synced the directory: it must not come back.
    var removedBelow: UInt64 = 1
    /// A retention call that failed may still have unlinked segments below this LSN (an unlink
    /// can take effect and report an error): those records were asked to go and may be gone.
    var retentionFailedBelow: UInt64 = 1

    /// Last LSN anything was appended at.
    var lastAssigned: UInt64 { UInt64(records.count) }

    mutating func assign(_ range: LSNRange, _ batch: [[UInt8]]) {
        precondition(UInt64(batch.count) == range.count, "range \(range) for \(batch.count) records")
        let end = Int(range.last.rawValue)
        if records.count < end { records.append(contentsOf: repeatElement(nil, count: end - records.count)) }
        for (offset, record) in batch.enumerated() { records[Int(range.first.rawValue) - 1 + offset] = record }
    }

    func record(at lsn: UInt64) -> [UInt8]? {
        guard lsn >= 1, lsn <= UInt64(records.count) else { return nil }
        return records[Int(lsn) - 1]
    }

    /// The log was recovered up to `last`: later LSNs are free to be appended again.
    mutating func truncate(after last: UInt64) {
        if UInt64(records.count) > last { records.removeSubrange(Int(last)...) }
    }
}

/// Completions of appends, collected from any thread (the log's I/O thread runs them).
final class Ledger: Sendable {
    struct State {
        /// Highest LSN of an acknowledged `.immediate` append: durable.
        var immediate: UInt64 = 0
        /// Highest LSN of any acknowledged append: handed to the OS (survives a process death).
        var written: UInt64 = 0
        var failures = 0
    }

    let state = Mutex(State())

    func record(_ result: Result<LSNRange, LogError>, _ durability: Durability) {
        state.withLock { state in
            switch result {
            case .success(let range):
                state.written = max(state.written, range.last.rawValue)
                if durability == .immediate { state.immediate = max(state.immediate, range.last.rawValue) }
            case .failure:
                state.failures += 1
            }
        }
    }

    var snapshot: State { state.withLock { $0 } }
}

/// A one-shot latch a thread waits on.
final class Latch: Sendable {
    /// Longest wait for a completion before the engine is declared hung, in seconds.
    static let hangSeconds = 30.0
    private let semaphore = DispatchSemaphore(value: 0)
    func signal() { semaphore.signal() }
    func wait() { semaphore.wait() }
    /// Waits at most `seconds`; false when the wait timed out.
    func wait(seconds: Double) -> Bool { semaphore.wait(timeout: .now() + seconds) == .success }
}

// MARK: - Records

/// Random records: empty ones, short and long random bytes, and compressible runs.
struct RecordMaker {
    var rng: SplitMix64

    mutating func bytes(_ count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            var offset = 0
            while offset < count {
                var word = rng.next()
                let take = min(8, count - offset)
                withUnsafeBytes(of: &word) { raw.baseAddress!.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: take) }
                offset += take
            }
            initialized = count
        }
    }

    /// A short random pattern repeated to `count` bytes: compresses well.
    mutating func compressible(_ count: Int) -> [UInt8] {
        let pattern = bytes(1 + rng.uniform(below: 6))
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var offset = 0
            while offset < count {
                let take = min(pattern.count, count - offset)
                pattern.withUnsafeBufferPointer { source in
                    (buffer.baseAddress! + offset).update(from: source.baseAddress!, count: take)
                }
                offset += take
            }
            initialized = count
        }
    }

    mutating func record() -> [UInt8] {
        switch rng.uniform(below: 100) {
        case ..<8: return []
        case ..<50: return bytes(1 + rng.uniform(below: 100))
        case ..<72: return bytes(100 + rng.uniform(below: 900))
        case ..<93: return compressible(1 + rng.uniform(below: 4000))
        default: return bytes(1000 + rng.uniform(below: 3000))
        }
    }

    /// 1-50 records (mostly few), kept under `budget` bytes unless `oversize`.
    mutating func batch(budget: Int) -> [[UInt8]] {
        let count: Int = switch rng.uniform(below: 10) {
        case ..<6: 1 + rng.uniform(below: 5)
        case ..<9: 6 + rng.uniform(below: 15)
        default: 21 + rng.uniform(below: 30)
        }
        var records: [[UInt8]] = []
        var total = 0
        for _ in 0..<count {
            let record = self.record()
            if !records.isEmpty && total + record.count > budget { break }
            total += record.count
            records.append(record)
        }
        return records
    }
}

extension BatchBuilder {
    init(records: [[UInt8]]) {
        self.init(capacity: records.reduce(16) { $0 + $1.count + 5 })
        for record in records { try! append(record) }
    }
}

// MARK: - Checking a recovered log

/// What a reopened log must show.
struct RecoveryExpectation {
    /// Every LSN up to here must be present (unless retention dropped it).
    var requiredThrough: UInt64
    /// The log may start no later than this (retention never removes the active segment).
    var startsNoLaterThan: UInt64
    /// ... and no earlier than this (removals whose directory sync returned are durable).
    var startsNoEarlierThan: UInt64
}

/// Reads the whole recovered log and checks it against the model. Returns the problems found
/// (empty when all is well); `rng` picks a few LSNs for random-access reads.
func checkRecovered(
    _ log: Log, model: Model, expect: RecoveryExpectation, fileSystem: any FileSystem, directory: FilePath,
    rng: inout SplitMix64
) -> [String] {
    var problems: [String] = []
    let first = log.firstLSN.rawValue
    let next = log.nextLSN.rawValue
    let last = next - 1
    if log.writtenLSN.rawValue != last { problems.append("writtenLSN \(log.writtenLSN) != nextLSN-1 \(last)") }
    if log.durableLSN.rawValue != last { problems.append("durableLSN \(log.durableLSN) != nextLSN-1 \(last)") }
    if last + 1 < first { problems.append("firstLSN \(first) > nextLSN \(next)") }
    // Retention never drops the active segment, so durable records are never all retained away.
    if expect.requiredThrough > last {
        problems.append(
            "lost durable records: log ends at LSN \(last) but LSNs through \(expect.requiredThrough) were acknowledged durable")
    }
    if first > expect.startsNoLaterThan {
        problems.append("log starts at LSN \(first), after the first retained LSN \(expect.startsNoLaterThan)")
    }
    if first < expect.startsNoEarlierThan {
        problems.append("log starts at LSN \(first): segments removed durably (below \(expect.startsNoEarlierThan)) came back")
    }
    // Read everything, in order.
    var expected = first
    var mismatches = 0
    do {
        try log.forEachRecord(from: LSN(first), through: LSN(last)) { lsn, bytes in
            if lsn.rawValue != expected {
                problems.append("read LSN \(lsn), expected \(expected) (LSNs not dense)")
                expected = lsn.rawValue
            }
            if let want = model.record(at: lsn.rawValue) {
                if !sameBytes(bytes, want), mismatches < 3 {
                    mismatches += 1
                    problems.append("LSN \(lsn): read \(bytes.count) bytes that differ from the \(want.count) appended")
                }
            } else if mismatches < 3 {
                mismatches += 1
                problems.append("LSN \(lsn) holds a record that was never appended")
            }
            expected += 1
        }
    } catch {
        problems.append("reading LSN \(expected) of \(first)...\(last) failed: \(error)")
        return problems
    }
    if first <= last && expected != last + 1 {
        problems.append("read LSNs \(first)..<\(expected), log says it ends at \(last)")
    }
    // Random access goes through the sparse index (footer or scanned).
    if first <= last {
        for _ in 0..<3 {
            let lsn = first + UInt64(rng.uniform(below: Int(last - first + 1)))
            do {
                guard let batch = try log.batch(containing: LSN(lsn)), batch.lsnRange.contains(LSN(lsn)) else {
                    problems.append("batch(containing: \(lsn)) found nothing")
                    continue
                }
                var at = batch.lsnRange.first.rawValue
                for record in try batch.records() {
                    if let want = model.record(at: at), !record.elementsEqual(want) {  // few records: fine
                        problems.append("random access: LSN \(at) differs from what was appended")
                        break
                    }
                    at += 1
                }
            } catch {
                problems.append("batch(containing: \(lsn)) failed: \(error)")
            }
        }
    }
    // The files themselves: every batch, footer and the chain.
    do {
        let verification = try LogVerifier(directory: directory, fileSystem: fileSystem).verify()
        problems += verification.problems.map { "verify: \($0)" }
    } catch {
        problems.append("verify threw: \(error)")
    }
    return problems
}

/// Recovery claims everything it read back is durable (`durableLSN` is the recovered end, and
/// new batches are stamped `syncedThrough` it). On the simulator that claim is checkable: each
/// segment's durable image must be what the log reads (its volatile image) and it must be
/// reachable through durable directory entries.
func checkRecoveredIsDurable(_ log: Log, simulator: SimulatedFileSystem, directory: FilePath) -> [String] {
    var problems: [String] = []
    // Which names survive a power loss right now: crash a copy that loses every unsynced
    // directory entry (and keeps all data, which is compared below).
    let probe = simulator.clone()
    var lossy = SimulatedFileSystem.Options.lossless
    lossy.unsyncedDirectoryEntries = .lost
    probe.options = lossy
    probe.crash(seed: 0)
    if !probe.fileExists(at: directory) {
        return ["not durable after recovery: the log directory \(directory) has no durable entry in its parent"]
    }
    for segment in log.segments {
        let path = directory.appending(segment.fileName)
        guard probe.contents(at: path) != nil, let durable = simulator.durableContents(at: path) else {
            problems.append(
                "not durable after recovery: \(segment.fileName) (\(segment.isSealed ? "sealed" : "active")) "
                    + "has no durable directory entry, yet its LSNs count as durable")
            continue
        }
        guard let volatile = simulator.contents(at: path) else { continue }
        if durable != volatile {
            let firstDifference = (0..<min(durable.count, volatile.count)).first { durable[$0] != volatile[$0] }
                ?? min(durable.count, volatile.count)
            problems.append(
                "not durable after recovery: \(segment.fileName) (\(segment.isSealed ? "sealed" : "active"), "
                    + "LSN \(segment.baseLSN)...\(segment.lastLSN)) reads back \(volatile.count) bytes but only "
                    + "\(durable.count) are on disk, differing from byte \(firstDifference)")
        }
    }
    return problems
}

/// memcmp: `elementsEqual` is very slow in debug builds.
func sameBytes(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    guard a.count > 0 else { return true }
    return b.withUnsafeBytes { memcmp(a.baseAddress!, $0.baseAddress!, a.count) == 0 }
}

/// Runs `count` threads and waits for them all.
func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            body(index)
            group.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    group.wait()
}
