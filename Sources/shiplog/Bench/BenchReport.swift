// Output of the benchmarks: a minimal JSON writer (objects keep their key order) for `--json`,
// and a plain-text table plus number formatting for people. No Foundation.

/// A JSON value. Objects are ordered lists of members, written in that order.
enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    /// Non-finite values are written as `null` (JSON has no NaN or infinity).
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// Compact (`pretty == false`, one line) or indented by two spaces per level. No trailing newline.
    func rendered(pretty: Bool = false) -> String {
        var output = ""
        write(to: &output, pretty: pretty, indent: 0)
        return output
    }

    func write(to output: inout String, pretty: Bool, indent: Int) {
        switch self {
        case .null: output += "null"
        case .bool(let value): output += value ? "true" : "false"
        case .int(let value): output += String(value)
        case .uint(let value): output += String(value)
        case .double(let value): output += Self.number(value)
        case .string(let value): Self.writeString(value, to: &output)
        case .array(let elements):
            guard !elements.isEmpty else { return output += "[]" }
            output += "["
            for (i, element) in elements.enumerated() {
                if i > 0 { output += "," }
                if pretty { Self.newline(&output, indent + 1) }
                element.write(to: &output, pretty: pretty, indent: indent + 1)
            }
            if pretty { Self.newline(&output, indent) }
            output += "]"
        case .object(let object):
            guard !object.members.isEmpty else { return output += "{}" }
            output += "{"
            for (i, member) in object.members.enumerated() {
                if i > 0 { output += "," }
                if pretty { Self.newline(&output, indent + 1) }
                Self.writeString(member.key, to: &output)
                output += pretty ? ": " : ":"
                member.value.write(to: &output, pretty: pretty, indent: indent + 1)
            }
            if pretty { Self.newline(&output, indent) }
            output += "}"
        }
    }

    /// Shortest representation that reads back as the same Double (`0.1`, `1e-07`, `12.0`).
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        return value.description  // Swift prints "1e-07", "5e+20", "12.0": all valid JSON numbers
    }

    /// Writes `text` as a JSON string: quotes, backslash and control characters escaped,
    /// everything else as UTF-8 (U+2028 and U+2029 escaped too, for JavaScript consumers).
    static func writeString(_ text: String, to output: inout String) {
        output += "\""
        var plainStart = text.unicodeScalars.startIndex
        var index = plainStart
        let scalars = text.unicodeScalars
        while index < scalars.endIndex {
            let scalar = scalars[index]
            let escape: String?
            switch scalar {
            case "\"": escape = "\\\""
            case "\\": escape = "\\\\"
            case "\n": escape = "\\n"
            case "\r": escape = "\\r"
            case "\t": escape = "\\t"
            case "\u{08}": escape = "\\b"
            case "\u{0C}": escape = "\\f"
            case "\u{2028}": escape = "\\u2028"
            case "\u{2029}": escape = "\\u2029"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16)
                    escape = "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    escape = nil
                }
            }
            if let escape {
                output.unicodeScalars.append(contentsOf: scalars[plainStart..<index])
                output += escape
                plainStart = scalars.index(after: index)
            }
            index = scalars.index(after: index)
        }
        output.unicodeScalars.append(contentsOf: scalars[plainStart..<scalars.endIndex])
        output += "\""
    }

    private static func newline(_ output: inout String, _ indent: Int) {
        output += "\n"
        output += String(repeating: "  ", count: indent)
    }
}

/// A JSON object that keeps its members in insertion order.
struct JSONObject: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    struct Member: Sendable, Equatable {
        var key: String
        var value: JSONValue
    }

    private(set) var members: [Member] = []

    init() {}

    /// Members in literal order; a repeated key keeps its first position and its last value.
    init(dictionaryLiteral elements: (String, JSONValue)...) {
        for (key, value) in elements { self[key] = value }
    }

    /// Reading gives `nil` for a missing key; setting replaces in place or appends; setting
    /// `nil` removes.
    subscript(key: String) -> JSONValue? {
        get { members.first { $0.key == key }?.value }
        set {
            let position = members.firstIndex { $0.key == key }
            switch (position, newValue) {
            case (let i?, let value?): members[i].value = value
            case (let i?, nil): members.remove(at: i)
            case (nil, let value?): members.append(Member(key: key, value: value))
            case (nil, nil): break
            }
        }
    }

    var keys: [String] { members.map(\.key) }
}

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    init(nilLiteral: ()) { self = .null }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(integerLiteral value: Int64) { self = .int(value) }
    init(floatLiteral value: Double) { self = .double(value) }
    init(stringLiteral value: String) { self = .string(value) }
    init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    init(dictionaryLiteral elements: (String, JSONValue)...) {
        var object = JSONObject()
        for (key, value) in elements { object[key] = value }
        self = .object(object)
    }

    init(_ value: Int) { self = .int(Int64(value)) }
    init(_ value: UInt64) { self = .uint(value) }
    init(_ value: Double) { self = .double(value) }
    init(_ value: String) { self = .string(value) }
    init(_ value: Bool) { self = .bool(value) }
}

extension Histogram {
    /// `{"count":…,"min_ns":…,"mean_ns":…,"p50_ns":…,"p90_ns":…,"p99_ns":…,"p999_ns":…,"max_ns":…}`.
    var json: JSONValue {
        [
            "count": JSONValue(count), "min_ns": JSONValue(min), "mean_ns": JSONValue(mean),
            "p50_ns": JSONValue(percentile(50)), "p90_ns": JSONValue(percentile(90)),
            "p99_ns": JSONValue(percentile(99)), "p999_ns": JSONValue(percentile(99.9)), "max_ns": JSONValue(max),
        ]
    }
}

