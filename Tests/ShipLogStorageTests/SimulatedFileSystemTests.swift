#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Testing
import ShipLogStorage
import ShipLogTestSupport

// MARK: Helpers (fileprivate: the other test files have their own)

fileprivate func write(_ handle: any FileHandle, _ bytes: [UInt8], at offset: Int64) throws {
    try handle.write(bytes, toAbsoluteOffset: offset)
}

fileprivate func read(_ handle: any FileHandle, count: Int, at offset: Int64) throws -> [UInt8] {
    try handle.read(count: count, fromAbsoluteOffset: offset)
}

fileprivate func errno(of body: () throws -> Void) -> Int32? {
    do {
        try body()
        return nil
    } catch let error as FileSystemError {
        return error.errno
    } catch {
        return -1
    }
}

fileprivate func bytes(_ value: UInt8, _ count: Int) -> [UInt8] { [UInt8](repeating: value, count: count) }

/// A file system with "log/" created and durable.
fileprivate func freshFileSystem(seed: UInt64 = 0, options: SimulatedFileSystem.Options = .init()) throws -> SimulatedFileSystem {
    let fs = SimulatedFileSystem(seed: seed, options: options)
    try fs.createDirectory(at: "log")
    try fs.syncDirectory(at: ".")
    return fs
}

/// Creates `log/<name>` with `contents`, data and entry synced.
fileprivate func durableFile(_ fs: SimulatedFileSystem, _ name: String, _ contents: [UInt8]) throws -> any FileHandle {
    let handle = try fs.openFile(at: FilePath("log").appending(name), options: [.read, .write, .createNew])
    try write(handle, contents, at: 0)
    try handle.synchronizeData()
    try fs.syncDirectory(at: "log")
    return handle
}

// MARK: Durability

@Suite("SimulatedFileSystem")
struct SimulatedFileSystemTests {
    @Test func syncedWriteSurvivesEveryCrashSeed() throws {
        let synced = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        for seed in UInt64(0)..<300 {
            let fs = try freshFileSystem()
            let handle = try durableFile(fs, "segment", synced)
            // Unsynced work after the sync: appends, a preallocation, a new file.
            try write(handle, bytes(0xEE, 700), at: 3000)
            try handle.preallocate(fromAbsoluteOffset: 3700, length: 4096)
            try write(handle, bytes(0xDD, 100), at: 5000)
            let other = try fs.openFile(at: "log/other", options: [.write, .createNew])
            try write(other, bytes(1, 10), at: 0)

            fs.crash(seed: seed)
            let after = try #require(fs.contents(at: "log/segment"))
            #expect(after.count >= synced.count)
            #expect(Array(after.prefix(synced.count)) == synced, "seed \(seed)")
            #expect(!fs.fileExists(at: "log/other"), "seed \(seed)")
        }
    }

    @Test func unsyncedWriteSometimesSurvivesAndSometimesNot() throws {
        var survived = 0, lost = 0
        for seed in UInt64(0)..<100 {
            let fs = try freshFileSystem()
            let handle = try durableFile(fs, "segment", bytes(0xAA, 512))
            try write(handle, bytes(0xBB, 512), at: 0)
            #expect(fs.contents(at: "log/segment") == bytes(0xBB, 512))  // the page cache has it
            fs.crash(seed: seed)
            let after = try #require(fs.contents(at: "log/segment"))
            if after == bytes(0xBB, 512) { survived += 1 } else if after == bytes(0xAA, 512) { lost += 1 }
        }
        #expect(survived > 10)
        #expect(lost > 10)
    }

    @Test func tornWriteIsASectorGranularMixOfOldAndNew() throws {
        var mixed = 0, allNew = 0, allOld = 0
        for seed in UInt64(0)..<200 {
            let fs = try freshFileSystem()
            let handle = try durableFile(fs, "segment", bytes(0xAA, 4096))
            try write(handle, bytes(0xBB, 4096), at: 0)
            fs.crash(seed: seed)
            let after = try #require(fs.contents(at: "log/segment"))
            #expect(after.count == 4096)
            var sawOld = false, sawNew = false
            for sector in 0..<8 {
                let slice = after[(sector * 512)..<(sector * 512 + 512)]
                let uniform = slice.allSatisfy { $0 == slice.first }
                #expect(uniform, "seed \(seed): sector \(sector) is not all old or all new")
                #expect(slice.first == 0xAA || slice.first == 0xBB)
                if slice.first == 0xAA { sawOld = true } else { sawNew = true }
            }
            if sawOld && sawNew { mixed += 1 } else if sawNew { allNew += 1 } else { allOld += 1 }
        }
        #expect(mixed > 0)
        #expect(allNew > 0)
        #expect(allOld > 0)
    }

