// A small, strict command-line parser for the `shiplog` tool.
//
// Each command declares its flags once, in a `CommandSpec`; parsing, validation of values and
// the `--help` text all come from that declaration. Every mistake on the command line is a
// `UsageError` (one line, naming the command, the flag and the bad value), which `main` prints
// to standard error before exiting with status 2.
//
//     let append = CommandSpec(
//         path: ["append"], summary: "Append records read from standard input.",
//         flags: [
//             .value("dir", .string, placeholder: "DIR", help: "Log directory.", required: true),
//             .value("durability", .choice(["buffered", "interval", "immediate"]),
//                    help: "When appends are fsynced.", default: "interval"),
//         ])
//     let cli = CommandLineInterface(summary: "...", commands: [append, read, benchAppend])
//     switch try cli.parse(Array(CommandLine.arguments.dropFirst())) {
//     case .help(let text): print(text, terminator: "")
//     case .run(let arguments):
//         let dir = try arguments.requiredString("dir")
//         let durability = try arguments.choice("durability", from: ["buffered": ..., ...])
//     }
//
// Grammar: `--name value` and `--name=value` for flags that take a value, `--name` for
// boolean flags; `--help` or `-h` anywhere asks for help (and wins over every other error).
// Strict: unknown flags, missing or empty values, values given to boolean flags, repeated
// flags, missing required flags and positional arguments are all errors. A value may start
// with a single `-` (`--offset -5`) but not with `--` (`--dir --follow` is a missing value).

/// A mistake on the command line: `main` prints ``description`` (one line) to standard error
/// and exits with ``exitStatus``.
struct UsageError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The command as typed, e.g. `shiplog bench append`.
    var command: String
    /// What is wrong, without the command, e.g. `missing required flag --dir`.
    var message: String

    init(command: String, message: String) {
        self.command = command
        self.message = message
    }

    /// `shiplog append: invalid value 'fast' for --durability (expected buffered, interval or immediate)`.
    var description: String { "\(command): \(message)" }

    /// The conventional exit status for usage errors.
    static let exitStatus: Int32 = 2
}

/// What a flag's value must look like; checked when the command line is parsed.
enum FlagValueKind: Hashable, Sendable {
    /// Any non-empty string.
    case string
    /// A decimal unsigned 64-bit integer, optionally within bounds.
    case unsignedInteger(ClosedRange<UInt64>? = nil)
    /// A decimal signed integer (`Int`), optionally within bounds.
    case integer(ClosedRange<Int>? = nil)
    /// A finite decimal number, optionally within bounds.
    case number(ClosedRange<Double>? = nil)
    /// One of a fixed set of words.
    case choice([String])

    static let unsignedInteger = FlagValueKind.unsignedInteger(nil)
    static let integer = FlagValueKind.integer(nil)
    static let number = FlagValueKind.number(nil)
}

/// One flag of a command: `--name` (boolean) or `--name VALUE`.
struct FlagSpec: Hashable, Sendable {
    /// The name without dashes: `dir` for `--dir`.
    var name: String
    /// `nil` for a boolean flag; otherwise what the value must look like.
    var valueKind: FlagValueKind?
    /// The value's name in help output (`DIR`); defaults to `a|b|c` for choices and `VALUE` otherwise.
    var placeholder: String
    var help: String
    var isRequired: Bool
    /// The value used when the flag is absent, shown in help (must be valid for `valueKind`).
    var defaultValue: String?

    var takesValue: Bool { valueKind != nil }

    /// A flag that takes a value.
    static func value(
        _ name: String, _ kind: FlagValueKind = .string, placeholder: String? = nil, help: String,
        required: Bool = false, default defaultValue: String? = nil
    ) -> FlagSpec {
        let shown: String
        if let placeholder {
            shown = placeholder
        } else if case .choice(let words) = kind {
            shown = words.joined(separator: "|")
        } else {
            shown = "VALUE"
        }
        return FlagSpec(
            name: name, valueKind: kind, placeholder: shown, help: help, isRequired: required,
            defaultValue: defaultValue)
    }

    /// A boolean flag: present or absent.
    static func flag(_ name: String, help: String) -> FlagSpec {
        FlagSpec(name: name, valueKind: nil, placeholder: "", help: help, isRequired: false, defaultValue: nil)
    }
}

