import Foundation
import Testing
@testable import ShipLogStorage
import ShipLogFormat
import ShipLogRecovery

/// A fresh directory under the system temporary directory, removed by `cleanup()`.
struct TemporaryDirectory {
    let path: FilePath

    init(_ name: String = #function) {
        let base = FileManager.default.temporaryDirectory.path + "/shiplog-tests"
        let safe = name.filter { $0.isLetter || $0.isNumber }
        path = FilePath(base + "/" + safe + "-" + String(UInt64.random(in: 0...UInt64.max), radix: 36))
        try? FileManager.default.createDirectory(atPath: path.string, withIntermediateDirectories: true)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: path.string) }
}

func smallSegments() -> LogOptions {
    var options = LogOptions()
    options.segmentBytesMax = 64 << 10
    options.indexIntervalBytes = 1024
    return options
}

/// Distinct records; with `bytes`, each is padded to that many bytes.
func records(_ count: Int, prefix: String = "record", bytes: Int? = nil) -> [[UInt8]] {
    (0..<count).map { i in
        var record = Array("\(prefix)-\(i)-\(String(repeating: "x", count: i % 50))".utf8)
        if let bytes { while record.count < bytes { record.append(UInt8(97 + record.count % 26)) } }
        return record
    }
}

func readAll(_ log: Log, from lsn: LSN = .first) throws -> [(LSN, [UInt8])] {
    var out: [(LSN, [UInt8])] = []
    try log.forEachRecord(from: lsn) { lsn, bytes in out.append((lsn, Array(bytes))) }
    return out
}

@Suite struct LogTests {
    @Test func appendedRecordsReadBackInOrderWithDenseLSNs() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path)
        let input = records(100)
        var ranges: [LSNRange] = []
        for record in input { ranges.append(try log.append(record, durability: .buffered)) }
        #expect(ranges.map(\.first.rawValue) == Array(1...100))
        let back = try readAll(log)
        #expect(back.map(\.0.rawValue) == Array(1...100))
        #expect(back.map(\.1) == input)
        try log.close()
    }

    @Test func batchAppendReturnsItsWholeRange() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path)
        var batch = BatchBuilder()
        for record in records(10) { try batch.append(record) }
        let first = try log.append(batch, durability: .immediate)
        let second = try log.append(batch, durability: .immediate)
        #expect(first == LSNRange(first: LSN(1), last: LSN(10)))
        #expect(second == LSNRange(first: LSN(11), last: LSN(20)))
        #expect(log.durableLSN == LSN(20))
        try log.close()
    }

    @Test func segmentsRollAndReopenWithoutScanningSealedOnes() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let input = records(20000)
        do {
            let log = try Log.open(directory: dir.path, options: smallSegments())
            var batch = BatchBuilder()
            for (i, record) in input.enumerated() {
                try batch.append(record)
                if i % 7 == 6 {
                    try log.append(batch, durability: .buffered)
                    batch.removeAll()
                }
            }
            if !batch.isEmpty { try log.append(batch, durability: .buffered) }
            #expect(log.segments.count > 3)
            try log.close()
        }
        let (log, report) = try LogRecovery.open(directory: dir.path, options: smallSegments())
        #expect(report.segmentsScanned == 1)
        #expect(report.segmentsOpenedByFooter == report.segmentCount - 1)
        #expect(report.truncations.isEmpty)
        let back = try readAll(log)
        #expect(back.map(\.1) == input)
        // Reading from the middle uses the index and lands on the exact record.
        let middle = try readAll(log, from: LSN(1777))
        #expect(middle.first?.0 == LSN(1777))
        #expect(middle.first?.1 == input[1776])
        let next = try log.append(Array("after reopen".utf8), durability: .immediate)
        #expect(next.first == LSN(20001))
        try log.close()
    }

    @Test func concurrentImmediateAppendersShareSyncs() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path)
        let writers = 16
        let perWriter = 50
        try await withThrowingTaskGroup(of: [LSNRange].self) { group in
            for w in 0..<writers {
                group.addTask {
                    var ranges: [LSNRange] = []
                    for i in 0..<perWriter {
                        var batch = BatchBuilder()
                        try batch.append("w\(w)-\(i)")
                        ranges.append(try await log.append(batch, durability: .immediate))
                    }
                    return ranges
                }
            }
            var all: [LSNRange] = []
            for try await ranges in group { all += ranges }
            #expect(Set(all.map(\.first)).count == writers * perWriter)
        }
        let stats = log.statistics
        #expect(stats.recordsAppended == UInt64(writers * perWriter))
        // Group commit: fewer fdatasyncs than appends.
        #expect(stats.syncCalls < UInt64(writers * perWriter))
        #expect(log.durableLSN == LSN(UInt64(writers * perWriter)))
        try log.close()
    }

    @Test func retentionDropsWholeSealedSegmentsButNeverTheActiveOne() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path, options: smallSegments())
        for record in records(2000) { try log.append(record, durability: .buffered) }
        let before = log.segments
        #expect(before.count > 2)
        let removed = try log.removeSegments(before: LSN(1000))
        #expect(!removed.isEmpty)
        #expect(removed.allSatisfy { $0.lastLSN < LSN(1000) })
        #expect(log.firstLSN == removed.last!.lastLSN.advanced(by: 1))
        #expect(throws: LogError.self) { _ = try log.batch(containing: LSN(1)) }
        let everything = try log.applyRetention(RetentionPolicy(totalBytesMax: 0))
        #expect(!everything.isEmpty)
        #expect(log.segments.count == 1)
        #expect(!log.segments[0].isSealed || log.segments.count == 1)
        let rest = try readAll(log, from: log.firstLSN)
        #expect(rest.last?.0 == LSN(2000))
        try log.close()
        let reopened = try Log.open(directory: dir.path, options: smallSegments())
        #expect(reopened.firstLSN == log.firstLSN)
        try reopened.close()
    }

    @Test func tailYieldsNewBatchesAndEndsWhenTheLogCloses() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = try Log.open(directory: dir.path)
        try log.append(Array("before".utf8), durability: .buffered)
        let reader = Task {
            var seen: [LSN] = []
            for try await batch in log.tail(from: .first) { seen.append(batch.lsnRange.first) }
            return seen
        }
        for i in 0..<20 {
            try await Task.sleep(for: .milliseconds(2))
            try log.append(Array("live-\(i)".utf8), durability: .buffered)
        }
        try await Task.sleep(for: .milliseconds(50))
        try log.close()
        let seen = try await reader.value
        #expect(seen == (1...21).map { LSN(UInt64($0)) })
    }
}
