import ShipLog

/// A parsed JSON document: enough to read a node's status document (docs/PROTOCOL.md 8.5)
/// without Foundation. Strict RFC 8259 grammar, bounded input and nesting.
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
    static let depthMax = 32

    struct SyntaxError: Error, CustomStringConvertible {
        var offset: Int
        var reason: String
        var description: String { "invalid JSON at byte \(offset): \(reason)" }
    }

    static func parse(_ text: String) throws(SyntaxError) -> ParsedJSON {
        let bytes = Array(text.utf8)
        guard bytes.count <= documentBytesMax else {
            throw SyntaxError(offset: 0, reason: "document of \(bytes.count) bytes exceeds \(documentBytesMax) bytes")
        }
        var parser = JSONParser(bytes: bytes)
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.offset == bytes.count else { throw parser.error("unexpected bytes after the document") }
        return value
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

private struct JSONParser {
    let bytes: [UInt8]
    var offset = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    func error(_ reason: String) -> ParsedJSON.SyntaxError { ParsedJSON.SyntaxError(offset: offset, reason: reason) }

    mutating func skipSpace() {
        while offset < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[offset]) { offset += 1 }
    }

    mutating func value(depth: Int) throws(ParsedJSON.SyntaxError) -> ParsedJSON {
        guard depth <= ParsedJSON.depthMax else { throw error("nested deeper than \(ParsedJSON.depthMax)") }
        skipSpace()
        guard offset < bytes.count else { throw error("unexpected end") }
        switch bytes[offset] {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default: return .number(try number())
        }
    }

    mutating func literal(_ word: String) throws(ParsedJSON.SyntaxError) {
        let expected = Array(word.utf8)
        guard bytes.count - offset >= expected.count, Array(bytes[offset..<offset + expected.count]) == expected else {
            throw error("expected \(word)")
        }
        offset += expected.count
    }

    mutating func object(depth: Int) throws(ParsedJSON.SyntaxError) -> ParsedJSON {
        offset += 1
        var fields: [String: ParsedJSON] = [:]
        skipSpace()
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "}") {
            offset += 1
            return .object(fields)
        }
        while true {
            skipSpace()
            guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else { throw error("expected a key") }
            let key = try string()
            skipSpace()
            guard offset < bytes.count, bytes[offset] == UInt8(ascii: ":") else { throw error("expected ':'") }
            offset += 1
            fields[key] = try value(depth: depth + 1)
            skipSpace()
            guard offset < bytes.count else { throw error("unexpected end in an object") }
            if bytes[offset] == UInt8(ascii: "}") {
                offset += 1
                return .object(fields)
            }
            guard bytes[offset] == UInt8(ascii: ",") else { throw error("expected ',' or '}'") }
            offset += 1
        }
    }

    mutating func array(depth: Int) throws(ParsedJSON.SyntaxError) -> ParsedJSON {
        offset += 1
        var items: [ParsedJSON] = []
        skipSpace()
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "]") {
            offset += 1
            return .array(items)
        }
        while true {
            items.append(try value(depth: depth + 1))
            skipSpace()
            guard offset < bytes.count else { throw error("unexpected end in an array") }
            if bytes[offset] == UInt8(ascii: "]") {
                offset += 1
                return .array(items)
            }
            guard bytes[offset] == UInt8(ascii: ",") else { throw error("expected ',' or ']'") }
            offset += 1
        }
    }

    mutating func string() throws(ParsedJSON.SyntaxError) -> String {
        offset += 1
        var out: [UInt8] = []
        while offset < bytes.count {
            let byte = bytes[offset]
            offset += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard offset < bytes.count else { break }
                let escape = bytes[offset]
                offset += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "u"):
                    guard bytes.count - offset >= 4, let code = UInt32(String(decoding: bytes[offset..<offset + 4], as: UTF8.self), radix: 16)
                    else { throw error("bad \\u escape") }
                    offset += 4
                    // Surrogate pairs are not combined: the status document escapes only control characters.
                    out.append(contentsOf: String(Unicode.Scalar(code) ?? "\u{FFFD}").utf8)
                default: throw error("bad escape")
                }
            case 0..<0x20:
                throw error("control character in a string")
            default:
                out.append(byte)
            }
        }
        throw error("unterminated string")
    }

    mutating func number() throws(ParsedJSON.SyntaxError) -> Double {
        let start = offset
        while offset < bytes.count, "+-0123456789.eE".utf8.contains(bytes[offset]) { offset += 1 }
        guard offset > start, let value = Double(String(decoding: bytes[start..<offset], as: UTF8.self)), value.isFinite else {
            offset = start
            throw error("expected a value")
        }
        return value
    }
}
