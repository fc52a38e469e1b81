#if canImport(Glibc)
public import Glibc
#elseif canImport(Darwin)
public import Darwin
#endif
public import ShipLogStorage
import Synchronization

/// An in-memory, deterministic `FileSystem` that models power loss.
///
/// Every file has a durable image (what is on the platter) and a volatile one (the page
/// cache). `write`, `truncate` and `preallocate` change only the volatile image and are
/// queued as unsynced operations; `synchronizeData()` replays them onto the durable image.
/// Directory entries work the same way per directory: create, rename and remove change the
/// volatile entries, and `syncDirectory(at:)` of that directory makes them durable. Reads,
/// `size()`, `contentsOfDirectory` and `fileExists` see the volatile view, as a process does.
///
/// ``crash(seed:)`` is the power cut, then the reboot: each file's unsynced operations are
/// independently lost or persisted (the last unsynced write possibly torn at sector
/// granularity), a lost append's size may persist with zeros instead of the data, unsynced
/// directory entries are lost, and every open handle becomes invalid (its calls throw EIO).
/// What can go wrong is chosen per ``Options`` so a test can isolate one misbehaviour. Bytes
/// that were durable and not touched by an unsynced operation are never altered by a crash.
///
/// The model follows LazyFS, TigerBeetle's storage simulator and the ALICE study
/// (Pillai et al., OSDI 2014). Paths are plain strings: "a/b" lives in directory "a",
/// relative paths in an implicit root "." and absolute ones under "/"; both roots always exist.
///
/// Thread-safe: all state sits behind one `Mutex`, so the engine may write from one thread
/// while others read. Given the same sequence of calls and seeds, results are identical.
public final class SimulatedFileSystem: FileSystem {
    /// Which power-loss misbehaviours ``SimulatedFileSystem/crash(seed:)`` may show.
    public struct Options: Sendable, Hashable {
        /// What happens to directory entries changed since the directory was last synced.
        public enum UnsyncedDirectoryEntries: Sendable, Hashable {
            /// All lost: creates vanish, renames revert, removed files reappear.
            case lost
            /// All persist (a metadata journal that happened to commit).
            case kept
            /// A random prefix of each directory's unsynced operations persists (an ordered
            /// metadata journal committed up to some point). A rename within one directory is
            /// one operation; across directories it is one in each.
            case randomPrefix
        }

        /// Unsynced data operations may be lost. Off: a crash persists every one of them
        /// (data behaves as after a clean shutdown) and the options below about data are moot.
        public var loseUnsyncedWrites = true
        /// The last unsynced write of a file may be torn: a random subset of the
        /// ``sectorSize`` sectors it covers persists.
        public var tornWrites = true
        /// The unsynced operations that persist are an arbitrary subset, so a later write can
        /// persist while an earlier one is lost. Off: they persist in order (a prefix), and
        /// only the first one not persisted can be torn. Persisted operations are replayed in
        /// their original order either way, so where two persisted writes overlap the later
        /// one wins, as in a page cache.
        public var reorder = true
        /// A lost write that extended the file may still leave the file extended, with
        /// zeros where its data should be (ext4's delayed-allocation outcome). Also lets a
        /// torn append's size cover its unpersisted tail sectors.
        public var zeroFilledAppends = true
        /// See ``UnsyncedDirectoryEntries``.
        public var unsyncedDirectoryEntries: UnsyncedDirectoryEntries = .lost
        /// When `synchronizeData()` fails (see ``SimulatedFileSystem/failSyncs(times:errno:where:)``),
        /// the file's unsynced data is settled as by a crash — some may have reached the disk,
        /// the rest is dropped for good, though reads still return it (Linux's page cache marks
        /// the pages clean: "fsyncgate") — and a later sync that "succeeds" does not persist
        /// it. Off: the data stays queued and a later successful sync persists it.
        public var fsyncFailureDropsUnsyncedData = true
        /// Sector size for torn writes, in bytes.
        public var sectorSize = 512
        /// Off: `preallocate` throws EOPNOTSUPP, as on file systems without fallocate.
        public var supportsPreallocate = true
        /// Writes, truncates and preallocations beyond this size throw EFBIG, so that a bad
        /// offset fails the test instead of exhausting memory.
        public var maximumFileSize: Int64 = 1 << 32

        /// Every misbehaviour on (the default).
        public init() {}

        /// Shorthand for `unsyncedDirectoryEntries == .lost`; setting `false` means `.kept`.
        public var loseUnsyncedDirectoryEntries: Bool {
            get { unsyncedDirectoryEntries == .lost }
            set { unsyncedDirectoryEntries = newValue ? .lost : .kept }
        }

        /// A crash loses nothing: every unsynced write and directory entry persists.
        public static var lossless: Options {
            var options = Options()
            options.loseUnsyncedWrites = false
            options.tornWrites = false
            options.reorder = false
            options.zeroFilledAppends = false
            options.unsyncedDirectoryEntries = .kept
            return options
        }
    }

