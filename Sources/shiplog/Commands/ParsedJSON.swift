import ShipLog
import ShipLogFailover

/// A parsed JSON document in the shape the tool reads a node's status document with
/// (docs/PROTOCOL.md 8.5): numbers as `Double`, for tables. The parsing is ShipLogFailover's
/// `JSON` (strict RFC 8259 grammar, bounded input and nesting); this is only its view.
enum ParsedJSON: Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([ParsedJSON])
    case object([String: ParsedJSON])

    /// Largest document parsed, in bytes (a status document is at most 64 KiB).
    static let documentBytesMax = ProtocolLimits.statusJSONBytesMax
    /// Deepest nesting of arrays and objects.
    static let depthMax = JSON.depthMax

    typealias SyntaxError = JSON.SyntaxError

    /// Parses one document of at most ``documentBytesMax`` bytes.
    static func parse(_ text: String) throws(SyntaxError) -> ParsedJSON {
        ParsedJSON(try JSON.parse(text, bytesMax: documentBytesMax))
    }

    /// The view of a parsed value (as deep as the parser allows).
    init(_ json: JSON) {
        switch json {
        case .null: self = .null
        case .bool(let value): self = .bool(value)
        case .number(let text):
            // The parser keeps only numbers that read as a finite Double.
            guard let value = Double(text) else { preconditionFailure("JSON number \(text) does not read as a Double") }
            self = .number(value)
        case .string(let value): self = .string(value)
        case .array(let items): self = .array(items.map(ParsedJSON.init))
        case .object(let fields): self = .object(fields.mapValues(ParsedJSON.init))
        }
    }

    /// The number as an unsigned integer, `nil` for other values.
    var uint64: UInt64? {
        guard case .number(let value) = self, value >= 0, value < 1.8e19 else { return nil }
        return UInt64(value)
    }

    /// The value as text for a table: strings bare, numbers without a needless `.0`.
    var text: String {
        switch self {
        case .null: "-"
        case .bool(let value): value ? "yes" : "no"
        case .number(let value): value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        case .string(let value): value
        case .array(let items): "[\(items.count) items]"
        case .object(let fields): "{\(fields.count) fields}"
        }
    }
}
