#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Testing
import ShipLogStorage
import ShipLogTestSupport

// MARK: Helpers (fileprivate: the other test files have their own)

fileprivate func put(_ handle: any FileHandle, _ bytes: [UInt8], at offset: Int64) throws {
    try handle.write(bytes, toAbsoluteOffset: offset)
}

fileprivate func get(_ handle: any FileHandle, count: Int, at offset: Int64) throws -> [UInt8] {
    try handle.read(count: count, fromAbsoluteOffset: offset)
}

fileprivate func caught(_ body: () throws -> Void) -> FileSystemError? {
    do {
        try body()
        return nil
    } catch let error as FileSystemError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

/// A scratch directory from mkdtemp, removed (with its plain files) by `remove()`.
fileprivate struct ScratchDirectory {
    let path: FilePath

    init() throws {
        var template = Array("/tmp/shiplog-fault-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        try #require(made != nil)
        path = FilePath(String(cString: made!))
    }

    func remove() {
        let posix = PosixFileSystem()
        for name in (try? posix.contentsOfDirectory(at: path)) ?? [] {
            try? posix.removeFile(at: path.appending(name))
        }
        _ = rmdir(path.string)
    }
}

/// A small workload touching every kind of call: what an engine does to roll a segment.
fileprivate func rollSegment(_ fs: any FileSystem, in directory: FilePath) throws {
    let segment = try fs.openFile(at: directory.appending("segment.tmp"), options: [.read, .write, .createNew])
    defer { segment.close() }
    try segment.preallocate(fromAbsoluteOffset: 0, length: 4096)
    try put(segment, Array(repeating: 1, count: 100), at: 0)
    try put(segment, Array(repeating: 2, count: 100), at: 100)
    try segment.synchronizeData()
    _ = try get(segment, count: 200, at: 0)
    try segment.truncate(toSize: try segment.size())
    try segment.synchronizeData()
    try fs.rename(from: directory.appending("segment.tmp"), to: directory.appending("segment"))
    try fs.syncDirectory(at: directory)
    _ = try fs.contentsOfDirectory(at: directory)
}

@Suite("FaultInjectingFileSystem")
struct FaultInjectingFileSystemTests {
    @Test func nthCallFaultFiresExactlyOnceOnTheNthCall() throws {
        let fs = FaultInjectingFileSystem(wrapping: SimulatedFileSystem())
        let handle = try fs.openFile(at: "f", options: [.read, .write, .createNew])
        let fault = fs.failCall(2, of: .write, errno: EIO)
        var failures: [Int] = []
        for index in 0..<6 {
            if let error = caught({ try put(handle, [UInt8(index)], at: Int64(index)) }) {
                failures.append(index)
                #expect(error.errno == EIO)
                #expect(error.operation == .write)
                #expect(error.path == "f")
            }
        }
        #expect(failures == [2])
        #expect(fs.timesFired(fault) == 1)
        #expect(fs.callCount(of: .write) == 6)
        #expect(try get(handle, count: 10, at: 0) == [0, 1, 0, 3, 4, 5])  // call 2 wrote nothing
        #expect(fs.injectedFailures.map(\.index) == [2])
        #expect(fs.injectedFailures.first?.operation == .write)
    }

    @Test func fromCallFaultFailsEveryLaterCall() throws {
        let fs = FaultInjectingFileSystem(wrapping: SimulatedFileSystem())
        let handle = try fs.openFile(at: "f", options: [.write, .createNew])
        let fault = fs.failCalls(from: 1, of: .sync, errno: EIO)
        var outcomes: [Int32?] = []
        for _ in 0..<4 { outcomes.append(caught { try handle.synchronizeData() }?.errno) }
        #expect(outcomes == [nil, EIO, EIO, EIO])
        #expect(fs.timesFired(fault) == 3)
        fs.removeFault(fault)
        #expect(caught { try handle.synchronizeData() } == nil)
        #expect(fs.scheduledFaults.isEmpty)
    }

    @Test func countsEveryOperation() throws {
        let fs = FaultInjectingFileSystem(wrapping: SimulatedFileSystem())
        try fs.createDirectory(at: "log")
        try rollSegment(fs, in: "log")
        _ = fs.fileExists(at: "log/segment")
        let expected: [FaultOperation: Int] = [
            .createDirectory: 1, .open: 1, .preallocate: 1, .write: 2, .sync: 2, .read: 1, .size: 1,
            .truncate: 1, .rename: 1, .syncDirectory: 1, .listDirectory: 1, .close: 1, .fileExists: 1,
        ]
        #expect(fs.callCounts == expected)
        for operation in FaultOperation.allCases {
            #expect(fs.callCount(of: operation) == expected[operation, default: 0])
        }
        #expect(fs.calls.map(\.operation) == [
            .createDirectory, .open, .preallocate, .write, .write, .sync, .read, .size, .truncate, .sync,
            .rename, .syncDirectory, .listDirectory, .close, .fileExists,
        ])
        #expect(fs.calls.first { $0.operation == .rename }?.destination == "log/segment")
        #expect(fs.callCount(of: .write, where: { $0.lastComponent == "segment.tmp" }) == 2)
        fs.resetCounts()
        #expect(fs.callCounts.isEmpty && fs.calls.isEmpty)
    }

    @Test func failingEachCallSiteInTurn() throws {
        // Count the call sites once, then fail each one and check the workload stops there.
        let probe = FaultInjectingFileSystem(wrapping: SimulatedFileSystem())
        try probe.createDirectory(at: "log")
        probe.resetCounts()
        try rollSegment(probe, in: "log")
        for operation in FaultOperation.allCases where operation.isFaultable {
            for n in 0..<probe.callCount(of: operation) {
                let fs = FaultInjectingFileSystem(wrapping: SimulatedFileSystem())
                try fs.createDirectory(at: "log")
                let fault = fs.failCall(n, of: operation, errno: EIO)
                let error = caught { try rollSegment(fs, in: "log") }
                #expect(error?.errno == EIO, "\(operation) #\(n)")
                #expect(error?.operation == operation.errorOperation, "\(operation) #\(n)")
                #expect(fs.timesFired(fault) == 1)
                #expect(fs.callCount(of: operation) == n + 1, "\(operation) #\(n): the workload stopped at the fault")
            }
        }
    }

    @Test func pathFilterCountsOnlyMatchingCalls() throws {
        let fs = FaultInjectingFileSystem(wrapping: SimulatedFileSystem())
        let a = try fs.openFile(at: "a.log", options: [.write, .createNew])
        let b = try fs.openFile(at: "b.manifest", options: [.write, .createNew])
        fs.failCall(1, of: .sync, errno: EIO) { $0.string.hasSuffix(".manifest") }
        #expect(caught { try a.synchronizeData() } == nil)
        #expect(caught { try b.synchronizeData() } == nil)  // matching call 0
        #expect(caught { try a.synchronizeData() } == nil)
        #expect(caught { try b.synchronizeData() }?.errno == EIO)  // matching call 1
        #expect(caught { try b.synchronizeData() } == nil)
        #expect(fs.callCount(of: .sync) == 5)

        // A rename matches on its destination too.
        fs.failCall(0, of: .rename, errno: EACCES) { $0.string.hasSuffix(".manifest") }
        let error = caught { try fs.rename(from: "a.log", to: "c.manifest") }
        #expect(error?.errno == EACCES && error?.path == "a.log")
        #expect(fs.fileExists(at: "a.log"))
    }

    @Test func shortWriteWritesExactlyKBytesThenENOSPC() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let fs = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        let path = scratch.path.appending("segment")
        let handle = try fs.openFile(at: path, options: [.read, .write, .createNew])
        defer { handle.close() }
        try put(handle, Array(repeating: 7, count: 10), at: 0)
        fs.shortWrite(onCall: 0, keeping: 300, errno: ENOSPC)  // counted from now: the next write
        let payload = (0..<1000).map { UInt8(truncatingIfNeeded: $0) }
        let error = try #require(caught { try put(handle, payload, at: 10) })
        #expect(error.isOutOfSpace)
        #expect(error.operation == .write && error.path == path)
        #expect(try handle.size() == 310)
        #expect(try get(handle, count: 2000, at: 0) == Array(repeating: 7, count: 10) + payload.prefix(300))
        // The next write goes through.
        try put(handle, [1], at: 310)
        #expect(try handle.size() == 311)
    }

    @Test func shortWriteThenDiskStaysFull() throws {
        let inner = SimulatedFileSystem()
        let fs = FaultInjectingFileSystem(wrapping: inner)
        let handle = try fs.openFile(at: "f", options: [.write, .createNew])
        fs.shortWrite(onCall: 0, keeping: 5, errno: ENOSPC, thenEveryWrite: true)
        #expect(caught { try put(handle, Array(repeating: 1, count: 8), at: 0) }?.isOutOfSpace == true)
        #expect(caught { try put(handle, [2], at: 5) }?.isOutOfSpace == true)
        #expect(caught { try put(handle, [3], at: 5) }?.isOutOfSpace == true)
        #expect(inner.contents(at: "f") == [1, 1, 1, 1, 1])
        // Keeping more bytes than the write has writes all of them, then fails.
        let other = try fs.openFile(at: "g", options: [.write, .createNew])
        fs.removeAllFaults()
        fs.shortWrite(onCall: 0, keeping: 100)
        #expect(caught { try put(other, [4, 4], at: 0) }?.errno == ENOSPC)
        #expect(inner.contents(at: "g") == [4, 4])
    }

    @Test func failAfterApplyingPerformsTheCall() throws {
        let inner = SimulatedFileSystem()
        let fs = FaultInjectingFileSystem(wrapping: inner)
        let keptOpen = try fs.openFile(at: "a", options: [.write, .createNew])
        fs.inject(Fault(.rename, .onCall(0), effect: .failAfterApplying(errno: EIO)))
        #expect(caught { try fs.rename(from: "a", to: "b") }?.errno == EIO)
        #expect(inner.fileExists(at: "b") && !inner.fileExists(at: "a"))

        fs.inject(Fault(.open, .onCall(0), effect: .failAfterApplying(errno: EIO)))  // the next open
        #expect(caught { _ = try fs.openFile(at: "c", options: [.write, .createNew]) }?.errno == EIO)
        #expect(inner.fileExists(at: "c"))
        #expect(inner.openHandleCount == 1)  // only "a"'s handle is open; "c"'s was closed
        withExtendedLifetime(keptOpen) {}
    }

    @Test func faultsOnPosixFileSystemHandleOperations() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let fs = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        fs.failCall(0, of: .open, errno: EMFILE)
        #expect(caught { _ = try fs.openFile(at: scratch.path.appending("x"), options: [.write, .createNew]) }?.errno == EMFILE)
        #expect(!fs.fileExists(at: scratch.path.appending("x")))
        let handle = try fs.openFile(at: scratch.path.appending("x"), options: [.read, .write, .createNew])
        defer { handle.close() }
        fs.failCall(0, of: .read, errno: EIO)
        fs.failCall(0, of: .size, errno: EIO)
        fs.failCall(0, of: .preallocate, errno: EOPNOTSUPP)
        fs.failCall(0, of: .truncate, errno: EIO)
        fs.failCall(0, of: .syncDirectory, errno: EIO)
        fs.failCall(0, of: .listDirectory, errno: EACCES)
        #expect(caught { _ = try get(handle, count: 1, at: 0) }?.operation == .read)
        #expect(caught { _ = try handle.size() }?.operation == .stat)
        #expect(caught { try handle.preallocate(fromAbsoluteOffset: 0, length: 10) }?.isUnsupported == true)
        #expect(caught { try handle.truncate(toSize: 5) }?.operation == .truncate)
        #expect(caught { try fs.syncDirectory(at: scratch.path) }?.operation == .syncDirectory)
        #expect(caught { _ = try fs.contentsOfDirectory(at: scratch.path) }?.errno == EACCES)
        #expect(try handle.size() == 0)  // nothing reached the disk
        #expect(try fs.contentsOfDirectory(at: scratch.path) == ["x"])
    }

    @Test func countsAreExactUnderConcurrency() throws {
        let fs = FaultInjectingFileSystem(wrapping: SimulatedFileSystem(), recordingCalls: false)
        let handle = try fs.openFile(at: "f", options: [.read, .write, .createNew])
        let fault = fs.failCall(777, of: .read, errno: EIO)
        try put(handle, [1], at: 0)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<250 { _ = try? get(handle, count: 1, at: 0) }
        }
        #expect(fs.callCount(of: .read) == 2000)
        #expect(fs.timesFired(fault) == 1)
        #expect(fs.calls.isEmpty)
    }

    @Test func composesWithTheSimulatorForCrashTests() throws {
        // A disk filling mid-write, then a power cut: the synced prefix survives.
        let disk = SimulatedFileSystem()
        let fs = FaultInjectingFileSystem(wrapping: disk)
        try fs.createDirectory(at: "log")
        try fs.syncDirectory(at: ".")
        let handle = try fs.openFile(at: "log/segment", options: [.write, .createNew])
        try put(handle, Array(repeating: 1, count: 512), at: 0)
        try handle.synchronizeData()
        try fs.syncDirectory(at: "log")
        fs.shortWrite(onCall: 1, keeping: 100)
        try put(handle, Array(repeating: 2, count: 512), at: 512)
        #expect(caught { try put(handle, Array(repeating: 3, count: 512), at: 1024) }?.isOutOfSpace == true)
        #expect(disk.contents(at: "log/segment")?.count == 1124)
        disk.crash(seed: 9)
        let after = try #require(disk.contents(at: "log/segment"))
        #expect(after.prefix(512) == Array(repeating: 1, count: 512)[...])
        #expect(caught { try handle.synchronizeData() }?.errno == EIO)  // the handle died with the power
    }
}