    /// How ``SimulatedFileSystem/corrupt(at:offset:length:_:)`` damages bytes.
    public enum Corruption: Sendable, Hashable {
        /// XOR every byte with the mask.
        case xor(UInt8)
        /// Set every byte to the value.
        case fill(UInt8)
        /// Replace the bytes with pseudo-random ones from this seed.
        case random(seed: UInt64)

        /// Flips every bit.
        public static var flipBits: Corruption { .xor(0xFF) }
        /// Flips the lowest bit of each byte (a single-bit error when length is 1).
        public static var flipLowBit: Corruption { .xor(0x01) }
        /// Zeroes the bytes.
        public static var zero: Corruption { .fill(0) }
    }

    let state: Mutex<SimState>

    /// - Parameters:
    ///   - seed: seeds the generator that ``crash()`` and sync failures draw from.
    ///   - options: which misbehaviours crashes may show; changeable later through ``options``.
    public init(seed: UInt64 = 0, options: Options = Options()) {
        state = Mutex(SimState(seed: seed, options: options))
    }

    init(state: SimState) {
        self.state = Mutex(state)
    }

    /// The misbehaviours a crash may show. Changing them affects only later crashes and syncs.
    public var options: Options {
        get { state.withLock { $0.options } }
        set { state.withLock { $0.options = newValue } }
    }

    func locked<R: Sendable>(_ body: (inout SimState) throws(FileSystemError) -> R) throws(FileSystemError) -> R {
        try state.withLock { (state: inout SimState) throws(FileSystemError) -> R in try body(&state) }
    }

    // MARK: Power loss

    /// Cuts the power and reboots, with outcomes drawn from `seed`: the same state crashed
    /// with the same seed always gives the same result. Open handles become invalid.
    public func crash(seed: UInt64) {
        state.withLock { state in
            var rng = SplitMix64(seed: seed)
            state.crash(rng: &rng)
        }
    }

    /// Cuts the power and reboots, drawing outcomes from the file system's own generator.
    public func crash() {
        state.withLock { state in
            var rng = state.rng
            state.crash(rng: &rng)
            state.rng = rng
        }
    }

    /// How many crashes this file system has been through.
    public var crashCount: Int { state.withLock { $0.generation } }

    /// An independent copy of the current state (durable and volatile, unsynced operations,
    /// injected faults), without the open handles. Lets a test run a workload once and
    /// then crash copies of the result with many seeds.
    public func clone() -> SimulatedFileSystem {
        let copy = state.withLock { state in
            var copy = state
            copy.handles.removeAll()
            return copy
        }
        return SimulatedFileSystem(state: copy)
    }

    /// Makes everything durable, like sync(2): every file's data and every directory's entries.
    public func syncEverything() {
        state.withLock { $0.syncEverything() }
    }

    // MARK: Fault injection

    /// The next `times` syncs whose path passes `filter` throw `errno` (EIO by default).
    /// Applies to `synchronizeData()` — matched against the path the handle was opened
    /// with — and to `syncDirectory(at:)`. What becomes of the file's unsynced data is
    /// ``Options/fsyncFailureDropsUnsyncedData``; a failed directory sync persists nothing.
    /// Later syncs succeed.
    public func failSyncs(times: Int = 1, errno: Int32 = EIO, where filter: (@Sendable (FilePath) -> Bool)? = nil) {
        precondition(times > 0)
        state.withLock { $0.syncFailures.append(SyncFailure(remaining: times, errno: errno, filter: filter)) }
    }

    /// Removes the sync failures not yet used.
    public func clearSyncFailures() {
        state.withLock { $0.syncFailures.removeAll() }
    }

    /// Damages bytes of a file in both its durable and volatile images (and in its unsynced
    /// writes, so that a later sync does not undo it): bit rot, a misdirected write. Bytes
    /// beyond an image's size are left alone.
    public func corrupt(at path: FilePath, offset: Int64, length: Int, _ how: Corruption = .flipBits) throws(FileSystemError) {
        try locked { (state: inout SimState) throws(FileSystemError) in
            try state.corrupt(path: path, offset: offset, length: length, how: how)
        }
    }

    /// Zeroes the whole ``Options/sectorSize`` sector containing `offset`, durable and volatile.
    public func zeroSector(at path: FilePath, containing offset: Int64) throws(FileSystemError) {
        let sector = Int64(options.sectorSize)
        try corrupt(at: path, offset: offset / sector * sector, length: Int(sector), .zero)
    }

    /// Reads overlapping `offset..<offset+length` of the file throw EIO (a latent sector
    /// error) until ``clearReadErrors()``; they survive crashes and follow renames.
    public func injectReadError(at path: FilePath, offset: Int64, length: Int) throws(FileSystemError) {
        try locked { (state: inout SimState) throws(FileSystemError) in
            let node = try state.resolveFile(path, operation: .read)
            state.files[node]!.readErrors.append(Int(offset)..<Int(offset) + length)
        }
    }

