public import ShipLogFormat

// Handshake and connection messages (docs/PROTOCOL.md section 6): Hello, HelloAck, AuthProof,
// and the Failure carried by Refuse and Error (and by failed responses).

extension Message {
    /// What a node is on a connection. Part of the authentication proof's input (by ``name``).
    public enum Role: UInt8, Sendable, CaseIterable, CustomStringConvertible {
        /// The node that accepts writes and ships its log.
        case primary = 1
        /// A node that receives the primary's log.
        case follower = 2
        /// An application: appends, reads, asks for status. Holds no log.
        case client = 3

        /// `primary`, `follower` or `client`: the ASCII name used in the authentication proof.
        public var name: String {
            switch self {
            case .primary: "primary"
            case .follower: "follower"
            case .client: "client"
            }
        }

        public var description: String { name }

        static func read(_ field: String, from reader: inout MessageReader) throws(ProtocolError) -> Role {
            let code = try reader.u8(field)
            guard let role = Role(rawValue: code) else {
                throw reader.invalid(field, "unknown role \(code) (1 primary, 2 follower, 3 client)")
            }
            return role
        }
    }

    /// Initiator → responder, the first frame of every connection (type 0x01).
    ///
    /// | offset | size | field          |
    /// |-------:|-----:|----------------|
    /// |      0 |    8 | epoch          |
    /// |      8 |    8 | lastLSN        |
    /// |     16 |   32 | nonce          |
    /// |     48 |    4 | lastBatchCRC   |
    /// |     52 |    2 | versionMin     |
    /// |     54 |    2 | versionMax     |
    /// |     56 |    1 | role           |
    /// |     57 |  1+c | clusterID      |
    /// |  58+c  |  1+n | nodeID         |
    /// | 59+c+n |  ... | extension, ignored by version 1 |
    public struct Hello: Hashable, Sendable, MessageBody {
        /// The protocol versions the initiator speaks; `lowerBound >= 1`.
        public var versions: ClosedRange<UInt16>
        /// The cluster the initiator belongs to; 1 ... 64 bytes of UTF-8.
        public var clusterID: String
        /// The initiator's node id; 1 ... 64 bytes of UTF-8.
        public var nodeID: String
        public var role: Role
        /// The largest epoch in the initiator's log (0 for a client or an empty log).
        public var epoch: Epoch
        /// The last LSN of the initiator's log (0: empty).
        public var lastLSN: LSN
        /// The `batchCRC` of the batch ending at ``lastLSN`` (0 when the log is empty).
        public var lastBatchCRC: UInt32
        /// The initiator's fresh random challenge, 32 bytes.
        public var nonce: [UInt8]

        public init(
            versions: ClosedRange<UInt16> = ProtocolVersion.supported, clusterID: String, nodeID: String, role: Role,
            epoch: Epoch, lastLSN: LSN, lastBatchCRC: UInt32, nonce: [UInt8]
        ) {
            self.versions = versions
            self.clusterID = clusterID
            self.nodeID = nodeID
            self.role = role
            self.epoch = epoch
            self.lastLSN = lastLSN
            self.lastBatchCRC = lastBatchCRC
            self.nonce = nonce
        }

        static let type = MessageType.hello

        public func validate() throws(ProtocolError) {
            guard versions.lowerBound >= 1 else {
                throw MessageCheck.invalid(Self.type, "versionMin", "version 0 does not exist")
            }
            try MessageCheck.id(clusterID, Self.type, "clusterID")
            try MessageCheck.id(nodeID, Self.type, "nodeID")
            try MessageCheck.fixed(nonce, size: ProtocolLimits.authNonceBytes, Self.type, "nonce")
            try MessagePosition.check(epoch: epoch, lastLSN: lastLSN, lastBatchCRC: lastBatchCRC, Self.type)
        }

        func write(to writer: inout MessageWriter) {
            writer.epoch(epoch)
            writer.lsn(lastLSN)
            writer.raw(nonce)
            writer.u32(lastBatchCRC)
            writer.u16(versions.lowerBound)
            writer.u16(versions.upperBound)
            writer.u8(role.rawValue)
            writer.shortString(clusterID)
            writer.shortString(nodeID)
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> Hello {
            let epoch = try reader.epoch("epoch")
            let lastLSN = try reader.lsn("lastLSN")
            let nonce = try reader.bytes("nonce", count: ProtocolLimits.authNonceBytes)
            let lastBatchCRC = try reader.u32("lastBatchCRC")
            let low = try reader.u16("versionMin")
            let high = try reader.u16("versionMax")
            guard low <= high else { throw reader.invalid("versionMax", "\(high) is below versionMin \(low)") }
            let role = try Role.read("role", from: &reader)
            let idRange = 1...ProtocolLimits.idBytesMax
            let clusterID = try reader.shortString("clusterID", bytes: idRange)
            let nodeID = try reader.shortString("nodeID", bytes: idRange)
            _ = try reader.rest("extension")  // room for later protocol versions; ignored
            return Hello(
                versions: low...high, clusterID: clusterID, nodeID: nodeID, role: role, epoch: epoch,
                lastLSN: lastLSN, lastBatchCRC: lastBatchCRC, nonce: nonce)
        }
    }

