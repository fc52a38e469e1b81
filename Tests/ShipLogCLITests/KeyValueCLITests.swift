import Foundation
import Glibc
import ShipLog
import Testing

// End-to-end tests of `shiplog kv put|get|del|scan|checkpoint|load`: each runs the built
// binary as a child process, like CLITests (ChildProcess, in ChildProcess.swift).
//
// The SIGKILL suite (`killedLoadRecoversToTheModelOfItsLog`) runs `kv load --durability
// immediate` on one store again and again, feeding it random put/del lines over a small key
// space and SIGKILLing it at a random moment; between kills it takes checkpoints, kills some
// `kv checkpoint` runs while they work, and runs single `kv put`/`kv del` commands. After every
// kill, `kv scan` (a recovering open: newest checkpoint + replay) must print exactly the model
// built from the records that survived in the log, and every LSN the child printed must be
// among them with the bytes of the line it was printed for. `SHIPLOG_KILLS` sets the number
// of kills (default 100), `SHIPLOG_SEED` the first seed (printed in every failure message; it
// replays the workloads and the schedule of checkpoints and kill delays, though not the exact
// instant each kill lands).

extension Scratch {
    /// A fresh temporary directory for a key-value test; the store goes in its `store` subdirectory.
    fileprivate static func kv(_ name: String = #function) -> Scratch { Scratch(name, group: "shiplog-kv-cli-tests") }
}

/// `kv scan` output for `entries`: KEY<TAB>VALUE lines in byte order of the keys.
private func scanText(_ entries: [String: String]) -> String {
    entries.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
        .map { "\($0.key)\t\($0.value)\n" }.joined()
}

// MARK: - Random workloads

/// One `kv load` line and what it does.
private enum KVOperation: Equatable {
    case put(String, String)
    case delete(String)

    var line: String {
        switch self {
        case .put(let key, let value): "put \(key) \(value)"
        case .delete(let key): "del \(key)"
        }
    }

    /// The log record `kv load` writes for this line (docs/FORMAT.md, "Key-value records").
    var record: [UInt8] {
        var batch = WriteBatch()
        switch self {
        case .put(let key, let value): batch.put(Array(key.utf8), Array(value.utf8))
        case .delete(let key): batch.delete(Array(key.utf8))
        }
        return try! batch.encodedRecord()
    }

    func apply(to model: inout [String: String]) {
        switch self {
        case .put(let key, let value): model[key] = value
        case .delete(let key): model[key] = nil
        }
    }

    /// A small key space, so that overwrites and deletes of live keys are the common case.
    /// Keys that are prefixes of others, a multi-byte one (sorts after ASCII by bytes) and one
    /// starting with '-' (no flag parsing on stdin).
    static let keys = (0..<14).map { "k\($0)" } + ["k1x", "a", "-dash", "é", "k1/sub"]
    static let valueAlphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789  -_=:/.".utf8)

    static func random(_ rng: inout SplitMix) -> KVOperation {
        let key = keys[Int(rng.next() % UInt64(keys.count))]
        if rng.next() % 10 < 3 { return .delete(key) }
        let length: Int
        switch rng.next() % 100 {
        case 0..<5: length = 0  // `put KEY ` sets the empty value
        case 5..<8: length = 200 + Int(rng.next() % 3000)
        default: length = 1 + Int(rng.next() % 30)
        }
        var value = (0..<length).map { _ in valueAlphabet[Int(rng.next() % UInt64(valueAlphabet.count))] }
        if length > 0 && rng.next() % 16 == 0 { value += Array("é".utf8) }  // multi-byte values too
        return .put(key, String(decoding: value, as: UTF8.self))
    }

    /// Parses a line this file generated.
    init(line: String) {
        let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        self = parts[0] == "put" ? .put(parts[1], parts[2]) : .delete(parts[1])
    }
}

// MARK: - Tests

@Suite struct KeyValueCLITests {
    static var killCount: Int { Int(ProcessInfo.processInfo.environment["SHIPLOG_KILLS"] ?? "") ?? 100 }

