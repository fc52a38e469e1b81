public import ShipLogFormat

// Reads of a node's state machine by clients (docs/PROTOCOL.md section 8.6).

extension Message {
    /// Client → any node: a read of the node's state machine, such as a key-value get or scan
    /// (type 0x26). The query bytes are the state machine's own encoding; the codec checks only
    /// their length.
    ///
    /// | offset | size | field                                               |
    /// |-------:|-----:|-----------------------------------------------------|
    /// |      0 |    8 | requestID                                           |
    /// |      8 |    4 | queryLength, 0 ... 65,536 (``ProtocolLimits/queryBytesMax``) |
    /// |     12 |    n | query                                               |
    public struct QueryRequest: Hashable, Sendable, MessageBody {
        /// Chosen by the client; echoed in the response.
        public var requestID: UInt64
        /// The query, in the state machine's encoding. At most ``ProtocolLimits/queryBytesMax`` bytes.
        public var query: [UInt8]

        public init(requestID: UInt64, query: [UInt8]) {
            self.requestID = requestID
            self.query = query
        }

        static let type = MessageType.queryRequest
        /// requestID and queryLength.
        static let fixedByteCount = 12

        public func validate() throws(ProtocolError) {
            guard query.count <= ProtocolLimits.queryBytesMax else {
                throw MessageCheck.invalid(Self.type, "query", "\(query.count) bytes exceed queryBytesMax (\(ProtocolLimits.queryBytesMax))")
            }
        }

        var payloadCapacity: Int { Self.fixedByteCount + query.count }

        func write(to writer: inout MessageWriter) {
            writer.u64(requestID)
            writer.u32(UInt32(query.count))
            writer.raw(query)
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> QueryRequest {
            let requestID = try reader.u64("requestID")
            let query = try reader.bytes("query", lengthField: "queryLength", atMost: ProtocolLimits.queryBytesMax, limitName: "queryBytesMax")
            return QueryRequest(requestID: requestID, query: query)
        }
    }

    /// Node → client: the answer to a `QueryRequest` (type 0x27).
    ///
    /// | offset | size | field                                                        |
    /// |-------:|-----:|--------------------------------------------------------------|
    /// |      0 |    8 | requestID                                                    |
    /// |      8 |    1 | outcome: 0 result, 1 failed                                  |
    /// |      9 |    8 | result: appliedLSN                                           |
    /// |     17 |    4 | result: resultLength, 0 ... 4 MiB (``ProtocolLimits/queryResultBytesMax``) |
    /// |     21 |    n | result: the result bytes                                     |
    /// |      9 |  ... | failed: a Failure (code, detail, text)                       |
    public struct QueryResponse: Hashable, Sendable, MessageBody {
        public var requestID: UInt64
        public var outcome: Outcome

        public enum Outcome: Hashable, Sendable {
            /// The state machine's answer, in its own encoding, computed on its state after
            /// applying every record through `appliedLSN` and no other (0: the empty state).
            case result(appliedLSN: LSN, [UInt8])
            /// Why there is no result; `queryFailed` when the state machine refused the query.
            case failed(Failure)
        }

        public init(requestID: UInt64, outcome: Outcome) {
            self.requestID = requestID
            self.outcome = outcome
        }

        static let type = MessageType.queryResponse
        /// requestID, outcome, appliedLSN and resultLength: the bytes before a result.
        static let resultFixedByteCount = 21

        public func validate() throws(ProtocolError) {
            switch outcome {
            case .result(_, let result):
                guard result.count <= ProtocolLimits.queryResultBytesMax else {
                    throw MessageCheck.invalid(
                        Self.type, "result", "\(result.count) bytes exceed queryResultBytesMax (\(ProtocolLimits.queryResultBytesMax))")
                }
            case .failed(let failure):
                try failure.validate(as: Self.type)
            }
        }

        var payloadCapacity: Int {
            switch outcome {
            case .result(_, let result): Self.resultFixedByteCount + result.count
            case .failed: 64 + 1024
            }
        }

        func write(to writer: inout MessageWriter) {
            writer.u64(requestID)
            switch outcome {
            case .result(let appliedLSN, let result):
                writer.u8(0)
                writer.lsn(appliedLSN)
                writer.u32(UInt32(result.count))
                writer.raw(result)
            case .failed(let failure):
                writer.u8(1)
                failure.write(to: &writer)
            }
        }

        static func read(from reader: inout MessageReader) throws(ProtocolError) -> QueryResponse {
            let requestID = try reader.u64("requestID")
            switch try reader.u8("outcome") {
            case 0:
                let appliedLSN = try reader.lsn("appliedLSN")
                let result = try reader.bytes(
                    "result", lengthField: "resultLength", atMost: ProtocolLimits.queryResultBytesMax, limitName: "queryResultBytesMax")
                return QueryResponse(requestID: requestID, outcome: .result(appliedLSN: appliedLSN, result))
            case 1:
                return QueryResponse(requestID: requestID, outcome: .failed(try Failure.read(from: &reader)))
            case let other:
                throw reader.invalid("outcome", "\(other) is neither 0 (result) nor 1 (failed)")
            }
        }
    }
}