    /// Responder → initiator, accepting the Hello (type 0x02).
    ///
    /// | offset | size | field        |
    /// |-------:|-----:|--------------|
    /// |      0 |    8 | epoch        |
    /// |      8 |    8 | lastLSN      |
    /// |     16 |   32 | nonce        |
    /// |     48 |    4 | lastBatchCRC |
    /// |     52 |    2 | version      |
    /// |     54 |    1 | role         |
    /// |     55 |  1+n | nodeID       |
    public struct HelloAck: Hashable, Sendable, MessageBody {
        /// The protocol version chosen: the highest both sides speak.
        public var version: UInt16
        /// The responder's node id; 1 ... 64 bytes of UTF-8.
        public var nodeID: String
        public var role: Role
        /// The responder's current epoch.
        public var epoch: Epoch
        /// The last LSN of the responder's log (0: empty).
        public var lastLSN: LSN
        /// The `batchCRC` of the batch ending at ``lastLSN`` (0 when the log is empty).
        public var lastBatchCRC: UInt32
        /// The responder's fresh random challenge, 32 bytes.
        public var nonce: [UInt8]

        public init(version: UInt16, nodeID: String, role: Role, epoch: Epoch, lastLSN: LSN, lastBatchCRC: UInt32, nonce: [UInt8]) {
            self.version = version
            self.nodeID = nodeID
            self.role = role
            self.epoch = epoch
            self.lastLSN = lastLSN
            self.lastBatchCRC = lastBatchCRC
            self.nonce = nonce
        }

        static let type = MessageType.helloAck

        public func validate() throws(ProtocolError) {
            guard version >= 1 else { throw MessageCheck.invalid(Self.type, "version", "version 0 does not exist") }
            try MessageCheck.id(nodeID, Self.type, "nodeID")
            try MessageCheck.fixed(nonce, size: ProtocolLimits.authNonceBytes, Self.type, "nonce")
            try MessagePosition.check(epoch: epoch, lastLSN: lastLSN, lastBatchCRC: lastBatchCRC, Self.type)
        }

        func write(to writer: inout MessageWriter) {
            writer.epoch(epoch)
            writer.lsn(lastLSN)
            writer.raw(nonce)
            writer.u32(lastBatchCRC)
            writer.u16(version)
            writer.u8(role.rawValue)
            writer.shortString(nodeID)
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> HelloAck {
            let epoch = try reader.epoch("epoch")
            let lastLSN = try reader.lsn("lastLSN")
            let nonce = try reader.bytes("nonce", count: ProtocolLimits.authNonceBytes)
            let lastBatchCRC = try reader.u32("lastBatchCRC")
            let version = try reader.u16("version")
            let role = try Role.read("role", from: &reader)
            let nodeID = try reader.shortString("nodeID", bytes: 1...ProtocolLimits.idBytesMax)
            return HelloAck(
                version: version, nodeID: nodeID, role: role, epoch: epoch, lastLSN: lastLSN, lastBatchCRC: lastBatchCRC,
                nonce: nonce)
        }
    }

    /// Either side: proof of the shared secret (type 0x04). The payload is exactly the 32-byte
    /// HMAC-SHA256 computed by `Authentication` (docs/PROTOCOL.md section 6.3).
    public struct AuthProof: Hashable, Sendable, MessageBody {
        public var proof: [UInt8]

        public init(proof: [UInt8]) { self.proof = proof }

        static let type = MessageType.authProof

        public func validate() throws(ProtocolError) {
            try MessageCheck.fixed(proof, size: ProtocolLimits.authProofBytes, Self.type, "proof")
        }

        func write(to writer: inout MessageWriter) { writer.raw(proof) }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> AuthProof {
            AuthProof(proof: try reader.bytes("proof", count: ProtocolLimits.authProofBytes))
        }
    }

    /// Why a connection is refused (`Refuse`), why it is being closed (`Error`), or why a
    /// request failed (`AppendResponse`, `ReadResponse`, `QueryResponse`).
    ///
    /// | offset | size | field      |
    /// |-------:|-----:|------------|
    /// |      0 |    2 | code       |
    /// |      2 |    d | detail, by code (docs/PROTOCOL.md section 6.5) |
    /// |    2+d |    2 | textLength |
    /// |    4+d |    t | text, UTF-8, at most 1 KiB |
    public struct Failure: Hashable, Sendable, MessageBody, CustomStringConvertible {
        public var reason: Reason
        /// For people: what happened. At most ``ProtocolLimits/reasonBytesMax`` bytes of UTF-8.
        public var text: String

