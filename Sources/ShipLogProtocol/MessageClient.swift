public import ShipLogFormat

// Client requests and their responses (docs/PROTOCOL.md section 8).

extension Message {
    /// Client → primary: records to append as one batch (type 0x20).
    ///
    /// | offset | size | field           |
    /// |-------:|-----:|-----------------|
    /// |      0 |    8 | requestID       |
    /// |      8 |    4 | recordCount     |
    /// |     12 |    4 | timeoutMillis   |
    /// |     16 |    1 | commitKind      |
    /// |     17 |    1 | commitFollowers |
    /// |     18 |    n | recordBlock, the rest of the payload (docs/FORMAT.md section 7) |
    public struct AppendRequest: Hashable, Sendable, MessageBody {
        /// Chosen by the client; echoed in the response.
        public var requestID: UInt64
        /// The level to wait for; `nil` asks for the primary's default (commitKind 5).
        public var commitLevel: CommitLevel?
        /// How long the primary waits for the commit level before answering `commitTimedOut`,
        /// in milliseconds; 0: the primary's default. At most ``ProtocolLimits/requestWaitMillisMax``.
        public var timeoutMillis: UInt32
        /// The records, each a LEB128 length and its bytes (docs/FORMAT.md section 7).
        public private(set) var recordBlock: [UInt8]
        /// Records in ``recordBlock``, 1 ... `FormatLimits.recordsPerBatchMax`.
        public private(set) var recordCount: Int

        /// A request appending `records` (each at most `FormatLimits.recordBytesMax` bytes).
        public init(requestID: UInt64, commitLevel: CommitLevel?, timeoutMillis: UInt32 = 0, records: [[UInt8]]) {
            var writer = MessageWriter(payloadCapacity: records.reduce(0) { $0 + $1.count + 5 })
            for record in records {
                writer.varint(UInt64(record.count))
                writer.raw(record)
            }
            self.init(
                requestID: requestID, commitLevel: commitLevel, timeoutMillis: timeoutMillis,
                recordBlock: Array(writer.bytes[Frame.headerByteCount...]), recordCount: records.count)
        }

        /// A request carrying a record block built elsewhere (checked by ``validate()``).
        public init(requestID: UInt64, commitLevel: CommitLevel?, timeoutMillis: UInt32 = 0, recordBlock: [UInt8], recordCount: Int) {
            self.requestID = requestID
            self.commitLevel = commitLevel
            self.timeoutMillis = timeoutMillis
            self.recordBlock = recordBlock
            self.recordCount = recordCount
        }

        /// Calls `body` with each record, in order. On a request that ``validate()`` rejects, stops
        /// at the first malformed record.
        public func forEachRecord(_ body: (ArraySlice<UInt8>) throws -> Void) rethrows {
            var offset = 0
            for _ in 0..<max(0, recordCount) {
                guard let (length, prefix) = MessageRecordBlock.varint(recordBlock, at: offset),
                    Int(length) <= recordBlock.count - offset - prefix
                else { return }
                offset += prefix
                try body(recordBlock[offset..<offset + Int(length)])
                offset += Int(length)
            }
        }

        /// The records, copied out (see ``forEachRecord(_:)``).
        public var records: [[UInt8]] {
            var result: [[UInt8]] = []
            result.reserveCapacity(recordCount)
            forEachRecord { result.append(Array($0)) }
            return result
        }

        static let type = MessageType.appendRequest
        public static let fixedByteCount = 18

        public func validate() throws(ProtocolError) {
            guard recordCount >= 1 && recordCount <= Int(FormatLimits.recordsPerBatchMax) else {
                throw MessageCheck.invalid(Self.type, "recordCount", "\(recordCount) is outside 1 ... \(FormatLimits.recordsPerBatchMax) (recordsPerBatchMax)")
            }
            try MessageCheck.wait(timeoutMillis, Self.type, "timeoutMillis")
            if let commitLevel, !commitLevel.isValid {
                throw MessageCheck.invalid(Self.type, "commitFollowers", "\(commitLevel): follower count outside 1 ... \(ProtocolLimits.commitFollowersMax)")
            }
            guard recordBlock.count <= ProtocolLimits.appendRecordBlockBytesMax else {
                throw MessageCheck.invalid(Self.type, "recordBlock", "\(recordBlock.count) bytes exceed appendRecordBlockBytesMax (\(ProtocolLimits.appendRecordBlockBytesMax))")
            }
            if let problem = MessageRecordBlock.problem(recordBlock, recordCount: recordCount) {
                throw MessageCheck.invalid(Self.type, "recordBlock", problem)
            }
        }

        var payloadCapacity: Int { Self.fixedByteCount + recordBlock.count }

