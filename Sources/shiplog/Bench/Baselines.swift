import Glibc
import ShipLog

// Baselines measured in the same run as a benchmark, on the same machine and data, so that a
// result can be read as a fraction of what the hardware and the codecs allow:
//   - raw LZ4 block compression and decompression through liblz4 (ShipLogFormat's `LZ4`),
//   - raw single-writer `pwrite` + `fdatasync` appends to a fresh file,
//   - CRC32C throughput.
// Every timing uses CLOCK_MONOTONIC (``MonotonicClock``). "MB" is 10^6 bytes throughout.

/// Bytes processed in some time.
struct Throughput: Sendable, Equatable {
    /// Bytes processed (input of compression, output of decompression).
    var bytes: UInt64
    /// Calls made (blocks processed).
    var operations: UInt64
    var nanoseconds: UInt64

    var seconds: Double { Double(nanoseconds) / 1e9 }
    /// 10^6 bytes per second.
    var megabytesPerSecond: Double { nanoseconds == 0 ? 0 : Double(bytes) * 1e3 / Double(nanoseconds) }
    var operationsPerSecond: Double { nanoseconds == 0 ? 0 : Double(operations) * 1e9 / Double(nanoseconds) }
}

/// Raw LZ4 on a set of blocks.
struct LZ4Baseline: Sendable, Equatable {
    /// MB/s of input.
    var compression: Throughput
    /// MB/s of output (the uncompressed bytes).
    var decompression: Throughput
    /// Bytes of one pass over the blocks, before and after compression.
    var uncompressedBytes: Int
    var compressedBytes: Int
    var blockCount: Int
    /// uncompressed / compressed.
    var ratio: Double { compressedBytes == 0 ? 0 : Double(uncompressedBytes) / Double(compressedBytes) }
}

/// Raw single-writer synchronous appends.
struct SyncWriteBaseline: Sendable {
    var writeSize: Int
    var operations: UInt64
    var nanoseconds: UInt64
    /// Latency of each `pwrite` + `fdatasync`, in nanoseconds.
    var latency: Histogram
    /// The file system the directory is on (`ext4`, `tmpfs`, ...), when recognised.
    var fileSystem: String?

    var operationsPerSecond: Double { nanoseconds == 0 ? 0 : Double(operations) * 1e9 / Double(nanoseconds) }
    var megabytesPerSecond: Double { nanoseconds == 0 ? 0 : Double(operations) * Double(writeSize) * 1e3 / Double(nanoseconds) }
}

/// A system call of a baseline failed.
struct BaselineError: Error, Sendable, Equatable, CustomStringConvertible {
    var operation: String
    var path: String
    var errno: Int32

    var description: String { "\(operation) \(path): \(String(cString: strerror(errno))) (errno \(errno))" }
}

