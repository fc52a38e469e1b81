import Foundation
import Glibc
import Testing
@testable import ShipLogStorage
import ShipLogFormat
import ShipLogRecovery

// A real disk-full test: a 16 MiB ext4 image mounted on a loop device, filled by a log until
// the file system says ENOSPC. Needs root, mkfs.ext4, mount and loop devices; skipped (with
// the reason) otherwise.

private enum LoopMount {
    static func tool(_ name: String) -> String? {
        ["/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"].map { $0 + name }.first { access($0, X_OK) == 0 }
    }

    /// Why the test cannot run here, or nil when it can.
    static let unavailableReason: String? = {
        if getuid() != 0 { return "not running as root" }
        for name in ["mkfs.ext4", "mount", "umount"] where tool(name) == nil { return "\(name) not found" }
        if access("/dev/loop-control", F_OK) != 0 && access("/dev/loop0", F_OK) != 0 { return "no loop devices" }
        return nil
    }()

    static var available: Bool { unavailableReason == nil }

    /// Runs a system tool; returns its exit status and combined output.
    @discardableResult
    static func run(_ name: String, _ arguments: [String]) -> (status: Int32, output: String) {
        guard let path = tool(name) else { return (127, "\(name) not found") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return (126, "\(name): \(error)") }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    static let prefix = "shiplog-diskfull-"

    /// Unmounts and deletes what a test process that crashed (so its defers never ran) left:
    /// directories named after a process that no longer exists.
    static func removeLeftovers() {
        let temporary = FileManager.default.temporaryDirectory.path
        for name in (try? FileManager.default.contentsOfDirectory(atPath: temporary)) ?? [] where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count).prefix { $0 != "-" }), pid != getpid(),
                kill(pid, 0) != 0 && errno == ESRCH
            else { continue }
            let root = temporary + "/" + name
            run("umount", [root + "/mnt"])
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    /// A mounted, empty ext4 file system of `megabytes` MiB; calls `body` with its mount point
    /// and always unmounts and deletes it. Returns false (after printing why) when the image
    /// cannot be made or mounted in this environment.
    static func withFileSystem(megabytes: Int, _ body: (String) throws -> Void) throws -> Bool {
        removeLeftovers()
        let root = FileManager.default.temporaryDirectory.path + "/\(prefix)\(getpid())-"
            + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let image = root + "/disk.img"
        let mountPoint = root + "/mnt"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        var mounted = false
        defer {
            if mounted {
                if run("umount", [mountPoint]).status != 0 {
                    // Something still has a file open: detach lazily rather than leak the mount.
                    run("umount", ["-l", mountPoint])
                }
            }
            try? FileManager.default.removeItem(atPath: root)
        }
        guard FileManager.default.createFile(atPath: image, contents: nil),
            truncate(image, off_t(megabytes) << 20) == 0
        else {
            Issue.record("could not create the \(megabytes) MiB image at \(image)")
            return false
        }
        let mkfs = run("mkfs.ext4", ["-q", "-F", "-m", "0", image])
        guard mkfs.status == 0 else {
            print("DiskFullTests: skipped: mkfs.ext4 failed (\(mkfs.status)): \(mkfs.output)")
            return false
        }
        let mount = run("mount", ["-o", "loop", image, mountPoint])
        guard mount.status == 0 else {
            print("DiskFullTests: skipped: mount -o loop failed (\(mount.status)): \(mount.output)")
            return false
        }
        mounted = true
        try body(mountPoint)
        return true
    }
}

@Suite(.serialized, .enabled(if: LoopMount.available, "needs root, mkfs.ext4, mount and loop devices"))
struct DiskFullTests {
    /// Appends 60 KiB incompressible batches at `.immediate` until the disk is full.
    /// - Returns: what was acknowledged, and the error that stopped the log.
    private func fill(_ directory: FilePath, options: LogOptions) throws -> (acknowledged: [(LSN, [UInt8])], error: LogError?) {
        let log = try Log.open(directory: directory, options: options)
        var acknowledged: [(LSN, [UInt8])] = []
        var stoppedBy: LogError?
        var state: UInt64 = 0x5EED
        // At most 40 MiB on a 16 MiB disk: the loop must end with an error well before.
        for i in 0..<680 {
            let record = (0..<(60 << 10)).map { _ -> UInt8 in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return UInt8(truncatingIfNeeded: state >> 33)
            }
            do {
                let range = try log.append(record, durability: i % 4 == 3 ? .buffered : .immediate)
                acknowledged.append((range.first, record))
            } catch {
                stoppedBy = error
                break
            }
        }
        if stoppedBy != nil {
            // The log is read-only now.
            #expect(throws: LogError.self) { try log.append([1], durability: .immediate) }
            #expect(throws: LogError.self) { try log.sync() }
        }
        try? log.close()
        return (acknowledged, stoppedBy)
    }

