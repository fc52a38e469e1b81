import Glibc
import ShipLog

/// `shiplog read`: LSN<TAB>record lines, in LSN order, from a log another process may be writing.
/// Control batches (the engine's own records, such as epoch starts) are skipped; `dump` shows them.
struct ReadCommand {
    /// How often `--follow` looks for new batches.
    static let followPollInterval: Duration = .milliseconds(10)

    let directory: FilePath
    let from: LSN
    let follow: Bool

    init(_ arguments: ParsedArguments) throws {
        directory = FilePath(try arguments.requiredString("dir"))
        from = LSN(try arguments.uint64("from") ?? 1)
        follow = arguments.flag("follow")
    }

    func run() throws -> Int32 {
        guard PosixFileSystem().fileExists(at: directory) else { throw CommandError("no log at \(directory)") }
        let reader = LogDirectoryReader(directory: directory, from: from)
        let out = Output.standard
        while true {
            while let batch = try reader.next() {
                if batch.header.isControl { continue }
                var lsn = batch.header.baseLSN
                try batch.records().forEach { record in
                    if lsn >= from {
                        out.write("\(lsn)\t")
                        out.write(bytes: record)
                        out.write("\n")
                    }
                    lsn = lsn.advanced(by: 1)
                }
            }
            out.flush()
            guard follow else { return 0 }
            usleep(UInt32(Self.followPollInterval.components.attoseconds / 1_000_000_000_000))
        }
    }
}