enum Baselines {
    /// Compresses the blocks round-robin with `LZ4_compress_default` for `duration`, then
    /// decompresses them round-robin with `LZ4_decompress_safe` for `duration` again. One
    /// untimed pass first warms the caches and produces the compressed blocks. Each block
    /// must be at most `FormatLimits.batchUncompressedBytesMax` bytes.
    static func lz4(blocks: [[UInt8]], duration: Duration) -> LZ4Baseline {
        precondition(!blocks.isEmpty && blocks.allSatisfy { !$0.isEmpty }, "no data to compress")
        let largest = blocks.map(\.count).max()!
        var output = [UInt8](repeating: 0, count: LZ4.compressBound(largest))
        var compressed: [[UInt8]] = []
        compressed.reserveCapacity(blocks.count)
        var restored = [UInt8](repeating: 0, count: largest)
        for block in blocks {  // untimed: warms up, keeps the compressed blocks, checks round trips
            let size = compress(block, into: &output)
            compressed.append(Array(output[..<size]))
            let back = compressed[compressed.count - 1].withUnsafeBytes { source in
                restored.withUnsafeMutableBytes { LZ4.decompress(source, into: $0) }
            }
            precondition(back == block.count && restored.prefix(block.count).elementsEqual(block), "LZ4 round trip failed")
        }
        let budget = nanoseconds(duration)

        var compression = Throughput(bytes: 0, operations: 0, nanoseconds: 0)
        output.withUnsafeMutableBytes { destination in
            let start = MonotonicClock.now()
            var i = 0
            repeat {
                let size = blocks[i].withUnsafeBytes { LZ4.compress($0, into: destination) }
                precondition(size != nil, "LZ4 compression failed")
                compression.bytes += UInt64(blocks[i].count)
                compression.operations += 1
                i = i + 1 == blocks.count ? 0 : i + 1
                compression.nanoseconds = MonotonicClock.elapsed(since: start)
            } while compression.nanoseconds < budget
        }

        var decompression = Throughput(bytes: 0, operations: 0, nanoseconds: 0)
        restored.withUnsafeMutableBytes { destination in
            let start = MonotonicClock.now()
            var i = 0
            repeat {
                let size = compressed[i].withUnsafeBytes { LZ4.decompress($0, into: destination) }
                precondition(size == blocks[i].count, "LZ4 round trip failed")
                decompression.bytes += UInt64(blocks[i].count)
                decompression.operations += 1
                i = i + 1 == blocks.count ? 0 : i + 1
                decompression.nanoseconds = MonotonicClock.elapsed(since: start)
            } while decompression.nanoseconds < budget
        }

        return LZ4Baseline(
            compression: compression, decompression: decompression,
            uncompressedBytes: blocks.reduce(0) { $0 + $1.count },
            compressedBytes: compressed.reduce(0) { $0 + $1.count }, blockCount: blocks.count)
    }

    /// The LZ4 ratio (uncompressed / compressed) of `blocks`, each compressed on its own.
    static func lz4Ratio(of blocks: [[UInt8]]) -> Double {
        guard let largest = blocks.map(\.count).max(), largest > 0 else { return 0 }
        var output = [UInt8](repeating: 0, count: LZ4.compressBound(largest))
        var compressed = 0
        var uncompressed = 0
        for block in blocks {
            compressed += compress(block, into: &output)
            uncompressed += block.count
        }
        return Double(uncompressed) / Double(compressed)
    }

    /// CRC32C (the dispatching implementation, see `CRC32C.implementation`) over the blocks
    /// round-robin for `duration`.
    static func crc32c(blocks: [[UInt8]], duration: Duration) -> Throughput {
        precondition(!blocks.isEmpty, "no data to checksum")
        var sink: UInt32 = 0
        for block in blocks { sink ^= CRC32C.checksum(block) }  // warm-up
        let budget = nanoseconds(duration)
        var result = Throughput(bytes: 0, operations: 0, nanoseconds: 0)
        let start = MonotonicClock.now()
        var i = 0
        repeat {
            sink ^= blocks[i].withUnsafeBytes { CRC32C.checksum($0) }
            result.bytes += UInt64(blocks[i].count)
            result.operations += 1
            i = i + 1 == blocks.count ? 0 : i + 1
            result.nanoseconds = MonotonicClock.elapsed(since: start)
        } while result.nanoseconds < budget
        blackHole(sink)
        return result
    }

    /// Appends `writeSize`-byte blocks of random bytes to a new file in `directory` with
    /// `pwrite` followed by `fdatasync` (each append durable before the next starts, one
    /// writer) for `duration`, then removes the file. Reports operations per second and the
    /// latency of each write + sync.
    ///
    /// The file grows with every append, so each `fdatasync` also persists the new size: the
    /// cost a write-ahead log pays without preallocation.
    static func syncedWrites(directory: String, writeSize: Int = 4096, duration: Duration) throws(BaselineError)
        -> SyncWriteBaseline
    {
        precondition(writeSize > 0)
        return try withScratchFile(in: directory, blockBytes: writeSize, seed: 0xF5_9C) { fd, path, block throws(BaselineError) in
            try syncedWrites(fd: fd, path: path, block: block, duration: duration, directory: directory, regionBytes: nil)
        }
    }