    /// Removes every injected read error.
    public func clearReadErrors() {
        state.withLock { state in
            for id in state.files.keys { state.files[id]!.readErrors.removeAll() }
        }
    }

    // MARK: Inspection and set-up

    /// The file's bytes as a process reads them now (volatile view); nil if there is no file.
    public func contents(at path: FilePath) -> [UInt8]? {
        state.withLock { state in
            guard let node = try? state.resolveFile(path, operation: .read) else { return nil }
            return state.files[node]!.volatile
        }
    }

    /// The file's durable image, looked up through durable directory entries: what is
    /// guaranteed to be there after a crash. Nil if no durable entry leads to a file.
    public func durableContents(at path: FilePath) -> [UInt8]? {
        state.withLock { state in
            guard case .file(let node)? = state.lookup(path, durable: true) else { return nil }
            return state.files[node]!.durable
        }
    }

    /// Creates or replaces a file with `contents`, creating its directories. With `durable`,
    /// its data and the directory entries leading to it are synced.
    public func createFile(at path: FilePath, contents: [UInt8], durable: Bool = true) throws(FileSystemError) {
        try locked { (state: inout SimState) throws(FileSystemError) in
            try state.createFile(path: path, contents: contents, durable: durable)
        }
    }

    /// Whether any file has unsynced data or any directory unsynced entries.
    public var hasUnsyncedChanges: Bool {
        state.withLock { state in
            state.files.values.contains { !$0.pending.isEmpty || $0.diverged }
                || state.directories.values.contains { !$0.pending.isEmpty }
        }
    }

    /// Handles opened and not yet closed since the last crash.
    public var openHandleCount: Int { state.withLock { $0.handles.count } }

    // MARK: FileSystem

    public func openFile(at path: FilePath, options: FileOpenOptions) throws(FileSystemError) -> any FileHandle {
        let (id, generation) = try locked { (state: inout SimState) throws(FileSystemError) in
            try state.open(path: path, options: options)
        }
        return SimulatedFileHandle(fileSystem: self, id: id, generation: generation, path: path)
    }

    public func contentsOfDirectory(at path: FilePath) throws(FileSystemError) -> [String] {
        try locked { (state: inout SimState) throws(FileSystemError) in
            let dir = try state.resolveDirectory(path, operation: .listDirectory)
            return Array(state.directories[dir]!.volatile.keys)
        }
    }

    public func createDirectory(at path: FilePath) throws(FileSystemError) {
        try locked { (state: inout SimState) throws(FileSystemError) in
            _ = try state.createDirectories(path)
        }
    }

    public func rename(from source: FilePath, to destination: FilePath) throws(FileSystemError) {
        try locked { (state: inout SimState) throws(FileSystemError) in
            try state.rename(from: source, to: destination)
        }
    }

    public func removeFile(at path: FilePath) throws(FileSystemError) {
        try locked { (state: inout SimState) throws(FileSystemError) in
            try state.remove(path: path)
        }
    }

    public func syncDirectory(at path: FilePath) throws(FileSystemError) {
        try locked { (state: inout SimState) throws(FileSystemError) in
            try state.syncDirectory(path: path)
        }
    }

    public func fileExists(at path: FilePath) -> Bool {
        state.withLock { $0.lookup(path, durable: false) != nil }
    }
}

/// A handle from ``SimulatedFileSystem``. It names an inode, not a path: it keeps working
/// after its file is renamed or removed, until it is closed or the file system crashes.
/// After a crash every call throws EIO; after `close()`, EBADF.
public final class SimulatedFileHandle: FileHandle {
    let fileSystem: SimulatedFileSystem
    let id: Int
    let generation: Int
    /// The path the handle was opened with.
    public let path: FilePath

    init(fileSystem: SimulatedFileSystem, id: Int, generation: Int, path: FilePath) {
        self.fileSystem = fileSystem
        self.id = id
        self.generation = generation
        self.path = path
    }

    deinit { close() }

