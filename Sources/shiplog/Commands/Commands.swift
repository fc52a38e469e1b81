import ShipLog

/// Every command of the tool, declared once: parsing, validation and `--help` come from here.
enum Commands {
    static let durabilityWords = ["buffered", "interval", "immediate"]

    static let append = CommandSpec(
        path: ["append"], summary: "Append newline-terminated records read from standard input.",
        discussion: """
            Prints each record's LSN (decimal, one per line, in input order) once it is acknowledged \
            at the chosen durability. Lines are batched as they arrive and submitted without waiting \
            for earlier acknowledgements, so `immediate` shares fdatasyncs (group commit).
            """,
        flags: [
            .value("dir", placeholder: "DIR", help: "Log directory (created when missing).", required: true),
            .value("durability", .choice(durabilityWords), help: "When a record counts as appended.", default: "immediate"),
            .value("compression", .choice(["lz4", "none"]), help: "Batch codec.", default: "lz4"),
            .value(
                "sync-interval-ms", .unsignedInteger(1...60_000), placeholder: "MS",
                help: "Deadline of the background fdatasync with --durability interval.", default: "100"),
        ])

    static let read = CommandSpec(
        path: ["read"], summary: "Print records as LSN<TAB>record lines, in LSN order.",
        flags: [
            .value("dir", placeholder: "DIR", help: "Log directory.", required: true),
            .value("from", .unsignedInteger(1...UInt64.max), placeholder: "LSN", help: "First LSN to print.", default: "1"),
            .flag("follow", help: "Keep waiting for new records (stop with Ctrl-C)."),
        ])

    static let verify = CommandSpec(
        path: ["verify"], summary: "Check every segment, batch, CRC, chain link and index; exit 1 on any damage.",
        flags: [.value("dir", placeholder: "DIR", help: "Log directory.", required: true)])

    static let inspect = CommandSpec(
        path: ["inspect"], summary: "Describe segments, LSN ranges, batches, sizes and compression.",
        flags: [
            .value("dir", placeholder: "DIR", help: "Log directory.", required: true),
            .flag("json", help: "Print JSON instead of a table."),
        ])

    static let benchAppend = CommandSpec(
        path: ["bench", "append"], summary: "Measure append throughput against same-run LZ4 and fdatasync baselines.",
        flags: [
            .flag("json", help: "Print the figures as JSON."),
            .value(
                "seconds", .number(0.1...3600), placeholder: "N", help: "Seconds per measured phase.", default: "2"),
            .value("dir", placeholder: "DIR", help: "Directory for the benchmark's logs (default: a temporary one)."),
        ])

    static let all = [append, read, verify, inspect, recover, dump] + keyValue + [benchAppend, benchRecovery, benchKeyValue]

    /// Runs the parsed command; returns the exit status.
    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        switch arguments.command.path {
        case append.path: return try AppendCommand(arguments).run()
        case read.path: return try ReadCommand(arguments).run()
        case verify.path: return try VerifyCommand(arguments).run()
        case inspect.path: return try InspectCommand(arguments).run()
        case recover.path: return try RecoverCommand(arguments).run()
        case dump.path: return try DumpCommand(arguments).run()
        case benchAppend.path: return try BenchAppendCommand(arguments).run()
        case benchRecovery.path: return try BenchRecoveryCommand(arguments).run()
        case benchKeyValue.path: return try BenchKeyValueCommand(arguments).run()
        default:
            if let status = try runKeyValue(arguments) { return status }
            fatalError("command \(arguments.command.name) has no implementation")
        }
    }
}
