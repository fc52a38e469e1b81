public import ShipLogFormat

// Replication messages between the primary and a follower (docs/PROTOCOL.md section 7).

extension Message {
    /// Follower → primary: ship from this LSN on (type 0x10). 8 bytes: `fromLSN` u64.
    public struct StartStream: Hashable, Sendable, MessageBody {
        /// The first LSN wanted (the follower's last LSN + 1); at least 1.
        public var fromLSN: LSN

        public init(fromLSN: LSN) { self.fromLSN = fromLSN }

        static let type = MessageType.startStream

        public func validate() throws(ProtocolError) {
            guard fromLSN >= .first else { throw MessageCheck.invalid(Self.type, "fromLSN", "LSN 0 is never assigned") }
        }

        func write(to writer: inout MessageWriter) { writer.lsn(fromLSN) }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> StartStream {
            StartStream(fromLSN: try reader.lsn("fromLSN"))
        }
    }

    /// Primary → follower: batches exactly as stored (type 0x11; PostgreSQL's XLogData `w`).
    ///
    /// | offset | size | field      |
    /// |-------:|-----:|------------|
    /// |      0 |    8 | writtenLSN |
    /// |      8 |    8 | flushedLSN |
    /// |     16 |    8 | timestamp  |
    /// |     24 |    4 | batchCount |
    /// |     28 |  ... | batches, back to back, each 64 + storedLength bytes |
    public struct Batches: Hashable, Sendable, MessageBody {
        /// The primary's last written LSN when it sent this.
        public var writtenLSN: LSN
        /// The primary's last durable (fdatasynced) LSN when it sent this; at most ``writtenLSN``.
        public var flushedLSN: LSN
        /// Send time, nanoseconds since the Unix epoch, primary's clock.
        public var timestamp: UInt64
        /// 1 ... ``ProtocolLimits/batchesPerFrameMax`` batches, each continuing the one before
        /// (dense LSNs, the chain, non-decreasing epochs), the last ending at or before ``writtenLSN``.
        public var batches: [Batch]

        public init(writtenLSN: LSN, flushedLSN: LSN, timestamp: UInt64, batches: [Batch]) {
            self.writtenLSN = writtenLSN
            self.flushedLSN = flushedLSN
            self.timestamp = timestamp
            self.batches = batches
        }

        static let type = MessageType.batches
        /// Bytes before the first batch.
        public static let fixedByteCount = 28

        public func validate() throws(ProtocolError) {
            guard !batches.isEmpty else { throw MessageCheck.invalid(Self.type, "batchCount", "0 (at least one batch)") }
            guard flushedLSN <= writtenLSN else {
                throw MessageCheck.invalid(Self.type, "flushedLSN", "\(flushedLSN) is beyond writtenLSN \(writtenLSN)")
            }
            try MessageCheck.batchSequence(batches, through: writtenLSN, lastLSNField: "writtenLSN", Self.type)
        }

        var payloadCapacity: Int { Self.fixedByteCount + batches.reduce(0) { $0 + $1.bytes.count } }

        func write(to writer: inout MessageWriter) {
            writer.lsn(writtenLSN)
            writer.lsn(flushedLSN)
            writer.u64(timestamp)
            writer.u32(UInt32(batches.count))
            for batch in batches { writer.raw(batch.bytes) }
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> Batches {
            let written = try reader.lsn("writtenLSN")
            let flushed = try reader.lsn("flushedLSN")
            let timestamp = try reader.u64("timestamp")
            let count = try reader.u32("batchCount")
            guard count >= 1 && count <= ProtocolLimits.batchesPerFrameMax else {
                throw reader.invalid("batchCount", "\(count) is outside 1 ... \(ProtocolLimits.batchesPerFrameMax) (batchesPerFrameMax)")
            }
            let batches = try reader.batches(count: Int(count))
            return Batches(writtenLSN: written, flushedLSN: flushed, timestamp: timestamp, batches: batches)
        }
    }

    /// Primary → follower: the primary's positions when there is nothing to ship (type 0x12;
    /// PostgreSQL's `k`). 25 bytes: writtenLSN u64, flushedLSN u64, timestamp u64, replyRequested u8.
    public struct Keepalive: Hashable, Sendable, MessageBody {
        public var writtenLSN: LSN
        /// At most ``writtenLSN``.
        public var flushedLSN: LSN
        /// Send time, nanoseconds since the Unix epoch, primary's clock.
        public var timestamp: UInt64
        /// The follower must answer with a `FollowerStatus` at once.
        public var replyRequested: Bool