    func withFile<R: Sendable>(
        _ operation: FileSystemError.Operation,
        _ body: (inout SimState, HandleInfo) throws(FileSystemError) -> R
    ) throws(FileSystemError) -> R {
        try fileSystem.locked { (state: inout SimState) throws(FileSystemError) -> R in
            guard state.generation == generation else {
                throw FileSystemError(operation: operation, path: path, errno: EIO)
            }
            guard let info = state.handles[id] else {
                throw FileSystemError(operation: operation, path: path, errno: EBADF)
            }
            return try body(&state, info)
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, fromAbsoluteOffset offset: Int64) throws(FileSystemError) -> Int {
        try withFile(.read) { (state: inout SimState, info) throws(FileSystemError) -> Int in
            guard info.readable else { throw FileSystemError(operation: .read, path: path, errno: EBADF) }
            guard offset >= 0 else { throw FileSystemError(operation: .read, path: path, errno: EINVAL) }
            let file = state.files[info.node]!
            let start = Int(clamping: offset)
            guard start < file.volatile.count, buffer.count > 0 else { return 0 }
            let count = min(buffer.count, file.volatile.count - start)
            if file.readErrors.contains(where: { $0.overlaps(start..<start + count) }) {
                throw FileSystemError(operation: .read, path: path, errno: EIO)
            }
            file.volatile.withUnsafeBytes { source in
                buffer.baseAddress!.copyMemory(from: source.baseAddress! + start, byteCount: count)
            }
            return count
        }
    }

    /// What the "device" holds: the durable image with the pending writes replayed (Linux
    /// writes dirty pages back before an O_DIRECT read), but without data a failed sync
    /// dropped while the page cache kept showing it (fsyncgate).
    public func readBypassingCache(
        into buffer: UnsafeMutableRawBufferPointer, fromAbsoluteOffset offset: Int64
    ) throws(FileSystemError) -> Int {
        try withFile(.read) { (state: inout SimState, info) throws(FileSystemError) -> Int in
            guard info.readable else { throw FileSystemError(operation: .read, path: path, errno: EBADF) }
            guard offset >= 0 else { throw FileSystemError(operation: .read, path: path, errno: EINVAL) }
            let file = state.files[info.node]!
            var image = file.durable
            for operation in file.pending { operation.apply(to: &image) }
            let start = Int(clamping: offset)
            guard start < image.count, buffer.count > 0 else { return 0 }
            let count = min(buffer.count, image.count - start)
            image.withUnsafeBytes { source in
                buffer.baseAddress!.copyMemory(from: source.baseAddress! + start, byteCount: count)
            }
            return count
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer, toAbsoluteOffset offset: Int64) throws(FileSystemError) {
        try withFile(.write) { (state: inout SimState, info) throws(FileSystemError) in
            guard info.writable else { throw FileSystemError(operation: .write, path: path, errno: EBADF) }
            guard offset >= 0 else { throw FileSystemError(operation: .write, path: path, errno: EINVAL) }
            guard bytes.count > 0 else { return }
            guard offset + Int64(bytes.count) <= state.options.maximumFileSize else {
                throw FileSystemError(operation: .write, path: path, errno: EFBIG)
            }
            state.apply(.write(offset: Int(offset), bytes: Array(bytes)), to: info.node)
        }
    }

    public func synchronizeData() throws(FileSystemError) {
        try withFile(.sync) { (state: inout SimState, info) throws(FileSystemError) in
            try state.syncFile(info.node, path: path)
        }
    }

    public func preallocate(fromAbsoluteOffset offset: Int64, length: Int64) throws(FileSystemError) {
        try withFile(.preallocate) { (state: inout SimState, info) throws(FileSystemError) in
            guard state.options.supportsPreallocate else {
                throw FileSystemError(operation: .preallocate, path: path, errno: EOPNOTSUPP)
            }
            guard info.writable else { throw FileSystemError(operation: .preallocate, path: path, errno: EBADF) }
            guard offset >= 0, length > 0 else { throw FileSystemError(operation: .preallocate, path: path, errno: EINVAL) }
            guard offset + length <= state.options.maximumFileSize else {
                throw FileSystemError(operation: .preallocate, path: path, errno: EFBIG)
            }
            state.apply(.preallocate(end: Int(offset + length)), to: info.node)
        }
    }

    public func truncate(toSize size: Int64) throws(FileSystemError) {
        try withFile(.truncate) { (state: inout SimState, info) throws(FileSystemError) in
            guard info.writable else { throw FileSystemError(operation: .truncate, path: path, errno: EBADF) }
            guard size >= 0 else { throw FileSystemError(operation: .truncate, path: path, errno: EINVAL) }
            guard size <= state.options.maximumFileSize else {
                throw FileSystemError(operation: .truncate, path: path, errno: EFBIG)
            }
            state.apply(.truncate(size: Int(size)), to: info.node)
        }
    }

    public func size() throws(FileSystemError) -> Int64 {
        try withFile(.stat) { (state: inout SimState, info) throws(FileSystemError) -> Int64 in
            Int64(state.files[info.node]!.volatile.count)
        }
    }

    public func close() {
        fileSystem.state.withLock { state in
            guard state.generation == generation else { return }
            if let info = state.handles.removeValue(forKey: id), state.hasNoOpenHandles(info.node) {
                state.collectGarbage()
            }
        }
    }
}

// MARK: - State

struct SyncFailure: Sendable {
    var remaining: Int
    var errno: Int32
    var filter: (@Sendable (FilePath) -> Bool)?
}

struct HandleInfo: Sendable {
    var node: Int
    var readable: Bool
    var writable: Bool
}

/// An unsynced change to a file's data.
enum DataOperation: Sendable {
    case write(offset: Int, bytes: [UInt8])
    case truncate(size: Int)
    /// Grows the file to `end` with zeros if it is shorter.
    case preallocate(end: Int)

    var isWrite: Bool {
        if case .write = self { true } else { false }
    }

    func apply(to image: inout [UInt8]) {
        switch self {
        case .write(let offset, let bytes):
            if image.count < offset + bytes.count {
                image.append(contentsOf: repeatElement(0, count: offset + bytes.count - image.count))
            }
            image.replaceSubrange(offset..<offset + bytes.count, with: bytes)
        case .truncate(let size):
            if size < image.count {
                image.removeSubrange(size...)
            } else {
                image.append(contentsOf: repeatElement(0, count: size - image.count))
            }
        case .preallocate(let end):
            if image.count < end { image.append(contentsOf: repeatElement(0, count: end - image.count)) }
        }
    }
}

struct FileNode: Sendable {
    var durable: [UInt8] = []
    var volatile: [UInt8] = []
    /// Changes since the last sync, oldest first.
    var pending: [DataOperation] = []
    var readErrors: [Range<Int>] = []
    /// The volatile image is not `durable` with `pending` replayed onto it: a failed sync
    /// dropped data the page cache still shows. Otherwise a sync can just copy `volatile`.
    var diverged = false

    /// A successful fdatasync: the pending operations reach the durable image.
    mutating func persistPending() {
        if diverged {
            for operation in pending { operation.apply(to: &durable) }
            if durable == volatile {
                durable = volatile  // share the storage
                diverged = false
            }
        } else if !pending.isEmpty {
            durable = volatile
        }
        pending.removeAll()
    }

    mutating func checkDivergence() {
        var replayed = durable
        for operation in pending { operation.apply(to: &replayed) }
        diverged = replayed != volatile
    }
}

/// One atomic change to a directory: each name set to a node, or removed (nil).
typealias DirectoryEdit = [(name: String, node: Int?)]

struct DirectoryNode: Sendable {
    var durable: [String: Int] = [:]
    var volatile: [String: Int] = [:]
    /// Changes since the last sync, oldest first.
    var pending: [DirectoryEdit] = []

    mutating func edit(_ edit: DirectoryEdit) {
        for (name, node) in edit { volatile[name] = node }
        pending.append(edit)
    }
}

enum Entry: Equatable {
    case file(Int)
    case directory(Int)
}

struct SimState: Sendable {
    var options: SimulatedFileSystem.Options
    var rng: SplitMix64
    var files: [Int: FileNode] = [:]
    var directories: [Int: DirectoryNode] = [:]
    var nextNode = 2
    /// Node 0 is "/", node 1 is "." (the root of relative paths).
    static let absoluteRoot = 0
    static let relativeRoot = 1
    /// Bumped by each crash; handles from an older generation are dead.
    var generation = 0
    var handles: [Int: HandleInfo] = [:]
    var nextHandle = 0
    var syncFailures: [SyncFailure] = []

    init(seed: UInt64, options: SimulatedFileSystem.Options) {
        self.options = options
        self.rng = SplitMix64(seed: seed)
        directories[Self.absoluteRoot] = DirectoryNode()
        directories[Self.relativeRoot] = DirectoryNode()
    }

    // MARK: Paths

    /// The root a path starts from and its components, with "." dropped and ".." applied.
    static func parse(_ path: FilePath) -> (root: Int, components: [String]) {
        var components: [String] = []
        for part in path.string.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." {
                if !components.isEmpty { components.removeLast() }
                continue
            }
            components.append(String(part))
        }
        return (path.string.hasPrefix("/") ? absoluteRoot : relativeRoot, components)
    }

