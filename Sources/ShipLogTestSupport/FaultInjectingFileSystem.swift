#if canImport(Glibc)
public import Glibc
#elseif canImport(Darwin)
public import Darwin
#endif
public import ShipLogStorage
import Synchronization

/// The operations ``FaultInjectingFileSystem`` counts and can fail.
///
/// Handle operations (`read`, `write`, `sync`, `preallocate`, `truncate`, `size`, `close`) are
/// counted on the handles the file system returns; the rest on the file system itself.
/// `close` and `fileExists` cannot throw: they are counted, but faults cannot target them.
public enum FaultOperation: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case open, read, write, sync, preallocate, truncate, size, close
    case listDirectory, createDirectory, rename, remove, syncDirectory, fileExists

    /// Whether a fault can be injected into this operation (it can throw).
    public var isFaultable: Bool { self != .close && self != .fileExists }

    /// The operation a ``FileSystemError`` thrown by an injected fault names.
    public var errorOperation: FileSystemError.Operation {
        switch self {
        case .open: .open
        case .read: .read
        case .write: .write
        case .sync: .sync
        case .preallocate: .preallocate
        case .truncate: .truncate
        case .size: .stat
        case .close: .close
        case .listDirectory: .listDirectory
        case .createDirectory: .createDirectory
        case .rename: .rename
        case .remove: .remove
        case .syncDirectory: .syncDirectory
        case .fileExists: .stat
        }
    }

    public var description: String { rawValue }
}

/// One scheduled fault: which calls it hits and what it does to them.
public struct Fault: Sendable, CustomStringConvertible {
    /// Which of the matching calls fail. Calls are counted per fault from the moment it is
    /// injected, 0-based, and only calls of ``Fault/operation`` whose path passes
    /// ``Fault/pathFilter`` count. Without a filter, and injected into a fresh file system,
    /// call N here is call N of ``FaultInjectingFileSystem/callCount(of:)``.
    public enum Trigger: Sendable, Hashable {
        /// Exactly the Nth matching call fails, once.
        case onCall(Int)
        /// Every matching call from the Nth on fails (a disk that has died, or filled up).
        case fromCall(Int)
    }

    /// What happens to a call the fault hits.
    public enum Effect: Sendable, Hashable {
        /// The call does nothing and throws this errno.
        case fail(errno: Int32)
        /// For `write`: the first `keeping` bytes (at most the whole buffer) are written
        /// through, then the call throws (ENOSPC models a disk filling mid-write). For any
        /// other operation this is the same as `.fail(errno:)`.
        case shortWrite(keeping: Int, errno: Int32)
        /// The call is performed on the wrapped file system, then throws anyway (a rename or
        /// sync that happened but reported EIO; an open whose file was created). An `open`
        /// closes the handle it got before throwing.
        case failAfterApplying(errno: Int32)

        public var errno: Int32 {
            switch self {
            case .fail(let errno), .shortWrite(_, let errno), .failAfterApplying(let errno): errno
            }
        }
    }

    public var operation: FaultOperation
    public var trigger: Trigger
    public var effect: Effect
    /// Only calls whose path passes count toward, and can be hit by, this fault. For
    /// `rename` the call matches if either the source or the destination passes.
    public var pathFilter: (@Sendable (FilePath) -> Bool)?

    public init(
        _ operation: FaultOperation,
        _ trigger: Trigger,
        effect: Effect = .fail(errno: EIO),
        where pathFilter: (@Sendable (FilePath) -> Bool)? = nil
    ) {
        precondition(operation.isFaultable, "\(operation) cannot throw, so it cannot be failed")
        switch trigger {
        case .onCall(let n), .fromCall(let n): precondition(n >= 0, "call numbers are 0-based")
        }
        if case .shortWrite(let keeping, _) = effect { precondition(keeping >= 0) }
        self.operation = operation
        self.trigger = trigger
        self.effect = effect
        self.pathFilter = pathFilter
    }

    public var description: String {
        let when: String = switch trigger {
        case .onCall(let n): "call #\(n)"
        case .fromCall(let n): "every call from #\(n)"
        }
        return "\(operation) \(when)\(pathFilter == nil ? "" : " (filtered)"): \(effect)"
    }
}

/// Identifies an injected fault, to remove it or ask how often it fired.
public struct FaultID: Hashable, Sendable {
    public let rawValue: Int
}