        func write(to writer: inout MessageWriter) {
            writer.u64(requestID)
            writer.u32(UInt32(recordCount))
            writer.u32(timeoutMillis)
            let (kind, followers) = commitLevel?.wire ?? (CommitLevel.primaryDefaultKind, 0)
            writer.u8(kind)
            writer.u8(UInt8(followers))
            writer.raw(recordBlock)
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> AppendRequest {
            let requestID = try reader.u64("requestID")
            let count = try reader.u32("recordCount")
            guard count >= 1 && count <= FormatLimits.recordsPerBatchMax else {
                throw reader.invalid("recordCount", "\(count) is outside 1 ... \(FormatLimits.recordsPerBatchMax) (recordsPerBatchMax)")
            }
            let timeout = try reader.u32("timeoutMillis")
            let kind = try reader.u8("commitKind")
            let followers = try reader.u8("commitFollowers")
            let level: CommitLevel?
            if kind == CommitLevel.primaryDefaultKind && followers == 0 {
                level = nil
            } else {
                guard let named = CommitLevel(kind: kind, followers: followers) else {
                    throw reader.invalid("commitKind", "kind \(kind) with \(followers) followers is no commit level (0 local, 1 write, 2 flush, 3 apply with 1 ... 255 followers; 4 all; 5 the primary's default)")
                }
                level = named
            }
            guard reader.remaining <= ProtocolLimits.appendRecordBlockBytesMax else {
                throw reader.invalid("recordBlock", "\(reader.remaining) bytes exceed appendRecordBlockBytesMax (\(ProtocolLimits.appendRecordBlockBytesMax))", at: reader.position)
            }
            let block = try reader.rest("recordBlock")
            return AppendRequest(requestID: requestID, commitLevel: level, timeoutMillis: timeout, recordBlock: block, recordCount: Int(count))
        }
    }

    /// Primary → client: the outcome of an `AppendRequest` (type 0x21).
    ///
    /// | offset | size | field     |
    /// |-------:|-----:|-----------|
    /// |      0 |    8 | requestID |
    /// |      8 |    1 | outcome: 0 appended, 1 failed, 2 appendedDegraded |
    /// |      9 |   24 | appended, appendedDegraded: firstLSN u64, lastLSN u64, epoch u64 |
    /// |      9 |  ... | failed: a Failure (code, detail, text) |
    public struct AppendResponse: Hashable, Sendable, MessageBody {
        public var requestID: UInt64
        public var outcome: Outcome

        public enum Outcome: Hashable, Sendable {
            /// The records got these LSNs, in this epoch, and reached the commit level asked for.
            case appended(LSNRange, epoch: Epoch)
            case failed(Failure)
            /// The records got these LSNs, in this epoch, and are durable on the primary, but the
            /// commit level asked for was **not** confirmed: the primary's commit timeout policy is
            /// "degrade", so it answered anyway and replicates them asynchronously. They may or may
            /// not survive a failover (docs/PROTOCOL.md section 8.2).
            case appendedDegraded(LSNRange, epoch: Epoch)
        }

        public init(requestID: UInt64, outcome: Outcome) {
            self.requestID = requestID
            self.outcome = outcome
        }

        static let type = MessageType.appendResponse

        public func validate() throws(ProtocolError) {
            switch outcome {
            case .appended(let range, let epoch), .appendedDegraded(let range, let epoch):
                guard range.first >= .first else { throw MessageCheck.invalid(Self.type, "firstLSN", "LSN 0 is never assigned") }
                guard epoch >= .initial else { throw MessageCheck.invalid(Self.type, "epoch", "epoch 0 never writes") }
            case .failed(let failure):
                try failure.validate(as: Self.type)
            }
        }

        var payloadCapacity: Int { 64 + 1024 }

        func write(to writer: inout MessageWriter) {
            writer.u64(requestID)
            switch outcome {
            case .appended(let range, let epoch):
                writer.u8(0)
                Self.write(range, epoch: epoch, to: &writer)
            case .failed(let failure):
                writer.u8(1)
                failure.write(to: &writer)
            case .appendedDegraded(let range, let epoch):
                writer.u8(2)
                Self.write(range, epoch: epoch, to: &writer)
            }
        }