    func isDirectory(_ node: Int) -> Bool { directories[node] != nil }

    func entries(of directory: Int, durable: Bool) -> [String: Int] {
        durable ? directories[directory]!.durable : directories[directory]!.volatile
    }

    /// Walks `components` from `root` through directories; throws ENOENT / ENOTDIR.
    func walk(_ root: Int, _ components: ArraySlice<String>, path: FilePath, operation: FileSystemError.Operation) throws(FileSystemError) -> Int {
        var current = root
        for name in components {
            guard let next = directories[current]!.volatile[name] else {
                throw FileSystemError(operation: operation, path: path, errno: ENOENT)
            }
            guard isDirectory(next) else { throw FileSystemError(operation: operation, path: path, errno: ENOTDIR) }
            current = next
        }
        return current
    }

    /// The node at `path`, through volatile or durable entries; nil if there is none.
    func lookup(_ path: FilePath, durable: Bool) -> Entry? {
        guard !path.string.isEmpty else { return nil }
        let (root, components) = Self.parse(path)
        var current = root
        for name in components {
            guard isDirectory(current), let next = entries(of: current, durable: durable)[name] else { return nil }
            current = next
        }
        return isDirectory(current) ? .directory(current) : .file(current)
    }

    /// The parent directory of `path` and the final name; throws if the parent is missing.
    func parent(of path: FilePath, operation: FileSystemError.Operation) throws(FileSystemError) -> (directory: Int, name: String) {
        guard !path.string.isEmpty else { throw FileSystemError(operation: operation, path: path, errno: ENOENT) }
        let (root, components) = Self.parse(path)
        guard let name = components.last else {
            // "/" or ".": a root directory, which has no parent entry.
            throw FileSystemError(operation: operation, path: path, errno: operation == .open ? EISDIR : EBUSY)
        }
        return (try walk(root, components.dropLast(), path: path, operation: operation), name)
    }