/// A command (`append`, `bench append`): its flags and help.
struct CommandSpec: Hashable, Sendable {
    /// The words naming the command after the program name: `["bench", "append"]`.
    var path: [String]
    /// One line for command lists and the top of `--help`.
    var summary: String
    /// Further paragraphs for `--help`, if any.
    var discussion: String?
    var flags: [FlagSpec]
    /// Names of the required positional arguments, in order (`KEY`, `VALUE`). A positional
    /// that starts with `-` must come after `--`.
    var positionals: [String]
    /// The program name used in messages.
    var programName: String

    init(
        path: [String], summary: String, discussion: String? = nil, positionals: [String] = [], flags: [FlagSpec],
        programName: String = "shiplog"
    ) {
        precondition(!path.isEmpty, "a command has a name")
        var seen = Set<String>()
        for flag in flags {
            precondition(!flag.name.isEmpty && !flag.name.hasPrefix("-") && !flag.name.contains("="),
                         "flag names are declared without dashes: \(flag.name)")
            precondition(flag.name != "help", "--help is built in")
            precondition(seen.insert(flag.name).inserted, "flag --\(flag.name) declared twice")
            precondition(!(flag.isRequired && flag.defaultValue != nil), "--\(flag.name) is required and has a default")
            if let value = flag.defaultValue, let kind = flag.valueKind {
                precondition(Self.check(value, kind) == nil, "default '\(value)' of --\(flag.name) is not valid")
            }
            precondition(flag.defaultValue == nil || flag.takesValue, "boolean --\(flag.name) has a default")
        }
        self.path = path
        self.summary = summary
        self.discussion = discussion
        self.flags = flags
        self.positionals = positionals
        self.programName = programName
    }

    /// `shiplog bench append`.
    var displayName: String { ([programName] + path).joined(separator: " ") }
    /// `bench append`.
    var name: String { path.joined(separator: " ") }

    func flag(named name: String) -> FlagSpec? { flags.first { $0.name == name } }

    /// Whether `--help` or `-h` occurs among `arguments`.
    static func asksForHelp(_ arguments: some Sequence<String>) -> Bool {
        arguments.contains { $0 == "--help" || $0 == "-h" }
    }

    /// Parses the arguments after the command's name. Does not look for `--help`: see
    /// ``CommandLineInterface/parse(_:)`` (or check ``asksForHelp(_:)`` first).
    func parse(_ arguments: [String]) throws(UsageError) -> ParsedArguments {
        var values: [String: String] = [:]
        var present = Set<String>()
        var given: [String] = []
        var index = arguments.startIndex
        var flagsEnded = false
        while index < arguments.endIndex {
            let token = arguments[index]
            index += 1
            if token == "--" && !flagsEnded && !positionals.isEmpty {
                flagsEnded = true
                continue
            }
            guard !flagsEnded, token.hasPrefix("-"), token != "-", token != "--" else {
                guard given.count < positionals.count else { throw error("unexpected argument '\(token)'") }
                given.append(token)
                continue
            }
            guard token.hasPrefix("--") else {
                if token == "-h" { throw error("unexpected -h") }
                throw error("unknown flag \(token)\(suggestion(for: String(token.dropFirst())))")
            }
            let body = token.dropFirst(2)
            let name: String
            var inlineValue: String?
            if let equals = body.firstIndex(of: "=") {
                name = String(body[..<equals])
                inlineValue = String(body[body.index(after: equals)...])
            } else {
                name = String(body)
            }
            if name == "help" {  // plain --help is handled before parsing (CommandLineInterface.parse)
                throw error(inlineValue != nil ? "--help does not take a value" : "unexpected --help")
            }
            guard let spec = flag(named: name) else {
                throw error("unknown flag --\(name)\(suggestion(for: name))")
            }
            guard present.insert(name).inserted else { throw error("--\(name) given more than once") }
            guard let kind = spec.valueKind else {
                if inlineValue != nil { throw error("--\(name) does not take a value") }
                continue
            }
            let value: String
            if let inlineValue {
                value = inlineValue
            } else {
                guard index < arguments.endIndex, !arguments[index].hasPrefix("--") else {
                    throw error("missing value for --\(name) (expected \(spec.placeholder))")
                }
                value = arguments[index]
                index += 1
            }
            if let expected = Self.check(value, kind) {
                throw error(Self.invalid(value, name, expected))
            }
            values[name] = value
        }
        for spec in flags where spec.isRequired && !present.contains(spec.name) {
            throw error("missing required flag --\(spec.name)")
        }
        guard given.count == positionals.count else {
            throw error("missing \(positionals[given.count...].joined(separator: " "))")
        }
        return ParsedArguments(command: self, values: values, present: present, positionals: given)
    }

