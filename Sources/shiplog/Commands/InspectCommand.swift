import ShipLog

/// `shiplog inspect`: segments, LSN ranges, batches (control batches counted apart), sizes,
/// compression and the epoch history, read-only.
struct InspectCommand {
    let directory: FilePath
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        directory = FilePath(try arguments.requiredString("dir"))
        json = arguments.flag("json")
    }

    func run() throws -> Int32 {
        let fileSystem = PosixFileSystem()
        guard fileSystem.fileExists(at: directory) else { throw CommandError("no log at \(directory)") }
        let names = try LogDirectoryReader(directory: directory).segmentNames()
        var table = TextTable([
            ("segment", .left), ("first LSN", .right), ("last LSN", .right), ("batches", .right), ("state", .left),
            ("stored bytes", .right), ("record bytes", .right), ("ratio", .right),
        ])
        var segments: [JSONValue] = []
        var totals = (batches: 0, control: 0, stored: Int64(0), uncompressed: Int64(0))
        var first: LSN?
        var last = LSN.zero
        for entry in names {
            let file = try SegmentFile.open(at: directory.appending(entry.name), fileSystem: fileSystem, writable: false)
            let scan = try SegmentScanner(file: file).scan()
            let state: String
            switch scan.ending {
            case .footer: state = "sealed"
            case .damagedFooter(let offset): state = "footer damaged at \(offset)"
            case .endOfFile, .zeroFill: state = "active"
            case .damage(let damage): state = damage.isTornTail ? "torn tail at \(damage.offset)" : "DAMAGED at \(damage.offset)"
            }
            let ratio = scan.storedBytes > 0 ? Double(scan.uncompressedBytes) / Double(scan.storedBytes) : 0
            if scan.batchCount > 0 {
                first = first ?? file.baseLSN
                last = scan.lastLSN
            }
            totals.batches += scan.batchCount
            totals.control += scan.controlBatchCount
            totals.stored += scan.storedBytes
            totals.uncompressed += scan.uncompressedBytes
            let lastText = scan.batchCount > 0 ? "\(scan.lastLSN)" : "-"
            table.addRow([
                entry.name, "\(file.baseLSN)", lastText, "\(scan.batchCount)", state, "\(scan.storedBytes)",
                "\(scan.uncompressedBytes)", Format.fixed(ratio, decimals: 2),
            ])
            segments.append(
                [
                    "file": JSONValue(entry.name), "first_lsn": JSONValue(file.baseLSN.rawValue),
                    "last_lsn": scan.batchCount > 0 ? JSONValue(scan.lastLSN.rawValue) : JSONValue.null,
                    "batches": JSONValue(scan.batchCount), "control_batches": JSONValue(scan.controlBatchCount),
                    "state": JSONValue(state),
                    "stored_bytes": JSONValue.int(scan.storedBytes),
                    "record_block_bytes": JSONValue.int(scan.uncompressedBytes),
                    "compression_ratio": JSONValue(ratio), "epoch": JSONValue(scan.lastEpoch.rawValue),
                ])
        }
        let ratio = totals.stored > 0 ? Double(totals.uncompressed) / Double(totals.stored) : 0
        // A damaged history is shown, not fatal: inspecting is how one finds out.
        let history: Result<[EpochStart]?, LogError> = Result { () throws(LogError) in
            try EpochHistoryFile.read(directory: directory, fileSystem: fileSystem)
        }
        if json {
            let document: JSONValue = [
                "directory": JSONValue(directory.string), "segments": JSONValue.array(segments),
                "first_lsn": first.map { JSONValue($0.rawValue) } ?? JSONValue.null,
                "last_lsn": first == nil ? JSONValue.null : JSONValue(last.rawValue),
                "batches": JSONValue(totals.batches), "control_batches": JSONValue(totals.control),
                "epoch_history": Self.json(history),
                "stored_bytes": JSONValue.int(totals.stored),
                "record_block_bytes": JSONValue.int(totals.uncompressed), "compression_ratio": JSONValue(ratio),
            ]
            Output.standard.line(document.rendered(pretty: true))
        } else {
            Output.standard.write(table.rendered())
            Output.standard.line(
                "\(names.count) segment(s), \(totals.batches) batches (\(totals.control) control), \(totals.stored) stored bytes, "
                    + "\(totals.uncompressed) record bytes, compression \(Format.fixed(ratio, decimals: 2))x")
            Output.standard.line("epoch history (epoch@first LSN): \(Self.text(history))")
        }
        return 0
    }

    /// The epoch history as one line: `1@1 3@1201`, `empty`, `none` (no file) or the damage.
    static func text(_ history: Result<[EpochStart]?, LogError>) -> String {
        switch history {
        case .success(nil): "none"
        case .success(let entries?): entries.isEmpty ? "empty" : entries.map { "\($0.epoch)@\($0.firstLSN)" }.joined(separator: " ")
        case .failure(let error): "DAMAGED: \(error)"
        }
    }

    /// The epoch history as JSON: a list of `{epoch, first_lsn}`, `null` without a file, or
    /// `{"error": ...}` when it is damaged.
    static func json(_ history: Result<[EpochStart]?, LogError>) -> JSONValue {
        switch history {
        case .success(nil): JSONValue.null
        case .success(let entries?):
            JSONValue.array(entries.map { ["epoch": JSONValue($0.epoch.rawValue), "first_lsn": JSONValue($0.firstLSN.rawValue)] })
        case .failure(let error): ["error": JSONValue("\(error)")]
        }
    }
}