    func resolveFile(_ path: FilePath, operation: FileSystemError.Operation) throws(FileSystemError) -> Int {
        let (directory, name) = try parent(of: path, operation: operation)
        guard let node = directories[directory]!.volatile[name] else {
            throw FileSystemError(operation: operation, path: path, errno: ENOENT)
        }
        guard !isDirectory(node) else { throw FileSystemError(operation: operation, path: path, errno: EISDIR) }
        return node
    }

    func resolveDirectory(_ path: FilePath, operation: FileSystemError.Operation) throws(FileSystemError) -> Int {
        guard !path.string.isEmpty else { throw FileSystemError(operation: operation, path: path, errno: ENOENT) }
        let (root, components) = Self.parse(path)
        return try walk(root, components[...], path: path, operation: operation)
    }

    mutating func newNode() -> Int {
        defer { nextNode += 1 }
        return nextNode
    }

    // MARK: Namespace operations

    mutating func open(path: FilePath, options: FileOpenOptions) throws(FileSystemError) -> (Int, Int) {
        let (directory, name) = try parent(of: path, operation: .open)
        let node: Int
        if let existing = directories[directory]!.volatile[name] {
            guard !isDirectory(existing) else { throw FileSystemError(operation: .open, path: path, errno: EISDIR) }
            guard !options.contains(.createNew) else { throw FileSystemError(operation: .open, path: path, errno: EEXIST) }
            node = existing
        } else {
            guard options.contains(.createNew) else { throw FileSystemError(operation: .open, path: path, errno: ENOENT) }
            node = newNode()
            files[node] = FileNode()
            directories[directory]!.edit([(name, node)])
        }
        let id = nextHandle
        nextHandle += 1
        handles[id] = HandleInfo(
            node: node,
            readable: options.contains(.read) || !options.contains(.write),
            writable: options.contains(.write))
        return (id, generation)
    }

    /// mkdir -p; returns the directory's node.
    @discardableResult
    mutating func createDirectories(_ path: FilePath) throws(FileSystemError) -> Int {
        guard !path.string.isEmpty else { throw FileSystemError(operation: .createDirectory, path: path, errno: ENOENT) }
        let (root, components) = Self.parse(path)
        var current = root
        for (index, name) in components.enumerated() {
            if let next = directories[current]!.volatile[name] {
                guard isDirectory(next) else {
                    let errno = index == components.count - 1 ? EEXIST : ENOTDIR
                    throw FileSystemError(operation: .createDirectory, path: path, errno: errno)
                }
                current = next
            } else {
                let node = newNode()
                directories[node] = DirectoryNode()
                directories[current]!.edit([(name, node)])
                current = node
            }
        }
        return current
    }

    mutating func rename(from source: FilePath, to destination: FilePath) throws(FileSystemError) {
        let (sourceDirectory, sourceName) = try parent(of: source, operation: .rename)
        let (destinationDirectory, destinationName) = try parent(of: destination, operation: .rename)
        guard let node = directories[sourceDirectory]!.volatile[sourceName] else {
            throw FileSystemError(operation: .rename, path: source, errno: ENOENT)
        }
        if sourceDirectory == destinationDirectory && sourceName == destinationName { return }
        if let existing = directories[destinationDirectory]!.volatile[destinationName] {
            if existing == node { return }  // two names for one inode: POSIX does nothing
            switch (isDirectory(node), isDirectory(existing)) {
            case (false, true):
                throw FileSystemError(operation: .rename, path: source, errno: EISDIR)
            case (true, false):
                throw FileSystemError(operation: .rename, path: source, errno: ENOTDIR)
            case (true, true) where !directories[existing]!.volatile.isEmpty:
                throw FileSystemError(operation: .rename, path: source, errno: ENOTEMPTY)
            default:
                break
            }
        }
        if isDirectory(node) {
            let from = Self.parse(source), to = Self.parse(destination)
            if from.root == to.root && to.components.starts(with: from.components) {
                throw FileSystemError(operation: .rename, path: source, errno: EINVAL)
            }
        }
        if sourceDirectory == destinationDirectory {
            directories[sourceDirectory]!.edit([(sourceName, nil), (destinationName, node)])
        } else {
            directories[sourceDirectory]!.edit([(sourceName, nil)])
            directories[destinationDirectory]!.edit([(destinationName, node)])
        }
    }

    mutating func remove(path: FilePath) throws(FileSystemError) {
        let (directory, name) = try parent(of: path, operation: .remove)
        guard let node = directories[directory]!.volatile[name] else {
            throw FileSystemError(operation: .remove, path: path, errno: ENOENT)
        }
        guard !isDirectory(node) else { throw FileSystemError(operation: .remove, path: path, errno: EISDIR) }
        directories[directory]!.edit([(name, nil)])
    }