    @Test func tornWriteRespectsUnalignedBoundaries() throws {
        // A write from 100 to 1100 covers sectors 0 (100..<512), 1 and 2 (1024..<1100).
        var pieces: Set<[Bool]> = []
        for seed in UInt64(0)..<200 {
            let fs = try freshFileSystem()
            let handle = try durableFile(fs, "f", bytes(0xAA, 2048))
            try write(handle, bytes(0xBB, 1000), at: 100)
            fs.crash(seed: seed)
            let after = try #require(fs.contents(at: "log/f"))
            #expect(after[0..<100].allSatisfy { $0 == 0xAA })
            #expect(after[1100...].allSatisfy { $0 == 0xAA })
            let ranges = [100..<512, 512..<1024, 1024..<1100]
            for range in ranges {
                #expect(after[range].allSatisfy { $0 == after[range.lowerBound] })
            }
            pieces.insert(ranges.map { after[$0.lowerBound] == 0xBB })
        }
        #expect(pieces.count == 8)  // every subset of the three sectors shows up
    }

    @Test func tornWritesCanBeTurnedOff() throws {
        var options = SimulatedFileSystem.Options()
        options.tornWrites = false
        for seed in UInt64(0)..<100 {
            let fs = try freshFileSystem(options: options)
            let handle = try durableFile(fs, "segment", bytes(0xAA, 4096))
            try write(handle, bytes(0xBB, 4096), at: 0)
            fs.crash(seed: seed)
            let after = fs.contents(at: "log/segment")
            #expect(after == bytes(0xAA, 4096) || after == bytes(0xBB, 4096))
        }
    }

