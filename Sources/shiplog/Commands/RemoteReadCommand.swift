import ShipLog

/// `shiplog read --server HOST:PORT`: the node's records as `LSN<TAB>record` lines, like a
/// local `read`; with `--follow`, long polls for new ones until interrupted.
struct RemoteReadCommand {
    /// How long one `--follow` request waits on the node for records after the end.
    static let followWait: Duration = .seconds(10)

    /// How long `--server A,B,C` looks for the primary again after losing its node.
    static let failoverPatience: Duration = .seconds(30)

    let arguments: ParsedArguments
    let server: Endpoint
    /// Every node of `--server A,B,C`: with more than one, reading goes on from the primary
    /// found among them when the node read from goes away.
    let servers: [Endpoint]
    let from: LSN
    let follow: Bool

    init(_ arguments: ParsedArguments, server: Endpoint) throws {
        self.arguments = arguments
        self.server = server
        servers = try Commands.endpoints(arguments, "server")
        from = LSN(try arguments.uint64("from") ?? 1)
        follow = arguments.flag("follow")
    }

    func run() throws -> Int32 {
        var client = servers.count > 1
            ? try Commands.connectToPrimary(arguments, among: servers, knownEpoch: Epoch(0), patience: Self.failoverPatience)
            : try Commands.connect(arguments, to: server)
        defer { client.close() }
        let out = Output.standard
        var request = from
        while true {
            let last: LSN
            let batches: [Batch]
            do {
                (last, batches) = try client.read(from: request, wait: follow ? Self.followWait : .zero)
            } catch where servers.count > 1 && AcknowledgementSequencer.isFixedByFailover(error) {
                // The node went away (a failover): go on from the primary found among the servers.
                let epoch = client.epoch
                client.close()
                client = try Commands.connectToPrimary(arguments, among: servers, knownEpoch: epoch, patience: Self.failoverPatience)
                continue
            } catch {
                // Past the end: nothing to print yet (`read --dir` prints nothing either).
                guard case .requestFailed(let failure) = error, case .lsnOutOfRange(let first, let end) = failure.reason,
                    request > end.advanced(by: 1), first <= end.advanced(by: 1)
                else { throw CommandError("read --server \(server) from LSN \(request): \(error)") }
                guard follow else { return 0 }
                request = end.advanced(by: 1)
                continue
            }
            for batch in batches {
                guard batch.lsnRange.first <= request, batch.lsnRange.last >= request else {
                    throw CommandError("read --server \(server): expected the batch holding LSN \(request), got LSNs \(batch.lsnRange)")
                }
                // Control batches (an epoch start) hold the engine's records, not the application's.
                if batch.header.isControl {
                    request = batch.lsnRange.last.advanced(by: 1)
                    continue
                }
                let records: RecordBlock
                do { records = try batch.records() } catch {
                    throw CommandError("read --server \(server): batch LSN \(batch.lsnRange) has a bad record block: \(error)")
                }
                var lsn = batch.header.baseLSN
                for record in records {
                    if lsn >= from {
                        out.write("\(lsn)\t")
                        record.withUnsafeBytes { out.write(bytes: $0) }
                        out.write("\n")
                    }
                    lsn = lsn.advanced(by: 1)
                }
                request = batch.lsnRange.last.advanced(by: 1)
            }
            out.flush()
            if !follow && (batches.isEmpty || request > last) { return 0 }
        }
    }
}