    private func expectOutOfSpace(_ error: LogError?, sourceLocation: SourceLocation = #_sourceLocation) {
        switch error {
        case .outOfSpace(let e)?:
            #expect(e.isOutOfSpace, "\(e)", sourceLocation: sourceLocation)
        case .writeFailed(let e)?:
            #expect(e.isOutOfSpace, "a write failed for another reason than a full disk: \(e)", sourceLocation: sourceLocation)
        case nil:
            Issue.record("40 MiB went into a 16 MiB file system without an error", sourceLocation: sourceLocation)
        case let other?:
            Issue.record("expected outOfSpace (or writeFailed with ENOSPC), got \(other)", sourceLocation: sourceLocation)
        }
    }

    /// After filling: reopen (on the still-full disk), every acknowledged record is there and
    /// exact, the log verifies, and once space is freed it accepts appends again.
    private func expectIntact(_ directory: FilePath, options: LogOptions, acknowledged: [(LSN, [UInt8])]) throws {
        do {
            // On the still-full disk: a torn tail (left by ENOSPC mid-batch without preallocation)
            // is cut even though it cannot be copied to quarantine/ first.
            let (log, report) = try LogRecovery.open(directory: directory, options: options)
            #expect(report.truncations.count <= 1, "\(report.truncations)")
            let back = try readAll(log)
            #expect(back.map(\.0.rawValue) == Array(UInt64(1)..<UInt64(1 + back.count)))
            #expect(back.count >= acknowledged.count)
            let lost = zip(acknowledged, back).filter { $0.0.0 != $0.1.0 || $0.0.1 != $0.1.1 }.count
                + max(0, acknowledged.count - back.count)
            #expect(lost == 0, "\(lost) acknowledged records missing or changed after reopen")
            try? log.close()
        }
        let problems = try LogVerifier(directory: directory).verify().problems
        #expect(problems.isEmpty, "\(problems)")
        // Free space (retention drops sealed segments), then the log works again from where it stopped.
        let log = try Log.open(directory: directory, options: options)
        _ = try log.applyRetention(RetentionPolicy(totalBytesMax: 0))
        let next = log.nextLSN
        let range = try log.append(Array("after freeing space".utf8), durability: .immediate)
        #expect(range.first == next)
        try log.close()
    }

    @Test func fillingTheDiskIsOutOfSpaceAndKeepsAcknowledgedRecords() throws {
        let ran = try LoopMount.withFileSystem(megabytes: 16) { mountPoint in
            let directory = FilePath(mountPoint + "/log")
            var options = LogOptions()
            options.segmentBytesMax = 1 << 20
            options.compression = .lz4  // incompressible data is stored raw anyway
            let (acknowledged, error) = try fill(directory, options: options)
            expectOutOfSpace(error)
            #expect(acknowledged.count > 100, "about 12 MiB of 60 KiB records fit: \(acknowledged.count)")
            try expectIntact(directory, options: options, acknowledged: acknowledged)
        }
        if !ran { print("DiskFullTests.fillingTheDisk: not run, see above") }
    }

    /// Without preallocation the disk fills during a batch write (ENOSPC from pwrite, possibly
    /// after a short write): the torn batch is cut at the next open.
    @Test func fillingTheDiskWithoutPreallocation() throws {
        let ran = try LoopMount.withFileSystem(megabytes: 16) { mountPoint in
            let directory = FilePath(mountPoint + "/log")
            var options = LogOptions()
            options.segmentBytesMax = 1 << 20
            options.preallocateSegments = false
            let (acknowledged, error) = try fill(directory, options: options)
            expectOutOfSpace(error)
            #expect(acknowledged.count > 100, "about 12 MiB of 60 KiB records fit: \(acknowledged.count)")
            try expectIntact(directory, options: options, acknowledged: acknowledged)
        }
        if !ran { print("DiskFullTests.fillingTheDiskWithoutPreallocation: not run, see above") }
    }
}