        /// The 24 bytes of `appended` and `appendedDegraded`: firstLSN, lastLSN, epoch.
        private static func write(_ range: LSNRange, epoch: Epoch, to writer: inout MessageWriter) {
            writer.lsn(range.first)
            writer.lsn(range.last)
            writer.epoch(epoch)
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> AppendResponse {
            let requestID = try reader.u64("requestID")
            switch try reader.u8("outcome") {
            case 0:
                let (range, epoch) = try readAppended(from: &reader)
                return AppendResponse(requestID: requestID, outcome: .appended(range, epoch: epoch))
            case 1:
                return AppendResponse(requestID: requestID, outcome: .failed(try Failure.read(from: &reader)))
            case 2:
                let (range, epoch) = try readAppended(from: &reader)
                return AppendResponse(requestID: requestID, outcome: .appendedDegraded(range, epoch: epoch))
            case let other:
                throw reader.invalid("outcome", "\(other) is not 0 (appended), 1 (failed) or 2 (appendedDegraded)")
            }
        }

        /// The 24 bytes of `appended` and `appendedDegraded`; firstLSN <= lastLSN.
        private static func readAppended(from reader: inout MessageReader) throws(ProtocolError) -> (LSNRange, Epoch) {
            let first = try reader.lsn("firstLSN")
            let last = try reader.lsn("lastLSN")
            guard first <= last else { throw reader.invalid("lastLSN", "\(last) is before firstLSN \(first)") }
            return (LSNRange(first: first, last: last), try reader.epoch("epoch"))
        }
    }

    /// Client → any node: read batches from an LSN (type 0x22).
    /// 24 bytes: requestID u64, fromLSN u64, maxBytes u32, waitMillis u32.
    public struct ReadRequest: Hashable, Sendable, MessageBody {
        public var requestID: UInt64
        /// The first LSN wanted; at least 1. The response starts with the batch holding it.
        public var fromLSN: LSN
        /// A soft limit on the batch bytes returned (at least one batch is returned when there is
        /// one, whatever its size); 0: the responder's default. Never more than one frame.
        public var maxBytes: UInt32
        /// When nothing at or after ``fromLSN`` exists yet, how long to wait for it before
        /// answering with no batches, in milliseconds. At most ``ProtocolLimits/requestWaitMillisMax``.
        public var waitMillis: UInt32

        public init(requestID: UInt64, fromLSN: LSN, maxBytes: UInt32 = 0, waitMillis: UInt32 = 0) {
            self.requestID = requestID
            self.fromLSN = fromLSN
            self.maxBytes = maxBytes
            self.waitMillis = waitMillis
        }

        static let type = MessageType.readRequest

        public func validate() throws(ProtocolError) {
            guard fromLSN >= .first else { throw MessageCheck.invalid(Self.type, "fromLSN", "LSN 0 is never assigned") }
            try MessageCheck.wait(waitMillis, Self.type, "waitMillis")
        }

        func write(to writer: inout MessageWriter) {
            writer.u64(requestID)
            writer.lsn(fromLSN)
            writer.u32(maxBytes)
            writer.u32(waitMillis)
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> ReadRequest {
            ReadRequest(
                requestID: try reader.u64("requestID"), fromLSN: try reader.lsn("fromLSN"), maxBytes: try reader.u32("maxBytes"),
                waitMillis: try reader.u32("waitMillis"))
        }
    }

    /// Node → client: the answer to a `ReadRequest` (type 0x23).
    ///
    /// | offset | size | field      |
    /// |-------:|-----:|------------|
    /// |      0 |    8 | requestID  |
    /// |      8 |    1 | outcome: 0 batches, 1 failed |
    /// |      9 |    8 | batches: lastLSN |
    /// |     17 |    4 | batches: batchCount, 0 ... 65,536 |
    /// |     21 |  ... | batches: the batches, back to back |
    /// |      9 |  ... | failed: a Failure (code, detail, text) |
    public struct ReadResponse: Hashable, Sendable, MessageBody {
        public var requestID: UInt64
        public var outcome: Outcome

        public enum Outcome: Hashable, Sendable {
            /// `lastLSN`: the responder's last readable LSN; the batches (possibly none) continue
            /// one another and end at or before it.
            case batches(lastLSN: LSN, [Batch])
            case failed(Failure)
        }

        public init(requestID: UInt64, outcome: Outcome) {
            self.requestID = requestID
            self.outcome = outcome
        }

        static let type = MessageType.readResponse

        public func validate() throws(ProtocolError) {
            switch outcome {
            case .batches(let lastLSN, let batches):
                try MessageCheck.batchSequence(batches, through: lastLSN, lastLSNField: "lastLSN", Self.type)
            case .failed(let failure):
                try failure.validate(as: Self.type)
            }
        }

        var payloadCapacity: Int {
            switch outcome {
            case .batches(_, let batches): 21 + batches.reduce(0) { $0 + $1.bytes.count }
            case .failed: 64 + 1024
            }
        }