    @Test func putGetDeleteAndScan() throws {
        let scratch = Scratch.kv()
        defer { scratch.cleanup() }
        let dir = scratch.store
        let first = try runShiplog(["kv", "put", "b", "2", "--dir", dir])
        #expect(first.status == 0, "stderr: \(first.stderr)")
        #expect(first.stdout == "1\n", "put prints the LSN of the change")
        #expect(first.stderr.isEmpty)
        #expect(try runShiplog(["kv", "put", "--dir", dir, "a", "1"]).stdout == "2\n", "flags before or after KEY VALUE")
        #expect(try runShiplog(["kv", "put", "--dir", dir, "c", "three"]).stdout == "3\n")
        #expect(try runShiplog(["kv", "put", "--dir", dir, "b", "two", "--durability", "buffered"]).stdout == "4\n")

        let got = try runShiplog(["kv", "get", "b", "--dir", dir])
        #expect(got.status == 0, "stderr: \(got.stderr)")
        #expect(got.stdout == "two\n", "the newest value")
        #expect(got.stderr.isEmpty)

        let absent = try runShiplog(["kv", "get", "--dir", dir, "nope"])
        #expect(absent.status == 1, "an absent key exits 1")
        #expect(absent.stdout.isEmpty && absent.stderr.isEmpty, "and prints nothing: \(absent.stdout) \(absent.stderr)")

        let scan = try runShiplog(["kv", "scan", "--dir", dir])
        #expect(scan.status == 0, "stderr: \(scan.stderr)")
        #expect(scan.stdout == "a\t1\nb\ttwo\nc\tthree\n", "KEY<TAB>VALUE lines in key order")

        let deleted = try runShiplog(["kv", "del", "--dir", dir, "b"])
        #expect(deleted.status == 0, "stderr: \(deleted.stderr)")
        #expect(deleted.stdout == "5\n", "del prints the LSN of the change")
        let gone = try runShiplog(["kv", "get", "--dir", dir, "b"])
        #expect(gone.status == 1)
        #expect(gone.stdout.isEmpty)
        // Deleting an absent key is still a logged change.
        #expect(try runShiplog(["kv", "del", "--dir", dir, "never-there"]).stdout == "6\n")
        #expect(try runShiplog(["kv", "scan", "--dir", dir]).stdout == "a\t1\nc\tthree\n")
        // An empty value is a value, not an absence.
        #expect(try runShiplog(["kv", "load", "--dir", dir], input: "put e \n").stdout == "7\n")
        let empty = try runShiplog(["kv", "get", "--dir", dir, "e"])
        #expect(
            empty.status == 0 && empty.stdout == "\n", "empty value: exit \(empty.status), \(empty.stdout.debugDescription)")
        // Every change is in the log: the store directory verifies as a log.
        let verify = try runShiplog(["verify", "--dir", dir])
        #expect(verify.status == 0, "verify: \(verify.stdout) \(verify.stderr)")
        #expect(verify.stdout.contains("LSN 1...7"), "\(verify.stdout)")
    }

    @Test func scanOnAnEmptyStorePrintsNothing() throws {
        let scratch = Scratch.kv()
        defer { scratch.cleanup() }
        let scan = try runShiplog(["kv", "scan", "--dir", scratch.store])
        #expect(scan.status == 0, "stderr: \(scan.stderr)")
        #expect(scan.stdout.isEmpty && scan.stderr.isEmpty)
        #expect(FileManager.default.fileExists(atPath: scratch.store), "--dir is created when missing")
    }

    @Test func scanWithPrefixAndWithRange() throws {
        let scratch = Scratch.kv()
        defer { scratch.cleanup() }
        let dir = scratch.store
        let keys = ["a", "b", "c", "d", "k1", "k10", "k2", "k1/x", "ka", "é"]
        let input = keys.map { "put \($0) v-\($0)" }.joined(separator: "\n") + "\n"
        let load = try runShiplog(["kv", "load", "--dir", dir], input: input)
        #expect(load.status == 0, "stderr: \(load.stderr)")
        func scan(_ flags: [String]) throws -> [String] {
            let result = try runShiplog(["kv", "scan", "--dir", dir] + flags)
            #expect(result.status == 0, "\(flags): \(result.stderr)")
            return result.stdout.split(separator: "\n").map { String($0.split(separator: "\t")[0]) }
        }
        // Byte order: "k1" < "k1/x" < "k10" < "k2" < "ka" < "é" (0xC3 sorts after ASCII).
        #expect(try scan([]) == ["a", "b", "c", "d", "k1", "k1/x", "k10", "k2", "ka", "é"])
        #expect(try scan(["--prefix", "k1"]) == ["k1", "k1/x", "k10"])
        #expect(try scan(["--prefix", "k"]) == ["k1", "k1/x", "k10", "k2", "ka"])
        #expect(try scan(["--prefix", "z"]) == [])
        #expect(try scan(["--prefix", "é"]) == ["é"])
        #expect(try scan(["--from", "b", "--to", "d"]) == ["b", "c"], "--to is exclusive")
        #expect(try scan(["--from", "b", "--to", "b"]) == [], "an empty range")
        #expect(try scan(["--from", "bb", "--to", "k1/x"]) == ["c", "d", "k1"], "bounds need not be keys")
        #expect(try scan(["--from", "k2"]) == ["k2", "ka", "é"], "--from alone is inclusive, to the end")
        #expect(try scan(["--to", "c"]) == ["a", "b"], "--to alone, from the start")
        let values = try runShiplog(["kv", "scan", "--dir", dir, "--prefix", "k1/"])
        #expect(values.stdout == "k1/x\tv-k1/x\n")
    }

