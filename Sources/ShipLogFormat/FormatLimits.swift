/// Hard limits of format version 1. Input from outside is checked against these before any
/// allocation. Each is in the unit its name says.
public enum FormatLimits {
    /// The largest single record, in bytes.
    public static let recordBytesMax = 4 << 20
    /// The most records one batch may carry.
    public static let recordsPerBatchMax: UInt32 = 1 << 20
    /// The largest record block (the records with their length prefixes, before compression), in bytes.
    public static let batchUncompressedBytesMax = 16 << 20
    /// The largest stored payload, in bytes: an LZ4 block never exceeds its input by more than this bound.
    public static let batchStoredBytesMax = batchUncompressedBytesMax + batchUncompressedBytesMax / 255 + 16
    /// The largest whole batch (header and stored payload), in bytes.
    public static let batchBytesMax = BatchHeader.byteCount + batchStoredBytesMax
    /// The largest segment file, in bytes: positions in the segment index are 32-bit.
    public static let segmentBytesMax: Int64 = Int64(UInt32.max)
    /// The most index entries a segment footer may hold.
    public static let indexEntriesMax = 1 << 22
}

/// Which codec compressed a batch's record block.
public enum CompressionCodec: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    /// Stored as is.
    case none = 0
    /// One LZ4 block (liblz4's block format).
    case lz4 = 1

    public var description: String {
        switch self {
        case .none: "none"
        case .lz4: "lz4"
        }
    }

    public init?(name: String) {
        switch name {
        case "none": self = .none
        case "lz4": self = .lz4
        default: return nil
        }
    }
}
