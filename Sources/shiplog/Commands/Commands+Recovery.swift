import ShipLog

extension Commands {
    static let recover = CommandSpec(
        path: ["recover"], summary: "Open the log as the engine does after a crash and print what recovery did.",
        discussion: """
            strict (default): truncates a torn tail (saving its bytes under quarantine/) and refuses \
            any other damage, naming file, offset and LSN range (exit 1). salvage: cuts the log at \
            the first damage and moves everything after it into quarantine/; never deletes.
            """,
        flags: [
            .value("dir", placeholder: "DIR", help: "Log directory.", required: true),
            .value("mode", .choice(["strict", "salvage"]), help: "How to treat damage a crash cannot explain.", default: "strict"),
        ])

    static let dump = CommandSpec(
        path: ["dump"], summary: "Decode batches for humans: headers, CRCs, records.",
        flags: [
            .value("dir", placeholder: "DIR", help: "Log directory.", required: true),
            .value("from", .unsignedInteger(1...UInt64.max), placeholder: "LSN", help: "First LSN to show.", default: "1"),
            .flag("json", help: "One JSON object per batch, one per line."),
        ])

    static let benchRecovery = CommandSpec(
        path: ["bench", "recovery"],
        summary: "Measure recovery scan speed against same-run raw LZ4 decompression.",
        flags: [
            .flag("json", help: "Print the figures as JSON."),
            .value("megabytes", .unsignedInteger(16...65536), placeholder: "MB", help: "Stored log bytes to write and scan.", default: "512"),
            .value("dir", placeholder: "DIR", help: "Directory for the benchmark's log (default: a temporary one)."),
        ])
}