    @Test(arguments: [["--from", "a"], ["--to", "z"], ["--from", "a", "--to", "z"]])
    func prefixWithFromOrToIsAUsageError(range: [String]) throws {
        let scratch = Scratch.kv("prefix\(range.joined())")
        defer { scratch.cleanup() }
        let result = try runShiplog(["kv", "scan", "--dir", scratch.store, "--prefix", "p"] + range)
        #expect(result.status == 2, "exit \(result.status), stderr: \(result.stderr)")
        #expect(result.stdout.isEmpty)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "one line on stderr: \(result.stderr)")
        #expect(lines.first?.hasPrefix("shiplog kv scan:") == true, "\(result.stderr)")
        #expect(result.stderr.contains("--prefix"), "\(result.stderr)")
        // Every other usage error is found before anything touches the disk.
        #expect(!FileManager.default.fileExists(atPath: scratch.store), "a usage error creates no store")
    }

    @Test func checkpointThenMorePutsReplayAfterTheCheckpoint() throws {
        let scratch = Scratch.kv()
        defer { scratch.cleanup() }
        let dir = scratch.store
        let load = try runShiplog(["kv", "load", "--dir", dir], input: "put a 1\nput b 1\nput c 1\ndel c\n")
        #expect(load.stdout == "1\n2\n3\n4\n", "stderr: \(load.stderr)")
        let checkpoint = try runShiplog(["kv", "checkpoint", "--dir", dir])
        #expect(checkpoint.status == 0, "stderr: \(checkpoint.stderr)")
        #expect(checkpoint.stdout.hasPrefix("checkpoint at LSN 4:"), "\(checkpoint.stdout)")
        #expect(checkpoint.stdout.contains("2 entries"), "\(checkpoint.stdout)")
        #expect(checkpoint.stdout.split(separator: "\n").count == 1, "one line: \(checkpoint.stdout)")
        let checkpoints = (try? FileManager.default.contentsOfDirectory(atPath: dir + "/checkpoints")) ?? []
        #expect(checkpoints.contains(CheckpointStore.fileName(lsn: LSN(4))), "\(checkpoints)")
        #expect(checkpoint.stdout.contains(CheckpointStore.fileName(lsn: LSN(4))), "names the file: \(checkpoint.stdout)")

        // Changes after the checkpoint: an overwrite, a delete, a new key, a re-put of a deleted key.
        #expect(try runShiplog(["kv", "put", "--dir", dir, "a", "2"]).stdout == "5\n")
        #expect(try runShiplog(["kv", "del", "--dir", dir, "b"]).stdout == "6\n")
        #expect(try runShiplog(["kv", "load", "--dir", dir], input: "put d 1\nput c again\n").stdout == "7\n8\n")
        #expect(
            try runShiplog(["kv", "get", "--dir", dir, "a"]).stdout == "2\n", "the newest value, replayed after the checkpoint")
        #expect(try runShiplog(["kv", "get", "--dir", dir, "b"]).status == 1, "deleted after the checkpoint")
        #expect(try runShiplog(["kv", "get", "--dir", dir, "c"]).stdout == "again\n")
        #expect(try runShiplog(["kv", "scan", "--dir", dir]).stdout == "a\t2\nc\tagain\nd\t1\n")

