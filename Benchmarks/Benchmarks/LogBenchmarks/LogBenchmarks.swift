import Benchmark
import Dispatch
import ShipLogBenchmarkSupport
import ShipLogFormat
import ShipLogRecovery
import ShipLogStorage

// Layer 2 on a real log in a temporary directory: buffered appends and a reader scan.
//
// Appends are pipelined: `submit` without waiting, then one wait for the last batch. A
// blocking `append` per batch measures little but the wake-up of the waiting thread, which on
// this 2-core VM flips between about 6 and 50 µs from one run to the next (whether the other
// vCPU idles), so its p90 cannot be checked against a threshold. The pipelined loop runs the
// same code (encode on the caller, admission, the I/O thread's write) with one wake-up per
// 64 batches.

/// Workload sizes.
enum LogSizes {
    /// Log lines per appended batch: about 6.5 KiB of record block.
    static let appendBatchRecordCount = 64
    /// Batches submitted back to back per measured iteration of the append benchmark.
    static let appendBatchesPerIteration = 64
    /// Log lines per batch of the scanned log: about 64 KiB of record block.
    static let scanBatchRecordCount = 640
    /// Batches in the scanned log: 256 x 64 KiB = about 16 MiB of records, 6 MiB on disk.
    static let scanBatchCount = 256
}

let benchmarks: @Sendable () -> Void = {
    appendBenchmarks()
    scanBenchmarks()
}

/// A log in a temporary directory.
struct LogFixture {
    let directory: TemporaryDirectory
    let log: Log

    /// Opens a new log and registers its closing and removal with `teardown`.
    init(label: String, teardown: Teardown) throws {
        let directory = TemporaryDirectory(label: label)
        teardown.register { directory.remove() }
        let log = try LogRecovery.open(directory: FilePath(directory.path)).log
        teardown.register { try log.close() }
        self.directory = directory
        self.log = log
    }
}

func appendBenchmarks() {
    let teardown = Teardown()
    Benchmark(
        "Append-buffered-pipelined-64x64-lines",
        configuration: .shipLog(scalingFactor: .one, threads: .pipelineWithIOThread)
    ) { (benchmark: Benchmark, state: (log: Log, batch: BatchBuilder)) in
        for _ in benchmark.scaledIterations {
            do { try submitAndWait(state.log, state.batch, count: LogSizes.appendBatchesPerIteration) } catch {
                fatalError("append failed: \(error)")
            }
        }
    } setup: {
        let fixture = try LogFixture(label: "append", teardown: teardown)
        return (fixture.log, Workload.logLineBatch(recordCount: LogSizes.appendBatchRecordCount))
    } teardown: {
        try teardown.run()
    }
}

/// Encodes and submits `batch` `count` times with buffered durability, then blocks until the
/// I/O thread has written the last one.
func submitAndWait(_ log: Log, _ batch: BatchBuilder, count: Int) throws {
    let written = DispatchSemaphore(value: 0)
    for index in 0..<count {
        let last = index == count - 1
        try log.submit(batch.encode(codec: .lz4), durability: .buffered) { result in
            if case .failure(let error) = result { fatalError("append failed: \(error)") }
            if last { written.signal() }
        }
    }
    written.wait()
}

func scanBenchmarks() {
    let teardown = Teardown()
    Benchmark(
        "Reader-scan-16MiB",
        configuration: .shipLog(scalingFactor: .one, threads: .single)
    ) { (benchmark: Benchmark, log: Log) in
        for _ in benchmark.scaledIterations {
            do { blackHole(try scanRecordBytes(log)) } catch {
                fatalError("scan failed: \(error)")
            }
        }
    } setup: {
        let fixture = try LogFixture(label: "scan", teardown: teardown)
        let batch = Workload.logLineBatch(recordCount: LogSizes.scanBatchRecordCount)
        for _ in 0..<LogSizes.scanBatchCount { try fixture.log.append(batch, durability: .buffered) }
        try fixture.log.sync()
        return fixture.log
    } teardown: {
        try teardown.run()
    }
}

/// Reads every batch of `log` through a ``BatchCursor``, decodes its records and returns
/// their total size in bytes.
func scanRecordBytes(_ log: Log) throws -> Int {
    var cursor = log.batches(from: .first)
    var bytes = 0
    var batches = 0
    while let batch = try cursor.next() {
        try batch.records().forEach { bytes &+= $0.count }
        batches += 1
    }
    precondition(batches == LogSizes.scanBatchCount, "the scan must read every batch")
    return bytes
}
