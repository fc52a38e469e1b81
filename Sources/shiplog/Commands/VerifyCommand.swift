import ShipLog

/// `shiplog verify`: scans every segment (CRC, chain, LSN continuity, record blocks, footer
/// and index); exit 0 only when all of it verifies.
struct VerifyCommand {
    let directory: FilePath

    init(_ arguments: ParsedArguments) throws {
        directory = FilePath(try arguments.requiredString("dir"))
    }

    func run() throws -> Int32 {
        let verification = try LogVerifier(directory: directory).verify()
        for problem in verification.problems { Output.error.line("shiplog verify: \(problem)") }
        let range = verification.lastLSN >= verification.firstLSN && verification.batchCount > 0
            ? "LSN \(verification.firstLSN)...\(verification.lastLSN)" : "no records"
        let summary = "\(verification.segmentCount) segment(s), \(verification.batchCount) batches, \(range), "
            + "\(verification.storedBytes) bytes verified"
        if verification.problems.isEmpty {
            Output.standard.line("OK: \(summary)")
            return 0
        }
        Output.standard.line("FAILED: \(verification.problems.count) problem(s); \(summary) before the first")
        return 1
    }
}