        public init(_ reason: Reason, text: String = "") {
            self.reason = reason
            self.text = text
        }

        public var description: String { text.isEmpty ? "\(reason)" : "\(reason): \(text)" }

        /// The failure codes (u16) and their details.
        public enum Reason: Hashable, Sendable, CustomStringConvertible {
            /// 1: no protocol version in common; the sender speaks `min ... max`.
            case unsupportedVersion(min: UInt16, max: UInt16)
            /// 2: the Hello's cluster id is not the responder's.
            case wrongCluster
            /// 3: the peer's proof is wrong (or it sent none).
            case authFailed
            /// 4: this node does not accept the request because it is not the primary; the
            /// primary's address when known (`host:port`, at most 255 bytes), else empty.
            case notPrimary(primaryAddress: String)
            /// 5: the follower's log is not a prefix of the primary's. The primary's batch
            /// boundary at or before the follower's last LSN, and the `batchCRC` of the batch
            /// ending there (0 and 0: no common batch boundary).
            case diverged(lsn: LSN, batchCRC: UInt32)
            /// 6: the primary on this connection has been replaced: `current` is the highest
            /// epoch the sender knows, newer than that primary's (docs/PROTOCOL.md section 6.1).
            case staleEpoch(current: Epoch)
            /// 7: the sender is shutting down.
            case shuttingDown
            /// 8: the peer broke the protocol (a bad frame, an unexpected message).
            case protocolViolation
            /// 9: the records were appended as this range, but the commit level was not reached
            /// before the timeout: they may or may not survive a failover.
            case commitTimedOut(LSNRange)
            /// 10: the commit level cannot be reached (too few followers); nothing was appended.
            case commitUnavailable
            /// 11: the LSN asked for is not held: the sender holds `first ... last`
            /// (`last == first - 1` when it holds none; `first` is then the next LSN).
            case lsnOutOfRange(first: LSN, last: LSN)
            /// 12: the sender's log has stopped after an I/O failure.
            case logFailed
            /// 13: the sender has too many connections or too much pending work.
            case overloaded
            /// 14: a bug in the sender.
            case internalError
            /// 15: the node's state machine refused the query (a bad encoding, an unknown
            /// operation, a result over ``ProtocolLimits/queryResultBytesMax``, no state machine
            /// to ask); the failure's text says why.
            case queryFailed
            /// 16: the node cannot take the role asked for (a PromoteRequest to the primary, or
            /// to a node that is shutting down); the text says why.
            case roleChangeRefused

            public var code: UInt16 {
                switch self {
                case .unsupportedVersion: 1
                case .wrongCluster: 2
                case .authFailed: 3
                case .notPrimary: 4
                case .diverged: 5
                case .staleEpoch: 6
                case .shuttingDown: 7
                case .protocolViolation: 8
                case .commitTimedOut: 9
                case .commitUnavailable: 10
                case .lsnOutOfRange: 11
                case .logFailed: 12
                case .overloaded: 13
                case .internalError: 14
                case .queryFailed: 15
                case .roleChangeRefused: 16
                }
            }

            public var description: String {
                switch self {
                case .unsupportedVersion(let low, let high): "unsupported version (the sender speaks \(low) ... \(high))"
                case .wrongCluster: "wrong cluster"
                case .authFailed: "authentication failed"
                case .notPrimary(let address): address.isEmpty ? "not the primary" : "not the primary (primary at \(address))"
                case .diverged(let lsn, let crc): "diverged (primary's batch ending at LSN \(lsn) has batchCRC \(ProtocolError.hex(crc)))"
                case .staleEpoch(let epoch): "stale epoch (current epoch \(epoch))"
                case .shuttingDown: "shutting down"
                case .protocolViolation: "protocol violation"
                case .commitTimedOut(let range): "commit level not confirmed in time for LSNs \(range)"
                case .commitUnavailable: "commit level unavailable"
                case .lsnOutOfRange(let first, let last): "LSN out of range (held: \(first) ... \(last))"
                case .logFailed: "log failed"
                case .overloaded: "overloaded"
                case .internalError: "internal error"
                case .queryFailed: "query failed"
                case .roleChangeRefused: "role change refused"
                }
            }
        }

        public func validate() throws(ProtocolError) { try validate(as: .error) }

