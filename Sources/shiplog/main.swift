// The `shiplog` command-line tool. Usage errors print one line and exit 2; failures of the
// operation itself print what failed (file, offset, LSN where known) and exit 1.
import Glibc
import ShipLog

let interface = CommandLineInterface(
    summary: "ShipLog: a segmented, checksummed, LZ4-batched write-ahead log.",
    commands: Commands.all)

do {
    switch try interface.parse(Array(CommandLine.arguments.dropFirst())) {
    case .help(let text):
        Output.standard.write(text)
        Output.standard.flush()
        exit(0)
    case .run(let arguments):
        let status = try Commands.run(arguments)
        Output.standard.flush()
        exit(status)
    }
} catch let error as UsageError {
    Output.standard.flush()
    Output.error.line(error.description)
    exit(UsageError.exitStatus)
} catch {
    Output.standard.flush()
    Output.error.line("shiplog: \(error)")
    exit(1)
}
