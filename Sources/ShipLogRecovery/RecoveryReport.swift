public import ShipLogFormat
import ShipLogStorage

/// What opening a log found and did. `Log.open` keeps it in ``LogRecovery`` results; the
/// `shiplog recover` command prints it.
public struct RecoveryReport: Sendable, CustomStringConvertible {
    public var mode: RecoveryMode = .strict
    /// Segment files found.
    public var segmentCount = 0
    /// Sealed segments trusted through their checked footers, without scanning.
    public var segmentsOpenedByFooter = 0
    /// Segments whose batches were read and checked.
    public var segmentsScanned = 0
    /// Bytes of batches checked while scanning.
    public var bytesScanned: Int64 = 0
    /// Torn tails cut off.
    public var truncations: [Truncation] = []
    /// Leftover `.tmp` files of interrupted segment creation, removed.
    public var removedTemporaryFiles: [String] = []
    /// Files in the directory that are not ShipLog's, left alone.
    public var unrecognizedFiles: [String] = []
    /// A segment found with a footer but not trimmed to it (crash while sealing), completed.
    public var sealsCompleted: [String] = []
    /// Sealed segments whose damaged or missing footer was written again from a clean scan.
    public var footersRebuilt: [String] = []
    /// Bytes and files moved into `quarantine/` (torn tails in strict mode; every cut in salvage).
    public var quarantined: [Quarantined] = []
    /// The epoch history was missing (or, in salvage mode, damaged) while the log held
    /// batches, and was rebuilt from the batches' epochs (docs/RECOVERY.md section 11).
    public var epochHistoryRebuilt = false
    /// Epoch history entries dropped because their first batch is not in the recovered log
    /// (never written, torn, or cut).
    public var epochHistoryDropped: [EpochStart] = []
    /// Things worth an operator's attention that did not stop the open.
    public var warnings: [String] = []
    /// First and last LSN of the recovered log (`nil` when empty).
    public var firstLSN: LSN?
    public var lastLSN: LSN?
    public var duration: Duration = .zero

    public init() {}

    /// A cut of a torn tail.
    public struct Truncation: Sendable, Hashable {
        public var file: String
        /// Where the kept data ends.
        public var offset: Int64
        /// File bytes dropped (up to the end of the file, preallocated zeros included).
        public var bytesDropped: Int64
        /// Checksummed batches after the tear that were dropped: written but never synced.
        public var unsyncedBatchesDropped: Int
        public var reason: String
    }

    /// Something recovery set aside in `quarantine/` instead of deleting it.
    public struct Quarantined: Sendable, Hashable {
        /// Path relative to the log directory, e.g. `quarantine/00000000000000000001.seg@4096`.
        public var name: String
        /// The segment the bytes came from.
        public var from: String
        /// Byte offset in `from` where the saved bytes started.
        public var offset: Int64
        public var bytes: Int64
        public var reason: String
    }

    /// Whether recovery changed anything on disk.
    public var repaired: Bool {
        !truncations.isEmpty || !quarantined.isEmpty || !sealsCompleted.isEmpty || !footersRebuilt.isEmpty
            || !removedTemporaryFiles.isEmpty
    }

    public var description: String {
        var lines: [String] = []
        let range = firstLSN.flatMap { first in lastLSN.map { "LSN \(first)...\($0)" } } ?? "empty"
        lines.append(
            "\(mode) recovery: \(range) from \(segmentCount) segment(s): \(segmentsOpenedByFooter) by footer, "
                + "\(segmentsScanned) scanned (\(bytesScanned) bytes) in \(duration)")
        for cut in truncations {
            lines.append(
                "truncated torn tail of \(cut.file) at byte \(cut.offset): \(cut.bytesDropped) bytes, "
                    + "\(cut.unsyncedBatchesDropped) unsynced batch(es) dropped (\(cut.reason))")
        }
        for name in sealsCompleted { lines.append("completed interrupted seal of \(name)") }
        for name in footersRebuilt { lines.append("rebuilt damaged footer of \(name) from a clean scan") }
        for item in quarantined {
            lines.append("moved \(item.bytes) bytes of \(item.from) from byte \(item.offset) to \(item.name): \(item.reason)")
        }
        for name in removedTemporaryFiles { lines.append("removed leftover \(name)") }
        if epochHistoryRebuilt { lines.append("rebuilt the epoch history from the batches' epochs") }
        for entry in epochHistoryDropped {
            lines.append("dropped epoch history entry \(entry): its first batch is not in the log")
        }
        for warning in warnings { lines.append("warning: \(warning)") }
        for name in unrecognizedFiles { lines.append("ignored unrecognized file \(name)") }
        return lines.joined(separator: "\n")
    }
}