    /// Like ``syncedWrites(directory:writeSize:duration:)``, but each `pwrite` overwrites a
    /// block of a region of `regionBytes` that was written and synced first (round-robin), so
    /// that `fdatasync` flushes data only, no file size or extent changes: the least a durable
    /// write costs on this disk, the bound of a log appending to preallocated segments.
    static func syncedOverwrites(directory: String, writeSize: Int = 4096, regionBytes: Int = 1 << 20, duration: Duration)
        throws(BaselineError) -> SyncWriteBaseline
    {
        precondition(writeSize > 0 && regionBytes >= writeSize)
        return try withScratchFile(in: directory, blockBytes: writeSize, seed: 0x0F5_9C) { fd, path, block throws(BaselineError) in
            for offset in stride(from: 0, to: regionBytes, by: writeSize) {  // untimed: the region exists and is written
                let failure = block.withUnsafeBytes { writeAll(fd, $0, at: Int64(offset)) }
                guard failure == 0 else { throw BaselineError(operation: "pwrite", path: path, errno: failure) }
            }
            guard fsync(fd) == 0 else { throw BaselineError(operation: "fsync", path: path, errno: errno) }
            return try syncedWrites(fd: fd, path: path, block: block, duration: duration, directory: directory, regionBytes: regionBytes)
        }
    }

    /// The timed loop of the synced-write baselines on an open scratch file: appends, or
    /// overwrites round-robin within `regionBytes` when given.
    private static func syncedWrites(
        fd: Int32, path: String, block: [UInt8], duration: Duration, directory: String, regionBytes: Int?
    ) throws(BaselineError) -> SyncWriteBaseline {
        let writeSize = block.count
        var latency = Histogram()
        let budget = nanoseconds(duration)
        var operations: UInt64 = 0
        var offset: Int64 = 0
        let start = MonotonicClock.now()
        var elapsed: UInt64 = 0
        repeat {
            let before = MonotonicClock.now()
            let failure = block.withUnsafeBytes { writeAll(fd, $0, at: offset) }
            guard failure == 0 else { throw BaselineError(operation: "pwrite", path: path, errno: failure) }
            guard fdatasync(fd) == 0 else { throw BaselineError(operation: "fdatasync", path: path, errno: errno) }
            let after = MonotonicClock.now()
            latency.record(after &- before)
            offset += Int64(writeSize)
            if let regionBytes, offset + Int64(writeSize) > Int64(regionBytes) { offset = 0 }
            operations += 1
            elapsed = after &- start
        } while elapsed < budget
        return SyncWriteBaseline(
            writeSize: writeSize, operations: operations, nanoseconds: elapsed, latency: latency,
            fileSystem: fileSystemName(of: directory))
    }

    /// Writes `totalBytes` of random bytes to a new file in `directory` in `chunkBytes`
    /// `pwrite`s followed by one `fdatasync`, then removes the file: the sequential write
    /// bandwidth of the disk, the bound of anything that streams bytes to a log.
    static func sequentialWrite(directory: String, totalBytes: Int, chunkBytes: Int = 1 << 20) throws(BaselineError) -> Throughput {
        precondition(totalBytes > 0 && chunkBytes > 0)
        return try withScratchFile(in: directory, blockBytes: chunkBytes, seed: 0x5E0_0E11) { fd, path, chunk throws(BaselineError) in
            var offset = 0
            let start = MonotonicClock.now()
            while offset < totalBytes {
                let failure = chunk.withUnsafeBytes { writeAll(fd, $0, at: Int64(offset)) }
                guard failure == 0 else { throw BaselineError(operation: "pwrite", path: path, errno: failure) }
                offset += chunkBytes
            }
            guard fdatasync(fd) == 0 else { throw BaselineError(operation: "fdatasync", path: path, errno: errno) }
            return Throughput(
                bytes: UInt64(offset), operations: UInt64(offset / chunkBytes), nanoseconds: MonotonicClock.elapsed(since: start))
        }
    }