    /// The `--help` text, generated from the declaration. Ends with a newline.
    func helpText() -> String {
        var usage = "Usage: \(displayName)"
        for name in positionals { usage += " \(name)" }
        for flag in flags {
            let word = flag.takesValue ? "--\(flag.name) \(flag.placeholder)" : "--\(flag.name)"
            usage += flag.isRequired ? " \(word)" : " [\(word)]"
        }
        var text = usage + "\n\n" + summary + "\n"
        if let discussion { text += "\n" + discussion + "\n" }
        var rows: [(String, String)] = []
        for flag in flags {
            let left = flag.takesValue ? "--\(flag.name) \(flag.placeholder)" : "--\(flag.name)"
            var notes: [String] = []
            if flag.isRequired { notes.append("required") }
            if let value = flag.defaultValue { notes.append("default: \(value)") }
            var right = flag.help
            if !notes.isEmpty { right += (right.isEmpty ? "" : " ") + "(" + notes.joined(separator: ", ") + ")" }
            rows.append((left, right))
        }
        rows.append(("-h, --help", "Show this help."))
        text += "\nFlags:\n" + Self.twoColumns(rows)
        return text
    }

    // MARK: Values

    /// Why `value` is not valid for `kind` ("expected ..."), or `nil` when it is.
    static func check(_ value: String, _ kind: FlagValueKind) -> String? {
        if value.isEmpty { return "expected a non-empty value" }
        switch kind {
        case .string:
            return nil
        case .unsignedInteger(let range):
            guard let number = parseUnsigned(value) else { return "expected an unsigned integer" }
            if let range, !range.contains(number) {
                return range.upperBound == .max ? "expected at least \(range.lowerBound)" : "expected \(range.lowerBound) to \(range.upperBound)"
            }
            return nil
        case .integer(let range):
            guard let number = parseSigned(value) else { return "expected an integer" }
            if let range, !range.contains(number) {
                return range.upperBound == .max ? "expected at least \(range.lowerBound)"
                    : range.lowerBound == .min ? "expected at most \(range.upperBound)"
                    : "expected \(range.lowerBound) to \(range.upperBound)"
            }
            return nil
        case .number(let range):
            guard let number = parseNumber(value) else { return "expected a number" }
            if let range, !range.contains(number) {
                return "expected \(shortNumber(range.lowerBound)) to \(shortNumber(range.upperBound))"
            }
            return nil
        case .choice(let words):
            return words.contains(value) ? nil : "expected \(listing(words))"
        }
    }

    static func invalid(_ value: String, _ name: String, _ expected: String) -> String {
        "invalid value '\(value)' for --\(name) (\(expected))"
    }

    /// Digits only: no sign, no spaces, no underscores, no hex.
    static func parseUnsigned(_ text: String) -> UInt64? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return UInt64(text)
    }

    /// An optional leading `-` followed by digits.
    static func parseSigned(_ text: String) -> Int? {
        let digits = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(text)
    }

    /// Decimal notation (`12`, `-0.5`, `.5`, `1e3`); no hex, `inf` or `nan`.
    static func parseNumber(_ text: String) -> Double? {
        let allowed = text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E || $0 == 0x2D || $0 == 0x2B || $0 == 0x65 || $0 == 0x45 }
        guard allowed, text.utf8.contains(where: { $0 >= 0x30 && $0 <= 0x39 }), let value = Double(text), value.isFinite
        else { return nil }
        return value
    }

    /// `a`, `a or b`, `a, b or c`.
    static func listing(_ words: [String]) -> String {
        switch words.count {
        case 0: ""
        case 1: words[0]
        default: words.dropLast().joined(separator: ", ") + " or " + words[words.count - 1]
        }
    }

    static func shortNumber(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    static func twoColumns(_ rows: [(String, String)]) -> String {
        // Left cells longer than 32 characters get a line of their own.
        let width = rows.map(\.0.count).filter { $0 <= 32 }.max() ?? 0
        var text = ""
        for (left, right) in rows {
            if left.count > width {
                text += "  \(left)\n  \(String(repeating: " ", count: width))  \(right)\n"
            } else {
                text += "  \(left)\(String(repeating: " ", count: width - left.count))  \(right)\n"
            }
        }
        return text
    }

    func error(_ message: String) -> UsageError { UsageError(command: displayName, message: message) }

    private func suggestion(for name: String) -> String {
        var best: (name: String, distance: Int)?
        for flag in flags {
            let distance = editDistance(name, flag.name)
            if distance <= max(1, flag.name.count / 4), distance < (best?.distance ?? .max) {
                best = (flag.name, distance)
            }
        }
        return best.map { " (did you mean --\($0.name)?)" } ?? ""
    }
}

