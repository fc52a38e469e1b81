import Foundation
import Glibc
import Testing
@testable import ShipLogStorage
import ShipLogFormat
import ShipLogRecovery
import ShipLogTestSupport

// Failures of the file system under an open log (FaultInjectingFileSystem over the real file
// system in a temporary directory). The invariant every test checks: whatever was
// acknowledged before the failure is present and exact after reopening without faults, the
// failure surfaces as a clear error, and the log acknowledges nothing after it.

// MARK: - Helpers

/// `count` deterministic, incompressible records of `length` bytes.
private func randomRecords(_ count: Int, length: Int, seed: UInt64) -> [[UInt8]] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
}

/// Runs an append (or sync) and returns its outcome instead of throwing.
private func outcome<T>(_ body: () throws(LogError) -> T) -> Result<T, LogError> {
    Result { () throws(LogError) in try body() }
}

private func failure<T>(_ result: Result<T, LogError>) -> LogError? {
    if case .failure(let error) = result { return error }
    return nil
}

extension LogError {
    /// The file-system error inside, if the case carries one.
    fileprivate var fileSystemError: FileSystemError? {
        switch self {
        case .syncFailed(let e), .writeFailed(let e), .outOfSpace(let e), .io(let e), .locked(_, let e): e
        default: nil
        }
    }

    fileprivate var isSyncFailed: Bool { if case .syncFailed = self { true } else { false } }
    fileprivate var isWriteFailed: Bool { if case .writeFailed = self { true } else { false } }
    fileprivate var isOutOfSpace: Bool { if case .outOfSpace = self { true } else { false } }
}

/// Options with compression off, so batch sizes (and segment rolls) are predictable.
/// (The index interval stays at its default: see `verifierAcceptsAnyIndexInterval`.)
private func uncompressed(segmentBytesMax: Int64 = 64 << 10) -> LogOptions {
    var options = LogOptions()
    options.segmentBytesMax = segmentBytesMax
    options.compression = .none
    return options
}

/// Reopens `directory` on the real file system (recovering it), and checks:
/// - the LSNs read back are dense from 1;
/// - every acknowledged record is there, at its LSN, byte for byte;
/// - when `attempted` is given (every record ever submitted, in submission order), what is
///   there is a prefix of it: unacknowledged batches may survive, but never garbage;
/// - the reopened log accepts an append at the next LSN.
/// Returns the records read back.
@discardableResult
private func expectIntactAfterReopen(
    _ directory: FilePath, options: LogOptions, acknowledged: [(LSN, [UInt8])], attempted: [[UInt8]]? = nil,
    _ context: String = "", sourceLocation: SourceLocation = #_sourceLocation
) -> [(LSN, [UInt8])] {
    let log: Log
    do {
        log = try Log.open(directory: directory, options: options)
    } catch {
        Issue.record("reopening without faults failed: \(error) \(context)", sourceLocation: sourceLocation)
        return []
    }
    defer { try? log.close() }
    let back: [(LSN, [UInt8])]
    do { back = try readAll(log) } catch {
        Issue.record("reading after reopen failed: \(error) \(context)", sourceLocation: sourceLocation)
        return []
    }
    #expect(
        back.map(\.0.rawValue) == Array(UInt64(1)..<UInt64(1 + back.count)),
        "LSNs after reopen are not dense from 1 \(context)", sourceLocation: sourceLocation)
    var present: [LSN: [UInt8]] = [:]
    for (lsn, record) in back { present[lsn] = record }
    var missing: [LSN] = []
    var different: [LSN] = []
    for (lsn, record) in acknowledged {
        guard let found = present[lsn] else { missing.append(lsn); continue }
        if found != record { different.append(lsn) }
    }
    #expect(missing.isEmpty, "acknowledged LSNs missing after reopen: \(missing.prefix(10)) \(context)", sourceLocation: sourceLocation)
    #expect(different.isEmpty, "acknowledged LSNs changed after reopen: \(different.prefix(10)) \(context)", sourceLocation: sourceLocation)
    if let attempted {
        #expect(back.count <= attempted.count, "more records than were ever submitted \(context)", sourceLocation: sourceLocation)
        let mismatch = zip(back, attempted).enumerated().first { $0.element.0.1 != $0.element.1 }?.offset
        #expect(mismatch == nil, "record at LSN \(mismatch.map { $0 + 1 } ?? 0) is not the one submitted \(context)", sourceLocation: sourceLocation)
    }
    let next = LSN(UInt64(back.count + 1))
    do {
        let range = try log.append(Array("after reopen".utf8), durability: .immediate)
        #expect(range.first == next, "append after reopen got the wrong LSN \(context)", sourceLocation: sourceLocation)
        let tail = try readAll(log, from: next)
        #expect(tail.map(\.1) == [Array("after reopen".utf8)], "\(context)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("append after reopen failed: \(error) \(context)", sourceLocation: sourceLocation)
    }
    return back
}

