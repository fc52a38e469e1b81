import Dispatch
import Glibc
import ShipLog

extension Commands {
    static func kvDirectory() -> FlagSpec {
        .value("dir", placeholder: "DIR", help: "Store directory (created when missing).", required: true)
    }
    /// `--dir`, or `--server` and its flags: for the commands that also work through a node.
    static func kvDirectoryOrServer() -> [FlagSpec] {
        [.value("dir", placeholder: "DIR", help: "Store directory (created when missing); or --server.")] + remoteFlags()
    }
    static func kvDurability() -> FlagSpec {
        .value("durability", .choice(durabilityWords), help: "When a write counts as done.", default: "immediate")
    }

    static let kvPut = CommandSpec(
        path: ["kv", "put"], summary: "Set KEY to VALUE; prints the LSN of the change.", positionals: ["KEY", "VALUE"],
        flags: kvDirectoryOrServer() + [kvDurability(), ackFlag()])
    static let kvGet = CommandSpec(
        path: ["kv", "get"], summary: "Print the value of KEY; exit 1 when it is absent.", positionals: ["KEY"],
        flags: kvDirectoryOrServer())
    static let kvDelete = CommandSpec(
        path: ["kv", "del"], summary: "Delete KEY; prints the LSN of the change.", positionals: ["KEY"],
        flags: kvDirectoryOrServer() + [kvDurability(), ackFlag()])
    static let kvScan = CommandSpec(
        path: ["kv", "scan"], summary: "Print KEY<TAB>VALUE lines in key order.",
        flags: kvDirectoryOrServer() + [
            .value("prefix", placeholder: "P", help: "Only keys starting with P."),
            .value("from", placeholder: "K", help: "First key (inclusive)."),
            .value("to", placeholder: "K", help: "Last key (exclusive)."),
        ])
    static let kvCheckpoint = CommandSpec(
        path: ["kv", "checkpoint"], summary: "Write a checkpoint of the store now; prints its LSN, size and time.",
        flags: [kvDirectory()])
    static let kvLoad = CommandSpec(
        path: ["kv", "load"],
        summary: "Apply `put KEY VALUE` / `del KEY` lines from stdin; prints each operation's LSN once acknowledged.",
        flags: [kvDirectory(), kvDurability()])

    static let keyValue = [kvPut, kvGet, kvDelete, kvScan, kvCheckpoint, kvLoad]

    static func durability(_ arguments: ParsedArguments) throws -> Durability {
        try arguments.choice(
            "durability", from: ["buffered": .buffered, "interval": .interval(.milliseconds(100)), "immediate": .immediate])
            ?? .immediate
    }

    static func runKeyValue(_ arguments: ParsedArguments) throws -> Int32? {
        switch arguments.command.path {
        case kvPut.path, kvGet.path, kvDelete.path, kvScan.path, kvCheckpoint.path:
            if arguments.command.path == kvScan.path, arguments.string("prefix") != nil,
                arguments.string("from") != nil || arguments.string("to") != nil
            {
                throw UsageError(command: arguments.command.displayName, message: "--prefix cannot be combined with --from/--to")
            }
            if arguments.command.path != kvCheckpoint.path,
                case .server(let server) = try target(arguments, localOnly: ["durability"], remoteOnly: ["ack"])
            {
                return try RemoteKeyValueCommand(arguments: arguments, server: server).run()
            }
            let store = try KeyValueStore(directory: FilePath(try arguments.requiredString("dir")))
            defer { try? store.close() }
            return try KeyValueCommand(arguments: arguments, store: store).run()
        case kvLoad.path:
            return try KeyValueLoadCommand(arguments).run()
        default:
            return nil
        }
    }
}

/// `kv put|get|del|scan|checkpoint` on an open store.
struct KeyValueCommand {
    let arguments: ParsedArguments
    let store: KeyValueStore