    @Test func laterUnsyncedWriteCanPersistWithoutAnEarlierOneOnlyWithReorder() throws {
        func outcomes(reorder: Bool) throws -> Set<[UInt8]> {
            var options = SimulatedFileSystem.Options()
            options.reorder = reorder
            options.tornWrites = false
            var seen: Set<[UInt8]> = []
            for seed in UInt64(0)..<200 {
                let fs = try freshFileSystem(options: options)
                let handle = try durableFile(fs, "f", bytes(0, 2))
                try write(handle, [1], at: 0)
                try write(handle, [2], at: 1)
                fs.crash(seed: seed)
                seen.insert(try #require(fs.contents(at: "log/f")))
            }
            return seen
        }
        #expect(try outcomes(reorder: true) == [[0, 0], [1, 0], [0, 2], [1, 2]])
        #expect(try outcomes(reorder: false) == [[0, 0], [1, 0], [1, 2]])
    }

    @Test func lostAppendMayLeaveItsLengthFilledWithZeros() throws {
        var options = SimulatedFileSystem.Options()
        options.tornWrites = false
        var seen: Set<[UInt8]> = []
        for seed in UInt64(0)..<100 {
            let fs = try freshFileSystem(options: options)
            let handle = try durableFile(fs, "f", [9, 9])
            try write(handle, [7, 7, 7], at: 2)
            fs.crash(seed: seed)
            seen.insert(try #require(fs.contents(at: "log/f")))
        }
        #expect(seen == [[9, 9], [9, 9, 7, 7, 7], [9, 9, 0, 0, 0]])

        options.zeroFilledAppends = false
        for seed in UInt64(0)..<100 {
            let fs = try freshFileSystem(options: options)
            let handle = try durableFile(fs, "f", [9, 9])
            try write(handle, [7, 7, 7], at: 2)
            fs.crash(seed: seed)
            let after = fs.contents(at: "log/f")
            #expect(after == [9, 9] || after == [9, 9, 7, 7, 7])
        }
    }

    @Test func unsyncedPreallocateAndTruncateMayOrMayNotPersist() throws {
        var preallocated: Set<Int> = [], truncated: Set<Int> = []
        for seed in UInt64(0)..<100 {
            let fs = try freshFileSystem()
            let a = try durableFile(fs, "a", bytes(1, 100))
            try a.preallocate(fromAbsoluteOffset: 0, length: 4096)
            #expect(try a.size() == 4096)
            let b = try durableFile(fs, "b", bytes(1, 100))
            try b.truncate(toSize: 10)
            fs.crash(seed: seed)
            let afterA = try #require(fs.contents(at: "log/a"))
            let afterB = try #require(fs.contents(at: "log/b"))
            #expect(afterA.prefix(100).allSatisfy { $0 == 1 } && afterA.dropFirst(100).allSatisfy { $0 == 0 })
            #expect(afterB.allSatisfy { $0 == 1 })
            preallocated.insert(afterA.count)
            truncated.insert(afterB.count)
        }
        #expect(preallocated == [100, 4096])
        #expect(truncated == [10, 100])
    }

    @Test func losslessOptionsKeepEverything() throws {
        for seed in UInt64(0)..<20 {
            let fs = try freshFileSystem(options: .lossless)
            let handle = try fs.openFile(at: "log/f", options: [.write, .createNew])
            try write(handle, bytes(3, 5000), at: 0)
            try fs.rename(from: "log/f", to: "log/g")
            fs.crash(seed: seed)
            #expect(fs.contents(at: "log/g") == bytes(3, 5000))
            #expect(!fs.fileExists(at: "log/f"))
        }
    }

    // MARK: Directory entries

    @Test func createWithoutDirectorySyncVanishesAfterCrash() throws {
        let fs = try freshFileSystem()
        let handle = try fs.openFile(at: "log/new", options: [.write, .createNew])
        try write(handle, bytes(5, 100), at: 0)
        try handle.synchronizeData()  // the data is durable, but no entry leads to it
        #expect(fs.fileExists(at: "log/new"))
        #expect(fs.durableContents(at: "log/new") == nil)
        fs.crash(seed: 1)
        #expect(!fs.fileExists(at: "log/new"))
        #expect(try fs.contentsOfDirectory(at: "log").isEmpty)

        let again = try fs.openFile(at: "log/new", options: [.write, .createNew])
        try write(again, bytes(5, 100), at: 0)
        try again.synchronizeData()
        try fs.syncDirectory(at: "log")
        fs.crash(seed: 1)
        #expect(fs.contents(at: "log/new") == bytes(5, 100))
    }

    @Test func directoryCreatedWithoutParentSyncVanishesWithItsFiles() throws {
        let fs = SimulatedFileSystem()
        try fs.createDirectory(at: "/data/log")
        _ = try fs.openFile(at: "/data/log/f", options: [.write, .createNew])
        try fs.syncDirectory(at: "/data/log")  // but "/data" and "/" never synced
        fs.crash(seed: 0)
        #expect(!fs.fileExists(at: "/data"))

        try fs.createDirectory(at: "/data/log")
        _ = try fs.openFile(at: "/data/log/f", options: [.write, .createNew])
        for directory: FilePath in ["/data/log", "/data", "/"] { try fs.syncDirectory(at: directory) }
        fs.crash(seed: 0)
        #expect(fs.fileExists(at: "/data/log/f"))
    }

    @Test func renameWithoutDirectorySyncReverts() throws {
        for seed in UInt64(0)..<20 {
            let fs = try freshFileSystem()
            _ = try durableFile(fs, "manifest.tmp", [1, 2, 3])
            _ = try durableFile(fs, "manifest", [9])
            try fs.rename(from: "log/manifest.tmp", to: "log/manifest")
            #expect(fs.contents(at: "log/manifest") == [1, 2, 3])
            #expect(!fs.fileExists(at: "log/manifest.tmp"))
            fs.crash(seed: seed)
            #expect(fs.contents(at: "log/manifest") == [9])
            #expect(fs.contents(at: "log/manifest.tmp") == [1, 2, 3])
        }
        let fs = try freshFileSystem()
        _ = try durableFile(fs, "manifest.tmp", [1, 2, 3])
        try fs.rename(from: "log/manifest.tmp", to: "log/manifest")
        try fs.syncDirectory(at: "log")
        fs.crash(seed: 0)
        #expect(fs.contents(at: "log/manifest") == [1, 2, 3])
        #expect(!fs.fileExists(at: "log/manifest.tmp"))
    }

    @Test func removeWithoutDirectorySyncReappears() throws {
        let fs = try freshFileSystem()
        _ = try durableFile(fs, "old-segment", [4, 4])
        try fs.removeFile(at: "log/old-segment")
        #expect(!fs.fileExists(at: "log/old-segment"))
        fs.crash(seed: 0)
        #expect(fs.contents(at: "log/old-segment") == [4, 4])
        try fs.removeFile(at: "log/old-segment")
        try fs.syncDirectory(at: "log")
        fs.crash(seed: 0)
        #expect(!fs.fileExists(at: "log/old-segment"))
    }

    @Test func randomPrefixOfDirectoryOperations() throws {
        var options = SimulatedFileSystem.Options()
        options.unsyncedDirectoryEntries = .randomPrefix
        var seen: Set<[String]> = []
        for seed in UInt64(0)..<100 {
            let fs = try freshFileSystem(options: options)
            _ = try fs.openFile(at: "log/a", options: [.write, .createNew])
            _ = try fs.openFile(at: "log/b", options: [.write, .createNew])
            try fs.rename(from: "log/a", to: "log/c")
            fs.crash(seed: seed)
            seen.insert(try fs.contentsOfDirectory(at: "log").sorted())
        }
        // Journal order: a, then b, then a -> c; never b without a, never a and c at once.
        #expect(seen == [[], ["a"], ["a", "b"], ["b", "c"]])

        options.loseUnsyncedDirectoryEntries = false
        let fs = try freshFileSystem(options: options)
        _ = try fs.openFile(at: "log/a", options: [.write, .createNew])
        fs.crash(seed: 3)
        #expect(fs.fileExists(at: "log/a"))
    }

    // MARK: Handles

    @Test func handlesDieWithTheCrash() throws {
        let fs = try freshFileSystem()
        let handle = try durableFile(fs, "f", [1])
        fs.crash(seed: 0)
        #expect(errno { _ = try read(handle, count: 1, at: 0) } == EIO)
        #expect(errno { try write(handle, [2], at: 0) } == EIO)
        #expect(errno { try handle.synchronizeData() } == EIO)
        #expect(errno { _ = try handle.size() } == EIO)
        handle.close()  // harmless
        #expect(fs.contents(at: "log/f") == [1])

        let reopened = try fs.openFile(at: "log/f", options: [.read])
        #expect(try read(reopened, count: 10, at: 0) == [1])
        #expect(errno { try write(reopened, [2], at: 0) } == EBADF)  // opened read-only
        reopened.close()
        #expect(errno { _ = try read(reopened, count: 1, at: 0) } == EBADF)
        #expect(fs.openHandleCount == 0)
    }

    @Test func handleFollowsItsInodeAcrossRenameAndRemove() throws {
        let fs = try freshFileSystem()
        let handle = try durableFile(fs, "f", [1, 2])
        try fs.rename(from: "log/f", to: "log/g")
        try write(handle, [3], at: 2)
        #expect(fs.contents(at: "log/g") == [1, 2, 3])
        try fs.removeFile(at: "log/g")
        try fs.syncDirectory(at: "log")
        try write(handle, [4], at: 3)
        #expect(try read(handle, count: 10, at: 0) == [1, 2, 3, 4])
        handle.close()
        #expect(!fs.fileExists(at: "log/g"))
    }

    // MARK: fsyncgate

    @Test func failedSyncDropsDataThatLaterSyncsDoNotPersist() throws {
        var lostDespiteLaterSync = 0
        for seed in UInt64(0)..<50 {
            let fs = try freshFileSystem(seed: seed)
            let handle = try durableFile(fs, "f", bytes(0xAA, 512))
            try write(handle, bytes(0xBB, 512), at: 0)
            fs.failSyncs(times: 1, errno: EIO) { $0.lastComponent == "f" }
            #expect(errno { try handle.synchronizeData() } == EIO)
            #expect(try read(handle, count: 512, at: 0) == bytes(0xBB, 512))  // still in the cache
            try handle.synchronizeData()  // "succeeds"
            fs.crash(seed: seed)
            if fs.contents(at: "log/f") != bytes(0xBB, 512) { lostDespiteLaterSync += 1 }
        }
        #expect(lostDespiteLaterSync > 5)
    }

    @Test func failedSyncCanKeepDataQueuedWhenConfigured() throws {
        var options = SimulatedFileSystem.Options()
        options.fsyncFailureDropsUnsyncedData = false
        for seed in UInt64(0)..<30 {
            let fs = try freshFileSystem(seed: seed, options: options)
            let handle = try durableFile(fs, "f", bytes(0xAA, 512))
            try write(handle, bytes(0xBB, 512), at: 0)
            fs.failSyncs()
            #expect(errno { try handle.synchronizeData() } == EIO)
            try handle.synchronizeData()
            fs.crash(seed: seed)
            #expect(fs.contents(at: "log/f") == bytes(0xBB, 512))
        }
    }

    @Test func failedDirectorySyncPersistsNothing() throws {
        let fs = try freshFileSystem()
        _ = try fs.openFile(at: "log/f", options: [.write, .createNew])
        fs.failSyncs(errno: EIO) { $0 == "log" }
        #expect(errno { try fs.syncDirectory(at: "log") } == EIO)
        fs.crash(seed: 0)
        #expect(!fs.fileExists(at: "log/f"))
    }

    // MARK: Corruption and read errors

    @Test func corruptionHitsDurableAndVolatileImages() throws {
        let fs = try freshFileSystem()
        let handle = try durableFile(fs, "f", bytes(0x0F, 2048))
        try write(handle, bytes(0x11, 100), at: 2048)  // unsynced tail
        try fs.corrupt(at: "log/f", offset: 10, length: 2, .flipBits)
        #expect(try read(handle, count: 3, at: 9) == [0x0F, 0xF0, 0xF0])
        #expect(fs.durableContents(at: "log/f")?[10] == 0xF0)
        try fs.zeroSector(at: "log/f", containing: 1500)
        try fs.corrupt(at: "log/f", offset: 2050, length: 1, .fill(0x77))
        try handle.synchronizeData()  // must not undo the corruption of the queued write
        #expect(try read(handle, count: 3, at: 2049) == [0x11, 0x77, 0x11])
        fs.crash(seed: 4)
        let after = try #require(fs.contents(at: "log/f"))
        #expect(after[10] == 0xF0 && after[11] == 0xF0 && after[12] == 0x0F)
        #expect(after[1024..<1536].allSatisfy { $0 == 0 })
        #expect(after[1536] == 0x0F && after[1023] == 0x0F)
        #expect(after[2050] == 0x77)
    }

    @Test func injectedReadErrorsFailOverlappingReads() throws {
        let fs = try freshFileSystem()
        let handle = try durableFile(fs, "f", bytes(1, 4096))
        try fs.injectReadError(at: "log/f", offset: 1024, length: 512)
        #expect(try read(handle, count: 1024, at: 0).count == 1024)
        #expect(errno { _ = try read(handle, count: 10, at: 1500) } == EIO)
        fs.clearReadErrors()
        #expect(try read(handle, count: 10, at: 1500).count == 10)
    }

    // MARK: Plain file-system semantics

    @Test func fileSystemSemantics() throws {
        let fs = SimulatedFileSystem()
        try fs.createDirectory(at: "a/b/c")
        try fs.createDirectory(at: "a/b")  // exists: fine
        #expect(fs.fileExists(at: "a/b/c") && fs.fileExists(at: "./a/b"))
        #expect(try fs.contentsOfDirectory(at: "a") == ["b"])

        let handle = try fs.openFile(at: "a/f", options: [.read, .write, .createNew])
        #expect(errno { _ = try fs.openFile(at: "a/f", options: [.write, .createNew]) } == EEXIST)
        #expect(errno { _ = try fs.openFile(at: "a/missing", options: [.read]) } == ENOENT)
        #expect(errno { _ = try fs.openFile(at: "nowhere/f", options: [.write, .createNew]) } == ENOENT)
        #expect(errno { _ = try fs.openFile(at: "a/b", options: [.read]) } == EISDIR)
        #expect(errno { try fs.createDirectory(at: "a/f/g") } == ENOTDIR)
        #expect(errno { try fs.removeFile(at: "a/b") } == EISDIR)
        #expect(errno { try fs.removeFile(at: "a/nothing") } == ENOENT)
        #expect(errno { try fs.syncDirectory(at: "a/nothing") } == ENOENT)

        try write(handle, [1, 2, 3], at: 0)
        #expect(try read(handle, count: 10, at: 1) == [2, 3])  // short at EOF
        #expect(try read(handle, count: 10, at: 3) == [])
        #expect(try read(handle, count: 10, at: 100) == [])
        try write(handle, [9], at: 6)  // a hole reads as zeros
        #expect(try read(handle, count: 10, at: 0) == [1, 2, 3, 0, 0, 0, 9])
        try handle.preallocate(fromAbsoluteOffset: 0, length: 10)
        #expect(try handle.size() == 10)
        try handle.preallocate(fromAbsoluteOffset: 0, length: 4)  // never shrinks
        #expect(try handle.size() == 10)
        try handle.truncate(toSize: 2)
        #expect(try read(handle, count: 10, at: 0) == [1, 2])
        try handle.truncate(toSize: 4)
        #expect(try read(handle, count: 10, at: 0) == [1, 2, 0, 0])

        try fs.rename(from: "a/f", to: "a/b/c/g")
        #expect(try fs.contentsOfDirectory(at: "a/b/c") == ["g"])
        #expect(try fs.contentsOfDirectory(at: "a").sorted() == ["b"])
        #expect(errno { try fs.rename(from: "a/b", to: "a/b/c/d") } == EINVAL)

        var options = SimulatedFileSystem.Options()
        options.supportsPreallocate = false
        fs.options = options
        let caught = #expect(throws: FileSystemError.self) { try handle.preallocate(fromAbsoluteOffset: 0, length: 1) }
        #expect(caught?.isUnsupported == true)
    }

    @Test func sameSeedGivesTheSameCrash() throws {
        let fs = try freshFileSystem()
        for index in 0..<20 {
            let handle = try fs.openFile(at: FilePath("log/f\(index)"), options: [.write, .createNew])
            try write(handle, bytes(UInt8(index), 3000), at: 0)
            if index % 3 == 0 { try handle.synchronizeData() }
            try write(handle, bytes(0xFF, 1500), at: 1000)
        }
        try fs.syncDirectory(at: "log")
        func image(_ fs: SimulatedFileSystem) throws -> [[UInt8]] {
            try fs.contentsOfDirectory(at: "log").sorted().map { fs.contents(at: FilePath("log").appending($0))! }
        }
        let first = fs.clone(), second = fs.clone(), third = fs.clone()
        first.crash(seed: 42)
        second.crash(seed: 42)
        third.crash(seed: 43)
        #expect(try image(first) == image(second))
        #expect(try image(first) != image(third))
        #expect(fs.crashCount == 0 && first.crashCount == 1)
        #expect(fs.hasUnsyncedChanges && !first.hasUnsyncedChanges)
        // The fs's own generator is deterministic too.
        let fourth = fs.clone(), fifth = fs.clone()
        fourth.crash()
        fifth.crash()
        #expect(try image(fourth) == image(fifth))
    }

    @Test func syncEverythingAndCreateFileHelpers() throws {
        let fs = SimulatedFileSystem()
        try fs.createFile(at: "/x/y/z", contents: [1, 2])
        try fs.createFile(at: "/x/w", contents: [3], durable: false)
        fs.crash(seed: 0)
        #expect(fs.contents(at: "/x/y/z") == [1, 2])
        #expect(!fs.fileExists(at: "/x/w"))
        try fs.createFile(at: "/x/w", contents: [3], durable: false)
        fs.syncEverything()
        #expect(!fs.hasUnsyncedChanges)
        fs.crash(seed: 0)
        #expect(fs.contents(at: "/x/w") == [3])
    }

    @Test func oneWriterAndSeveralReadersConcurrently() throws {
        let fs = try freshFileSystem()
        let writer = try fs.openFile(at: "log/f", options: [.write, .createNew])
        try fs.syncDirectory(at: "log")
        let record = 64, records = 2000
        DispatchQueue.concurrentPerform(iterations: 5) { worker in
            if worker == 0 {
                for index in 0..<records {
                    try? write(writer, bytes(UInt8(truncatingIfNeeded: index), record), at: Int64(index * record))
                    if index % 100 == 0 { try? writer.synchronizeData() }
                }
            } else {
                guard let reader = try? fs.openFile(at: "log/f", options: [.read]) else { return }
                for _ in 0..<500 {
                    let size = Int((try? reader.size()) ?? 0)
                    let complete = size / record
                    guard complete > 0 else { continue }
                    let index = complete - 1
                    let got = (try? read(reader, count: record, at: Int64(index * record))) ?? []
                    #expect(got == bytes(UInt8(truncatingIfNeeded: index), record))
                }
                reader.close()
            }
        }
        #expect(fs.contents(at: "log/f")?.count == record * records)
    }
}
