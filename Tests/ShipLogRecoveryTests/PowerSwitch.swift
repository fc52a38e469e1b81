import Foundation
import ShipLog
import ShipLogStorage
import ShipLogTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// What happens when a ``PowerSwitch`` trips.
enum Outage: Sendable, Hashable, CustomStringConvertible {
    /// Power loss: the simulator crashes with this seed (unsynced data and directory entries
    /// may be lost, torn or reordered) and every handle of the old log dies.
    case powerLoss(seed: UInt64)
    /// The process dies (kill -9): the simulated disk and page cache stay as they are; every
    /// later call of the old log fails.
    case processDeath
    /// Like a process death, but first the simulator's state (durable and volatile) is copied
    /// into ``PowerSwitch/snapshot`` so that a test can crash copies of it with many seeds.
    case freeze

    var isPowerLoss: Bool { if case .powerLoss = self { true } else { false } }

    var description: String {
        switch self {
        case .powerLoss(let seed): "power loss (crash seed \(seed))"
        case .processDeath: "process death"
        case .freeze: "freeze"
        }
    }
}

/// Sits between one incarnation of a log and the ``SimulatedFileSystem`` it runs on.
///
/// It counts every call (file-system and handle calls alike) and can trip before a chosen
/// call: the call and every later one throw EIO, so the old log (whose I/O thread may still
/// be running) can never touch the simulator again. That makes a power cut exact: nothing the
/// old incarnation does after the cut reaches the disk, and the crash happens atomically with
/// respect to its calls (the switch holds its lock across each forwarded call).
final class PowerSwitch: FileSystem, @unchecked Sendable {
    /// Trip before the `skip`-th (0-based) call that matches `operation` and `filter`.
    struct Trip {
        var operation: FaultOperation?
        var filter: (@Sendable (FilePath) -> Bool)?
        var skip: Int
        var outage: Outage
    }

    let simulator: SimulatedFileSystem
    // Guarded by `lock`.
    private let lock = NSLock()
    private var dead = false
    private var calls = 0
    private var trip: Trip?
    private var frozen: SimulatedFileSystem?
    private var tripped: String?
    private var outage: Outage?
    private var recorded: [(FaultOperation, String)]?
    private var hook: (@Sendable (FaultOperation, FilePath) -> Void)?

    /// - Parameter recording: keep the list of calls (``recordedCalls``), to find crash points.
    init(_ simulator: SimulatedFileSystem, recording: Bool = false) {
        self.simulator = simulator
        self.recorded = recording ? [] : nil
    }

    /// Every call so far (operation, file name), when recording.
    var recordedCalls: [(FaultOperation, String)] { lock.withLock { recorded ?? [] } }
    /// The outage the switch tripped with, if it has.
    var trippedOutage: Outage? { lock.withLock { outage } }

    /// Runs `body` before every call is forwarded (outside the switch's lock), e.g. to stall
    /// the log's I/O thread inside an fdatasync.
    func beforeEachCall(_ body: @escaping @Sendable (FaultOperation, FilePath) -> Void) {
        lock.withLock { hook = body }
    }

    /// Calls forwarded (or refused by the trip) so far.
    var callCount: Int { lock.withLock { calls } }
    /// Whether the switch has tripped: the old log is cut off.
    var isDead: Bool { lock.withLock { dead } }
    /// Which call tripped the switch, for failure reports.
    var trippedAt: String? { lock.withLock { tripped } }
    /// The simulator as it was when an ``Outage/freeze`` tripped.
    var snapshot: SimulatedFileSystem? { lock.withLock { frozen } }

    /// Trips before the `n`-th (0-based, counted from now) call matching `operation` (any when
    /// nil) and `filter` (for renames: source or destination).
    func arm(
        afterCalls n: Int, of operation: FaultOperation? = nil, where filter: (@Sendable (FilePath) -> Bool)? = nil,
        outage: Outage
    ) {
        lock.withLock { trip = Trip(operation: operation, filter: filter, skip: n, outage: outage) }
    }

    /// Removes the trip not yet reached.
    func disarm() { lock.withLock { trip = nil } }

    /// Trips now (no-op when already tripped).
    func cut(_ outage: Outage) {
        lock.withLock {
            guard !dead else { return }
            tripLocked(outage, at: "explicit cut after \(calls) calls")
        }
    }

    private func tripLocked(_ outage: Outage, at: String) {
        dead = true
        trip = nil
        tripped = "\(outage) at \(at)"
        self.outage = outage
        switch outage {
        case .powerLoss(let seed): simulator.crash(seed: seed)
        case .processDeath: break
        case .freeze: frozen = simulator.clone()
        }
    }

