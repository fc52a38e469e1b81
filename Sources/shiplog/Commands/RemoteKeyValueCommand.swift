import ShipLog

/// `shiplog kv put|get|del|scan --server HOST:PORT`: the same output as on a local `--dir`,
/// through a node. Writes go to the primary as write-batch records at the `--ack` level;
/// reads are queries answered by any node from the state it has applied.
struct RemoteKeyValueCommand {
    let arguments: ParsedArguments
    let server: Endpoint

    func run() throws -> Int32 {
        let client = try Commands.connect(arguments, to: server)
        defer { client.close() }
        let out = Output.standard
        switch arguments.command.path {
        case Commands.kvPut.path, Commands.kvDelete.path:
            var batch = WriteBatch()
            let key = Array(arguments.positional("KEY").utf8)
            if arguments.command.path == Commands.kvPut.path {
                batch.put(key, Array(arguments.positional("VALUE").utf8))
            } else {
                batch.delete(key)
            }
            let record: [UInt8]
            do { record = try batch.encodedRecord() } catch { throw CommandError("\(arguments.command.name): \(error)") }
            let level = try Commands.commitLevel(arguments)  // nil: the primary's default
            do {
                out.line("\(try client.append([record], level: level).range.first)")
            } catch {
                throw CommandError("\(arguments.command.name) --server \(server): \(error)")
            }
        case Commands.kvGet.path:
            guard case .value(let value) = try query(client, .get(key: Array(arguments.positional("KEY").utf8))) else {
                throw CommandError("kv get --server \(server): the node answered a get with scan entries")
            }
            guard let value else { return 1 }
            value.withUnsafeBytes { out.write(bytes: $0) }
            out.write("\n")
        case Commands.kvScan.path:
            try scan(client, out: out)
        default:
            preconditionFailure("not a remote kv command")
        }
        return 0
    }

    /// Asks for the range page by page (a node answers at most `scanEntriesMax` entries or
    /// `queryResultBytesMax` bytes at once), continuing after the last key of each page.
    private func scan(_ client: ReplicationClient, out: Output) throws {
        var start: [UInt8]
        let end: [UInt8]?
        if let prefix = arguments.string("prefix") {
            start = Array(prefix.utf8)
            end = Self.keyAfterPrefix(start)
        } else {
            start = arguments.string("from").map { Array($0.utf8) } ?? []
            end = arguments.string("to").map { Array($0.utf8) }
        }
        while true {
            guard case .entries(let entries, let more) = try query(client, .scan(start: start, end: end, limit: KeyValueLimits.scanEntriesMax))
            else { throw CommandError("kv scan --server \(server): the node answered a scan with a single value") }
            for entry in entries {
                entry.key.withUnsafeBytes { out.write(bytes: $0) }
                out.write("\t")
                entry.value.withUnsafeBytes { out.write(bytes: $0) }
                out.write("\n")
            }
            guard more, let last = entries.last else { return }
            start = last.key + [0]
        }
    }

    private func query(_ client: ReplicationClient, _ query: KeyValueQuery) throws -> KeyValueQueryResult {
        let name = arguments.command.name
        let bytes: [UInt8]
        do { bytes = try client.query(query.encoded()).result } catch { throw CommandError("\(name) --server \(server): \(error)") }
        do { return try KeyValueQueryResult(decoding: bytes) } catch { throw CommandError("\(name) --server \(server): \(error)") }
    }

    /// The smallest key greater than every key starting with `prefix`; `nil` when there is
    /// none (the prefix is empty or all 0xFF).
    static func keyAfterPrefix(_ prefix: [UInt8]) -> [UInt8]? {
        var key = prefix
        while let last = key.last {
            if last < 0xFF {
                key[key.count - 1] = last + 1
                return key
            }
            key.removeLast()
        }
        return nil
    }
}