    /// Takes the next injected sync failure matching `path`, if any.
    mutating func takeSyncFailure(_ path: FilePath) -> Int32? {
        guard let index = syncFailures.firstIndex(where: { $0.filter?(path) ?? true }) else { return nil }
        let errno = syncFailures[index].errno
        syncFailures[index].remaining -= 1
        if syncFailures[index].remaining == 0 { syncFailures.remove(at: index) }
        return errno
    }

    mutating func syncDirectory(path: FilePath) throws(FileSystemError) {
        let directory = try resolveDirectory(path, operation: .syncDirectory)
        if let errno = takeSyncFailure(path) {
            throw FileSystemError(operation: .syncDirectory, path: path, errno: errno)
        }
        directories[directory]!.durable = directories[directory]!.volatile
        directories[directory]!.pending.removeAll()
        collectGarbage()
    }

    // MARK: Data operations

    mutating func apply(_ operation: DataOperation, to node: Int) {
        operation.apply(to: &files[node]!.volatile)
        files[node]!.pending.append(operation)
    }

    mutating func syncFile(_ node: Int, path: FilePath) throws(FileSystemError) {
        if let errno = takeSyncFailure(path) {
            if options.fsyncFailureDropsUnsyncedData {
                var rng = self.rng
                settle(node, rng: &rng)
                self.rng = rng
            }
            throw FileSystemError(operation: .sync, path: path, errno: errno)
        }
        files[node]!.persistPending()
    }

    mutating func syncEverything() {
        for node in files.keys.sorted() { files[node]!.persistPending() }
        for node in directories.keys.sorted() {
            directories[node]!.durable = directories[node]!.volatile
            directories[node]!.pending.removeAll()
        }
        collectGarbage()
    }

    mutating func createFile(path: FilePath, contents: [UInt8], durable: Bool) throws(FileSystemError) {
        let (root, components) = Self.parse(path)
        guard let name = components.last else { throw FileSystemError(operation: .open, path: path, errno: EISDIR) }
        var directoryPath = FilePath(root == Self.absoluteRoot ? "/" : ".")
        for component in components.dropLast() { directoryPath = directoryPath.appending(component) }
        let directory = try createDirectories(directoryPath)
        if let existing = directories[directory]!.volatile[name], isDirectory(existing) {
            throw FileSystemError(operation: .open, path: path, errno: EISDIR)
        }
        let node = newNode()
        files[node] = FileNode()
        directories[directory]!.edit([(name, node)])
        apply(.write(offset: 0, bytes: contents), to: node)
        guard durable else { return }
        files[node]!.persistPending()
        // Sync every directory from the file's up to the root.
        var current = root
        var chain = [root]
        for component in components.dropLast() {
            current = directories[current]!.volatile[component]!
            chain.append(current)
        }
        for directory in chain {
            directories[directory]!.durable = directories[directory]!.volatile
            directories[directory]!.pending.removeAll()
        }
    }

    mutating func corrupt(path: FilePath, offset: Int64, length: Int, how: SimulatedFileSystem.Corruption) throws(FileSystemError) {
        let node = try resolveFile(path, operation: .write)
        guard offset >= 0, length >= 0 else { throw FileSystemError(operation: .write, path: path, errno: EINVAL) }
        let start = Int(offset)
        var damage: (Int, UInt8) -> UInt8  // (absolute offset, old byte) -> new byte
        switch how {
        case .xor(let mask): damage = { _, byte in byte ^ mask }
        case .fill(let value): damage = { _, _ in value }
        case .random(let seed):
            var generator = SplitMix64(seed: seed)
            let noise = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            damage = { position, _ in noise[position - start] }
        }
        func hit(_ image: inout [UInt8], at base: Int) {
            let lower = max(start, base), upper = min(start + length, base + image.count)
            guard lower < upper else { return }
            for position in lower..<upper { image[position - base] = damage(position, image[position - base]) }
        }
        var file = files.removeValue(forKey: node)!
        hit(&file.durable, at: 0)
        hit(&file.volatile, at: 0)
        for index in file.pending.indices {
            if case .write(let offset, var bytes) = file.pending[index] {
                hit(&bytes, at: offset)
                file.pending[index] = .write(offset: offset, bytes: bytes)
            }
        }
        file.checkDivergence()
        files[node] = file
    }

    // MARK: Crash

    /// Settles a file's unsynced operations as a power cut would and makes the result its
    /// durable image (the volatile one is left alone: this is also the fsyncgate outcome).
    mutating func settle(_ node: Int, rng: inout SplitMix64) {
        var file = files.removeValue(forKey: node)!
        file.durable = Self.survivingImage(base: file.durable, pending: file.pending, options: options, rng: &rng)
        file.pending.removeAll()
        file.diverged = file.durable != file.volatile
        files[node] = file
    }