/// The flags of one parsed command line, read through typed accessors.
///
/// Accessors take the flag's declared name (without dashes); asking for an undeclared flag, or
/// reading a boolean flag as a value or the other way round, is a programming error and traps.
/// Values were validated against the declared ``FlagValueKind`` during parsing; the accessors
/// throw ``UsageError`` only when they are stricter than the declaration (e.g. a `choice` table
/// that lacks a declared word).
struct ParsedArguments: Sendable {
    let command: CommandSpec
    private let values: [String: String]
    private let present: Set<String>
    /// The positional arguments, one per declared name.
    let positionals: [String]

    init(command: CommandSpec, values: [String: String], present: Set<String>, positionals: [String] = []) {
        self.command = command
        self.values = values
        self.present = present
        self.positionals = positionals
    }

    /// The positional argument declared as `name`.
    func positional(_ name: String) -> String {
        guard let index = command.positionals.firstIndex(of: name) else {
            preconditionFailure("\(command.name) declares no positional \(name)")
        }
        return positionals[index]
    }

    /// Whether the flag was given on the command line (a default does not count).
    func contains(_ name: String) -> Bool {
        _ = spec(name)
        return present.contains(name)
    }

    /// A boolean flag.
    func flag(_ name: String) -> Bool {
        let spec = spec(name)
        precondition(!spec.takesValue, "--\(name) takes a value; read it with string(_:) or a typed accessor")
        return present.contains(name)
    }

    /// The value as given, else the declared default, else `nil`.
    func string(_ name: String) -> String? {
        let spec = spec(name)
        precondition(spec.takesValue, "--\(name) is a boolean flag; read it with flag(_:)")
        return values[name] ?? spec.defaultValue
    }

    /// The value of a flag that must have one (required, or with a default).
    func requiredString(_ name: String) throws(UsageError) -> String {
        guard let value = string(name) else { throw command.error("missing required flag --\(name)") }
        return value
    }

    func uint64(_ name: String) throws(UsageError) -> UInt64? {
        try typed(name, "expected an unsigned integer", CommandSpec.parseUnsigned)
    }

    func int(_ name: String) throws(UsageError) -> Int? {
        try typed(name, "expected an integer", CommandSpec.parseSigned)
    }

    func double(_ name: String) throws(UsageError) -> Double? {
        try typed(name, "expected a number", CommandSpec.parseNumber)
    }

    /// The value mapped through `options` (word → value, in the order listed in errors).
    func choice<T>(_ name: String, from options: KeyValuePairs<String, T>) throws(UsageError) -> T? {
        guard let value = string(name) else { return nil }
        if let match = options.first(where: { $0.key == value }) { return match.value }
        throw command.error(CommandSpec.invalid(value, name, "expected \(CommandSpec.listing(options.map(\.key)))"))
    }

    /// The case of `T` whose `description` is the value (e.g. `CompressionCodec`).
    func choice<T: CaseIterable & CustomStringConvertible>(_ name: String, as _: T.Type = T.self) throws(UsageError) -> T? {
        guard let value = string(name) else { return nil }
        if let match = T.allCases.first(where: { $0.description == value }) { return match }
        throw command.error(CommandSpec.invalid(value, name, "expected \(CommandSpec.listing(T.allCases.map(\.description)))"))
    }

    private func typed<T>(_ name: String, _ expected: String, _ convert: (String) -> T?) throws(UsageError) -> T? {
        guard let value = string(name) else { return nil }
        guard let result = convert(value) else { throw command.error(CommandSpec.invalid(value, name, expected)) }
        return result
    }

    private func spec(_ name: String) -> FlagSpec {
        guard let spec = command.flag(named: name) else {
            preconditionFailure("\(command.displayName) declares no flag --\(name)")
        }
        return spec
    }
}

