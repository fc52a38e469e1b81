import Glibc
import ShipLog
import Synchronization

// Small thread-safe pieces shared by the benchmark phases: a stop flag, counters, the first
// error of many threads, histogram merging, a counting semaphore, the scratch directory and
// pre-generated records.

/// A flag set once (stop a phase, a Ctrl-C) and polled by many threads.
final class AtomicFlag: Sendable {
    private let state = Atomic<Bool>(false)
    var isSet: Bool { state.load(ordering: .acquiring) }
    func set() { state.store(true, ordering: .releasing) }
}

/// A counter many threads add to; read at any time (relaxed: a rate display, not a fence).
final class AtomicCounter: Sendable {
    private let count = Atomic<UInt64>(0)
    func add(_ value: UInt64) { count.wrappingAdd(value, ordering: .relaxed) }
    var value: UInt64 { count.load(ordering: .relaxed) }
}

/// The first error message reported by any thread.
final class FirstError: Sendable {
    private let message = Mutex<String?>(nil)
    func set(_ text: String) { message.withLock { if $0 == nil { $0 = text } } }
    var value: String? { message.withLock { $0 } }
}

/// Operation counts, logical bytes and latency histograms of many threads, merged.
final class HistogramCollector: Sendable {
    private let state = Mutex<(operations: UInt64, bytes: UInt64, histogram: Histogram)>((0, 0, Histogram()))

    func add(_ operations: UInt64, bytes: UInt64 = 0, _ histogram: Histogram) {
        state.withLock {
            $0.operations += operations
            $0.bytes += bytes
            $0.histogram.merge(histogram)
        }
    }

    var total: (operations: UInt64, bytes: UInt64, histogram: Histogram) { state.withLock { $0 } }
}

/// A counting semaphore on a condition lock.
final class InFlightSlots: @unchecked Sendable {
    // @unchecked: `free` is guarded by `lock`.
    private let lock = ConditionLock()
    private var free: Int
    private let capacity: Int

    init(_ capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.free = capacity
    }

    func acquire() {
        lock.withLock {
            while free == 0 { lock.wait() }
            free -= 1
        }
    }

    func release() {
        lock.withLock { free += 1 }
        lock.broadcast()
    }

    /// Waits until every slot is free again.
    func drain() {
        lock.withLock { while free < capacity { lock.wait() } }
    }
}

/// A directory for benchmark logs, removed afterwards.
struct BenchDirectory {
    let path: String

    /// A new `shiplog-bench-XXXXXX` directory inside `parent`, else `$TMPDIR`, else `/var/tmp`.
    init(parent: String?) throws {
        let base = parent ?? (getenv("TMPDIR").map { String(cString: $0) } ?? "/var/tmp")
        var template = Array("\(base)/shiplog-bench-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw CommandError("cannot create a benchmark directory under \(base): \(String(cString: strerror(errno)))")
        }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Removes the directory and everything the benchmark created in it.
    func remove() { Self.removeTree(path) }

    /// Removes `path` and everything below it (best effort).
    static func removeTree(_ path: String) {
        guard let directory = opendir(path) else {
            unlink(path)
            return
        }
        var children: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { children.append(path + "/" + name) }
        }
        closedir(directory)
        for child in children { removeTree(child) }
        rmdir(path)
    }
}

/// Records generated before a phase starts, so that the phase measures the engine, not the
/// generator. All records are stored back to back in one array.
struct RecordPool: Sendable {
    /// All records back to back.
    private(set) var storage: [UInt8] = []
    /// Each record's byte range in `storage`.
    private(set) var records: [Range<Int>] = []

    var count: Int { records.count }

    /// Records of `kind` as the workload makes them (log lines vary in size), `bytes` in all.
    init(kind: Workload.Kind, bytes: Int) {
        var workload = Workload(kind: kind)
        storage.reserveCapacity(bytes + 4096)
        while storage.count < bytes {
            workload.withNextRecord { record in
                records.append(storage.count..<storage.count + record.count)
                storage.append(contentsOf: record)
            }
        }
    }

    /// `count` log-like records of exactly `recordBytes` bytes each (log lines joined and cut).
    init(logLikeRecords count: Int, recordBytes: Int) {
        precondition(count > 0 && recordBytes > 0)
        var workload = Workload(kind: .logLike)
        storage.reserveCapacity(count * recordBytes)
        var line: [UInt8] = []
        for _ in 0..<count {
            while line.count < recordBytes { workload.withNextRecord { line.append(contentsOf: $0) } }
            records.append(storage.count..<storage.count + recordBytes)
            storage.append(contentsOf: line.prefix(recordBytes))
            line.removeAll(keepingCapacity: true)
        }
    }

    /// Appends record `index` (modulo the pool size) to `builder`.
    @inline(__always)
    func append(_ index: Int, to builder: inout BatchBuilder) throws(FormatError) {
        let range = records[index % records.count]
        let result: Result<Void, FormatError> = storage.withUnsafeBytes { raw in
            Result { () throws(FormatError) in try builder.append(UnsafeRawBufferPointer(rebasing: raw[range])) }
        }
        try result.get()
    }

    /// A copy of record `index` (modulo the pool size): for APIs that take arrays.
    func bytes(_ index: Int) -> [UInt8] { Array(storage[records[index % records.count]]) }

    /// The size of record `index` (modulo the pool size).
    func size(_ index: Int) -> Int { records[index % records.count].count }
}
