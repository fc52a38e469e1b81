import ShipLog

/// `shiplog recover`: runs recovery (strict or salvage) and prints its report.
struct RecoverCommand {
    let directory: FilePath
    let mode: RecoveryMode

    init(_ arguments: ParsedArguments) throws {
        directory = FilePath(try arguments.requiredString("dir"))
        mode = try arguments.choice("mode", from: ["strict": RecoveryMode.strict, "salvage": .salvage]) ?? .strict
    }

    func run() throws -> Int32 {
        guard PosixFileSystem().fileExists(at: directory) else { throw CommandError("no log at \(directory)") }
        var options = LogOptions()
        options.auxiliaryNames.insert(CheckpointStore.directoryName)  // a key-value store's checkpoints
        let (log, report) = try LogRecovery.open(directory: directory, options: options, mode: mode)
        try log.close()
        Output.standard.line(report.description)
        return 0
    }
}