/// A plain-text table with a header row, columns padded to their widest cell.
///
///     operation        ops/s     p50      p99
///     ---------------  --------  -------  -------
///     pwrite+fdatasync  1,234.5  780 µs   1.9 ms
struct TextTable: Sendable {
    enum Alignment: Sendable { case left, right }

    struct Column: Sendable {
        var title: String
        var alignment: Alignment
    }

    var columns: [Column]
    private(set) var rows: [[String]] = []

    /// Titles with their alignment; numbers read best right-aligned.
    init(_ columns: [(String, Alignment)]) {
        self.columns = columns.map { Column(title: $0.0, alignment: $0.1) }
    }

    /// A row of cells; missing cells are blank, extra cells are an error.
    mutating func addRow(_ cells: [String]) {
        precondition(cells.count <= columns.count, "row has \(cells.count) cells for \(columns.count) columns")
        rows.append(cells + Array(repeating: "", count: columns.count - cells.count))
    }

    /// The table, each line ending in a newline, without trailing spaces.
    func rendered(separator: String = "  ") -> String {
        var widths = columns.map { Self.width($0.title) }
        for row in rows {
            for (i, cell) in row.enumerated() { widths[i] = Swift.max(widths[i], Self.width(cell)) }
        }
        func line(_ cells: [String]) -> String {
            var text = ""
            for (i, cell) in cells.enumerated() {
                if i > 0 { text += separator }
                let padding = String(repeating: " ", count: widths[i] - Self.width(cell))
                text += columns[i].alignment == .left ? cell + padding : padding + cell
            }
            while text.last == " " { text.removeLast() }
            return text + "\n"
        }
        var text = line(columns.map(\.title))
        text += line(widths.map { String(repeating: "-", count: $0) })
        for row in rows { text += line(row) }
        return text
    }

    /// Display width: one column per character (enough for the ASCII, `µ` and `×` used here).
    static func width(_ text: String) -> Int { text.count }
}

/// Number formatting for human output, without Foundation.
enum Format {
    /// `value` with exactly `decimals` digits after the point, rounded half away from zero,
    /// with thousands separators when `grouping` (`1,234.50`).
    static func fixed(_ value: Double, decimals: Int = 1, grouping: Bool = false) -> String {
        guard value.isFinite else { return value.isNaN ? "nan" : (value < 0 ? "-inf" : "inf") }
        precondition((0...9).contains(decimals))
        var scale: Double = 1
        for _ in 0..<decimals { scale *= 10 }
        let scaled = (abs(value) * scale).rounded(.toNearestOrAwayFromZero)
        guard scaled < 9.0e18 else { return String(value) }
        let units = UInt64(scaled)
        let whole = units / UInt64(scale)
        let fraction = units % UInt64(scale)
        var text = grouping ? group(whole) : String(whole)
        if decimals > 0 {
            let digits = String(fraction)
            text += "." + String(repeating: "0", count: decimals - digits.count) + digits
        }
        return (value < 0 && units != 0 ? "-" : "") + text
    }

    /// `1,234,567`.
    static func group(_ value: UInt64) -> String {
        let digits = Array(String(value))
        var text = ""
        for (i, digit) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { text += "," }
            text.append(digit)
        }
        return text
    }

    /// A duration given in nanoseconds, with 3 significant digits: `850 ns`, `12.3 µs`, `1.50 ms`, `2.00 s`.
    static func nanoseconds(_ value: Double) -> String {
        let magnitude = abs(value)
        if magnitude < 1_000 { return fixed(value, decimals: 0) + " ns" }
        if magnitude < 1_000_000 { return significant(value / 1e3) + " µs" }
        if magnitude < 1_000_000_000 { return significant(value / 1e6) + " ms" }
        return significant(value / 1e9) + " s"
    }

    static func nanoseconds(_ value: UInt64) -> String { nanoseconds(Double(value)) }

    /// A byte count in binary units: `512 B`, `64.0 KiB`, `1.50 GiB`.
    static func bytes(_ value: UInt64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB"]
        if value < 1024 { return "\(value) B" }
        var scaled = Double(value) / 1024
        var unit = 0
        while scaled >= 1024 && unit < units.count - 1 {
            scaled /= 1024
            unit += 1
        }
        return significant(scaled) + " " + units[unit]
    }

    /// A rate: `812 MB/s`, `1.25 GB/s` (10^6 and 10^9 bytes).
    static func megabytesPerSecond(_ value: Double) -> String {
        value >= 10_000 ? significant(value / 1000) + " GB/s" : significant(value) + " MB/s"
    }

    /// 3 significant digits for values from 1 to 999.5 (`1.23`, `12.3`, `123`); more digits
    /// before the point above that.
    static func significant(_ value: Double) -> String {
        let magnitude = abs(value)
        // Decide the decimals on the rounded value so that 9.996 prints as "10.0", not "10.00".
        if (magnitude * 100).rounded() < 1000 { return fixed(value, decimals: 2) }
        if (magnitude * 10).rounded() < 1000 { return fixed(value, decimals: 1) }
        return fixed(value, decimals: 0)
    }
}