        public init(writtenLSN: LSN, flushedLSN: LSN, timestamp: UInt64, replyRequested: Bool) {
            self.writtenLSN = writtenLSN
            self.flushedLSN = flushedLSN
            self.timestamp = timestamp
            self.replyRequested = replyRequested
        }

        static let type = MessageType.keepalive

        public func validate() throws(ProtocolError) {
            guard flushedLSN <= writtenLSN else {
                throw MessageCheck.invalid(Self.type, "flushedLSN", "\(flushedLSN) is beyond writtenLSN \(writtenLSN)")
            }
        }

        func write(to writer: inout MessageWriter) {
            writer.lsn(writtenLSN)
            writer.lsn(flushedLSN)
            writer.u64(timestamp)
            writer.u8(replyRequested ? 1 : 0)
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> Keepalive {
            let written = try reader.lsn("writtenLSN")
            let flushed = try reader.lsn("flushedLSN")
            let timestamp = try reader.u64("timestamp")
            let reply = try reader.u8("replyRequested")
            guard reply <= 1 else { throw reader.invalid("replyRequested", "\(reply) is neither 0 nor 1") }
            return Keepalive(writtenLSN: written, flushedLSN: flushed, timestamp: timestamp, replyRequested: reply == 1)
        }
    }

    /// Follower → primary: how far the follower has got (type 0x13; PostgreSQL's standby status
    /// update `r`). Also the acknowledgement that opens the primary's send window.
    /// 32 bytes: writtenLSN, flushedLSN, appliedLSN, timestamp, each u64.
    public struct FollowerStatus: Hashable, Sendable, MessageBody {
        /// Every LSN up to this is written to the follower's log (visible to its readers).
        public var writtenLSN: LSN
        /// Every LSN up to this is durable (fdatasynced) on the follower; at most ``writtenLSN``.
        public var flushedLSN: LSN
        /// Every LSN up to this is applied to the follower's state machine; at most ``writtenLSN``.
        public var appliedLSN: LSN
        /// Send time, nanoseconds since the Unix epoch, follower's clock.
        public var timestamp: UInt64

        public init(writtenLSN: LSN, flushedLSN: LSN, appliedLSN: LSN, timestamp: UInt64) {
            self.writtenLSN = writtenLSN
            self.flushedLSN = flushedLSN
            self.appliedLSN = appliedLSN
            self.timestamp = timestamp
        }

        static let type = MessageType.followerStatus

        public func validate() throws(ProtocolError) {
            guard flushedLSN <= writtenLSN else {
                throw MessageCheck.invalid(Self.type, "flushedLSN", "\(flushedLSN) is beyond writtenLSN \(writtenLSN)")
            }
            guard appliedLSN <= writtenLSN else {
                throw MessageCheck.invalid(Self.type, "appliedLSN", "\(appliedLSN) is beyond writtenLSN \(writtenLSN)")
            }
        }

        func write(to writer: inout MessageWriter) {
            writer.lsn(writtenLSN)
            writer.lsn(flushedLSN)
            writer.lsn(appliedLSN)
            writer.u64(timestamp)
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> FollowerStatus {
            FollowerStatus(
                writtenLSN: try reader.lsn("writtenLSN"), flushedLSN: try reader.lsn("flushedLSN"),
                appliedLSN: try reader.lsn("appliedLSN"), timestamp: try reader.u64("timestamp"))
        }
    }

    /// Primary → follower: a piece of a checkpoint file (docs/FORMAT.md section 16), sent in
    /// order to re-seed a follower whose position the primary no longer holds (type 0x14).
    ///
    /// | offset | size | field       |
    /// |-------:|-----:|-------------|
    /// |      0 |    8 | snapshotLSN |
    /// |      8 |    8 | totalBytes  |
    /// |     16 |    8 | offset      |
    /// |     24 |    4 | runningCRC  |
    /// |     28 |    n | data, the rest of the payload, 1 ... 1 MiB |
    public struct SnapshotChunk: Hashable, Sendable, MessageBody {
        /// The checkpoint's LSN (its file name): the state holds every record up to it. At least 1.
        public var snapshotLSN: LSN
        /// The checkpoint file's size, 1 ... ``ProtocolLimits/snapshotBytesMax``.
        public var totalBytes: UInt64
        /// Where ``data`` goes in the file; `offset + data.count <= totalBytes`.
        public var offset: UInt64
        /// CRC-32C of file bytes `0 ..< offset + data.count`: every chunk proves the file so far;
        /// the last chunk's is the whole file's.
        public var runningCRC: UInt32
        /// 1 ... ``ProtocolLimits/snapshotChunkBytesMax`` bytes of the file.
        public var data: [UInt8]