    /// Creates a new file in `directory` and a block of `blockBytes` random bytes, calls
    /// `body` with the descriptor, the path and the block, then closes and removes the file.
    private static func withScratchFile<T>(
        in directory: String, blockBytes: Int, seed: UInt64, _ body: (Int32, String, [UInt8]) throws(BaselineError) -> T
    ) throws(BaselineError) -> T {
        let path = directory + "/.shiplog-baseline-\(getpid())-\(MonotonicClock.now()).tmp"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BaselineError(operation: "open", path: path, errno: errno) }
        defer {
            close(fd)
            unlink(path)
        }
        var block = [UInt8](repeating: 0, count: blockBytes)
        var random = RandomBytesGenerator(seed: seed, recordSize: blockBytes)
        random.generate(into: &block)
        return try body(fd, path, block)
    }

    /// The type of the file system holding `path` (`ext4`, `xfs`, `tmpfs`, `overlay`, ...): the
    /// entry of /proc/self/mounts with the longest mount point containing the resolved path.
    static func fileSystemName(of path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        let target = String(cString: resolved)
        free(resolved)
        guard let file = fopen("/proc/self/mounts", "r") else { return nil }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        var best: (mountPoint: String, type: String)?
        while getline(&line, &capacity, file) > 0, let line {
            // device mount-point type options dump pass; spaces in fields are escaped as \040.
            let fields = String(cString: line).split(separator: " ")
            guard fields.count >= 3 else { continue }
            let mountPoint = unescapeMountField(fields[1])
            let inside = mountPoint == "/" || target == mountPoint || target.hasPrefix(mountPoint + "/")
            if inside, mountPoint.count >= (best?.mountPoint.count ?? 0) {
                best = (mountPoint, String(fields[2]))
            }
        }
        return best?.type
    }

    /// Decodes the octal escapes (`\040`) of a /proc/self/mounts field.
    private static func unescapeMountField(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        let utf8 = Array(field.utf8)
        var i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "\\"), i + 3 < utf8.count,
                let value = UInt8(String(decoding: utf8[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(utf8[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: Loopback round trip

    /// The round-trip times of a 100-byte ping-pong over a loopback TCP connection (an echo
    /// thread on the other end), for `duration`.
    static func loopbackRoundTrip(duration: Duration) throws -> Histogram {
        let network = TCPNetwork()
        let listener = try network.listen(on: Endpoint(host: "127.0.0.1", port: 0))
        defer { listener.close() }
        let echo = OwnedThread.start(name: "bench-echo") {
            guard let connection = try? listener.accept() else { return }
            defer { connection.close() }
            var buffer = [UInt8](repeating: 0, count: 100)
            while true {
                var received = 0
                while received < 100 {
                    let count = (try? buffer.withUnsafeMutableBytes { raw in
                        Result { () throws(TransportError) in try connection.receive(into: UnsafeMutableRawBufferPointer(rebasing: raw[received...])) }
                    }.get()) ?? 0
                    if count == 0 { return }
                    received += count
                }
                guard (try? connection.send(buffer)) != nil else { return }
            }
        }
        let connection = try network.connect(to: listener.endpoint, timeout: .seconds(5))
        var histogram = Histogram()
        var buffer = [UInt8](repeating: 7, count: 100)
        let end = MonotonicClock.now() + duration.nanoseconds
        while MonotonicClock.now() < end {
            let began = MonotonicClock.now()
            try connection.send(buffer)
            var received = 0
            while received < 100 {
                let count = try buffer.withUnsafeMutableBytes { raw in
                    Result { () throws(TransportError) in try connection.receive(into: UnsafeMutableRawBufferPointer(rebasing: raw[received...])) }
                }.get()
                guard count > 0 else { throw CommandError("loopback echo closed") }
                received += count
            }
            histogram.record(MonotonicClock.elapsed(since: began))
        }
        connection.close()
        echo.join()
        return histogram
    }

    // MARK: Helpers

    private static func compress(_ block: [UInt8], into output: inout [UInt8]) -> Int {
        let size = block.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { LZ4.compress(source, into: $0) }
        }
        guard let size else { preconditionFailure("LZ4 compression failed") }
        return size
    }

    /// Writes all of `bytes` at `offset`; returns 0 or the errno of the failure.
    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64) -> Int32 {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            done += n
        }
        return 0
    }

    static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) &* 1_000_000_000 &+ UInt64(attoseconds / 1_000_000_000)
    }

    @inline(never)
    private static func blackHole(_ value: UInt32) {
        if value == 0x8BAD_F00D { print("", terminator: "") }
    }
}
