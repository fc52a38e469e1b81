public import ShipLogFormat

// Manual promotion of a follower (docs/PROTOCOL.md section 8.7).

extension Message {
    /// Operator → a follower: become the primary of a new epoch (type 0x28). The follower
    /// stops following, starts the epoch with an epoch-start control batch, and accepts
    /// appends; its old primary is fenced as soon as any node of the new epoch reaches it.
    ///
    /// | offset | size | field                                                             |
    /// |-------:|-----:|-------------------------------------------------------------------|
    /// |      0 |    8 | requestID                                                         |
    /// |      8 |    8 | minimumEpoch: the new epoch is at least this (0: one above the node's) |
    public struct PromoteRequest: Hashable, Sendable, MessageBody {
        public var requestID: UInt64
        /// The new epoch is the larger of this and the node's epoch + 1; 0 leaves it to the node.
        public var minimumEpoch: Epoch

        public init(requestID: UInt64, minimumEpoch: Epoch = Epoch(0)) {
            self.requestID = requestID
            self.minimumEpoch = minimumEpoch
        }

        static let type = MessageType.promoteRequest
        static let byteCount = 16

        public func validate() throws(ProtocolError) {}

        var payloadCapacity: Int { Self.byteCount }

        func write(to writer: inout MessageWriter) {
            writer.u64(requestID)
            writer.epoch(minimumEpoch)
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> PromoteRequest {
            PromoteRequest(requestID: try reader.u64("requestID"), minimumEpoch: try reader.epoch("minimumEpoch"))
        }
    }

    /// The node → operator: the outcome of a `PromoteRequest` (type 0x29).
    ///
    /// | offset | size | field                                               |
    /// |-------:|-----:|-----------------------------------------------------|
    /// |      0 |    8 | requestID                                           |
    /// |      8 |    1 | outcome: 0 promoted, 1 failed                        |
    /// |      9 |    8 | promoted: epoch, the new epoch (>= 1)               |
    /// |     17 |    8 | promoted: firstLSN, the LSN of its epoch-start record (>= 1) |
    /// |      9 |  ... | failed: a Failure (code, detail, text)               |
    public struct PromoteResponse: Hashable, Sendable, MessageBody {
        public var requestID: UInt64
        public var outcome: Outcome

        public enum Outcome: Hashable, Sendable {
            /// The node is the primary of `epoch`; its epoch-start record has LSN `firstLSN`.
            case promoted(epoch: Epoch, firstLSN: LSN)
            case failed(Failure)
        }

        public init(requestID: UInt64, outcome: Outcome) {
            self.requestID = requestID
            self.outcome = outcome
        }

        static let type = MessageType.promoteResponse

        public func validate() throws(ProtocolError) {
            switch outcome {
            case .promoted(let epoch, let first):
                guard epoch >= Epoch.initial else { throw MessageCheck.invalid(Self.type, "epoch", "epoch 0 is never a primary's") }
                guard first >= LSN.first else { throw MessageCheck.invalid(Self.type, "firstLSN", "LSN 0 is never assigned") }
            case .failed(let failure):
                try failure.validate(as: Self.type)
            }
        }

        var payloadCapacity: Int { 64 + 1024 }

        func write(to writer: inout MessageWriter) {
            writer.u64(requestID)
            switch outcome {
            case .promoted(let epoch, let first):
                writer.u8(0)
                writer.epoch(epoch)
                writer.lsn(first)
            case .failed(let failure):
                writer.u8(1)
                failure.write(to: &writer)
            }
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> PromoteResponse {
            let requestID = try reader.u64("requestID")
            switch try reader.u8("outcome") {
            case 0:
                let epoch = try reader.epoch("epoch")
                guard epoch >= Epoch.initial else { throw reader.invalid("epoch", "epoch 0 is never a primary's") }
                let first = try reader.lsn("firstLSN")
                guard first >= LSN.first else { throw reader.invalid("firstLSN", "LSN 0 is never assigned") }
                return PromoteResponse(requestID: requestID, outcome: .promoted(epoch: epoch, firstLSN: first))
            case 1:
                return PromoteResponse(requestID: requestID, outcome: .failed(try Failure.read(from: &reader)))
            case let other:
                throw reader.invalid("outcome", "\(other) is neither 0 (promoted) nor 1 (failed)")
            }
        }
    }
}