        public init(snapshotLSN: LSN, totalBytes: UInt64, offset: UInt64, runningCRC: UInt32, data: [UInt8]) {
            self.snapshotLSN = snapshotLSN
            self.totalBytes = totalBytes
            self.offset = offset
            self.runningCRC = runningCRC
            self.data = data
        }

        /// Builds the chunk of `file` at `offset`, given the running CRC of the bytes before it.
        public init(snapshotLSN: LSN, totalBytes: UInt64, offset: UInt64, crcBefore: UInt32, data: [UInt8]) {
            self.init(
                snapshotLSN: snapshotLSN, totalBytes: totalBytes, offset: offset,
                runningCRC: CRC32C.checksum(data, continuing: crcBefore), data: data)
        }

        /// Whether ``data`` continues a file whose bytes `0 ..< offset` have CRC-32C `crcBefore`.
        public func continues(crcBefore: UInt32) -> Bool { CRC32C.checksum(data, continuing: crcBefore) == runningCRC }

        /// Whether this is the file's last chunk.
        public var isLast: Bool { offset + UInt64(data.count) == totalBytes }

        static let type = MessageType.snapshotChunk
        public static let fixedByteCount = 28

        public func validate() throws(ProtocolError) {
            guard snapshotLSN >= .first else { throw MessageCheck.invalid(Self.type, "snapshotLSN", "LSN 0 is never a checkpoint") }
            guard totalBytes >= 1 && totalBytes <= ProtocolLimits.snapshotBytesMax else {
                throw MessageCheck.invalid(Self.type, "totalBytes", "\(totalBytes) is outside 1 ... \(ProtocolLimits.snapshotBytesMax) (snapshotBytesMax)")
            }
            guard data.count >= 1 && data.count <= ProtocolLimits.snapshotChunkBytesMax else {
                throw MessageCheck.invalid(Self.type, "data", "\(data.count) bytes is outside 1 ... \(ProtocolLimits.snapshotChunkBytesMax) (snapshotChunkBytesMax)")
            }
            guard offset <= totalBytes && UInt64(data.count) <= totalBytes - offset else {
                throw MessageCheck.invalid(Self.type, "offset", "\(offset) + \(data.count) bytes runs past totalBytes \(totalBytes)")
            }
        }

        var payloadCapacity: Int { Self.fixedByteCount + data.count }

        func write(to writer: inout MessageWriter) {
            writer.lsn(snapshotLSN)
            writer.u64(totalBytes)
            writer.u64(offset)
            writer.u32(runningCRC)
            writer.raw(data)
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> SnapshotChunk {
            let lsn = try reader.lsn("snapshotLSN")
            let total = try reader.u64("totalBytes")
            let offset = try reader.u64("offset")
            let crc = try reader.u32("runningCRC")
            guard reader.remaining <= ProtocolLimits.snapshotChunkBytesMax else {
                throw reader.invalid("data", "\(reader.remaining) bytes exceed snapshotChunkBytesMax (\(ProtocolLimits.snapshotChunkBytesMax))", at: reader.position)
            }
            let data = try reader.rest("data")
            return SnapshotChunk(snapshotLSN: lsn, totalBytes: total, offset: offset, runningCRC: crc, data: data)
        }
    }

    /// Follower → primary: the snapshot's bytes `0 ..< bytesStored` are stored (type 0x15).
    /// Acknowledges snapshot bytes for the send window. 16 bytes: snapshotLSN u64, bytesStored u64.
    public struct SnapshotAck: Hashable, Sendable, MessageBody {
        /// At least 1.
        public var snapshotLSN: LSN
        /// At most ``ProtocolLimits/snapshotBytesMax``.
        public var bytesStored: UInt64

        public init(snapshotLSN: LSN, bytesStored: UInt64) {
            self.snapshotLSN = snapshotLSN
            self.bytesStored = bytesStored
        }

        static let type = MessageType.snapshotAck

        public func validate() throws(ProtocolError) {
            guard snapshotLSN >= .first else { throw MessageCheck.invalid(Self.type, "snapshotLSN", "LSN 0 is never a checkpoint") }
            guard bytesStored <= ProtocolLimits.snapshotBytesMax else {
                throw MessageCheck.invalid(Self.type, "bytesStored", "\(bytesStored) exceeds snapshotBytesMax (\(ProtocolLimits.snapshotBytesMax))")
            }
        }

        func write(to writer: inout MessageWriter) {
            writer.lsn(snapshotLSN)
            writer.u64(bytesStored)
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> SnapshotAck {
            SnapshotAck(snapshotLSN: try reader.lsn("snapshotLSN"), bytesStored: try reader.u64("bytesStored"))
        }
    }
}
