public import ShipLogFormat

/// Checks a whole log directory without changing it: every batch (header and payload CRC,
/// record block, control records), LSN continuity and the CRC chain within and across
/// segments, each footer against the batches it describes, and the epoch history against the
/// batches' epochs. Used by `shiplog verify`.
public struct LogVerifier {
    public let directory: FilePath
    let fileSystem: any FileSystem

    public init(directory: FilePath, fileSystem: any FileSystem = PosixFileSystem()) {
        self.directory = directory
        self.fileSystem = fileSystem
    }

    public struct Verification: Sendable {
        public var segmentCount = 0
        public var batchCount = 0
        public var firstLSN: LSN = .first
        public var lastLSN: LSN = .zero
        public var storedBytes: Int64 = 0
        /// One line per problem: file, byte offset, LSN range, what is wrong.
        public var problems: [String] = []
    }

    public func verify() throws(LogError) -> Verification {
        var result = Verification()
        let names = try LogDirectoryReader(directory: directory, fileSystem: fileSystem).segmentNames()
        result.segmentCount = names.count
        var previous: (lastLSN: LSN, lastBatchCRC: UInt32, name: String)?
        var epochStarts: [EpochStart] = []
        for (position, entry) in names.enumerated() {
            let isLast = position == names.count - 1
            let file: SegmentFile
            do {
                file = try SegmentFile.open(at: directory.appending(entry.name), fileSystem: fileSystem, writable: false)
            } catch {
                result.problems.append("\(entry.name): \(error)")
                return result
            }
            if position == 0 { result.firstLSN = file.baseLSN }
            if let previous {
                if file.baseLSN != previous.lastLSN.advanced(by: 1) {
                    result.problems.append(
                        "\(entry.name) byte 0: starts at LSN \(file.baseLSN) but \(previous.name) ends at LSN \(previous.lastLSN)")
                    return result
                }
                if file.header.previousBatchCRC != previous.lastBatchCRC {
                    result.problems.append("\(entry.name) byte 12: CRC chain broken between \(previous.name) and this segment")
                    return result
                }
            }
            // Index every batch, so that the footer's sparse index (whatever its interval) must be a subset.
            let scan = try SegmentScanner(file: file, indexIntervalBytes: 1, verifyRecords: true).scan()
            result.batchCount += scan.batchCount
            result.storedBytes += scan.storedBytes
            if scan.batchCount > 0 { result.lastLSN = scan.lastLSN }
            let storedFooter: SegmentFooter?
            do { storedFooter = try file.readFooter() } catch {
                result.problems.append("\(entry.name): \(error)")
                return result
            }
            switch scan.ending {
            case .footer(let footer):
                if storedFooter != footer {
                    result.problems.append(
                        "\(entry.name) byte \(footer.dataEnd): footer found after the batches is not the one the file ends with")
                    return result
                }
                if footer.index != scan.index.filter({ footer.index.contains($0) }) || footer.index.isEmpty {
                    result.problems.append("\(entry.name) byte \(footer.dataEnd): footer index does not match the batches")
                    return result
                }
            case .damagedFooter(let offset):
                result.problems.append(
                    "\(entry.name) byte \(offset) (LSN \(scan.lastLSN)): footer damaged (its batches verify; open rebuilds it)")
                return result
            case .endOfFile, .zeroFill:
                if !isLast {
                    result.problems.append(
                        "\(entry.name) byte \(scan.dataEnd) (LSN \(scan.lastLSN)): a segment before the last has no footer")
                    return result
                }
            case .damage(let damage):
                let kind = damage.isTornTail
                    ? (isLast ? "torn tail (never synced; the next open truncates it)" : "damage in a sealed segment")
                    : "corruption"
                result.problems.append(
                    "\(entry.name) byte \(damage.offset) (LSN \(damage.expectedLSN)...): \(kind): \(damage.reason)")
                return result
            }
            for start in scan.epochStarts where epochStarts.last.map({ start.epoch > $0.epoch }) ?? true {
                epochStarts.append(start)
            }
            previous = (scan.lastLSN, scan.lastBatchCRC, entry.name)
        }
        if let problem = epochHistoryProblem(batchEpochStarts: epochStarts, lastLSN: result.lastLSN) {
            result.problems.append("\(EpochHistoryFile.fileName): \(problem)")
        }
        return result
    }

    /// Why the epoch history disagrees with the epoch starts the batches show (the first one
    /// being the log's first batch), or `nil`. A missing file is no problem (opening rebuilds
    /// it), nor are entries beyond the last batch (a crash before their batch, or a writer
    /// about to write it).
    func epochHistoryProblem(batchEpochStarts starts: [EpochStart], lastLSN: LSN) -> String? {
        let stored: [EpochStart]?
        do { stored = try EpochHistoryFile.read(directory: directory, fileSystem: fileSystem) } catch {
            return "\(error)"
        }
        guard let stored, let first = starts.first else { return nil }
        let held = stored.filter { $0.firstLSN <= lastLSN }
        guard let covering = held.last(where: { $0.firstLSN <= first.firstLSN }), covering.epoch == first.epoch else {
            return "no entry gives epoch \(first.epoch) to the first batch (LSN \(first.firstLSN))"
        }
        let later = Array(held.filter { $0.firstLSN > first.firstLSN })
        guard later == Array(starts.dropFirst()) else {
            return "the history says \(later.map(\.description)), the batches start epochs at \(starts.dropFirst().map(\.description))"
        }
        return nil
    }
}