/// Appends `records` one per batch at `.immediate`, returning what was acknowledged.
private func appendAll(_ log: Log, _ records: [[UInt8]]) throws -> [(LSN, [UInt8])] {
    var acknowledged: [(LSN, [UInt8])] = []
    for record in records {
        let range = try log.append(record, durability: .immediate)
        acknowledged.append((range.first, record))
    }
    return acknowledged
}

/// Appends `records` one by one with `.immediate` until an append fails; returns that error
/// (`nil` when all succeeded) and adds every acknowledged record to `acknowledged`.
private func appendUntilStopped(
    _ log: Log, _ records: ArraySlice<[UInt8]>, acknowledged: inout [(LSN, [UInt8])]
) -> LogError? {
    for record in records {
        switch outcome({ () throws(LogError) in try log.append(record, durability: .immediate) }) {
        case .success(let range): acknowledged.append((range.first, record))
        case .failure(let error): return error
        }
    }
    return nil
}

/// Every kind of append and sync fails on a stopped log, with the error that stopped it
/// (or, for errors without a case of their own, `.failed`).
private func expectEverythingFails(
    on log: Log, stoppedBy check: (LogError) -> Bool, sourceLocation: SourceLocation = #_sourceLocation
) async {
    let probe = Array("after the failure".utf8)
    for durability in [Durability.immediate, .buffered, .interval(.milliseconds(5))] {
        let result = outcome { () throws(LogError) in try log.append(probe, durability: durability) }
        #expect(failure(result).map(check) == true, "append \(durability) on a stopped log: \(result)", sourceLocation: sourceLocation)
    }
    var batch = BatchBuilder()
    try? batch.append(probe)
    do {
        _ = try await log.append(batch, durability: .buffered)
        Issue.record("async append on a stopped log succeeded", sourceLocation: sourceLocation)
    } catch {
        #expect(check(error), "async append on a stopped log: \(error)", sourceLocation: sourceLocation)
    }
    let submitted = outcome { () throws(LogError) in
        try log.submit(batch.encode(codec: .none), durability: .buffered) { _ in
            Issue.record("a completion ran for a submit the stopped log refused")
        }
    }
    #expect(failure(submitted).map(check) == true, "submit on a stopped log: \(submitted)", sourceLocation: sourceLocation)
    let synced = outcome { () throws(LogError) in try log.sync() }
    #expect(failure(synced).map(check) == true, "sync on a stopped log: \(synced)", sourceLocation: sourceLocation)
    #expect(log.failure != nil, sourceLocation: sourceLocation)
}

// MARK: - Tests