        func write(to writer: inout MessageWriter) {
            writer.u64(requestID)
            switch outcome {
            case .batches(let lastLSN, let batches):
                writer.u8(0)
                writer.lsn(lastLSN)
                writer.u32(UInt32(batches.count))
                for batch in batches { writer.raw(batch.bytes) }
            case .failed(let failure):
                writer.u8(1)
                failure.write(to: &writer)
            }
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> ReadResponse {
            let requestID = try reader.u64("requestID")
            switch try reader.u8("outcome") {
            case 0:
                let lastLSN = try reader.lsn("lastLSN")
                let count = try reader.u32("batchCount")
                guard count <= ProtocolLimits.batchesPerFrameMax else {
                    throw reader.invalid("batchCount", "\(count) exceeds batchesPerFrameMax (\(ProtocolLimits.batchesPerFrameMax))")
                }
                let batches = try reader.batches(count: Int(count))
                return ReadResponse(requestID: requestID, outcome: .batches(lastLSN: lastLSN, batches))
            case 1:
                return ReadResponse(requestID: requestID, outcome: .failed(try Failure.read(from: &reader)))
            case let other:
                throw reader.invalid("outcome", "\(other) is neither 0 (batches) nor 1 (failed)")
            }
        }
    }

    /// Client → any node: ask for its status (type 0x24). 8 bytes: requestID u64.
    public struct StatusRequest: Hashable, Sendable, MessageBody {
        public var requestID: UInt64

        public init(requestID: UInt64) { self.requestID = requestID }

        public func validate() throws(ProtocolError) {}

        func write(to writer: inout MessageWriter) { writer.u64(requestID) }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> StatusRequest {
            StatusRequest(requestID: try reader.u64("requestID"))
        }
    }

    /// Node → client: its status as a JSON text (type 0x25). requestID u64, then the JSON, the
    /// rest of the payload: UTF-8, at most ``ProtocolLimits/statusJSONBytesMax`` bytes.
    /// The codec checks the UTF-8 and the length, not the JSON grammar.
    public struct StatusResponse: Hashable, Sendable, MessageBody {
        public var requestID: UInt64
        public var json: String

        public init(requestID: UInt64, json: String) {
            self.requestID = requestID
            self.json = json
        }

        static let type = MessageType.statusResponse

        public func validate() throws(ProtocolError) {
            let count = json.utf8.count
            guard count <= ProtocolLimits.statusJSONBytesMax else {
                throw MessageCheck.invalid(Self.type, "json", "\(count) bytes exceed statusJSONBytesMax (\(ProtocolLimits.statusJSONBytesMax))")
            }
        }

        var payloadCapacity: Int { 8 + json.utf8.count }

        func write(to writer: inout MessageWriter) {
            writer.u64(requestID)
            writer.raw(Array(json.utf8))
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> StatusResponse {
            let requestID = try reader.u64("requestID")
            guard reader.remaining <= ProtocolLimits.statusJSONBytesMax else {
                throw reader.invalid("json", "\(reader.remaining) bytes exceed statusJSONBytesMax (\(ProtocolLimits.statusJSONBytesMax))", at: reader.position)
            }
            let start = reader.position
            let bytes = try reader.rest("json")
            guard let json = String(validating: bytes, as: UTF8.self) else {
                throw reader.invalid("json", "is not valid UTF-8", at: start)
            }
            return StatusResponse(requestID: requestID, json: json)
        }
    }
}

/// The record block rules of docs/FORMAT.md section 7, for blocks received from clients.
enum MessageRecordBlock {
    /// Unsigned LEB128 of at most 5 bytes fitting 32 bits; `nil` when malformed or cut short.
    static func varint(_ bytes: [UInt8], at offset: Int) -> (value: UInt32, length: Int)? {
        var result: UInt32 = 0
        var shift: UInt32 = 0
        var i = offset
        while i < bytes.count {
            let byte = bytes[i]
            if shift == 28 && byte > 0x0F { return nil }  // would overflow 32 bits
            result |= UInt32(byte & 0x7F) << shift
            i += 1
            if byte & 0x80 == 0 { return (result, i - offset) }
            shift += 7
            if shift > 28 { return nil }
        }
        return nil
    }

    /// Why `block` is not exactly `recordCount` records, or `nil` when it is.
    static func problem(_ block: [UInt8], recordCount: Int) -> String? {
        var offset = 0
        for index in 0..<recordCount {
            guard let (length, prefix) = varint(block, at: offset) else {
                return "record \(index): bad length prefix at block offset \(offset)"
            }
            guard Int(length) <= FormatLimits.recordBytesMax else {
                return "record \(index): length \(length) exceeds recordBytesMax (\(FormatLimits.recordBytesMax))"
            }
            guard offset + prefix + Int(length) <= block.count else {
                return "record \(index): length \(length) at block offset \(offset) runs past the block (\(block.count) bytes)"
            }
            offset += prefix + Int(length)
        }
        return offset == block.count ? nil : "\(block.count - offset) bytes after record \(recordCount - 1)"
    }
}
