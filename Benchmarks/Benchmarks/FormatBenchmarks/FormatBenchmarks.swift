import Benchmark
import ShipLogBenchmarkSupport
import ShipLogFormat

// Layer 1, no I/O: CRC32C in each implementation, LZ4 batch encode and decode, and the
// 64-byte batch header codec.

/// Input sizes, in bytes.
enum FormatSizes {
    /// A long buffer: a batch payload. The SSE4.2 code runs three interleaved streams on it.
    static let longBytes = 64 << 10
    /// Below the 12 KiB (3 x 4 KiB stripes) where the SSE4.2 code starts interleaving.
    static let singleStreamBytes = 4 << 10
    /// What the header CRC covers: header bytes 8..<64.
    static let headerCoverageBytes = BatchHeader.byteCount - BatchHeader.crcCoverageStart
    /// Log lines in the LZ4 batches: about 64 KiB of record block.
    static let batchRecordCount = 640
}

let benchmarks: @Sendable () -> Void = {
    crc32cBenchmarks()
    lz4BatchBenchmarks()
    batchHeaderBenchmarks()
}

// MARK: CRC32C

func crc32cBenchmarks() {
    let hardwareMissing = CRC32C.hardwareChecksum(UnsafeRawBufferPointer(start: nil, count: 0)) == nil

    Benchmark(
        "CRC32C-slicing-by-8-64KiB",
        configuration: .shipLog(scalingFactor: .one, threads: .single)
    ) { benchmark, input in
        input.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations { blackHole(CRC32C.softwareChecksum(bytes)) }
        }
    } setup: {
        Workload.randomBytes(byteCount: FormatSizes.longBytes)
    }

    var singleStream = Benchmark.Configuration.shipLog(scalingFactor: .kilo, threads: .single)
    singleStream.skip = hardwareMissing
    Benchmark("CRC32C-sse42-one-stream-4KiB", configuration: singleStream) { benchmark, input in
        input.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations { blackHole(CRC32C.hardwareChecksum(bytes)) }
        }
    } setup: {
        Workload.randomBytes(byteCount: FormatSizes.singleStreamBytes)
    }

    var threeWay = Benchmark.Configuration.shipLog(scalingFactor: .kilo, threads: .single)
    threeWay.skip = hardwareMissing
    Benchmark("CRC32C-sse42-three-streams-64KiB", configuration: threeWay) { benchmark, input in
        input.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations { blackHole(CRC32C.hardwareChecksum(bytes)) }
        }
    } setup: {
        Workload.randomBytes(byteCount: FormatSizes.longBytes)
    }

    // The dispatching entry point on the header's 56 bytes: call overhead dominates.
    Benchmark(
        "CRC32C-dispatch-56B",
        configuration: .shipLog(scalingFactor: .mega, threads: .single)
    ) { benchmark, input in
        input.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations { blackHole(CRC32C.checksum(bytes)) }
        }
    } setup: {
        Workload.randomBytes(byteCount: FormatSizes.headerCoverageBytes)
    }
}

// MARK: LZ4 batches

func lz4BatchBenchmarks() {
    Benchmark(
        "LZ4-batch-encode-640-lines",
        configuration: .shipLog(scalingFactor: .one, threads: .single)
    ) { benchmark, builder in
        for _ in benchmark.scaledIterations {
            let encoded = builder.encode(codec: .lz4)
            precondition(encoded.codec == .lz4, "log lines must compress")
            blackHole(encoded)
        }
    } setup: {
        Workload.logLineBatch(recordCount: FormatSizes.batchRecordCount)
    }

    Benchmark(
        "LZ4-batch-decode-640-lines",
        configuration: .shipLog(scalingFactor: .one, threads: .single)
    ) { benchmark, batch in
        for _ in benchmark.scaledIterations {
            do {
                let records = try batch.records()
                var bytes = 0
                records.forEach { bytes &+= $0.count }
                blackHole(bytes)
            } catch {
                fatalError("benchmark batch does not decode: \(error)")
            }
        }
    } setup: {
        try sealedBatch(recordCount: FormatSizes.batchRecordCount)
    }
}

/// A verified LZ4 batch of log lines, at LSN 1.
func sealedBatch(recordCount: Int) throws -> Batch {
    var encoded = Workload.logLineBatch(recordCount: recordCount).encode(codec: .lz4)
    encoded.seal(baseLSN: .first, epoch: .initial, previousBatchCRC: 0, syncedThrough: .zero, timestamp: 0)
    return try Batch.decoding(encoded.bytes)
}

// MARK: Batch header

func batchHeaderBenchmarks() {
    Benchmark(
        "BatchHeader-encode",
        configuration: .shipLog(scalingFactor: .kilo, threads: .single)
    ) { benchmark, header in
        var header = header
        withUnsafeTemporaryAllocation(byteCount: BatchHeader.byteCount, alignment: 8) { buffer in
            for index in benchmark.scaledIterations {
                header.baseLSN = LSN(UInt64(index) + 1)
                blackHole(header.encode(into: buffer))
            }
        }
    } setup: {
        try sealedBatch(recordCount: FormatSizes.batchRecordCount).header
    }

    Benchmark(
        "BatchHeader-decode",
        configuration: .shipLog(scalingFactor: .kilo, threads: .single)
    ) { benchmark, bytes in
        bytes.withUnsafeBytes { raw in
            let header = UnsafeRawBufferPointer(rebasing: raw[0..<BatchHeader.byteCount])
            for _ in benchmark.scaledIterations {
                guard case .header(let decoded) = BatchHeader.decode(header) else {
                    fatalError("benchmark header does not decode")
                }
                blackHole(decoded)
            }
        }
    } setup: {
        try sealedBatch(recordCount: FormatSizes.batchRecordCount).bytes
    }
}
