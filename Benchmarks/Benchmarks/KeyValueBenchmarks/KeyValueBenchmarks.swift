import Benchmark
import Dispatch
import ShipLogBenchmarkSupport
import ShipLogKV
import ShipLogStateMachine
import ShipLogStorage

// Layer 4: the key-value store's puts (buffered, through the log) and gets (B-tree snapshot).
//
// Puts are pipelined (`submit`, then one wait for the last): a blocking `put` per key mostly
// measures the wake-up of the waiting thread, which flips between about 6 and 50 µs from run
// to run on this 2-core VM (see LogBenchmarks).

/// Workload sizes.
enum KeyValueSizes {
    /// Distinct keys: puts cycle through them (inserts first, then updates); gets read them.
    static let keyCount = 100_000
    /// Bytes of every value.
    static let valueBytes = 100
    /// Puts submitted back to back per measured iteration of the put benchmark.
    static let putsPerIteration = 256
    /// Puts per write batch when the get benchmark loads its keys.
    static let loadBatchPuts = 1_000
}

let benchmarks: @Sendable () -> Void = {
    putBenchmarks()
    getBenchmarks()
}

/// A store in a temporary directory.
struct StoreFixture {
    let store: KeyValueStore

    /// Opens a new store and registers its closing and removal with `teardown`.
    init(label: String, teardown: Teardown) throws {
        let directory = TemporaryDirectory(label: label)
        teardown.register { directory.remove() }
        var options = StateMachineOptions()
        options.checkpointIntervalBytes = nil  // no checkpoint in the middle of a measurement
        let store = try KeyValueStore(directory: FilePath(directory.path), options: options)
        teardown.register { try store.close() }
        self.store = store
    }
}

/// The keys of the workload, one value, and where the next put goes.
final class KeyValueWorkload {
    let keys = (0..<KeyValueSizes.keyCount).map(Workload.key)
    let value = Workload.randomBytes(byteCount: KeyValueSizes.valueBytes)
    private var nextIndex = 0

    /// The next key, cycling through ``keys``.
    func nextKey() -> [UInt8] {
        defer { nextIndex = nextIndex + 1 == keys.count ? 0 : nextIndex + 1 }
        return keys[nextIndex]
    }
}

func putBenchmarks() {
    let teardown = Teardown()
    Benchmark(
        "KV-put-buffered-pipelined-256x100B",
        configuration: .shipLog(scalingFactor: .one, threads: .pipelineWithIOThread)
    ) { (benchmark: Benchmark, state: (store: KeyValueStore, workload: KeyValueWorkload)) in
        for _ in benchmark.scaledIterations {
            do { try submitPutsAndWait(state.store, state.workload, count: KeyValueSizes.putsPerIteration) } catch {
                fatalError("put failed: \(error)")
            }
        }
    } setup: {
        (try StoreFixture(label: "put", teardown: teardown).store, KeyValueWorkload())
    } teardown: {
        try teardown.run()
    }
}

/// Submits `count` puts of one key each (one log batch each) with buffered durability, then
/// blocks until the I/O thread has written the last one.
func submitPutsAndWait(_ store: KeyValueStore, _ workload: KeyValueWorkload, count: Int) throws {
    let written = DispatchSemaphore(value: 0)
    for index in 0..<count {
        var batch = WriteBatch()
        batch.put(workload.nextKey(), workload.value)
        let last = index == count - 1
        try store.submit([batch], durability: .buffered) { result in
            if case .failure(let error) = result { fatalError("put failed: \(error)") }
            if last { written.signal() }
        }
    }
    written.wait()
}

func getBenchmarks() {
    let teardown = Teardown()
    Benchmark(
        "KV-get-100k-keys",
        configuration: .shipLog(scalingFactor: .kilo, threads: .single)
    ) { (benchmark: Benchmark, state: (store: KeyValueStore, workload: KeyValueWorkload)) in
        for _ in benchmark.scaledIterations {
            let key = state.workload.nextKey()
            guard let value = state.store.get(key) else { fatalError("key \(key) missing") }
            blackHole(value)
        }
    } setup: {
        let store = try StoreFixture(label: "get", teardown: teardown).store
        let workload = KeyValueWorkload()
        try load(workload, into: store)
        return (store, workload)
    } teardown: {
        try teardown.run()
    }
}

/// Puts every key of `workload` into `store`, in write batches of ``KeyValueSizes/loadBatchPuts``.
func load(_ workload: KeyValueWorkload, into store: KeyValueStore) throws {
    for start in stride(from: 0, to: workload.keys.count, by: KeyValueSizes.loadBatchPuts) {
        var batch = WriteBatch()
        for key in workload.keys[start..<min(start + KeyValueSizes.loadBatchPuts, workload.keys.count)] {
            batch.put(key, workload.value)
        }
        try store.write(batch, durability: .buffered)
    }
}