        func validate(as type: MessageType) throws(ProtocolError) {
            switch reason {
            case .unsupportedVersion(let low, let high):
                guard low >= 1 && low <= high else {
                    throw MessageCheck.invalid(type, "detail", "supported versions \(low) ... \(high) are not a range of versions >= 1")
                }
            case .notPrimary(let address):
                let count = address.utf8.count
                guard count <= ProtocolLimits.addressBytesMax else {
                    throw MessageCheck.invalid(type, "detail", "address of \(count) bytes exceeds addressBytesMax (\(ProtocolLimits.addressBytesMax))")
                }
            case .diverged(let lsn, let crc):
                guard lsn != .zero || crc == 0 else {
                    throw MessageCheck.invalid(type, "detail", "batchCRC \(ProtocolError.hex(crc)) given for LSN 0 (must be 0)")
                }
            case .staleEpoch(let epoch):
                guard epoch >= .initial else { throw MessageCheck.invalid(type, "detail", "epoch 0 is never current") }
            case .commitTimedOut(let range):
                guard range.first >= .first else { throw MessageCheck.invalid(type, "detail", "LSN range starts at 0") }
            case .lsnOutOfRange(let first, let last):
                guard first >= .first && first.rawValue - 1 <= last.rawValue else {
                    throw MessageCheck.invalid(type, "detail", "held range \(first) ... \(last) needs 1 <= first <= last + 1")
                }
            case .wrongCluster, .authFailed, .shuttingDown, .protocolViolation, .commitUnavailable, .logFailed, .overloaded,
                .internalError, .queryFailed, .roleChangeRefused:
                break
            }
            try MessageCheck.text(text, type, "text")
        }

        var payloadCapacity: Int { 16 + text.utf8.count + 16 }

        func write(to writer: inout MessageWriter) {
            writer.u16(reason.code)
            switch reason {
            case .unsupportedVersion(let low, let high):
                writer.u16(low)
                writer.u16(high)
            case .notPrimary(let address):
                writer.shortString(address)
            case .diverged(let lsn, let crc):
                writer.lsn(lsn)
                writer.u32(crc)
            case .staleEpoch(let epoch):
                writer.epoch(epoch)
            case .commitTimedOut(let range):
                writer.lsn(range.first)
                writer.lsn(range.last)
            case .lsnOutOfRange(let first, let last):
                writer.lsn(first)
                writer.lsn(last)
            case .wrongCluster, .authFailed, .shuttingDown, .protocolViolation, .commitUnavailable, .logFailed, .overloaded,
                .internalError, .queryFailed, .roleChangeRefused:
                break
            }
            writer.text(text)
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> Failure {
            let code = try reader.u16("code")
            let reason: Reason
            switch code {
            case 1: reason = .unsupportedVersion(min: try reader.u16("detail"), max: try reader.u16("detail.max"))
            case 2: reason = .wrongCluster
            case 3: reason = .authFailed
            case 4: reason = .notPrimary(primaryAddress: try reader.shortString("detail", bytes: 0...ProtocolLimits.addressBytesMax))
            case 5: reason = .diverged(lsn: try reader.lsn("detail"), batchCRC: try reader.u32("detail.batchCRC"))
            case 6: reason = .staleEpoch(current: try reader.epoch("detail"))
            case 7: reason = .shuttingDown
            case 8: reason = .protocolViolation
            case 9:
                let first = try reader.lsn("detail")
                let last = try reader.lsn("detail.last")
                guard first >= .first && first <= last else {
                    throw reader.invalid("detail", "LSN range \(first) ... \(last) is empty or starts at 0")
                }
                reason = .commitTimedOut(LSNRange(first: first, last: last))
            case 10: reason = .commitUnavailable
            case 11: reason = .lsnOutOfRange(first: try reader.lsn("detail"), last: try reader.lsn("detail.last"))
            case 12: reason = .logFailed
            case 13: reason = .overloaded
            case 14: reason = .internalError
            case 15: reason = .queryFailed
            case 16: reason = .roleChangeRefused
            default: throw reader.invalid("code", "unknown failure code \(code)")
            }
            let text = try reader.text("text", bytes: 0...ProtocolLimits.reasonBytesMax)
            return Failure(reason, text: text)
        }
    }
}

/// The log position fields of Hello and HelloAck.
enum MessagePosition {
    static func check(epoch: Epoch, lastLSN: LSN, lastBatchCRC: UInt32, _ type: MessageType) throws(ProtocolError) {
        if lastLSN == .zero {
            guard lastBatchCRC == 0 else {
                throw MessageCheck.invalid(type, "lastBatchCRC", "\(ProtocolError.hex(lastBatchCRC)) given for an empty log (lastLSN 0; must be 0)")
            }
        } else {
            guard epoch >= .initial else {
                throw MessageCheck.invalid(type, "epoch", "0 for a log holding records (lastLSN \(lastLSN); epochs start at 1)")
            }
        }
    }
}