        // A second checkpoint, then one more change: restores from the newest checkpoint.
        let second = try runShiplog(["kv", "checkpoint", "--dir", dir])
        #expect(second.stdout.hasPrefix("checkpoint at LSN 8: 3 entries"), "\(second.stdout)")
        #expect(try runShiplog(["kv", "put", "--dir", dir, "d", "2"]).stdout == "9\n")
        #expect(try runShiplog(["kv", "scan", "--dir", dir]).stdout == "a\t2\nc\tagain\nd\t2\n")
        // A checkpoint with nothing new since the last one is at the same LSN.
        #expect(try runShiplog(["kv", "checkpoint", "--dir", dir]).stdout.hasPrefix("checkpoint at LSN 9: 3 entries"))
        #expect(try runShiplog(["kv", "checkpoint", "--dir", dir]).stdout.hasPrefix("checkpoint at LSN 9: 3 entries"))
        #expect(try runShiplog(["kv", "scan", "--dir", dir]).stdout == "a\t2\nc\tagain\nd\t2\n")
        #expect(try runShiplog(["kv", "put", "--dir", dir, "e", "1"]).stdout == "10\n", "LSNs continue after checkpoints")
    }

    @Test func checkpointOfAnEmptyStore() throws {
        let scratch = Scratch.kv()
        defer { scratch.cleanup() }
        let checkpoint = try runShiplog(["kv", "checkpoint", "--dir", scratch.store])
        #expect(checkpoint.status == 0, "stderr: \(checkpoint.stderr)")
        #expect(checkpoint.stdout.hasPrefix("checkpoint at LSN 0: 0 entries"), "\(checkpoint.stdout)")
        #expect(try runShiplog(["kv", "put", "--dir", scratch.store, "k", "v"]).stdout == "1\n")
        #expect(try runShiplog(["kv", "scan", "--dir", scratch.store]).stdout == "k\tv\n")
    }

    @Test func loadTakesValuesWithSpacesAsTheRestOfTheLine() throws {
        let scratch = Scratch.kv()
        defer { scratch.cleanup() }
        let dir = scratch.store
        let input = "put greeting hello big world\nput padded  two leading spaces and one trailing \nput -k dash via load\n"
        let load = try runShiplog(["kv", "load", "--dir", dir, "--durability", "immediate"], input: input)
        #expect(load.status == 0, "stderr: \(load.stderr)")
        #expect(load.stdout == "1\n2\n3\n")
        #expect(try runShiplog(["kv", "get", "--dir", dir, "greeting"]).stdout == "hello big world\n")
        #expect(try runShiplog(["kv", "get", "--dir", dir, "padded"]).stdout == " two leading spaces and one trailing \n")
        #expect(try runShiplog(["kv", "get", "--dir", dir, "--", "-k"]).stdout == "dash via load\n")
        // A value with spaces as one argument of `kv put` works too.
        #expect(try runShiplog(["kv", "put", "--dir", dir, "greeting", "hi there"]).stdout == "4\n")
        #expect(try runShiplog(["kv", "get", "--dir", dir, "greeting"]).stdout == "hi there\n")
    }

    @Test func aKeyStartingWithADashNeedsDoubleDash() throws {
        let scratch = Scratch.kv()
        defer { scratch.cleanup() }
        let dir = scratch.store
        let refused = try runShiplog(["kv", "put", "--dir", dir, "-k", "v"])
        #expect(refused.status == 2, "without --, -k is a flag: \(refused.stderr)")
        #expect(refused.stderr.contains("-k"), "\(refused.stderr)")
        #expect(refused.stdout.isEmpty)
        let put = try runShiplog(["kv", "put", "--dir", dir, "--", "-k", "v"])
        #expect(put.status == 0, "stderr: \(put.stderr)")
        #expect(put.stdout == "1\n")
        #expect(
            try runShiplog(["kv", "put", "--dir", dir, "--", "--kk", "-v"]).stdout == "2\n", "after --, values may start with - too")
        let got = try runShiplog(["kv", "get", "--dir", dir, "--", "-k"])
        #expect(got.status == 0 && got.stdout == "v\n", "\(got.status) \(got.stdout) \(got.stderr)")
        #expect(try runShiplog(["kv", "get", "--dir", dir, "--", "--kk"]).stdout == "-v\n")
        #expect(try runShiplog(["kv", "scan", "--dir", dir]).stdout == "--kk\t-v\n-k\tv\n")
        #expect(try runShiplog(["kv", "del", "--dir", dir, "--", "-k"]).stdout == "3\n")
        #expect(try runShiplog(["kv", "get", "--dir", dir, "--", "-k"]).status == 1)
    }

    @Test(arguments: [
        (["kv", "put", "--dir", "DIR"], "missing KEY VALUE"),
        (["kv", "put", "--dir", "DIR", "k"], "missing VALUE"),
        (["kv", "get", "--dir", "DIR"], "missing KEY"),
        (["kv", "del", "--dir", "DIR"], "missing KEY"),
        (["kv", "put", "k", "v"], "--dir"),
        (["kv", "put", "--dir", "DIR", "a", "b", "c"], "unexpected argument"),
        (["kv", "get", "--dir", "DIR", "a", "b"], "unexpected argument"),
        (["kv", "scan", "--dir", "DIR", "a"], "unexpected argument"),
        (["kv", "put", "--dir", "DIR", "-k", "v"], "-k"),
        (["kv", "scan", "--dir", "DIR", "--prefix"], "--prefix"),
        (["kv", "load", "--dir", "DIR", "--durability", "sometimes"], "sometimes"),
        (["kv", "checkpoint", "--dir", "DIR", "--durability", "immediate"], "--durability"),
        (["kv", "frobnicate", "--dir", "DIR"], "frobnicate"),
        (["kv"], "missing command"),
    ])
    func usageErrorsExitTwoWithOneLine(arguments: [String], mentions: String) throws {
        let scratch = Scratch.kv("usage\(arguments.joined())")
        defer { scratch.cleanup() }
        let result = try runShiplog(arguments.map { $0 == "DIR" ? scratch.store : $0 }, input: "put never read\n")
        #expect(result.status == 2, "\(arguments): exit \(result.status), stderr: \(result.stderr)")
        #expect(result.stderr.hasSuffix("\n"))
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "one line on stderr: \(result.stderr)")
        #expect(lines.first?.hasPrefix("shiplog kv") == true, "names the command: \(result.stderr)")
        #expect(result.stderr.contains(mentions), "\(arguments): mentions '\(mentions)': \(result.stderr)")
        #expect(result.stdout.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: scratch.store), "a usage error creates no store")
    }

    @Test func overLimitKeysAndValuesAreRefusedNamingTheLimit() throws {
        let scratch = Scratch.kv()
        defer { scratch.cleanup() }
        let dir = scratch.store
        #expect(try runShiplog(["kv", "put", "--dir", dir, "before", "1"]).stdout == "1\n")
        let longKey = String(repeating: "k", count: KeyValueLimits.keyBytesMax + 1)
        let refused = try runShiplog(["kv", "load", "--dir", dir], input: "put \(longKey) v\n")
        #expect(refused.status == 1, "exit \(refused.status), stderr: \(refused.stderr)")
        #expect(refused.stderr.contains("keyBytesMax"), "names the limit: \(refused.stderr)")
        #expect(refused.stderr.contains("line 1"), "names the line: \(refused.stderr)")
        #expect(refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
        #expect(refused.stdout.isEmpty, "nothing acknowledged")
        // The same through `kv put` and `kv del`.
        let put = try runShiplog(["kv", "put", "--dir", dir, longKey, "v"])
        #expect(put.status == 1 && put.stderr.contains("keyBytesMax"), "exit \(put.status): \(put.stderr)")
        let del = try runShiplog(["kv", "del", "--dir", dir, longKey])
        #expect(del.status == 1 && del.stderr.contains("keyBytesMax"), "exit \(del.status): \(del.stderr)")
        // A value over valueBytesMax through `kv load` (too long for one argv string).
        let longValue = String(repeating: "v", count: KeyValueLimits.valueBytesMax + 1)
        let big = try runShiplog(["kv", "load", "--dir", dir], input: "put k \(longValue)\n")
        #expect(big.status == 1 && big.stderr.contains("valueBytesMax"), "exit \(big.status): \(big.stderr)")
        // Nothing of the refused operations reached the store.
        #expect(try runShiplog(["kv", "scan", "--dir", dir]).stdout == "before\t1\n")
        // Exactly at the limits is fine.
        let maxKey = String(repeating: "m", count: KeyValueLimits.keyBytesMax)
        let maxValue = String(repeating: "w", count: KeyValueLimits.valueBytesMax)
        let atLimit = try runShiplog(["kv", "load", "--dir", dir], input: "put \(maxKey) small\nput big \(maxValue)\n")
        #expect(atLimit.status == 0, "stderr: \(atLimit.stderr.prefix(300))")
        #expect(atLimit.stdout == "2\n3\n")
        #expect(try runShiplog(["kv", "get", "--dir", dir, maxKey]).stdout == "small\n")
        #expect(try runShiplog(["kv", "get", "--dir", dir, "big"]).stdout == maxValue + "\n")
    }

    @Test func loadRefusesAMalformedLineNamingIt() throws {
        let scratch = Scratch.kv()
        defer { scratch.cleanup() }
        let dir = scratch.store
        for (line, index) in [("bogus", 1), ("put onlykey", 1), ("del", 1), ("del  x", 1), ("put  k v", 1)] {
            let result = try runShiplog(["kv", "load", "--dir", dir], input: line + "\n")
            #expect(result.status == 1, "'\(line)': exit \(result.status), stderr: \(result.stderr)")
            #expect(result.stderr.contains("line \(index)"), "'\(line)': \(result.stderr)")
            #expect(result.stdout.isEmpty)
        }
        #expect(try runShiplog(["kv", "scan", "--dir", dir]).stdout.isEmpty)
        // A bad line after good ones that were already acknowledged: those stay.
        let child = try ChildProcess(["kv", "load", "--dir", dir], keepStdinOpen: true)
        child.write("put a 1\nput b 2\n")
        #expect(child.waitForStdout { $0 == "1\n2\n" }, "acknowledged: \(child.stdout) \(child.stderr)")
        child.write("put c 3\nnot an operation\n")
        #expect(child.wait() == 1, "\(child.stderr)")
        #expect(child.stderr.contains("line 4"), "\(child.stderr)")
        // Operations read before the bad line but not acknowledged may or may not be there;
        // every printed LSN is, and each is printed once.
        let printed = child.stdoutLines
        // Was a race: the error path did not wait for the printer, and an LSN could print twice.
        #expect(printed == ["1", "2"] || printed == ["1", "2", "3"], "stdout: \(child.stdout.debugDescription)")
        let scan = try runShiplog(["kv", "scan", "--dir", dir]).stdout
        #expect(scan == "a\t1\nb\t2\n" || scan == "a\t1\nb\t2\nc\t3\n", "\(scan)")
        if printed.contains("3") { #expect(scan.contains("c\t3"), "LSN 3 was printed: 'put c 3' is in the store") }
    }

    @Test func loadPrintsOneLSNPerOperationInOrder() throws {
        let scratch = Scratch.kv()
        defer { scratch.cleanup() }
        let dir = scratch.store
        // Enough operations, some large, for several log batches (kv load cuts batches at 64 KiB).
        var rng = SplitMix(seed: 7)
        var model: [String: String] = [:]
        var operations: [KVOperation] = []
        for i in 0..<3000 {
            let op: KVOperation = i % 97 == 0 ? .put("big\(i % 5)", String(repeating: "x", count: 20_000)) : .random(&rng)
            operations.append(op)
            op.apply(to: &model)
        }
        let input = operations.map(\.line).joined(separator: "\n") + "\n"
        let load = try runShiplog(["kv", "load", "--dir", dir, "--durability", "immediate"], input: input)
        #expect(load.status == 0, "stderr: \(load.stderr)")
        #expect(load.stdout == (1...3000).map { "\($0)\n" }.joined(), "one LSN per operation, in order")
        #expect(load.stderr.isEmpty)
        let scan = try runShiplog(["kv", "scan", "--dir", dir])
        #expect(scan.stdout == scanText(model))
        // The records are exactly the operations' encodings, at their LSNs.
        let reader = LogDirectoryReader(directory: FilePath(dir))
        var lsn: UInt64 = 1
        var mismatches = 0
        while let batch = try reader.next() {
            #expect(batch.lsnRange.first.rawValue == lsn)
            for record in try batch.records() {
                if lsn > 3000 || Array(record) != operations[Int(lsn - 1)].record { mismatches += 1 }
                lsn += 1
            }
        }
        #expect(lsn == 3001, "3000 records in the log")
        #expect(mismatches == 0)
        // A second load continues the LSNs; empty lines are no operations.
        let more = try runShiplog(["kv", "load", "--dir", dir], input: "del big0\nput big0 small\n\ndel big1\n")
        #expect(more.stdout == "3001\n3002\n3003\n", "empty lines are skipped: \(more.stdout) \(more.stderr)")
        #expect(try runShiplog(["kv", "get", "--dir", dir, "big0"]).stdout == "small\n")
        #expect(try runShiplog(["kv", "get", "--dir", dir, "big1"]).status == 1)
    }

    @Test func loadAcknowledgesEachOperationWhileStdinStaysOpen() throws {
        let scratch = Scratch.kv()
        defer { scratch.cleanup() }
        let dir = scratch.store
        let child = try ChildProcess(["kv", "load", "--dir", dir, "--durability", "immediate"], keepStdinOpen: true)
        defer { child.signal(SIGKILL); child.wait() }
        child.write("put a 1\n")
        #expect(child.waitForStdout { $0 == "1\n" }, "acknowledged before EOF: \(child.stdout) \(child.stderr)")
        child.write("del a\nput b 2\n")
        #expect(child.waitForStdout { $0 == "1\n2\n3\n" }, "\(child.stdout) \(child.stderr)")
        // The store is locked while the load runs.
        let locked = try runShiplog(["kv", "get", "--dir", dir, "b"])
        #expect(locked.status == 1, "\(locked.stderr)")
        #expect(locked.stderr.contains("LOCK"), "names the lock: \(locked.stderr)")
        child.write("put c 3\n")
        child.closeStdin()
        #expect(child.wait() == 0, "\(child.stderr)")
        #expect(child.stdout == "1\n2\n3\n4\n")
        #expect(try runShiplog(["kv", "scan", "--dir", dir]).stdout == "b\t2\nc\t3\n")
    }

    // MARK: SIGKILL

    /// The records `reader` has not returned yet, as (LSN, bytes). The reader opens no log and
    /// takes no lock (a lock held in this process, even for a moment, could leak for that
    /// moment into a child another test spawns, and fail the next load); it follows the log
    /// across runs, so each round reads only what the last run added.
    private static func nextRecords(_ reader: LogDirectoryReader) throws -> [(UInt64, [UInt8])] {
        let from = reader.nextLSN.rawValue
        var out: [(UInt64, [UInt8])] = []
        while let batch = try reader.next() {
            var lsn = batch.lsnRange.first.rawValue
            for record in try batch.records() {
                if lsn >= from { out.append((lsn, Array(record))) }
                lsn += 1
            }
        }
        return out
    }

    @Test func killedLoadRecoversToTheModelOfItsLog() throws {
        let kills = Self.killCount
        let firstSeed = UInt64(ProcessInfo.processInfo.environment["SHIPLOG_SEED"] ?? "") ?? UInt64.random(in: 1...999_999)
        let scratch = Scratch.kv()
        let dir = scratch.store
        let started = ContinuousClock.now
        var failed = false
        defer {
            if failed {
                print("KeyValueCLITests: kill suite failed (SHIPLOG_SEED=\(firstSeed)); store kept at \(dir)")
            } else {
                scratch.cleanup()
            }
        }
        func check(
            _ condition: Bool, _ message: @autoclosure () -> String, _ context: String,
            sourceLocation: SourceLocation = #_sourceLocation
        ) {
            if !condition {
                failed = true
                Issue.record("\(context): \(message())", sourceLocation: sourceLocation)
            }
        }

        var model: [String: String] = [:]  // the store after every record up to lastLSN
        var lastLSN: UInt64 = 0  // the log's last LSN after the previous round
        var history: [[UInt8]] = []  // the record at each LSN (index LSN - 1), as read back
        var follower: LogDirectoryReader?  // follows the log from run to run
        /// A fresh reader from the first retained LSN finds exactly `history`, nothing after it.
        func checkWholeLog(_ context: String) throws {
            let reader = LogDirectoryReader(directory: FilePath(dir))
            guard let first = try reader.segmentNames().first?.baseLSN.rawValue else {
                check(lastLSN == 0, "no segment left, though the log reached LSN \(lastLSN)", context)
                return
            }
            let all = try Self.nextRecords(LogDirectoryReader(directory: FilePath(dir), from: LSN(first)))
            check(
                all.map(\.0) == Array(first..<(lastLSN + 1)),
                "a fresh read from LSN \(first) finds LSNs \(all.first?.0 ?? 0)...\(all.last?.0 ?? 0), not up to \(lastLSN)",
                context)
            for (lsn, bytes) in all where lsn <= UInt64(history.count) && bytes != history[Int(lsn - 1)] {
                check(false, "LSN \(lsn) changed since it was first read", context)
                return
            }
        }
        var acknowledged = 0, unacknowledgedSurvivors = 0, operationsSent = 0
        var checkpoints = 0, checkpointKills = 0, singleCommands = 0, loadKills = 0

        var context = "SHIPLOG_SEED=\(firstSeed)"
        do {
            for round in 0..<kills {
                let seed = firstSeed &+ UInt64(round)
                context = "round \(round) of SHIPLOG_SEED=\(firstSeed) (round seed \(seed))"
                var rng = SplitMix(seed: seed)

                // Between kills: checkpoints (some killed while they work) and single commands.
                switch rng.next() % 10 {
                case 0, 1:
                    let result = try runShiplog(["kv", "checkpoint", "--dir", dir])
                    check(result.status == 0, "kv checkpoint failed (\(result.status)): \(result.stderr)", context)
                    check(
                        result.stdout.hasPrefix("checkpoint at LSN \(lastLSN): \(model.count) entries"),
                        "the checkpoint covers the whole log and store (LSN \(lastLSN), \(model.count) entries): "
                            + result.stdout,
                        context)
                    checkpoints += 1
                case 2, 3:
                    let child = try ChildProcess(["kv", "checkpoint", "--dir", dir])
                    usleep(UInt32(rng.next() % 20_000))
                    child.signal(SIGKILL)
                    let status = child.wait()
                    check(status == 128 + SIGKILL || status == 0, "kv checkpoint exited \(status): \(child.stderr)", context)
                    if status == 0 {
                        check(child.stdout.hasPrefix("checkpoint at LSN \(lastLSN): "), "\(child.stdout)", context)
                        checkpoints += 1
                    } else {
                        checkpointKills += 1
                    }
                case 4:
                    let key = KVOperation.keys[Int(rng.next() % UInt64(KVOperation.keys.count))]
                    let operation = rng.next() % 3 == 0 ? KVOperation.delete(key) : .put(key, "single \(round)")
                    let arguments: [String] =
                        switch operation {
                        case .put(let key, let value): ["kv", "put", "--dir", dir, "--", key, value]
                        case .delete(let key): ["kv", "del", "--dir", dir, "--", key]
                        }
                    let result = try runShiplog(arguments)
                    check(result.status == 0, "\(arguments): \(result.stderr)", context)
                    check(
                        result.stdout == "\(lastLSN + 1)\n", "\(arguments) printed \(result.stdout), expected LSN \(lastLSN + 1)",
                        context)
                    if result.status == 0 {
                        operation.apply(to: &model)
                        lastLSN += 1
                        history.append(operation.record)
                        singleCommands += 1
                    }
                default:
                    break
                }
                if failed { return }

                // The load, fed random operations until it is killed.
                let child = try ChildProcess(["kv", "load", "--dir", dir, "--durability", "immediate"], keepStdinOpen: true)
                let sent = SentLines()
                let workloadSeed = rng.next()
                let feeder = Thread {
                    var operations = SplitMix(seed: workloadSeed)
                    while !sent.stopped {
                        let chunk = (0..<(1 + Int(operations.next() % 8))).map { _ in KVOperation.random(&operations).line }
                        // Recorded before it is written: every line the child can read is known.
                        sent.append(chunk)
                        guard child.write(chunk.joined(separator: "\n") + "\n") else { break }
                        // Bursts and pauses: the child is sometimes idle, sometimes has a backlog.
                        usleep(UInt32(operations.next() % 4 == 0 ? 0 : 200 + operations.next() % 2000))
                    }
                    sent.finish()
                }
                feeder.start()
                // Most runs are killed after their first acknowledgement; some while starting up
                // (opening, recovering the previous run's tail).
                if rng.next() % 4 != 0 {
                    _ = child.waitForStdout(timeout: .seconds(5)) { $0.contains("\n") }
                }
                usleep(UInt32(2_000 + rng.next() % 58_000))
                child.signal(SIGKILL)
                sent.stop()
                let lines = sent.waitForFeeder()
                let status = child.wait()
                operationsSent += lines.count
                check(
                    status == 128 + SIGKILL,
                    "kv load was not killed but exited \(status) after \(lines.count) lines sent; stderr: \(child.stderr); "
                        + "stdout ends: \(child.stdout.suffix(40).debugDescription)", context)
                if status == 128 + SIGKILL { loadKills += 1 }

                // What the child acknowledged: dense LSNs continuing the log, one per line read.
                let output = child.stdoutLines
                let printed = output.compactMap { UInt64($0) }
                check(printed.count == output.count, "only LSNs on stdout: \(output.prefix(5))", context)
                let expectedPrinted = Array((lastLSN + 1)..<(lastLSN + 1 + UInt64(printed.count)))
                check(
                    printed == expectedPrinted, "LSNs printed densely, in order, from \(lastLSN + 1): \(printed.prefix(5))...",
                    context)
                check(printed.count <= lines.count, "\(printed.count) LSNs printed for \(lines.count) lines sent", context)
                acknowledged += printed.count
                if failed { return }

                // The store as a recovering open sees it (this also cuts a torn tail).
                let scan = try runShiplog(["kv", "scan", "--dir", dir])
                check(scan.status == 0, "kv scan after the kill failed (\(scan.status)): \(scan.stderr)", context)

                // What survived, from the log itself: one record per line the child read, in
                // order, with that line's bytes (after any single command's record).
                if follower == nil { follower = LogDirectoryReader(directory: FilePath(dir)) }
                var fresh = try Self.nextRecords(follower!)[...]
                while let record = fresh.first, record.0 <= lastLSN {
                    check(record.1 == history[Int(record.0 - 1)], "LSN \(record.0) of a single command changed", context)
                    fresh = fresh.dropFirst()
                }
                check(
                    fresh.map(\.0) == Array((lastLSN + 1)..<(lastLSN + 1 + UInt64(fresh.count))),
                    "the records after LSN \(lastLSN) are not dense: \(fresh.prefix(5).map(\.0))", context)
                check(
                    fresh.count >= printed.count,
                    "acknowledged LSNs \(lastLSN + UInt64(fresh.count) + 1)...\(printed.last ?? 0) lost after SIGKILL",
                    context)
                check(
                    fresh.count <= lines.count, "\(fresh.count) records survived, but only \(lines.count) lines were sent",
                    context)
                if failed { return }
                for (index, (lsn, bytes)) in fresh.enumerated() {
                    let operation = KVOperation(line: lines[index])
                    check(
                        bytes == operation.record,
                        "LSN \(lsn) (\(index < printed.count ? "acknowledged" : "unacknowledged")) does not hold "
                            + "line \(index) '\(lines[index].prefix(60))'",
                        context)
                    if failed { return }
                    operation.apply(to: &model)
                }
                unacknowledgedSurvivors += fresh.count - printed.count
                history += fresh.map(\.1)
                lastLSN += UInt64(fresh.count)

                // The recovered store equals the model of the surviving records.
                let expected = scanText(model)
                if scan.stdout != expected {
                    let got = Set(scan.stdout.split(separator: "\n", omittingEmptySubsequences: false))
                    let want = Set(expected.split(separator: "\n", omittingEmptySubsequences: false))
                    check(
                        false,
                        "kv scan differs from the model after LSN \(lastLSN): "
                            + "missing \(want.subtracting(got).sorted().prefix(5)), "
                            + "unexpected \(got.subtracting(want).sorted().prefix(5))", context)
                    return
                }
                // Now and then a point read of a random key agrees too.
                if rng.next() % 8 == 0 {
                    let key = KVOperation.keys[Int(rng.next() % UInt64(KVOperation.keys.count))]
                    let got = try runShiplog(["kv", "get", "--dir", dir, "--", key])
                    if let value = model[key] {
                        check(
                            got.status == 0 && got.stdout == value + "\n", "kv get \(key): \(got.status) \(got.stdout.prefix(60))",
                            context)
                    } else {
                        check(
                            got.status == 1 && got.stdout.isEmpty,
                            "kv get \(key) of an absent key: \(got.status) \(got.stdout.prefix(60))", context)
                    }
                }
                // Whole-log reads cost more as the log grows: every 20 rounds, then every 100 (soaks).
                if (round + 1) % (round < 100 ? 20 : 100) == 0 || round == kills - 1 { try checkWholeLog(context) }
                if failed { return }
            }
        } catch {
            check(false, "threw \(error)", context)
            return
        }

        context = "SHIPLOG_SEED=\(firstSeed)"
        check(loadKills == kills, "\(loadKills) of \(kills) loads were killed", context)
        check(
            acknowledged > kills, "the children acknowledged only \(acknowledged) operations: the test proves little", context)
        let verify = try runShiplog(["verify", "--dir", dir])
        check(verify.status == 0, "verify after the kills: \(verify.stdout) \(verify.stderr)", context)
        print(
            "KeyValueCLITests: \(loadKills) kills of kv load, \(checkpointKills) of kv checkpoint, "
                + "\(checkpoints) checkpoints, "
                + "\(singleCommands) single commands; \(operationsSent) operations sent, \(acknowledged) acknowledged, "
                + "\(unacknowledgedSurvivors) survived unacknowledged; last LSN \(lastLSN), \(model.count) keys; "
                + "\(ContinuousClock.now - started) (SHIPLOG_SEED=\(firstSeed))")
    }
}
