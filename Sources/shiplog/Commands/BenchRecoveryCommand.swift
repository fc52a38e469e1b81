import Glibc
import ShipLog

/// `shiplog bench recovery`: how fast a log's segments are checked, next to raw LZ4
/// decompression of the same data measured in the same run.
///
/// Three scans of the same log: the recovery scan (every batch's header and payload CRC, LSN
/// continuity, the chain: what opening after a crash does to the unsynced segment, here over
/// all of them), the full verification of `shiplog verify` (the same plus decompressing and
/// parsing every record block), and a replay of every record through the log's reader. The
/// log is in the page cache: the figures are CPU cost, not disk speed.
struct BenchRecoveryCommand {
    static let batchBytes = 64 << 10

    let json: Bool
    let megabytes: UInt64
    let directory: String?

    init(_ arguments: ParsedArguments) throws {
        json = arguments.flag("json")
        megabytes = try arguments.uint64("megabytes") ?? 512
        directory = arguments.string("dir")
    }

    func run() throws -> Int32 {
        let root = try BenchDirectory(parent: directory)
        defer { root.remove() }
        let path = FilePath(root.path + "/log")
        progress("writing \(megabytes) MB of log-like batches to \(path)")
        let records = try writeLog(at: path, storedBytes: megabytes * 1_000_000)

        progress("raw LZ4 decompression baseline")
        var workload = Workload(kind: .logLike)
        let blocks = workload.makeRecordBlocks(count: 64, blockSize: Self.batchBytes)
        let lz4 = Baselines.lz4(blocks: blocks, duration: .seconds(1))

        progress("recovery scan (CRC, chain, continuity) of every segment")
        let (scanBytes, scanNanoseconds) = try Self.scanAll(path, verifyRecords: false)
        progress("full verification (also decompress and parse every record block)")
        let (verifyBytes, verifyNanoseconds) = try Self.scanAll(path, verifyRecords: true)
        progress("replay every record through the reader")
        let replayStart = MonotonicClock.now()
        let (log, report) = try LogRecovery.open(directory: path)
        let openNanoseconds = MonotonicClock.elapsed(since: replayStart)
        var replayed: UInt64 = 0
        let replayFrom = MonotonicClock.now()
        try log.forEachRecord(from: .first) { _, _ in replayed += 1 }
        let replayNanoseconds = MonotonicClock.elapsed(since: replayFrom)
        try log.close()
        guard replayed == records else { throw CommandError("replayed \(replayed) records, wrote \(records)") }

        let scanRate = Double(scanBytes) * 1e3 / Double(scanNanoseconds)
        let verifyRate = Double(verifyBytes) * 1e3 / Double(verifyNanoseconds)
        let decompressRate = lz4.decompression.megabytesPerSecond
        let replayRate = Double(replayed) * 1e9 / Double(replayNanoseconds)
        if json {
            let document: JSONValue = [
                "segment_bytes": JSONValue(UInt64(scanBytes)), "records": JSONValue(records),
                "recovery_scan_mb_per_second": JSONValue(scanRate),
                "verify_mb_per_second": JSONValue(verifyRate),
                "lz4_decompress_baseline_mb_per_second": JSONValue(decompressRate),
                "ratio_scan_to_lz4_decompress": JSONValue(scanRate / decompressRate),
                "ratio_verify_to_lz4_decompress": JSONValue(verifyRate / decompressRate),
                "replay_records_per_second": JSONValue(replayRate),
                "open_after_clean_close_ms": JSONValue(Double(openNanoseconds) / 1e6),
                "open_segments_by_footer": JSONValue(report.segmentsOpenedByFooter),
                "open_segments_scanned": JSONValue(report.segmentsScanned),
            ]
            Output.standard.line(document.rendered(pretty: true))
            return 0
        }
        let out = Output.standard
        out.line("log: \(Format.bytes(UInt64(scanBytes))) of segments, \(Format.group(records)) records")
        out.line("recovery scan (CRC + chain):        \(Format.fixed(scanRate)) MB/s of segment bytes")
        out.line("full verify (+ decompress, parse):  \(Format.fixed(verifyRate)) MB/s of segment bytes")
        out.line("raw LZ4 decompress (same records):  \(Format.fixed(decompressRate)) MB/s of output")
        out.line("ratio recovery scan / LZ4 decompress = \(Format.fixed(scanRate / decompressRate, decimals: 2))  (target >= 0.5)")
        out.line("ratio full verify / LZ4 decompress   = \(Format.fixed(verifyRate / decompressRate, decimals: 2))")
        out.line("replay through the reader: \(Format.group(UInt64(replayRate))) records/s")
        out.line(
            "open after a clean close: \(Format.fixed(Double(openNanoseconds) / 1e6, decimals: 1)) ms "
                + "(\(report.segmentsOpenedByFooter) segments by footer, \(report.segmentsScanned) scanned)")
        return 0
    }

    /// Writes log-like records in 64 KiB batches until the segments hold `storedBytes`.
    func writeLog(at path: FilePath, storedBytes: UInt64) throws -> UInt64 {
        let log = try Log.open(directory: path)
        var workload = Workload(kind: .logLike)
        var builder = BatchBuilder(capacity: Self.batchBytes + 4096)
        var records: UInt64 = 0
        while log.statistics.storedBytesAppended < storedBytes {
            builder.removeAll()
            records += UInt64(workload.fill(&builder, upToBytes: Self.batchBytes))
            try log.submit(builder.encode(codec: .lz4), durability: .buffered) { _ in }
        }
        try log.sync()
        try log.close()
        return records
    }

    /// Scans every segment; returns the stored bytes checked and the nanoseconds it took.
    static func scanAll(_ path: FilePath, verifyRecords: Bool) throws -> (Int64, UInt64) {
        let fileSystem = PosixFileSystem()
        let names = try LogDirectoryReader(directory: path).segmentNames()
        let files = try names.map { try SegmentFile.open(at: path.appending($0.name), fileSystem: fileSystem, writable: false) }
        var bytes: Int64 = 0
        let start = MonotonicClock.now()
        for file in files {
            let scan = try SegmentScanner(file: file, verifyRecords: verifyRecords).scan()
            if case .damage(let damage) = scan.ending { throw CommandError("\(file.fileName): \(damage.reason)") }
            bytes += scan.storedBytes
        }
        return (bytes, MonotonicClock.elapsed(since: start))
    }

    func progress(_ text: String) {
        if !json { Output.error.line("… \(text)") }
    }
}