    enum Fate { case lost, applied, torn }

    static func survivingImage(
        base: [UInt8], pending: [DataOperation], options: SimulatedFileSystem.Options, rng: inout SplitMix64
    ) -> [UInt8] {
        var image = base
        guard !pending.isEmpty else { return image }
        guard options.loseUnsyncedWrites else {
            for operation in pending { operation.apply(to: &image) }
            return image
        }
        var fates = [Fate](repeating: .lost, count: pending.count)
        if options.reorder {
            let lastWrite = pending.lastIndex(where: \.isWrite)
            for index in pending.indices {
                if index == lastWrite && options.tornWrites {
                    fates[index] = [.lost, .applied, .torn][rng.uniform(below: 3)]
                } else {
                    fates[index] = rng.coin() ? .applied : .lost
                }
            }
        } else {
            let persisted = rng.uniform(below: pending.count + 1)
            for index in 0..<persisted { fates[index] = .applied }
            if persisted < pending.count && options.tornWrites && pending[persisted].isWrite && rng.coin() {
                fates[persisted] = .torn
            }
        }
        for (operation, fate) in zip(pending, fates) {
            switch (fate, operation) {
            case (.applied, _):
                operation.apply(to: &image)
            case (.lost, .write(let offset, let bytes)):
                if options.zeroFilledAppends && offset + bytes.count > image.count && rng.coin() {
                    DataOperation.preallocate(end: offset + bytes.count).apply(to: &image)
                }
            case (.torn, .write(let offset, let bytes)):
                let sector = max(1, options.sectorSize)
                let end = offset + bytes.count
                var first = offset / sector * sector
                while first < end {
                    let lower = max(offset, first), upper = min(end, first + sector)
                    if rng.coin() {
                        DataOperation.write(offset: lower, bytes: Array(bytes[(lower - offset)..<(upper - offset)]))
                            .apply(to: &image)
                    }
                    first += sector
                }
                if options.zeroFilledAppends && end > image.count && rng.coin() {
                    DataOperation.preallocate(end: end).apply(to: &image)
                }
            case (.lost, _), (.torn, _):
                break
            }
        }
        return image
    }

    mutating func crash(rng: inout SplitMix64) {
        // Directory entries first, then file data, each in node order, so that a seed
        // always draws the same numbers for the same state.
        var survivingEntries: [Int: [String: Int]] = [:]
        for node in directories.keys.sorted() {
            let directory = directories[node]!
            var entries = directory.durable
            let persisted: Int = switch options.unsyncedDirectoryEntries {
            case .lost: 0
            case .kept: directory.pending.count
            case .randomPrefix: directory.pending.isEmpty ? 0 : rng.uniform(below: directory.pending.count + 1)
            }
            for edit in directory.pending.prefix(persisted) {
                for (name, target) in edit { entries[name] = target }
            }
            survivingEntries[node] = entries
        }
        for node in files.keys.sorted() { settle(node, rng: &rng) }

        // Reboot: keep what the surviving entries reach.
        var reachable: Set<Int> = [Self.absoluteRoot, Self.relativeRoot]
        var queue = [Self.absoluteRoot, Self.relativeRoot]
        while let node = queue.popLast() {
            for target in survivingEntries[node]?.values.sorted() ?? [] where reachable.insert(target).inserted {
                queue.append(target)
            }
        }
        var newDirectories: [Int: DirectoryNode] = [:]
        for (node, entries) in survivingEntries where reachable.contains(node) {
            newDirectories[node] = DirectoryNode(durable: entries, volatile: entries, pending: [])
        }
        var newFiles: [Int: FileNode] = [:]
        for (node, file) in files where reachable.contains(node) {
            newFiles[node] = FileNode(durable: file.durable, volatile: file.durable, pending: [], readErrors: file.readErrors)
        }
        directories = newDirectories
        files = newFiles
        handles.removeAll()
        generation += 1
    }

    // MARK: Garbage

    /// Whether no open handle names `node` (if it is also unlinked, it can be collected).
    func hasNoOpenHandles(_ node: Int) -> Bool {
        !handles.values.contains { $0.node == node }
    }

    /// Drops nodes no directory entry (volatile, durable or unsynced) and no open handle
    /// can reach any more.
    mutating func collectGarbage() {
        var reachable: Set<Int> = [Self.absoluteRoot, Self.relativeRoot]
        for handle in handles.values { reachable.insert(handle.node) }
        var queue = Array(reachable)
        while let node = queue.popLast() {
            guard let directory = directories[node] else { continue }
            var targets = Array(directory.volatile.values) + Array(directory.durable.values)
            for edit in directory.pending { targets += edit.compactMap { $0.node } }
            for target in targets where reachable.insert(target).inserted { queue.append(target) }
        }
        guard reachable.count < files.count + directories.count else { return }
        files = files.filter { reachable.contains($0.key) }
        directories = directories.filter { reachable.contains($0.key) }
    }
}