/// A `FileSystem` that forwards to another one (usually `PosixFileSystem` or
/// ``SimulatedFileSystem``) and fails chosen calls.
///
/// It counts every call per ``FaultOperation`` (handle operations included: the handles it
/// returns wrap the inner ones), so a test can run a workload once to count the call sites,
/// then rerun it failing each one in turn:
///
/// ```swift
/// let probe = FaultInjectingFileSystem(wrapping: PosixFileSystem())
/// try workload(probe)
/// for n in 0..<probe.callCount(of: .sync) {
///     let fs = FaultInjectingFileSystem(wrapping: PosixFileSystem())
///     fs.failCall(n, of: .sync, errno: EIO)
///     // run the workload on fs; expect the engine to surface the error, not corrupt data
/// }
/// ```
///
/// Thread-safe: the schedule and counters sit behind one `Mutex`, and the decision whether a
/// call fails is taken atomically with counting it.
public final class FaultInjectingFileSystem: FileSystem {
    /// A call seen by the file system, in the order they happened.
    public struct Call: Sendable, Hashable, CustomStringConvertible {
        public var operation: FaultOperation
        public var path: FilePath
        /// The rename destination; nil for other operations.
        public var destination: FilePath?
        /// 0-based among calls of the same operation (the value of `callCount(of:)` before it).
        public var index: Int
        /// The errno of the injected fault that hit this call, if one did.
        public var injectedErrno: Int32?

        public var description: String {
            var text = "\(operation)#\(index) \(path)"
            if let destination { text += " -> \(destination)" }
            if let injectedErrno { text += " [injected errno \(injectedErrno)]" }
            return text
        }
    }

    struct ScheduledFault {
        var fault: Fault
        var matchingCalls = 0
        var fired = 0
    }

    struct State {
        var faults: [Int: ScheduledFault] = [:]
        var nextFaultID = 0
        var counts: [FaultOperation: Int] = [:]
        var calls: [Call] = []
        var recordsCalls: Bool
    }

    /// The wrapped file system.
    public let inner: any FileSystem
    let state: Mutex<State>

    /// - Parameter recordingCalls: keep the list of every call in ``calls`` (counts are kept
    ///   either way). Turn off for very long workloads.
    public init(wrapping inner: any FileSystem, recordingCalls: Bool = true) {
        self.inner = inner
        self.state = Mutex(State(recordsCalls: recordingCalls))
    }

    // MARK: Scheduling

    /// Schedules a fault. Faults are checked in the order they were injected; the first
    /// one that hits a call decides its effect (each still counts the calls matching it).
    @discardableResult
    public func inject(_ fault: Fault) -> FaultID {
        state.withLock { state in
            let id = state.nextFaultID
            state.nextFaultID += 1
            state.faults[id] = ScheduledFault(fault: fault)
            return FaultID(rawValue: id)
        }
    }

    /// Fails exactly the `n`th (0-based) matching call of `operation` with `errno`.
    @discardableResult
    public func failCall(
        _ n: Int, of operation: FaultOperation, errno: Int32 = EIO,
        where pathFilter: (@Sendable (FilePath) -> Bool)? = nil
    ) -> FaultID {
        inject(Fault(operation, .onCall(n), effect: .fail(errno: errno), where: pathFilter))
    }

    /// Fails every matching call of `operation` from the `n`th (0-based) on.
    @discardableResult
    public func failCalls(
        from n: Int, of operation: FaultOperation, errno: Int32 = EIO,
        where pathFilter: (@Sendable (FilePath) -> Bool)? = nil
    ) -> FaultID {
        inject(Fault(operation, .fromCall(n), effect: .fail(errno: errno), where: pathFilter))
    }

    /// The `n`th matching write writes its first `keeping` bytes, then throws `errno`.
    /// With `thenEveryWrite`, every later matching write then fails outright with `errno`
    /// (the disk stays full) instead of succeeding.
    @discardableResult
    public func shortWrite(
        onCall n: Int, keeping: Int, errno: Int32 = ENOSPC, thenEveryWrite: Bool = false,
        where pathFilter: (@Sendable (FilePath) -> Bool)? = nil
    ) -> FaultID {
        let id = inject(Fault(.write, .onCall(n), effect: .shortWrite(keeping: keeping, errno: errno), where: pathFilter))
        if thenEveryWrite {
            // Every fault counts every matching call, so call n+1 is this one's first hit.
            inject(Fault(.write, .fromCall(n + 1), effect: .fail(errno: errno), where: pathFilter))
        }
        return id
    }