    func run() throws -> Int32 {
        let out = Output.standard
        switch arguments.command.path {
        case Commands.kvPut.path:
            let lsn = try store.put(
                Array(arguments.positional("KEY").utf8), Array(arguments.positional("VALUE").utf8),
                durability: try Commands.durability(arguments))
            out.line("\(lsn)")
        case Commands.kvDelete.path:
            let lsn = try store.delete(Array(arguments.positional("KEY").utf8), durability: try Commands.durability(arguments))
            out.line("\(lsn)")
        case Commands.kvGet.path:
            guard let value = store.get(Array(arguments.positional("KEY").utf8)) else { return 1 }
            value.withUnsafeBytes { out.write(bytes: $0) }
            out.write("\n")
        case Commands.kvScan.path:
            let snapshot = store.snapshot()
            let print: ([UInt8], [UInt8]) -> Bool = { key, value in
                key.withUnsafeBytes { out.write(bytes: $0) }
                out.write("\t")
                value.withUnsafeBytes { out.write(bytes: $0) }
                out.write("\n")
                return true
            }
            if let prefix = arguments.string("prefix") {
                snapshot.scan(prefix: Array(prefix.utf8), print)
            } else {
                snapshot.scan(from: arguments.string("from").map { Array($0.utf8) }, to: arguments.string("to").map { Array($0.utf8) }, print)
            }
        case Commands.kvCheckpoint.path:
            let info = try store.checkpoint()
            out.line("checkpoint at LSN \(info.lsn): \(info.entries) entries, \(info.bytes) bytes, \(info.duration) (\(info.path))")
        default:
            preconditionFailure("not a kv command")
        }
        return 0
    }
}

/// `kv load`: operation lines from stdin, pipelined; one LSN per operation on stdout.
struct KeyValueLoadCommand {
    let directory: FilePath
    let durability: Durability

    init(_ arguments: ParsedArguments) throws {
        directory = FilePath(try arguments.requiredString("dir"))
        durability = try Commands.durability(arguments)
    }

    func run() throws -> Int32 {
        let store = try KeyValueStore(directory: directory)
        let tracker = AcknowledgementTracker()
        let printer = DispatchQueue(label: "shiplog.kv.printer")
        var batch = BatchBuilder(capacity: 64 << 10)
        var lineNumber = 0

        func submit() throws {
            guard !batch.isEmpty else { return }
            tracker.started()
            try store.host.submit(batch, durability: durability) { result in
                printer.async { tracker.acknowledge(result) }
            }
            batch.removeAll()
        }

        // Stop reading at the first bad line, but let the acknowledgements already on their
        // way finish printing before the error is reported (stdout has one writer at a time).
        var inputError: (any Error)?
        do {
            while let line = readLine(strippingNewline: true) {
                lineNumber += 1
                if line.isEmpty { continue }
                var operation = WriteBatch()
                switch try Self.parse(line, lineNumber: lineNumber) {
                case .put(let key, let value): operation.put(key, value)
                case .delete(let key): operation.delete(key)
                }
                let record: [UInt8]
                do { record = try operation.encodedRecord() } catch { throw CommandError("line \(lineNumber): \(error)") }
                if !batch.canAppend(byteCount: record.count) || batch.uncompressedByteCount >= 64 << 10 { try submit() }
                try batch.append(record)
                if tracker.firstError != nil { break }
                // Pipeline: hand over what has been read whenever stdin has nothing more right now.
                if !Self.stdinHasData() { try submit() }
            }
            try submit()
        } catch {
            inputError = error
        }
        try tracker.finish(printer: printer, inputError: inputError, command: "kv load") { try store.close() }
        return 0
    }

    /// `put KEY VALUE` (VALUE is the rest of the line) or `del KEY`.
    static func parse(_ line: String, lineNumber: Int) throws -> KeyValueOperation {
        let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        switch parts.first {
        case "put" where parts.count == 3 && !parts[1].isEmpty:
            return .put(key: Array(parts[1].utf8), value: Array(parts[2].utf8))
        case "del" where parts.count == 2 && !parts[1].isEmpty:
            return .delete(key: Array(parts[1].utf8))
        default:
            throw CommandError("line \(lineNumber): expected `put KEY VALUE` or `del KEY`, got '\(line.prefix(80))'")
        }
    }

    static func stdinHasData() -> Bool {
        var descriptor = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) > 0
    }
}
