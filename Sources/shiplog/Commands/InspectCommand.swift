import ShipLog

/// `shiplog inspect`: segments, LSN ranges, batches, sizes and compression, read-only.
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
        var totals = (batches: 0, stored: Int64(0), uncompressed: Int64(0))
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
                    "batches": JSONValue(scan.batchCount), "state": JSONValue(state),
                    "stored_bytes": JSONValue.int(scan.storedBytes),
                    "record_block_bytes": JSONValue.int(scan.uncompressedBytes),
                    "compression_ratio": JSONValue(ratio), "epoch": JSONValue(scan.lastEpoch.rawValue),
                ])
        }
        let ratio = totals.stored > 0 ? Double(totals.uncompressed) / Double(totals.stored) : 0
        if json {
            let document: JSONValue = [
                "directory": JSONValue(directory.string), "segments": JSONValue.array(segments),
                "first_lsn": first.map { JSONValue($0.rawValue) } ?? JSONValue.null,
                "last_lsn": first == nil ? JSONValue.null : JSONValue(last.rawValue),
                "batches": JSONValue(totals.batches), "stored_bytes": JSONValue.int(totals.stored),
                "record_block_bytes": JSONValue.int(totals.uncompressed), "compression_ratio": JSONValue(ratio),
            ]
            Output.standard.line(document.rendered(pretty: true))
        } else {
            Output.standard.write(table.rendered())
            Output.standard.line(
                "\(names.count) segment(s), \(totals.batches) batches, \(totals.stored) stored bytes, "
                    + "\(totals.uncompressed) record bytes, compression \(Format.fixed(ratio, decimals: 2))x")
        }
        return 0
    }
}