    /// Removes a fault; calls it would have hit now go through.
    public func removeFault(_ id: FaultID) {
        _ = state.withLock { $0.faults.removeValue(forKey: id.rawValue) }
    }

    /// Removes every fault (counters and the call list stay).
    public func removeAllFaults() {
        state.withLock { $0.faults.removeAll() }
    }

    /// How many calls a fault has failed so far (0 once removed).
    public func timesFired(_ id: FaultID) -> Int {
        state.withLock { $0.faults[id.rawValue]?.fired ?? 0 }
    }

    /// The faults still scheduled.
    public var scheduledFaults: [Fault] {
        state.withLock { state in state.faults.sorted { $0.key < $1.key }.map(\.value.fault) }
    }

    // MARK: Counting

    /// Calls of `operation` so far, failed ones included.
    public func callCount(of operation: FaultOperation) -> Int {
        state.withLock { $0.counts[operation] ?? 0 }
    }

    /// Calls of `operation` so far whose path passes `filter` (needs call recording).
    public func callCount(of operation: FaultOperation, where filter: (FilePath) -> Bool) -> Int {
        let calls = self.calls
        return calls.filter { $0.operation == operation && (filter($0.path) || $0.destination.map(filter) == true) }.count
    }

    /// Every operation's call count.
    public var callCounts: [FaultOperation: Int] {
        state.withLock { $0.counts }
    }

    /// Every call so far, in order (empty unless recording calls).
    public var calls: [Call] {
        state.withLock { $0.calls }
    }

    /// The calls an injected fault hit, in order.
    public var injectedFailures: [Call] {
        calls.filter { $0.injectedErrno != nil }
    }

    /// Zeroes the counters and empties the call list. Scheduled faults keep their own counts.
    public func resetCounts() {
        state.withLock { state in
            state.counts.removeAll()
            state.calls.removeAll()
        }
    }

    /// Counts one call and returns the effect of the fault that hits it, if any.
    func intercept(_ operation: FaultOperation, _ path: FilePath, destination: FilePath? = nil) -> Fault.Effect? {
        state.withLock { state in
            let index = state.counts[operation, default: 0]
            state.counts[operation] = index + 1
            var hit: Fault.Effect?
            if operation.isFaultable {
                for id in state.faults.keys.sorted() {
                    var scheduled = state.faults[id]!
                    guard scheduled.fault.operation == operation else { continue }
                    if let filter = scheduled.fault.pathFilter {
                        guard filter(path) || destination.map(filter) == true else { continue }
                    }
                    let n = scheduled.matchingCalls
                    scheduled.matchingCalls += 1
                    let fires: Bool = switch scheduled.fault.trigger {
                    case .onCall(let k): n == k
                    case .fromCall(let k): n >= k
                    }
                    if fires && hit == nil {
                        hit = scheduled.fault.effect
                        scheduled.fired += 1
                    }
                    state.faults[id] = scheduled
                }
            }
            if state.recordsCalls {
                state.calls.append(Call(
                    operation: operation, path: path, destination: destination, index: index,
                    injectedErrno: hit?.errno))
            }
            return hit
        }
    }

    // MARK: FileSystem

    public func openFile(at path: FilePath, options: FileOpenOptions) throws(FileSystemError) -> any FileHandle {
        let effect = intercept(.open, path)
        switch effect {
        case .fail(let errno)?, .shortWrite(_, let errno)?:
            throw FileSystemError(operation: .open, path: path, errno: errno)
        case .failAfterApplying(let errno)?:
            let handle = try inner.openFile(at: path, options: options)
            handle.close()
            throw FileSystemError(operation: .open, path: path, errno: errno)
        case nil:
            return FaultInjectingFileHandle(inner: try inner.openFile(at: path, options: options), fileSystem: self)
        }
    }

    public func contentsOfDirectory(at path: FilePath) throws(FileSystemError) -> [String] {
        try perform(.listDirectory, path) { () throws(FileSystemError) in try inner.contentsOfDirectory(at: path) }
    }

    public func createDirectory(at path: FilePath) throws(FileSystemError) {
        try perform(.createDirectory, path) { () throws(FileSystemError) in try inner.createDirectory(at: path) }
    }

