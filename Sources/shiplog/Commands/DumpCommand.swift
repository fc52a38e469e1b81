import ShipLog

/// `shiplog dump`: every batch's header fields and records, for humans (or one JSON object
/// per batch). Read-only; stops with an error at damage, naming file and offset. A control
/// batch shows its decoded control records (`control epochStart epoch=3 previous=2
/// previousLast=1200`) instead of record bytes.
struct DumpCommand {
    /// Record bytes shown per record in the text form.
    static let previewBytes = 80

    let directory: FilePath
    let from: LSN
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        directory = FilePath(try arguments.requiredString("dir"))
        from = LSN(try arguments.uint64("from") ?? 1)
        json = arguments.flag("json")
    }

    func run() throws -> Int32 {
        guard PosixFileSystem().fileExists(at: directory) else { throw CommandError("no log at \(directory)") }
        let reader = LogDirectoryReader(directory: directory, from: from)
        let out = Output.standard
        while let batch = try reader.next() {
            let header = batch.header
            if header.isControl {
                try dumpControl(batch, to: out)
                continue
            }
            let records = try batch.records()
            if json {
                var recordList: [JSONValue] = []
                for record in records { recordList.append(JSONValue(String(decoding: record, as: UTF8.self))) }
                let object: JSONValue = [
                    "base_lsn": JSONValue(header.baseLSN.rawValue), "last_lsn": JSONValue(header.lsnRange.last.rawValue),
                    "records": JSONValue(Int(header.recordCount)), "epoch": JSONValue(header.epoch.rawValue),
                    "codec": JSONValue(header.codec.description), "stored_bytes": JSONValue(Int(header.storedLength)),
                    "uncompressed_bytes": JSONValue(Int(header.uncompressedLength)),
                    "batch_crc": JSONValue(hex(header.batchCRC)), "payload_crc": JSONValue(hex(header.payloadCRC)),
                    "previous_batch_crc": JSONValue(hex(header.previousBatchCRC)),
                    "synced_through": JSONValue(header.syncedThrough.rawValue), "timestamp_ns": JSONValue(header.timestamp),
                    "record_values": JSONValue.array(recordList),
                ]
                out.line(object.rendered())
                continue
            }
            out.line(
                "batch LSN \(header.lsnRange) epoch \(header.epoch) codec \(header.codec) "
                    + "\(header.storedLength)/\(header.uncompressedLength) bytes stored/raw "
                    + "crc \(hex(header.batchCRC)) payload \(hex(header.payloadCRC)) prev \(hex(header.previousBatchCRC)) "
                    + "synced-through \(header.syncedThrough) time \(header.timestamp)")
            var lsn = header.baseLSN
            for record in records {
                let shown = String(decoding: record.prefix(Self.previewBytes), as: UTF8.self)
                    .map { $0.isASCII && ($0.isLetter || $0.isNumber || $0.isPunctuation || $0.isSymbol || $0 == " ") ? String($0) : "." }
                    .joined()
                let more = record.count > Self.previewBytes ? " … (\(record.count) bytes)" : ""
                out.line("  \(lsn)\t\(shown)\(more)")
                lsn = lsn.advanced(by: 1)
            }
        }
        return 0
    }

    /// A control batch: its header fields, then one line (or JSON value) per control record.
    func dumpControl(_ batch: Batch, to out: Output) throws {
        let header = batch.header
        let records: [ControlRecord]
        do { records = try batch.controlRecords() } catch {
            throw CommandError("control batch LSN \(header.lsnRange): \(error)")
        }
        if json {
            let object: JSONValue = [
                "base_lsn": JSONValue(header.baseLSN.rawValue), "last_lsn": JSONValue(header.lsnRange.last.rawValue),
                "records": JSONValue(Int(header.recordCount)), "epoch": JSONValue(header.epoch.rawValue),
                "control": JSONValue.bool(true), "stored_bytes": JSONValue(Int(header.storedLength)),
                "batch_crc": JSONValue(hex(header.batchCRC)), "payload_crc": JSONValue(hex(header.payloadCRC)),
                "previous_batch_crc": JSONValue(hex(header.previousBatchCRC)),
                "synced_through": JSONValue(header.syncedThrough.rawValue), "timestamp_ns": JSONValue(header.timestamp),
                "control_records": JSONValue.array(records.map { JSONValue($0.description) }),
            ]
            out.line(object.rendered())
            return
        }
        out.line(
            "control batch LSN \(header.lsnRange) epoch \(header.epoch) \(header.storedLength) bytes "
                + "crc \(hex(header.batchCRC)) payload \(hex(header.payloadCRC)) prev \(hex(header.previousBatchCRC)) "
                + "synced-through \(header.syncedThrough) time \(header.timestamp)")
        var lsn = header.baseLSN
        for record in records {
            out.line("  \(lsn)\tcontrol \(record)")
            lsn = lsn.advanced(by: 1)
        }
    }

    func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }
}