/// The whole tool: its commands, grouped by their leading words (`bench append`, `bench read`).
struct CommandLineInterface: Sendable {
    enum Invocation: Sendable {
        /// `--help` or `-h` was given: print this text to standard output and exit 0.
        case help(String)
        /// Run the command with these arguments.
        case run(ParsedArguments)
    }

    var programName: String
    var summary: String
    var commands: [CommandSpec]

    init(programName: String = "shiplog", summary: String, commands: [CommandSpec]) {
        for command in commands {
            precondition(command.programName == programName, "\(command.name) belongs to another program")
            // A command may also be a group (`bench` and `bench append`) when it takes no
            // positional arguments: a word after it can then only name a subcommand.
            for other in commands where other.path != command.path && other.path.starts(with: command.path) {
                precondition(command.positionals.isEmpty,
                             "'\(command.name)' is both a group ('\(other.name)') and a command with positionals")
            }
            precondition(commands.filter { $0.path == command.path }.count == 1, "'\(command.name)' declared twice")
        }
        self.programName = programName
        self.summary = summary
        self.commands = commands
    }

    /// Resolves the command from the leading words of `arguments` (without the program name)
    /// and parses the rest.
    func parse(_ arguments: [String]) throws(UsageError) -> Invocation {
        var prefix: [String] = []
        var index = arguments.startIndex
        while index < arguments.endIndex, !arguments[index].hasPrefix("-") {
            let candidate = prefix + [arguments[index]]
            guard commands.contains(where: { $0.path.starts(with: candidate) }) else { break }
            prefix = candidate
            index += 1
            if commands.contains(where: { $0.path == prefix }) && !isGroup(prefix) { break }
        }
        let rest = Array(arguments[index...])
        if let command = commands.first(where: { $0.path == prefix }) {
            if CommandSpec.asksForHelp(rest) {
                return .help(isGroup(prefix) ? command.helpText() + subcommandsHelpText(prefix) : command.helpText())
            }
            if isGroup(prefix), let next = rest.first, !next.hasPrefix("-") {
                throw command.error("unknown command '\(next)' (expected \(CommandSpec.listing(subcommandWords(prefix))))")
            }
            return .run(try command.parse(rest))
        }
        if CommandSpec.asksForHelp(rest) { return .help(groupHelpText(prefix)) }
        let group = ([programName] + prefix).joined(separator: " ")
        let expected = "expected \(CommandSpec.listing(subcommandWords(prefix)))"
        guard let next = rest.first else {
            throw UsageError(command: group, message: "missing command (\(expected))")
        }
        if next.hasPrefix("-") {
            throw UsageError(command: group, message: "missing command before \(next) (\(expected))")
        }
        throw UsageError(command: group, message: "unknown command '\(next)' (\(expected))")
    }

    /// The help of the whole tool (`prefix` empty) or of a group such as `bench`.
    func groupHelpText(_ prefix: [String] = []) -> String {
        let group = ([programName] + prefix).joined(separator: " ")
        var text = "Usage: \(group) <command> [flags]\n\n"
        text += prefix.isEmpty ? summary + "\n" : "The \(prefix.joined(separator: " ")) commands.\n"
        let members = commands.filter { $0.path.starts(with: prefix) }
        text += "\nCommands:\n" + CommandSpec.twoColumns(members.map { ($0.name, $0.summary) })
        text += "\nRun '\(group) <command> --help' for a command's flags.\n"
        return text
    }

    /// Whether some command's path is longer than `prefix` and starts with it.
    private func isGroup(_ prefix: [String]) -> Bool {
        commands.contains { $0.path.count > prefix.count && $0.path.starts(with: prefix) }
    }

    /// The commands under `prefix`, for the help of a command that is also a group.
    private func subcommandsHelpText(_ prefix: [String]) -> String {
        let members = commands.filter { $0.path.count > prefix.count && $0.path.starts(with: prefix) }
        return "\nCommands:\n" + CommandSpec.twoColumns(members.map { ($0.name, $0.summary) })
    }

    private func subcommandWords(_ prefix: [String]) -> [String] {
        var words: [String] = []
        for command in commands where command.path.count > prefix.count && command.path.starts(with: prefix) {
            let word = command.path[prefix.count]
            if !words.contains(word) { words.append(word) }
        }
        return words
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
private func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8), b = Array(b.utf8)
    if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
