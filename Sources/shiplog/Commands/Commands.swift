import ShipLog

/// Every command of the tool, declared once: parsing, validation and `--help` come from here.
enum Commands {
    static let durabilityWords = ["buffered", "interval", "immediate"]

    static let append = CommandSpec(
        path: ["append"], summary: "Append newline-terminated records read from standard input.",
        discussion: """
            Prints each record's LSN (decimal, one per line, in input order) once it is acknowledged \
            at the chosen durability. Lines are batched as they arrive and submitted without waiting \
            for earlier acknowledgements, so `immediate` shares fdatasyncs (group commit). With \
            --server the records go to a primary and are acknowledged at the --ack commit level; \
            after a failed append it exits 1 once the LSNs of the lines before it are printed.
            """,
        flags: [
            .value("dir", placeholder: "DIR", help: "Log directory (created when missing); or --server."),
            .value("durability", .choice(durabilityWords), help: "When a record counts as appended.", default: "immediate"),
            .value("compression", .choice(["lz4", "none"]), help: "Batch codec.", default: "lz4"),
            .value(
                "sync-interval-ms", .unsignedInteger(1...60_000), placeholder: "MS",
                help: "Deadline of the background fdatasync with --durability interval.", default: "100"),
            ackFlag(),
        ] + remoteFlags())

    static let read = CommandSpec(
        path: ["read"], summary: "Print records as LSN<TAB>record lines, in LSN order.",
        flags: [
            .value("dir", placeholder: "DIR", help: "Log directory; or --server."),
            .value("from", .unsignedInteger(1...UInt64.max), placeholder: "LSN", help: "First LSN to print.", default: "1"),
            .flag("follow", help: "Keep waiting for new records (stop with Ctrl-C)."),
        ] + remoteFlags())

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

    static let all =
        [append, read, verify, inspect, recover, dump] + keyValue + [serve, follow, status, promote]
        + [bench, benchAppend, benchRecovery, benchKeyValue, benchReplicate]

    /// Flags of `append` that only a local --dir uses.
    static let localAppendFlags = ["durability", "compression", "sync-interval-ms"]

    /// Runs the parsed command; returns the exit status.
    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        switch arguments.command.path {
        case append.path:
            switch try target(arguments, localOnly: localAppendFlags, remoteOnly: ["ack"]) {
            case .directory: return try AppendCommand(arguments).run()
            case .server(let server): return try RemoteAppendCommand(arguments, server: server).run()
            }
        case read.path:
            switch try target(arguments) {
            case .directory: return try ReadCommand(arguments).run()
            case .server(let server): return try RemoteReadCommand(arguments, server: server).run()
            }
        case serve.path, follow.path: return try NodeCommand(arguments).run()
        case status.path: return try StatusCommand(arguments).run()
        case promote.path: return try PromoteCommand(arguments).run()
        case verify.path: return try VerifyCommand(arguments).run()
        case inspect.path: return try InspectCommand(arguments).run()
        case recover.path: return try RecoverCommand(arguments).run()
        case dump.path: return try DumpCommand(arguments).run()
        case bench.path: return try BenchScenarioCommand(arguments).run()
        case benchAppend.path: return try BenchAppendCommand(arguments).run()
        case benchRecovery.path: return try BenchRecoveryCommand(arguments).run()
        case benchKeyValue.path: return try BenchKeyValueCommand(arguments).run()
        case benchReplicate.path: return try BenchReplicateCommand(arguments).run()
        default:
            if let status = try runKeyValue(arguments) { return status }
            fatalError("command \(arguments.command.name) has no implementation")
        }
    }
}
