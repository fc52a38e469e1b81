import ShipLogFormat
public import ShipLogStorage

/// Opens a log after any shutdown, clean or not. See docs/RECOVERY.md.
///
/// Sealed segments are trusted through their checked footers; only the last segment, the one
/// that could hold unsynced writes, is scanned. A torn tail there is truncated and reported;
/// anything else that is wrong stops the open with an error naming file, offset and LSN range.
public enum LogRecovery {
    /// Opens (creating when missing) the log in `directory`.
    public static func open(
        directory: FilePath, options: LogOptions = LogOptions(), fileSystem: any FileSystem = PosixFileSystem()
    ) throws(LogError) -> (log: Log, report: RecoveryReport) {
        let started = ContinuousClock.now
        try options.validate()
        var report = RecoveryReport()
        try prepareDirectory(directory, fileSystem: fileSystem, report: &report)
        let directoryLock: (any FileLock)?
        do {
            directoryLock = try fileSystem.lockFile(at: directory.appending(Log.lockFileName))
        } catch {
            throw .locked(directory: directory.string, error)
        }
        let names = try segmentFileNames(in: directory, fileSystem: fileSystem, report: &report)
        report.segmentCount = names.count
        var segments: [RecoveredSegment] = []
        for (position, name) in names.enumerated() {
            let isLast = position == names.count - 1
            let segment = try recoverSegment(
                at: directory.appending(name), isLast: isLast, previous: segments.last, options: options,
                fileSystem: fileSystem, report: &report)
            segments.append(segment)
        }
        if let last = segments.last, last.footer == nil {
            // What was read back is on disk from now on, so new batches may claim it synced.
            do { try last.file.handle.synchronizeData() } catch { throw .syncFailed(error) }
        }
        report.firstLSN = segments.first.map { $0.file.baseLSN }
        report.lastLSN = segments.last.map { $0.lastLSN }.flatMap { $0 == .zero ? nil : $0 }
        let log = try Log(
            directory: directory, fileSystem: fileSystem, options: options,
            recovered: RecoveredLog(segments: segments, epoch: options.epoch), directoryLock: directoryLock)
        report.duration = ContinuousClock.now - started
        return (log, report)
    }

    private static func prepareDirectory(
        _ directory: FilePath, fileSystem: any FileSystem, report: inout RecoveryReport
    ) throws(LogError) {
        do {
            if !fileSystem.fileExists(at: directory) {
                try fileSystem.createDirectory(at: directory)
                try fileSystem.syncDirectory(at: directory.parent)
            }
        } catch { throw .io(error) }
    }

    /// Segment file names in LSN order; removes leftover temporary files.
    private static func segmentFileNames(
        in directory: FilePath, fileSystem: any FileSystem, report: inout RecoveryReport
    ) throws(LogError) -> [String] {
        let entries: [String]
        do { entries = try fileSystem.contentsOfDirectory(at: directory) } catch { throw .io(error) }
        var segments: [(LSN, String)] = []
        for name in entries {
            if name == Log.lockFileName { continue }
            if let base = SegmentName.baseLSN(fromFileName: name) {
                segments.append((base, name))
            } else if name.hasSuffix("." + SegmentName.fileExtension + SegmentName.temporarySuffix) {
                do { try fileSystem.removeFile(at: directory.appending(name)) } catch { throw .io(error) }
                report.removedTemporaryFiles.append(name)
            } else {
                report.unrecognizedFiles.append(name)
            }
        }
        if !report.removedTemporaryFiles.isEmpty {
            do { try fileSystem.syncDirectory(at: directory) } catch { throw .io(error) }
        }
        return segments.sorted { $0.0 < $1.0 }.map(\.1)
    }

