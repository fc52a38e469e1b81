/// A JSON value, enough for etcd's gateway: strict RFC 8259 parsing of bounded input and
/// nesting, and compact encoding with sorted keys (deterministic request bodies).
/// Numbers keep their text, so 64-bit integers never pass through a Double.
/// Package-wide: the `shiplog` tool parses status documents with it too.
package enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    /// Deepest nesting of arrays and objects accepted.
    package static let depthMax = 32

    /// Where a document breaks the grammar or a limit (offset from its first byte), and how.
    package struct SyntaxError: Error, CustomStringConvertible {
        package var offset: Int
        package var reason: String
        package var description: String { "invalid JSON at byte \(offset): \(reason)" }
    }

    /// Parses one document of at most `bytesMax` bytes (checked before anything is parsed),
    /// nested at most ``depthMax`` deep. Rejects duplicate keys, strings that are not UTF-8,
    /// unpaired surrogates and anything after the document.
    package static func parse(_ bytes: ArraySlice<UInt8>, bytesMax: Int) throws(SyntaxError) -> JSON {
        try checkSize(bytes.count, bytesMax: bytesMax)
        var parser = JSONParser(bytes: bytes)
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.offset == bytes.endIndex else { throw parser.error("unexpected bytes after the document") }
        return value
    }

    /// Parses the UTF-8 of `text` as ``parse(_:bytesMax:)`` does; its size is checked before
    /// it is copied.
    package static func parse(_ text: String, bytesMax: Int) throws(SyntaxError) -> JSON {
        try checkSize(text.utf8.count, bytesMax: bytesMax)
        return try parse(Array(text.utf8)[...], bytesMax: bytesMax)
    }

    private static func checkSize(_ count: Int, bytesMax: Int) throws(SyntaxError) {
        guard count <= bytesMax else { throw SyntaxError(offset: 0, reason: "document of \(count) bytes exceeds \(bytesMax) bytes") }
    }

    // MARK: Reading

    subscript(key: String) -> JSON? {
        guard case .object(let fields) = self else { return nil }
        return fields[key]
    }

    var string: String? {
        guard case .string(let value) = self else { return nil }
        return value
    }

    var bool: Bool? {
        guard case .bool(let value) = self else { return nil }
        return value
    }

    var array: [JSON]? {
        guard case .array(let value) = self else { return nil }
        return value
    }

    /// A 64-bit integer written as a number or as a decimal string (protobuf's JSON mapping
    /// writes int64 as strings).
    var int64: Int64? {
        switch self {
        case .number(let text), .string(let text): Int64(text)
        default: nil
        }
    }

    /// Base64 text decoded (protobuf's JSON mapping of `bytes`).
    var base64Bytes: [UInt8]? { string.flatMap(Base64.decode) }

    // MARK: Writing

    /// The compact encoding, object keys sorted.
    var encoded: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    private func encode(into out: inout [UInt8]) {
        switch self {
        case .null: out += Array("null".utf8)
        case .bool(let value): out += Array((value ? "true" : "false").utf8)
        case .number(let text): out += Array(text.utf8)
        case .string(let text): Self.encode(string: text, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                item.encode(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let fields):
            out.append(UInt8(ascii: "{"))
            for (index, key) in fields.keys.sorted().enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                Self.encode(string: key, into: &out)
                out.append(UInt8(ascii: ":"))
                fields[key]!.encode(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func encode(string: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

private struct JSONParser {
    let bytes: ArraySlice<UInt8>
    var offset: Int

    init(bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.offset = bytes.startIndex
    }

    func error(_ reason: String) -> JSON.SyntaxError {
        JSON.SyntaxError(offset: offset - bytes.startIndex, reason: reason)
    }

    var atEnd: Bool { offset >= bytes.endIndex }

    mutating func skipSpace() {
        while !atEnd, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[offset]) { offset += 1 }
    }

    mutating func value(depth: Int) throws(JSON.SyntaxError) -> JSON {
        guard depth <= JSON.depthMax else { throw error("nested deeper than \(JSON.depthMax)") }
        skipSpace()
        guard !atEnd else { throw error("unexpected end") }
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

    mutating func literal(_ word: String) throws(JSON.SyntaxError) {
        let expected = Array(word.utf8)
        guard bytes.endIndex - offset >= expected.count, bytes[offset..<offset + expected.count].elementsEqual(expected) else {
            throw error("expected \(word)")
        }
        offset += expected.count
    }

    mutating func object(depth: Int) throws(JSON.SyntaxError) -> JSON {
        offset += 1
        var fields: [String: JSON] = [:]
        skipSpace()
        if !atEnd, bytes[offset] == UInt8(ascii: "}") {
            offset += 1
            return .object(fields)
        }
        while true {
            skipSpace()
            guard !atEnd, bytes[offset] == UInt8(ascii: "\"") else { throw error("expected a key") }
            let key = try string()
            skipSpace()
            guard !atEnd, bytes[offset] == UInt8(ascii: ":") else { throw error("expected ':'") }
            offset += 1
            guard fields.updateValue(try value(depth: depth + 1), forKey: key) == nil else {
                throw error("duplicate key \"\(key)\"")
            }
            skipSpace()
            guard !atEnd else { throw error("unexpected end in an object") }
            if bytes[offset] == UInt8(ascii: "}") {
                offset += 1
                return .object(fields)
            }
            guard bytes[offset] == UInt8(ascii: ",") else { throw error("expected ',' or '}'") }
            offset += 1
        }
    }

    mutating func array(depth: Int) throws(JSON.SyntaxError) -> JSON {
        offset += 1
        var items: [JSON] = []
        skipSpace()
        if !atEnd, bytes[offset] == UInt8(ascii: "]") {
            offset += 1
            return .array(items)
        }
        while true {
            items.append(try value(depth: depth + 1))
            skipSpace()
            guard !atEnd else { throw error("unexpected end in an array") }
            if bytes[offset] == UInt8(ascii: "]") {
                offset += 1
                return .array(items)
            }
            guard bytes[offset] == UInt8(ascii: ",") else { throw error("expected ',' or ']'") }
            offset += 1
        }
    }

    mutating func string() throws(JSON.SyntaxError) -> String {
        offset += 1
        var out: [UInt8] = []
        while !atEnd {
            let byte = bytes[offset]
            offset += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard let text = String(validating: out, as: UTF8.self) else { throw error("string is not UTF-8") }
                return text
            case UInt8(ascii: "\\"):
                try escape(into: &out)
            case 0..<0x20:
                throw error("control character in a string")
            default:
                out.append(byte)
            }
        }
        throw error("unterminated string")
    }

    mutating func escape(into out: inout [UInt8]) throws(JSON.SyntaxError) {
        guard !atEnd else { throw error("unterminated escape") }
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
            var code = try hex4()
            if (0xD800..<0xDC00).contains(code) {
                guard bytes.endIndex - offset >= 6, bytes[offset] == UInt8(ascii: "\\"), bytes[offset + 1] == UInt8(ascii: "u")
                else { throw error("unpaired surrogate") }
                offset += 2
                let low = try hex4()
                guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate") }
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
            }
            guard let scalar = Unicode.Scalar(code) else { throw error("invalid \\u escape") }
            out += Array(String(scalar).utf8)
        default: throw error("bad escape")
        }
    }

    mutating func hex4() throws(JSON.SyntaxError) -> UInt32 {
        guard bytes.endIndex - offset >= 4,
            let code = UInt32(String(decoding: bytes[offset..<offset + 4], as: UTF8.self), radix: 16)
        else { throw error("bad \\u escape") }
        offset += 4
        return code
    }

    mutating func number() throws(JSON.SyntaxError) -> String {
        let start = offset
        while !atEnd, "+-0123456789.eE".utf8.contains(bytes[offset]) { offset += 1 }
        let text = String(decoding: bytes[start..<offset], as: UTF8.self)
        guard offset > start, let value = Double(text), value.isFinite, text.first != "+" else {
            offset = start
            throw error("expected a value")
        }
        return text
    }
}

/// Standard base64 (RFC 4648, with padding), as protobuf's JSON mapping writes `bytes`.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let count = min(3, bytes.count - index)
            let b0 = bytes[index]
            let b1 = count > 1 ? bytes[index + 1] : 0
            let b2 = count > 2 ? bytes[index + 2] : 0
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            out.append(count > 1 ? alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(count > 2 ? alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func encode(_ text: String) -> String { encode(Array(text.utf8)) }

    /// The bytes `text` encodes; nil unless it is padded standard base64.
    static func decode(_ text: String) -> [UInt8]? {
        let input = Array(text.utf8)
        guard input.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(input.count / 4 * 3)
        var index = 0
        while index < input.count {
            let isLast = index + 4 == input.count
            let padding = isLast ? input[index...].reversed().prefix(while: { $0 == UInt8(ascii: "=") }).count : 0
            guard padding <= 2 else { return nil }
            var quantum: UInt32 = 0
            for offset in 0..<4 {
                let byte = input[index + offset]
                let value: UInt8
                if offset >= 4 - padding {
                    value = 0
                } else {
                    value = values[Int(byte)]
                    guard value != 0xFF else { return nil }
                }
                quantum = quantum << 6 | UInt32(value)
            }
            out.append(UInt8(truncatingIfNeeded: quantum >> 16))
            if padding < 2 { out.append(UInt8(truncatingIfNeeded: quantum >> 8)) }
            if padding < 1 { out.append(UInt8(truncatingIfNeeded: quantum)) }
            index += 4
        }
        return out
    }
}