    /// Counts a call; throws when the switch is (or now trips) off, else runs `body` under the lock.
    func gate<R>(
        _ operation: FaultOperation, _ path: FilePath, destination: FilePath? = nil,
        _ body: () throws(FileSystemError) -> R
    ) throws(FileSystemError) -> R {
        if let hook = lock.withLock({ hook }) { hook(operation, path) }
        lock.lock()
        defer { lock.unlock() }
        guard !dead else { throw FileSystemError(operation: operation.errorOperation, path: path, errno: EIO) }
        let index = calls
        calls += 1
        recorded?.append((operation, path.lastComponent))
        if var armed = trip, armed.operation == nil || armed.operation == operation,
            armed.filter.map({ $0(path) || destination.map($0) == true }) ?? true
        {
            if armed.skip == 0 {
                tripLocked(armed.outage, at: "call #\(index): \(operation) \(path.lastComponent)")
                throw FileSystemError(operation: operation.errorOperation, path: path, errno: EIO)
            }
            armed.skip -= 1
            trip = armed
        }
        return try body()
    }

    // MARK: FileSystem

    func openFile(at path: FilePath, options: FileOpenOptions) throws(FileSystemError) -> any ShipLogStorage.FileHandle {
        let inner = try gate(.open, path) { () throws(FileSystemError) in
            try simulator.openFile(at: path, options: options)
        }
        return SwitchedHandle(inner: inner, power: self)
    }

    func contentsOfDirectory(at path: FilePath) throws(FileSystemError) -> [String] {
        try gate(.listDirectory, path) { () throws(FileSystemError) in try simulator.contentsOfDirectory(at: path) }
    }

    func createDirectory(at path: FilePath) throws(FileSystemError) {
        try gate(.createDirectory, path) { () throws(FileSystemError) in try simulator.createDirectory(at: path) }
    }

    func rename(from source: FilePath, to destination: FilePath) throws(FileSystemError) {
        try gate(.rename, source, destination: destination) { () throws(FileSystemError) in
            try simulator.rename(from: source, to: destination)
        }
    }

    func removeFile(at path: FilePath) throws(FileSystemError) {
        try gate(.remove, path) { () throws(FileSystemError) in try simulator.removeFile(at: path) }
    }

    func syncDirectory(at path: FilePath) throws(FileSystemError) {
        try gate(.syncDirectory, path) { () throws(FileSystemError) in try simulator.syncDirectory(at: path) }
    }

    func fileExists(at path: FilePath) -> Bool {
        (try? gate(.fileExists, path) { () throws(FileSystemError) in simulator.fileExists(at: path) }) ?? false
    }
}

/// A handle of the simulator, cut off with its ``PowerSwitch``.
final class SwitchedHandle: ShipLogStorage.FileHandle, @unchecked Sendable {
    let inner: any ShipLogStorage.FileHandle
    let power: PowerSwitch

    init(inner: any ShipLogStorage.FileHandle, power: PowerSwitch) {
        self.inner = inner
        self.power = power
    }

    var path: FilePath { inner.path }

    func read(into buffer: UnsafeMutableRawBufferPointer, fromAbsoluteOffset offset: Int64) throws(FileSystemError) -> Int {
        try power.gate(.read, path) { () throws(FileSystemError) in try inner.read(into: buffer, fromAbsoluteOffset: offset) }
    }

    func readBypassingCache(into buffer: UnsafeMutableRawBufferPointer, fromAbsoluteOffset offset: Int64) throws(FileSystemError) -> Int {
        try power.gate(.read, path) { () throws(FileSystemError) in
            try inner.readBypassingCache(into: buffer, fromAbsoluteOffset: offset)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer, toAbsoluteOffset offset: Int64) throws(FileSystemError) {
        try power.gate(.write, path) { () throws(FileSystemError) in try inner.write(bytes, toAbsoluteOffset: offset) }
    }

    func synchronizeData() throws(FileSystemError) {
        try power.gate(.sync, path) { () throws(FileSystemError) in try inner.synchronizeData() }
    }

    func preallocate(fromAbsoluteOffset offset: Int64, length: Int64) throws(FileSystemError) {
        try power.gate(.preallocate, path) { () throws(FileSystemError) in
            try inner.preallocate(fromAbsoluteOffset: offset, length: length)
        }
    }

    func truncate(toSize size: Int64) throws(FileSystemError) {
        try power.gate(.truncate, path) { () throws(FileSystemError) in try inner.truncate(toSize: size) }
    }

    func size() throws(FileSystemError) -> Int64 {
        try power.gate(.size, path) { () throws(FileSystemError) in try inner.size() }
    }

    func close() { inner.close() }
}