    public func rename(from source: FilePath, to destination: FilePath) throws(FileSystemError) {
        try perform(.rename, source, destination: destination) { () throws(FileSystemError) in
            try inner.rename(from: source, to: destination)
        }
    }

    public func removeFile(at path: FilePath) throws(FileSystemError) {
        try perform(.remove, path) { () throws(FileSystemError) in try inner.removeFile(at: path) }
    }

    public func syncDirectory(at path: FilePath) throws(FileSystemError) {
        try perform(.syncDirectory, path) { () throws(FileSystemError) in try inner.syncDirectory(at: path) }
    }

    public func fileExists(at path: FilePath) -> Bool {
        _ = intercept(.fileExists, path)
        return inner.fileExists(at: path)
    }

    /// Counts the call, then fails it, performs it, or performs it and fails it.
    func perform<Result>(
        _ operation: FaultOperation, _ path: FilePath, destination: FilePath? = nil,
        _ body: () throws(FileSystemError) -> Result
    ) throws(FileSystemError) -> Result {
        switch intercept(operation, path, destination: destination) {
        case nil:
            return try body()
        case .fail(let errno)?, .shortWrite(_, let errno)?:
            throw FileSystemError(operation: operation.errorOperation, path: path, errno: errno)
        case .failAfterApplying(let errno)?:
            _ = try body()
            throw FileSystemError(operation: operation.errorOperation, path: path, errno: errno)
        }
    }
}

/// A handle from ``FaultInjectingFileSystem``: forwards to the inner handle, counting each
/// call and failing the ones the schedule says.
public final class FaultInjectingFileHandle: FileHandle {
    /// The wrapped handle.
    public let inner: any FileHandle
    let fileSystem: FaultInjectingFileSystem

    init(inner: any FileHandle, fileSystem: FaultInjectingFileSystem) {
        self.inner = inner
        self.fileSystem = fileSystem
    }

    public var path: FilePath { inner.path }

    public func read(into buffer: UnsafeMutableRawBufferPointer, fromAbsoluteOffset offset: Int64) throws(FileSystemError) -> Int {
        try fileSystem.perform(.read, path) { () throws(FileSystemError) in
            try inner.read(into: buffer, fromAbsoluteOffset: offset)
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer, toAbsoluteOffset offset: Int64) throws(FileSystemError) {
        switch fileSystem.intercept(.write, path) {
        case nil:
            try inner.write(bytes, toAbsoluteOffset: offset)
        case .shortWrite(let keeping, let errno)?:
            let kept = min(keeping, bytes.count)
            if kept > 0 {
                try inner.write(UnsafeRawBufferPointer(rebasing: bytes[..<kept]), toAbsoluteOffset: offset)
            }
            throw FileSystemError(operation: .write, path: path, errno: errno)
        case .fail(let errno)?:
            throw FileSystemError(operation: .write, path: path, errno: errno)
        case .failAfterApplying(let errno)?:
            try inner.write(bytes, toAbsoluteOffset: offset)
            throw FileSystemError(operation: .write, path: path, errno: errno)
        }
    }

    public func synchronizeData() throws(FileSystemError) {
        try fileSystem.perform(.sync, path) { () throws(FileSystemError) in try inner.synchronizeData() }
    }

    public func preallocate(fromAbsoluteOffset offset: Int64, length: Int64) throws(FileSystemError) {
        try fileSystem.perform(.preallocate, path) { () throws(FileSystemError) in
            try inner.preallocate(fromAbsoluteOffset: offset, length: length)
        }
    }

    public func truncate(toSize size: Int64) throws(FileSystemError) {
        try fileSystem.perform(.truncate, path) { () throws(FileSystemError) in try inner.truncate(toSize: size) }
    }

    public func size() throws(FileSystemError) -> Int64 {
        try fileSystem.perform(.size, path) { () throws(FileSystemError) in try inner.size() }
    }

    public func close() {
        _ = fileSystem.intercept(.close, path)
        inner.close()
    }

    public func readBypassingCache(
        into buffer: UnsafeMutableRawBufferPointer, fromAbsoluteOffset offset: Int64
    ) throws(FileSystemError) -> Int {
        try inner.readBypassingCache(into: buffer, fromAbsoluteOffset: offset)
    }
}