    private static func recoverSegment(
        at path: FilePath, isLast: Bool, previous: RecoveredSegment?, options: LogOptions,
        fileSystem: any FileSystem, report: inout RecoveryReport
    ) throws(LogError) -> RecoveredSegment {
        let file = try SegmentFile.open(at: path, fileSystem: fileSystem, writable: isLast)
        try checkContinuity(file, after: previous)
        if let footer = try file.readFooter() {
            report.segmentsOpenedByFooter += 1
            return RecoveredSegment(
                file: file, batchCount: footer.batchCount, lastLSN: footer.lastLSN, lastBatchCRC: footer.lastBatchCRC,
                lastEpoch: footer.lastEpoch, lastTimestamp: footer.lastTimestamp, dataEnd: Int64(footer.dataEnd),
                index: footer.index, footer: footer)
        }
        guard isLast else {
            throw LogError.corruption(
                file: file.fileName, offset: 0, lsnRange: "\(file.baseLSN)...",
                reason: "a segment before the last has no valid footer (it was sealed before the next was created)")
        }
        let scan = try SegmentScanner(file: file, indexIntervalBytes: options.indexIntervalBytes).scan()
        report.segmentsScanned += 1
        report.bytesScanned += scan.storedBytes
        var footer: SegmentFooter?
        switch scan.ending {
        case .endOfFile, .zeroFill:
            break
        case .footer(let found):
            // Crash between writing the footer and trimming the file: finish the seal.
            try finishSeal(file, footer: found)
            report.sealsCompleted.append(file.fileName)
            footer = found
        case .damage(let damage):
            guard damage.isTornTail else { throw corruption(in: file, damage: damage, scan: scan) }
            try truncate(file, at: damage.offset, options: options)
            report.truncations.append(
                RecoveryReport.Truncation(
                    file: file.fileName, offset: damage.offset, bytesDropped: damage.bytesAfter,
                    unsyncedBatchesDropped: damage.validBatchesAfter, reason: damage.reason))
        }
        return RecoveredSegment(
            file: file, batchCount: UInt32(scan.batchCount), lastLSN: scan.lastLSN, lastBatchCRC: scan.lastBatchCRC,
            lastEpoch: scan.lastEpoch, lastTimestamp: scan.lastTimestamp, dataEnd: scan.dataEnd, index: scan.index,
            footer: footer)
    }

    /// A segment must start right after the previous one ends and continue its CRC chain.
    private static func checkContinuity(_ file: SegmentFile, after previous: RecoveredSegment?) throws(LogError) {
        guard let previous else { return }
        let expected = previous.lastLSN.advanced(by: 1)
        if file.baseLSN != expected {
            throw .corruption(
                file: file.fileName, offset: 0, lsnRange: "\(previous.lastLSN.advanced(by: 1))...\(file.baseLSN.predecessor)",
                reason: file.baseLSN > expected
                    ? "LSNs \(expected)...\(file.baseLSN.predecessor) are missing: a segment is gone"
                    : "segment overlaps \(previous.file.fileName), which ends at LSN \(previous.lastLSN)")
        }
        if file.header.previousBatchCRC != previous.lastBatchCRC {
            throw .corruption(
                file: file.fileName, offset: 12, lsnRange: "\(file.baseLSN)...",
                reason: "CRC chain broken: segment header says the previous batch CRC is "
                    + "0x\(String(file.header.previousBatchCRC, radix: 16)), \(previous.file.fileName) ends with "
                    + "0x\(String(previous.lastBatchCRC, radix: 16))")
        }
    }

    private static func corruption(in file: SegmentFile, damage: SegmentScanner.Damage, scan: SegmentScanner.Result) -> LogError {
        var reason = damage.reason
        if let claim = damage.laterBatchClaimingDurability {
            reason += "; a valid batch at byte \(claim.offset) (LSN \(claim.lsnRange)) was written after LSN "
                + "\(damage.expectedLSN) was synced, so this is corruption, not a torn tail"
        } else if !damage.tornWriteSignature {
            reason += "; the damaged bytes were fully written, so this is corruption, not a torn write"
        }
        return .corruption(
            file: file.fileName, offset: damage.offset, lsnRange: "\(damage.expectedLSN)...", reason: reason)
    }

    /// Cuts a torn tail: the file ends at `offset`, and space after it reads as zeros again.
    private static func truncate(_ file: SegmentFile, at offset: Int64, options: LogOptions) throws(LogError) {
        do {
            try file.handle.truncate(toSize: offset)
            if options.preallocateSegments && offset < options.segmentBytesMax {
                do {
                    try file.handle.preallocate(fromAbsoluteOffset: offset, length: options.segmentBytesMax - offset)
                } catch where error.isUnsupported {}
            }
        } catch { throw .io(error) }
        do { try file.handle.synchronizeData() } catch { throw .syncFailed(error) }
    }

    private static func finishSeal(_ file: SegmentFile, footer: SegmentFooter) throws(LogError) {
        do {
            try file.handle.truncate(toSize: Int64(footer.dataEnd) + Int64(footer.byteCount))
        } catch { throw .io(error) }
        do { try file.handle.synchronizeData() } catch { throw .syncFailed(error) }
    }
}

extension Log {
    /// Opens (creating when missing) the log in `directory`, recovering from any crash first.
    /// See ``LogRecovery/open(directory:options:fileSystem:)`` for the report of what was done.
    public static func open(
        directory: FilePath, options: LogOptions = LogOptions(), fileSystem: any FileSystem = PosixFileSystem()
    ) throws(LogError) -> Log {
        try LogRecovery.open(directory: directory, options: options, fileSystem: fileSystem).log
    }
}
