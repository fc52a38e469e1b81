/// Where one epoch starts in a log: the LSN of its first record (docs/FORMAT.md section 21).
public struct EpochStart: Hashable, Sendable, CustomStringConvertible {
    public var epoch: Epoch
    /// The LSN of the epoch's first record in this log.
    public var firstLSN: LSN

    public init(epoch: Epoch, firstLSN: LSN) {
        self.epoch = epoch
        self.firstLSN = firstLSN
    }

    public var description: String { "epoch \(epoch) from LSN \(firstLSN)" }
}

/// The bytes of the file `epoch-history` in a log directory (docs/FORMAT.md section 21): the
/// first LSN of every epoch the log holds (or held before retention), as UTF-8 text:
///
///     shiplog-epochs 1\n
///     <epoch> <first LSN>\n      one line per epoch, decimal, ascending
///     crc32c <8 hex digits>\n    CRC-32C of every byte before this line
///
/// No I/O here: the log writes the file (ShipLogStorage) and recovery reads it.
public enum EpochHistoryFile {
    public static let fileName = "epoch-history"
    /// The name the file is written under before it is renamed over ``fileName``.
    public static let temporaryFileName = fileName + ".tmp"
    public static let magicLine = "shiplog-epochs 1"
    /// The largest epoch-history file read, in bytes (checked before the file is read).
    public static let fileBytesMax = 4 << 20
    /// The most entries a history holds, in entries; a log refuses to start an epoch beyond it.
    public static let entriesMax = 65_536
    static let crcPrefix = "crc32c "

    /// The file's bytes for `entries` (which must satisfy ``problem(in:)``).
    public static func encode(_ entries: [EpochStart]) -> [UInt8] {
        assert(problem(in: entries) == nil, "epoch history must be ascending")
        var text = magicLine + "\n"
        for entry in entries { text += "\(entry.epoch.rawValue) \(entry.firstLSN.rawValue)\n" }
        var bytes = Array(text.utf8)
        let crc = CRC32C.checksum(bytes)
        let digits = String(crc, radix: 16)
        bytes += Array((crcPrefix + String(repeating: "0", count: 8 - digits.count) + digits + "\n").utf8)
        return bytes
    }

    /// Why `entries` is not a valid history (epochs and first LSNs strictly ascending, none
    /// zero, at most ``entriesMax``), or `nil`.
    public static func problem(in entries: [EpochStart]) -> String? {
        if entries.count > entriesMax { return "\(entries.count) entries, more than \(entriesMax)" }
        var previous: EpochStart?
        for (index, entry) in entries.enumerated() {
            if entry.epoch.rawValue == 0 || entry.firstLSN == .zero {
                return "entry \(index) (\(entry)) has epoch or LSN 0"
            }
            if let previous, !(previous.epoch < entry.epoch && previous.firstLSN < entry.firstLSN) {
                return "entry \(index) (\(entry)) does not follow \(previous): epochs and LSNs must ascend"
            }
            previous = entry
        }
        return nil
    }

    /// Decodes a whole file, strictly: every condition of docs/FORMAT.md section 21, in order.
    public static func decode(_ bytes: [UInt8]) throws(EpochHistoryDefect) -> [EpochStart] {
        guard bytes.count <= fileBytesMax else {
            throw EpochHistoryDefect(line: 0, "file of \(bytes.count) bytes exceeds \(fileBytesMax) bytes")
        }
        guard bytes.last == UInt8(ascii: "\n") else { throw EpochHistoryDefect(line: 0, "does not end with a newline") }
        if let index = bytes.firstIndex(where: { $0 >= 0x80 || ($0 < 0x20 && $0 != UInt8(ascii: "\n")) }) {
            throw EpochHistoryDefect(line: 0, "byte \(index) is not printable ASCII")
        }
        let lines = bytes.dropLast().split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        guard lines.count >= 2 else { throw EpochHistoryDefect(line: 1, "needs a magic line and a CRC line") }
        guard String(decoding: lines[0], as: UTF8.self) == magicLine else {
            throw EpochHistoryDefect(line: 1, "first line is not \"\(magicLine)\"")
        }
        let crcLine = String(decoding: lines[lines.count - 1], as: UTF8.self)
        let hex = crcLine.dropFirst(crcPrefix.count)
        guard crcLine.hasPrefix(crcPrefix), hex.count == 8, hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }),
            let stored = UInt32(hex, radix: 16)
        else {
            throw EpochHistoryDefect(line: lines.count, "last line is not \"crc32c\" and 8 lowercase hex digits")
        }
        let computed = CRC32C.checksum(bytes[..<(bytes.count - crcLine.utf8.count - 1)])
        guard stored == computed else {
            throw EpochHistoryDefect(
                line: lines.count,
                "CRC mismatch (stored \(hex), computed \(String(computed, radix: 16)))")
        }
        let entryLines = lines.dropFirst().dropLast()
        guard entryLines.count <= entriesMax else {
            throw EpochHistoryDefect(line: 0, "\(entryLines.count) entries, more than \(entriesMax)")
        }
        var entries: [EpochStart] = []
        entries.reserveCapacity(entryLines.count)
        for (offset, line) in entryLines.enumerated() {
            let number = offset + 2
            let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
            guard fields.count == 2, let epoch = decimal(fields[0]), let lsn = decimal(fields[1]) else {
                throw EpochHistoryDefect(line: number, "is not \"<epoch> <first LSN>\" in decimal without leading zeros")
            }
            let entry = EpochStart(epoch: Epoch(epoch), firstLSN: LSN(lsn))
            if let previous = entries.last, !(previous.epoch < entry.epoch && previous.firstLSN < entry.firstLSN) {
                throw EpochHistoryDefect(line: number, "\(entry) does not follow \(previous): epochs and LSNs must ascend")
            }
            entries.append(entry)
        }
        return entries
    }

    /// A decimal u64 of 1 or more, without sign or leading zeros; `nil` otherwise.
    static func decimal(_ digits: ArraySlice<UInt8>) -> UInt64? {
        guard let first = digits.first, first >= UInt8(ascii: "1"), first <= UInt8(ascii: "9"), digits.count <= 20 else {
            return nil
        }
        var value: UInt64 = 0
        for digit in digits {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
            if overflow1 || overflow2 { return nil }
            value = sum
        }
        return value
    }
}

/// Why the bytes of an epoch-history file are invalid: the line (1-based; 0 for the file as a
/// whole) and the reason.
public struct EpochHistoryDefect: Error, Hashable, Sendable, CustomStringConvertible {
    public var line: Int
    public var reason: String

    public init(line: Int, _ reason: String) {
        self.line = line
        self.reason = reason
    }

    public var description: String { line == 0 ? reason : "line \(line): \(reason)" }
}
