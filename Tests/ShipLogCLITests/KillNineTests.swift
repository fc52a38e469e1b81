import Foundation
import Glibc
import Testing
import ShipLog
import ShipLogTestSupport

/// Real process crashes: `shiplog append --durability immediate` is SIGKILLed at random
/// moments while it is fed lines; after each kill the log is reopened and every LSN the child
/// printed (acknowledged) must be there with its record. `SHIPLOG_KILLS` sets the number of
/// kills (`make soak` raises it), `SHIPLOG_SEED` the first seed.
@Suite struct KillNineTests {
    static var killCount: Int { Int(ProcessInfo.processInfo.environment["SHIPLOG_KILLS"] ?? "") ?? 100 }

    /// The built `shiplog` binary beside the test bundle.
    static func binary() throws -> URL {
        var directory = Bundle.main.bundleURL
        for _ in 0..<3 {
            let candidate = directory.appendingPathComponent("shiplog")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let fallback = root.appendingPathComponent(".build/debug/shiplog")
        guard FileManager.default.isExecutableFile(atPath: fallback.path) else {
            throw KillError("shiplog binary not found next to the tests or at \(fallback.path); run `swift build` first")
        }
        return fallback
    }

    struct KillError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// The record the n-th line carries: unique, so a misplaced record is caught.
    static func line(_ n: Int, seed: UInt64) -> String {
        "kill-\(seed)-line-\(n)-" + String(repeating: Character(UnicodeScalar(UInt8(97 + n % 26))), count: n % 90)
    }

    @Test func everyPrintedLSNSurvivesSIGKILL() throws {
        let shiplog = try Self.binary()
        _ = Glibc.signal(SIGPIPE, SIG_IGN)  // the feeder thread writes into pipes of killed children
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("shiplog-kill-\(UInt64.random(in: 0...UInt64.max))")
        defer { try? FileManager.default.removeItem(at: directory) }
        let firstSeed = UInt64(ProcessInfo.processInfo.environment["SHIPLOG_SEED"] ?? "") ?? 1
        var expected: [UInt64: String] = [:]  // LSN -> record, for every acknowledged LSN
        var nextLine = 0
        var acknowledged = 0
        for round in 0..<Self.killCount {
            let seed = firstSeed + UInt64(round)
            var random = SplitMix(seed: seed)
            let process = Process()
            process.executableURL = shiplog
            process.arguments = ["append", "--dir", directory.path, "--durability", "immediate"]
            let input = Pipe()
            let output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            // Feed lines in small bursts, then kill after a random delay.
            let lines = (0..<(50 + Int(random.next() % 400))).map { _ -> String in
                defer { nextLine += 1 }
                return Self.line(nextLine, seed: firstSeed)
            }
            let firstLine = nextLine - lines.count
            let writer = Thread {
                for chunk in stride(from: 0, to: lines.count, by: 16) {
                    let text = lines[chunk..<min(chunk + 16, lines.count)].joined(separator: "\n") + "\n"
                    do { try input.fileHandleForWriting.write(contentsOf: Data(text.utf8)) } catch { return }
                }
            }
            writer.start()
            usleep(useconds_t(2_000 + random.next() % 60_000))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            try? input.fileHandleForWriting.close()
            let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let lsns = printed.split(separator: "\n").compactMap { UInt64($0) }
            // The child prints LSNs in input order: the i-th printed LSN is the i-th line it read
            // in this run; LSNs continue the log, so line k of this run has LSN base + k.
            if let first = lsns.first {
                for (i, lsn) in lsns.enumerated() {
                    #expect(lsn == first + UInt64(i), "seed \(seed): LSNs printed out of order")
                    expected[lsn] = lines[i]
                }
                acknowledged += lsns.count
            }
            // Whatever a run appended but did not acknowledge may or may not survive; the next run
            // continues after it, so map its LSNs from the reopened log rather than assume.
            let log = try Log.open(directory: FilePath(directory.path))
            var present: [UInt64: String] = [:]
            try log.forEachRecord(from: .first) { lsn, bytes in
                present[lsn.rawValue] = String(decoding: bytes, as: UTF8.self)
            }
            try log.close()
            for (lsn, record) in expected {
                #expect(present[lsn] == record, "seed \(seed): acknowledged LSN \(lsn) lost or wrong after SIGKILL")
                if present[lsn] != record { return }
            }
            // Unacknowledged lines that survived are now part of the log: remember them so later
            // checks hold them to their bytes too.
            for (lsn, record) in present where expected[lsn] == nil {
                expected[lsn] = record
            }
            _ = firstLine
        }
        #expect(acknowledged > Self.killCount, "the children acknowledged almost nothing: the test proves little")
    }
}

/// The tests' deterministic schedule generator (SplitMix64, shared with the other suites).
typealias SplitMix = SplitMix64