@Suite struct FailureTests {
    @Test func fdatasyncFailureStopsTheLogAndKeepsEveryAcknowledgedRecord() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let fs = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        let input = records(20)
        var acknowledged: [(LSN, [UInt8])] = []
        do {
            let log = try Log.open(directory: dir.path, fileSystem: fs)
            acknowledged = try appendAll(log, Array(input[0..<10]))
            #expect(log.durableLSN == LSN(10))
            // One fdatasync fails, once: the file system is healthy again right after, but the
            // log must not trust the file (fsyncgate) and stays stopped.
            let syncsBefore = fs.callCount(of: .sync)
            let fault = fs.failCall(0, of: .sync, errno: EIO)
            let result = outcome { () throws(LogError) in try log.append(input[10], durability: .immediate) }
            #expect(fs.timesFired(fault) == 1)
            guard case .failure(.syncFailed(let error)) = result else {
                Issue.record("expected syncFailed from the waiting immediate append, got \(result)")
                try? log.close()
                return
            }
            #expect(error.errno == EIO)
            #expect(error.operation == .sync)
            #expect(error.path.lastComponent == SegmentName.fileName(baseLSN: .first), "the error names the segment: \(error)")
            #expect(log.durableLSN == LSN(10), "the failed sync must not advance the durable LSN")
            await expectEverythingFails(on: log, stoppedBy: \.isSyncFailed)
            #expect(log.durableLSN == LSN(10))
            #expect(fs.callCount(of: .sync) == syncsBefore + 1, "no fdatasync is attempted after the failed one")
            // Readers still see what was acknowledged.
            let visible = try readAll(log)
            #expect(Array(visible.prefix(10)).map(\.1) == Array(input[0..<10]))
            let closed = outcome { () throws(LogError) in try log.close() }
            #expect(failure(closed)?.isSyncFailed == true, "close reports the failure: \(closed)")
        }
        let back = expectIntactAfterReopen(dir.path, options: LogOptions(), acknowledged: acknowledged, attempted: input)
        // The batch whose sync failed was written; whether it survives is not promised, but it
        // may only be that batch.
        #expect(back.count == 10 || back.count == 11)
    }

    /// Many appenders sharing group commits: the one failed fdatasync fails every waiter of
    /// its group, nothing is acknowledged after it, and everything acknowledged before it
    /// survives a reopen.
    @Test func fdatasyncFailureFailsEveryWaiterOfAGroupCommit() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let fs = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        let writers = 8
        let perWriter = 60
        final class Outcomes: @unchecked Sendable {
            let lock = NSLock()
            var acknowledged: [(LSN, [UInt8])] = []
            var errors: [LogError] = []
            var acknowledgedAfterError = 0
        }
        let outcomes = Outcomes()
        do {
            let log = try Log.open(directory: dir.path, fileSystem: fs)
            try log.append(Array("warm-up: creates the segment".utf8), durability: .immediate)
            let fault = fs.failCall(15, of: .sync, errno: EIO)
            DispatchQueue.concurrentPerform(iterations: writers) { w in
                var failed = false
                for i in 0..<perWriter {
                    let record = Array("writer-\(w)-record-\(i)".utf8)
                    do {
                        let range = try log.append(record, durability: .immediate)
                        outcomes.lock.withLock {
                            outcomes.acknowledged.append((range.first, record))
                            if failed { outcomes.acknowledgedAfterError += 1 }
                        }
                    } catch let error as LogError {
                        outcomes.lock.withLock { outcomes.errors.append(error) }
                        failed = true
                    } catch {
                        Issue.record("not a LogError: \(error)")
                        failed = true
                    }
                }
            }
            #expect(fs.timesFired(fault) == 1)
            #expect(outcomes.acknowledgedAfterError == 0, "appends were acknowledged after the log failed")
            #expect(outcomes.errors.count == writers * perWriter - outcomes.acknowledged.count)
            // Every writer saw the failure, and every error is the sync failure.
            #expect(outcomes.errors.count >= writers)
            let other = outcomes.errors.first { !$0.isSyncFailed }
            #expect(other == nil, "every failed append reports the sync failure: \(String(describing: other))")
            let lastAcknowledged = outcomes.acknowledged.map(\.0).max() ?? .zero
            #expect(lastAcknowledged <= log.durableLSN, "an immediate append was acknowledged beyond the durable LSN")
            try? log.close()
        }
        expectIntactAfterReopen(dir.path, options: LogOptions(), acknowledged: outcomes.acknowledged)
    }

    /// Buffered appends are acknowledged once written; a failed explicit sync() reports
    /// syncFailed and stops the log, and the written records are still there after reopen.
    @Test func failedExplicitSyncAfterBufferedAppends() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let fs = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        let input = records(30)
        var acknowledged: [(LSN, [UInt8])] = []
        do {
            let log = try Log.open(directory: dir.path, fileSystem: fs)
            for record in input {
                let range = try log.append(record, durability: .buffered)
                acknowledged.append((range.first, record))
            }
            fs.failCalls(from: 0, of: .sync, errno: EIO)
            let synced = outcome { () throws(LogError) in try log.sync() }
            #expect(failure(synced)?.isSyncFailed == true, "\(synced)")
            #expect(log.durableLSN < LSN(30))
            await expectEverythingFails(on: log, stoppedBy: \.isSyncFailed)
            try? log.close()
        }
        expectIntactAfterReopen(dir.path, options: LogOptions(), acknowledged: acknowledged, attempted: input)
    }

    @Test(arguments: [EIO, ENOSPC])
    func writeFailureMakesTheLogReadOnly(errno code: Int32) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let fs = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        let input = records(20)
        var acknowledged: [(LSN, [UInt8])] = []
        do {
            let log = try Log.open(directory: dir.path, fileSystem: fs)
            acknowledged = try appendAll(log, Array(input[0..<10]))
            let fault = fs.failCall(0, of: .write, errno: code)
            let result = outcome { () throws(LogError) in try log.append(input[10], durability: .immediate) }
            #expect(fs.timesFired(fault) == 1)
            let expectedKind: (LogError) -> Bool = code == ENOSPC ? \.isOutOfSpace : \.isWriteFailed
            #expect(failure(result).map(expectedKind) == true, "write errno \(code): \(result)")
            #expect(failure(result)?.fileSystemError?.errno == code)
            #expect(failure(result)?.fileSystemError?.operation == .write)
            #expect(log.writtenLSN == LSN(10), "the failed batch must not become readable")
            await expectEverythingFails(on: log, stoppedBy: expectedKind)
            // Read-only: what was acknowledged is still readable from the stopped log.
            let visible = try readAll(log)
            #expect(visible.map(\.1) == Array(input[0..<10]))
            try? log.close()
        }
        let back = expectIntactAfterReopen(dir.path, options: LogOptions(), acknowledged: acknowledged, attempted: input)
        #expect(back.count == 10, "the failed write wrote nothing, so nothing past LSN 10 may appear")
    }

    /// ENOSPC part-way through a batch (the disk filled mid-write): the batch is not
    /// acknowledged, and its torn remains are cut at the next open. The short write ends on a
    /// 512-byte sector boundary of the file, as a real one does (the kernel stops at a page or
    /// block, and torn writes respect sectors): after the first `boundary` boundaries inside the
    /// batch (-1: the last one inside it).
    @Test(arguments: [0, 1, 2, 3, -1])
    func shortWriteIsNotAcknowledgedAndItsTornTailIsCut(boundary: Int) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let fs = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        let options = uncompressed()
        let input = randomRecords(12, length: 2000, seed: UInt64(boundary + 10))
        var acknowledged: [(LSN, [UInt8])] = []
        var keeping = 0
        do {
            let log = try Log.open(directory: dir.path, options: options, fileSystem: fs)
            acknowledged = try appendAll(log, Array(input[0..<10]))
            let dataEnd = Int(try #require(log.segments.last).dataBytes) + SegmentHeader.byteCount
            let batchBytes = (dataEnd - SegmentHeader.byteCount) / 10
            let sector = Int(SegmentScanner.sectorBytes)
            let first = sector - dataEnd % sector
            keeping = boundary >= 0 ? first + boundary * sector : first + (batchBytes - 1 - first) / sector * sector
            #expect(keeping > 0 && keeping < batchBytes)
            fs.shortWrite(onCall: 0, keeping: keeping, errno: ENOSPC, thenEveryWrite: true)
            let result = outcome { () throws(LogError) in try log.append(input[10], durability: .immediate) }
            #expect(failure(result)?.isOutOfSpace == true, "\(result)")
            await expectEverythingFails(on: log, stoppedBy: \.isOutOfSpace)
            try? log.close()
        }
        do {
            let (log, report) = try LogRecovery.open(directory: dir.path, options: options)
            #expect(report.truncations.count == 1, "the torn batch is cut: \(report.truncations)")
            #expect(report.lastLSN == LSN(10))
            try? log.close()
        } catch {
            Issue.record("recovery refused a log whose last write was cut short after \(keeping) bytes: \(error)")
            return
        }
        let back = expectIntactAfterReopen(dir.path, options: options, acknowledged: acknowledged, attempted: input)
        #expect(back.count == 10)
        let problems = try LogVerifier(directory: dir.path).verify().problems
        #expect(problems.isEmpty, "\(problems)")
    }

    /// fallocate failing with ENOSPC when a roll creates the next segment: `outOfSpace`, no
    /// temporary file left behind, earlier data intact, and the log works again once reopened
    /// with space available.
    @Test func fallocateENOSPCAtSegmentCreationIsOutOfSpace() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let fs = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        let options = uncompressed()
        let input = randomRecords(200, length: 1000, seed: 7)
        var acknowledged: [(LSN, [UInt8])] = []
        var stoppedBy: LogError?
        do {
            let log = try Log.open(directory: dir.path, options: options, fileSystem: fs)
            acknowledged = try appendAll(log, [input[0]])
            #expect(fs.callCount(of: .preallocate) == 1)
            let fault = fs.failCalls(from: 0, of: .preallocate, errno: ENOSPC)
            stoppedBy = appendUntilStopped(log, input.dropFirst(), acknowledged: &acknowledged)
            #expect(fs.timesFired(fault) == 1)
            guard case .outOfSpace(let error)? = stoppedBy else {
                Issue.record("expected outOfSpace when the next segment cannot be preallocated, got \(String(describing: stoppedBy))")
                try? log.close()
                return
            }
            #expect(error.operation == .preallocate)
            #expect(error.errno == ENOSPC)
            #expect(acknowledged.count > 30, "the first 64 KiB segment filled before the roll")
            #expect(log.segments.count == 1)
            #expect(log.segments.first?.isSealed == true, "the full segment was sealed before the roll failed")
            let leftovers = try fs.inner.contentsOfDirectory(at: dir.path).filter { $0.hasSuffix(".tmp") }
            #expect(leftovers.isEmpty, "the failed segment's temporary file is removed: \(leftovers)")
            await expectEverythingFails(on: log, stoppedBy: \.isOutOfSpace)
            try? log.close()
        }
        let back = expectIntactAfterReopen(dir.path, options: options, acknowledged: acknowledged, attempted: input)
        #expect(back.count == acknowledged.count)
    }

    /// A file system that cannot preallocate (EOPNOTSUPP) is not an error: segments grow as
    /// they are written.
    @Test func unsupportedFallocateIsTolerated() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let fs = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        let options = uncompressed(segmentBytesMax: 16 << 10)
        fs.failCalls(from: 0, of: .preallocate, errno: EOPNOTSUPP)
        let input = randomRecords(60, length: 1000, seed: 8)
        var acknowledged: [(LSN, [UInt8])] = []
        do {
            let log = try Log.open(directory: dir.path, options: options, fileSystem: fs)
            acknowledged = try appendAll(log, input)
            #expect(log.segments.count > 2)
            try log.close()
        }
        #expect(fs.callCount(of: .preallocate) > 2)
        let back = expectIntactAfterReopen(dir.path, options: options, acknowledged: acknowledged, attempted: input)
        #expect(back.count == 60)
    }

    /// rename of the new segment's temporary file failing (before or after it took effect).
    @Test(arguments: [false, true])
    func renameFailureAtSegmentCreation(afterApplying: Bool) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let fs = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        let options = uncompressed(segmentBytesMax: 16 << 10)
        let input = randomRecords(100, length: 1000, seed: 9)
        var acknowledged: [(LSN, [UInt8])] = []
        var stoppedBy: LogError?
        do {
            let log = try Log.open(directory: dir.path, options: options, fileSystem: fs)
            acknowledged = try appendAll(log, [input[0]])
            let fault = fs.inject(Fault(
                .rename, .onCall(0), effect: afterApplying ? .failAfterApplying(errno: EIO) : .fail(errno: EIO)))
            stoppedBy = appendUntilStopped(log, input.dropFirst(), acknowledged: &acknowledged)
            #expect(fs.timesFired(fault) == 1)
            guard case .writeFailed(let error)? = stoppedBy else {
                Issue.record("expected writeFailed naming the rename, got \(String(describing: stoppedBy))")
                try? log.close()
                return
            }
            #expect(error.operation == .rename)
            #expect(error.errno == EIO)
            #expect("\(LogError.writeFailed(error))".contains("rename"))
            #expect(acknowledged.count > 5)
            await expectEverythingFails(on: log, stoppedBy: \.isWriteFailed)
            try? log.close()
        }
        expectIntactAfterReopen(dir.path, options: options, acknowledged: acknowledged, attempted: input)
        let problems = try LogVerifier(directory: dir.path).verify().problems
        #expect(problems.isEmpty, "\(problems)")
    }

    /// fsync of the directory after the rename failing: the new segment's name may not be
    /// durable, so the log stops; everything acknowledged before it survives.
    @Test func directorySyncFailureAtSegmentCreation() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let fs = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        let options = uncompressed(segmentBytesMax: 16 << 10)
        let input = randomRecords(100, length: 1000, seed: 10)
        var acknowledged: [(LSN, [UInt8])] = []
        var stoppedBy: LogError?
        do {
            let log = try Log.open(directory: dir.path, options: options, fileSystem: fs)
            acknowledged = try appendAll(log, [input[0]])
            let fault = fs.failCall(0, of: .syncDirectory, errno: EIO)
            stoppedBy = appendUntilStopped(log, input.dropFirst(), acknowledged: &acknowledged)
            #expect(fs.timesFired(fault) == 1)
            // A failed directory fsync is a failed sync (syncFailed) or a failed segment
            // creation (writeFailed); either way it names the operation.
            guard let stoppedBy, stoppedBy.isSyncFailed || stoppedBy.isWriteFailed, let error = stoppedBy.fileSystemError else {
                Issue.record("expected syncFailed or writeFailed naming the directory sync, got \(String(describing: stoppedBy))")
                try? log.close()
                return
            }
            #expect(error.operation == .syncDirectory)
            #expect(error.errno == EIO)
            #expect("\(stoppedBy)".contains("sync directory"), "\(stoppedBy)")
            let sameKind: (LogError) -> Bool = stoppedBy.isSyncFailed ? \.isSyncFailed : \.isWriteFailed
            await expectEverythingFails(on: log, stoppedBy: sameKind)
            try? log.close()
        }
        expectIntactAfterReopen(dir.path, options: options, acknowledged: acknowledged, attempted: input)
        let problems = try LogVerifier(directory: dir.path).verify().problems
        #expect(problems.isEmpty, "\(problems)")
    }

    /// `LogVerifier` once compared a sealed segment's footer index with a scan at the default
    /// 4096-byte interval, so a healthy log written with any other `indexIntervalBytes` failed
    /// `verify` ("footer index does not match the batches").
    @Test(arguments: [1024, 4096] as [Int64])
    func verifierAcceptsAnyIndexInterval(indexIntervalBytes: Int64) throws {
        let dir = TemporaryDirectory("verifierIndexInterval\(indexIntervalBytes)")
        defer { dir.cleanup() }
        var options = uncompressed(segmentBytesMax: 16 << 10)
        options.indexIntervalBytes = indexIntervalBytes
        let log = try Log.open(directory: dir.path, options: options)
        _ = try appendAll(log, randomRecords(40, length: 1000, seed: 11))
        #expect(log.segments.count > 2)
        try log.close()
        let problems = try LogVerifier(directory: dir.path).verify().problems
        #expect(problems.isEmpty, "a healthy log verifies: \(problems)")
    }

    // MARK: Every call site

    /// A fixed, deterministic workload: immediate appends of 1 to 3 records, some buffered
    /// appends each followed by sync(), small segments so that several rolls happen.
    private struct Workload {
        static let options = uncompressed(segmentBytesMax: 12 << 10)
        static let batches: [[[UInt8]]] = {
            var rng = SplitMix64(seed: 42)
            return (0..<24).map { _ in
                (0...rng.uniform(below: 3)).map { _ in
                    (0..<(200 + rng.uniform(below: 1300))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                }
            }
        }()
        static var attempted: [[UInt8]] { batches.flatMap { $0 } }

        struct Run {
            var acknowledged: [(LSN, [UInt8])] = []
            var error: LogError?
            /// Appends or syncs that succeeded after the first error.
            var succeededAfterError = 0
        }

        /// Runs the workload on a log in `directory` (created by the open).
        static func run(_ fs: any FileSystem, in directory: FilePath) -> Run {
            var run = Run()
            let log: Log
            do { log = try Log.open(directory: directory, options: options, fileSystem: fs) } catch {
                run.error = error
                return run
            }
            for (i, records) in batches.enumerated() {
                var batch = BatchBuilder()
                for record in records { try? batch.append(record) }
                let buffered = i % 5 == 3
                let result = outcome { () throws(LogError) in
                    let range = try log.append(batch, durability: buffered ? .buffered : .immediate)
                    if buffered { try log.sync() }
                    return range
                }
                switch result {
                case .success(let range):
                    for (offset, record) in records.enumerated() {
                        run.acknowledged.append((range.first.advanced(by: UInt64(offset)), record))
                    }
                case .failure(let error):
                    run.error = error
                }
                if run.error != nil { break }
            }
            if run.error != nil {
                // The log is stopped: nothing more may succeed.
                if case .success = outcome({ () throws(LogError) in try log.append([1, 2, 3], durability: .immediate) }) {
                    run.succeededAfterError += 1
                }
                if case .success = outcome({ () throws(LogError) in try log.sync() }) { run.succeededAfterError += 1 }
            }
            do { try log.close() } catch {
                if run.error == nil { run.error = error }
            }
            return run
        }
    }

    @Test func everyWriteAndSyncCallSiteFailingKeepsAcknowledgedRecords() throws {
        let operations: [FaultOperation] = [.write, .sync, .preallocate, .truncate, .open, .rename, .syncDirectory]
        // Dry run: count the call sites.
        let probe = FaultInjectingFileSystem(wrapping: PosixFileSystem(), recordingCalls: false)
        let counts: [FaultOperation: Int]
        do {
            let dir = TemporaryDirectory()
            defer { dir.cleanup() }
            let run = Workload.run(probe, in: dir.path.appending("log"))
            #expect(run.error == nil, "the workload fails without faults: \(String(describing: run.error))")
            #expect(run.acknowledged.map(\.1) == Workload.attempted)
            counts = probe.callCounts
            #expect(counts[.rename, default: 0] >= 3, "the workload rolls segments: \(counts)")
        }
        var cases = 0
        for (code, codeName) in [(EIO, "EIO"), (ENOSPC, "ENOSPC")] {
        for operation in operations {
            for k in 0..<counts[operation, default: 0] {
                let dir = TemporaryDirectory("callSite-\(operation)-\(k)-\(codeName)")
                defer { dir.cleanup() }
                let directory = dir.path.appending("log")
                let fs = FaultInjectingFileSystem(wrapping: PosixFileSystem(), recordingCalls: false)
                let fault = fs.failCall(k, of: operation, errno: code)
                let run = Workload.run(fs, in: directory)
                let context = "(\(operation) call #\(k) failing with \(codeName))"
                cases += 1
                #expect(fs.timesFired(fault) == 1, "the workload is deterministic, so call #\(k) happens \(context)")
                if fs.timesFired(fault) == 1 {
                    guard let error = run.error else {
                        Issue.record("a failed \(operation) went unreported \(context)")
                        continue
                    }
                    #expect(
                        error.fileSystemError?.errno == code && error.fileSystemError?.operation == operation.errorOperation,
                        "the error names the failed operation: \(error) \(context)")
                }
                #expect(run.succeededAfterError == 0, "the log acknowledged after failing \(context)")
                expectIntactAfterReopen(
                    directory, options: Workload.options, acknowledged: run.acknowledged, attempted: Workload.attempted,
                    context)
                let problems = (try? LogVerifier(directory: directory).verify().problems) ?? ["verify threw"]
                #expect(problems.isEmpty, "the reopened log verifies: \(problems) \(context)")
            }
        }
        }
        #expect(cases > 100)
        print("FailureTests: failed each call site in turn with EIO and with ENOSPC, \(cases) cases: \(operations.map { "\($0) \(counts[$0, default: 0])" }.joined(separator: ", "))")
    }
}
