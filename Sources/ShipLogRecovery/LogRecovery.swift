import ShipLogFormat
public import ShipLogStorage

/// How recovery treats damage that a crash cannot explain. See docs/RECOVERY.md.
public enum RecoveryMode: String, Sendable, CaseIterable, CustomStringConvertible {
    /// A torn tail is truncated (its bytes saved to quarantine first); any other damage refuses
    /// the open with an error naming file, offset and LSN range. The default.
    case strict
    /// Cuts the log at the first damage and moves everything after it into `quarantine/`
    /// beside the log. Never deletes. For when a replica is not there to repair from.
    case salvage

    public var description: String { rawValue }
}

/// Opens a log after any shutdown, clean or not, following docs/RECOVERY.md.
///
/// Sealed segments are trusted through their checked footers; only the last segment, the one
/// that could hold unsynced writes, is scanned. A torn tail there is truncated and reported.
/// What a crash cannot produce is refused (strict) or cut and quarantined (salvage).
public enum LogRecovery {
    /// Takes the directory's LOCK file (flock), so no other process opens the log meanwhile.
    static func lockDirectory(_ directory: FilePath, fileSystem: any FileSystem) throws(LogError) -> (any FileLock)? {
        do {
            return try fileSystem.lockFile(at: directory.appending(Log.lockFileName))
        } catch {
            throw .locked(directory: directory.string, error)
        }
    }

    /// Opens (creating when missing) the log in `directory`.
    public static func open(
        directory: FilePath, options: LogOptions = LogOptions(), fileSystem: any FileSystem = PosixFileSystem(),
        mode: RecoveryMode = .strict
    ) throws(LogError) -> (log: Log, report: RecoveryReport) {
        let started = ContinuousClock.now
        try options.validate()
        let options = withEpochHistoryNames(options)
        var report = RecoveryReport()
        report.mode = mode
        try prepareDirectory(directory, fileSystem: fileSystem)
        let directoryLock = try lockDirectory(directory, fileSystem: fileSystem)
        let recovered = try recoverLocked(
            directory: directory, options: options, fileSystem: fileSystem, mode: mode, report: &report)
        let log = try Log(
            directory: directory, fileSystem: fileSystem, options: options, recovered: recovered,
            directoryLock: directoryLock)
        report.duration = ContinuousClock.now - started
        return (log, report)
    }

    /// `options` with the epoch history's file names among the auxiliary names, so that
    /// recovery leaves them alone.
    static func withEpochHistoryNames(_ options: LogOptions) -> LogOptions {
        var options = options
        options.auxiliaryNames.insert(EpochHistoryFile.fileName)
        options.auxiliaryNames.insert(EpochHistoryFile.temporaryFileName)
        return options
    }

    /// Recovery proper, with the directory's `LOCK` held: the segments (docs/RECOVERY.md
    /// section 2), the last one made durable, then the epoch history reconciled with them
    /// (section 11).
    static func recoverLocked(
        directory: FilePath, options: LogOptions, fileSystem: any FileSystem, mode: RecoveryMode,
        report: inout RecoveryReport
    ) throws(LogError) -> RecoveredLog {
        var recovery = Recovery(
            directory: directory, fileSystem: fileSystem, options: options, mode: mode, report: report)
        let segments = try recovery.run()
        report = recovery.report
        if let last = segments.last {
            // What was read back must be on disk from now on, so that new batches may claim it
            // synced. After a failed fdatasync (fsyncgate) the page cache can serve bytes the
            // disk never got, and a plain fdatasync would not write them: find and rewrite them.
            let end = last.dataEnd + Int64(last.footer?.byteCount ?? 0)
            try Self.rewriteBytesMissingFromDisk(in: last.file, upTo: end, report: &report)
            do { try last.file.handle.synchronizeData() } catch { throw .syncFailed(error) }
        }
        report.firstLSN = segments.first.map { $0.file.baseLSN }
        report.lastLSN = segments.last.map { $0.lastLSN }.flatMap { $0 == .zero ? nil : $0 }
        let history = try reconcileEpochHistory(
            segments: segments, directory: directory, fileSystem: fileSystem, mode: mode, report: &report)
        return RecoveredLog(segments: segments, epoch: options.epoch, epochHistory: history)
    }

    /// Bytes compared per step when checking the last segment against the disk.
    static let diskCheckChunkBytes = 4 << 20

    /// Compares the page-cache view of `file` with what the device holds (O_DIRECT) and
    /// rewrites every chunk where they differ, so that the following fdatasync persists it.
    /// Where the file system cannot bypass its cache the check is skipped with a warning.
    static func rewriteBytesMissingFromDisk(
        in file: SegmentFile, upTo end: Int64, report: inout RecoveryReport
    ) throws(LogError) {
        var offset: Int64 = 0
        var rewritten: Int64 = 0
        while offset < end {
            let count = Int(min(Int64(diskCheckChunkBytes), end - offset))
            let cached: [UInt8]
            do { cached = try file.handle.read(count: count, fromAbsoluteOffset: offset) } catch { throw .io(error) }
            var disk = [UInt8](repeating: 0, count: count)
            do {
                let got = try disk.withUnsafeMutableBytes { raw in
                    Result { () throws(FileSystemError) in try file.handle.readBypassingCache(into: raw, fromAbsoluteOffset: offset) }
                }.get()
                if got < count { disk.removeLast(count - got) }
            } catch {
                report.warnings.append(
                    "could not read \(file.fileName) bypassing the page cache (\(error)); bytes a failed fdatasync "
                        + "left only in the cache would not be detected")
                return
            }
            if cached != disk {
                do { try file.handle.write(cached, toAbsoluteOffset: offset) } catch { throw .io(error) }
                rewritten += Int64(cached.count)
            }
            offset += Int64(count)
        }
        if rewritten > 0 {
            report.warnings.append(
                "\(file.fileName): the page cache held bytes the disk did not (an earlier fdatasync failed?); "
                    + "rewrote \(rewritten) bytes before syncing")
        }
    }

    /// Creates the directory (and missing ancestors), each made durable in its parent, and
    /// fsyncs the directory itself, so that every segment name found in it is durable before
    /// anything written into those segments is acknowledged.
    static func prepareDirectory(_ directory: FilePath, fileSystem: any FileSystem) throws(LogError) {
        do {
            var missing: [FilePath] = []
            var path = directory
            while !fileSystem.fileExists(at: path) && path.parent != path {
                missing.append(path)
                path = path.parent
            }
            for created in missing.reversed() {
                try fileSystem.createDirectory(at: created)
                try fileSystem.syncDirectory(at: created.parent)
            }
            // Every ancestor, on every open: a crash may have cut the creation of any of them
            // short before its parent was synced, and what is acknowledged from now on must not
            // vanish with a directory. A few fsyncs of clean directories cost little.
            var ancestor = directory
            while ancestor.parent != ancestor {
                ancestor = ancestor.parent
                try fileSystem.syncDirectory(at: ancestor)
            }
            try fileSystem.syncDirectory(at: directory)
        } catch { throw .io(error) }
    }
}

extension Log {
    /// Opens (creating when missing) the log in `directory`, recovering from any crash first
    /// in strict mode. ``LogRecovery/open(directory:options:fileSystem:mode:)`` also returns
    /// the report of what was done.
    public static func open(
        directory: FilePath, options: LogOptions = LogOptions(), fileSystem: any FileSystem = PosixFileSystem()
    ) throws(LogError) -> Log {
        try LogRecovery.open(directory: directory, options: options, fileSystem: fileSystem).log
    }
}

/// One run of recovery over a directory: the decision table of docs/RECOVERY.md, row by row.
struct Recovery {
    let directory: FilePath
    let fileSystem: any FileSystem
    let options: LogOptions
    let mode: RecoveryMode
    var report: RecoveryReport

    /// Checks every segment in LSN order and returns what the log continues from.
    mutating func run() throws(LogError) -> [RecoveredSegment] {
        let names = try segmentFileNames()
        report.segmentCount = names.count
        var segments: [RecoveredSegment] = []
        for (position, name) in names.enumerated() {
            let isLast = position == names.count - 1
            switch try recoverSegment(named: name, isLast: isLast, previous: segments.last) {
            case .keep(let segment):
                segments.append(segment)
            case .cut(let segment, let damage):
                // Salvage: keep the segment up to the damage; everything later goes to quarantine.
                segments.append(segment)
                try quarantine(segmentsNamed: Array(names[(position + 1)...]), because: damage)
                return segments
            case .drop(let damage):
                try quarantine(segmentsNamed: Array(names[position...]), because: damage)
                return segments
            }
        }
        return segments
    }

    /// What to do with one segment.
    enum Decision {
        case keep(RecoveredSegment)
        /// Salvage cut this segment at damage; later segments must go.
        case cut(RecoveredSegment, reason: String)
        /// Salvage: this segment and every later one go to quarantine.
        case drop(reason: String)
    }

    /// Segment file names in LSN order; removes leftover temporary files.
    private mutating func segmentFileNames() throws(LogError) -> [String] {
        let entries: [String]
        do { entries = try fileSystem.contentsOfDirectory(at: directory) } catch { throw .io(error) }
        var segments: [(LSN, String)] = []
        var removed = false
        for name in entries {
            if name == Log.lockFileName || name == Quarantine.directoryName || options.auxiliaryNames.contains(name) {
                continue
            }
            if let base = SegmentName.baseLSN(fromFileName: name) {
                segments.append((base, name))
            } else if name.hasSuffix("." + SegmentName.fileExtension + SegmentName.temporarySuffix) {
                // An interrupted segment creation: the segment never held a batch.
                do { try fileSystem.removeFile(at: directory.appending(name)) } catch { throw .io(error) }
                report.removedTemporaryFiles.append(name)
                removed = true
            } else {
                report.unrecognizedFiles.append(name)
            }
        }
        if removed {
            do { try fileSystem.syncDirectory(at: directory) } catch { throw .io(error) }
        }
        return segments.sorted { $0.0 < $1.0 }.map(\.1)
    }

    private mutating func recoverSegment(
        named name: String, isLast: Bool, previous: RecoveredSegment?
    ) throws(LogError) -> Decision {
        let path = directory.appending(name)
        let file: SegmentFile
        do {
            file = try SegmentFile.open(at: path, fileSystem: fileSystem, writable: true)
        } catch {
            // Segments are created under a temporary name and renamed once their header is
            // synced, so a bad header under a segment's name is damage, not a crash.
            return try refuseOrDrop(error, reason: "unreadable segment header in \(name)")
        }
        if let problem = Self.continuityProblem(file, after: previous) {
            return try refuseOrDrop(problem, reason: "\(name) does not continue the log")
        }
        // The last segment is always scanned, sealed or not: a crash during its seal can leave
        // the footer on disk while batches written just before it (not yet synced) are not.
        // Every earlier segment was sealed and synced before the next one was created.
        let footer: SegmentFooter?
        do { footer = try file.readFooter() } catch { footer = nil }  // a damaged footer is rebuilt below
        if !isLast, let footer, footer.lastLSN >= file.baseLSN {
            report.segmentsOpenedByFooter += 1
            return .keep(
                RecoveredSegment(
                    file: file, batchCount: footer.batchCount, lastLSN: footer.lastLSN,
                    lastBatchCRC: footer.lastBatchCRC, lastEpoch: footer.lastEpoch,
                    lastTimestamp: footer.lastTimestamp, dataEnd: Int64(footer.dataEnd), index: footer.index,
                    footer: footer))
        }
        return try scanSegment(file, isLast: isLast)
    }

    /// Scans a segment that has no trustworthy footer: the active one, or a sealed one whose
    /// footer is damaged or missing.
    private mutating func scanSegment(_ file: SegmentFile, isLast: Bool) throws(LogError) -> Decision {
        let scan = try SegmentScanner(file: file, indexIntervalBytes: options.indexIntervalBytes).scan()
        report.segmentsScanned += 1
        report.bytesScanned += scan.storedBytes
        var segment = RecoveredSegment(
            file: file, batchCount: UInt32(scan.batchCount), lastLSN: scan.lastLSN, lastBatchCRC: scan.lastBatchCRC,
            lastEpoch: scan.lastEpoch, lastTimestamp: scan.lastTimestamp, dataEnd: scan.dataEnd, index: scan.index,
            footer: nil)
        switch scan.ending {
        case .footer(let found):
            // The footer checks out against every batch. If the crash came between writing it
            // and trimming the file, finish the seal; either way make it durable.
            let size: Int64
            do { size = try file.handle.size() } catch { throw .io(error) }
            try finishSeal(file, footer: found)
            if size != Int64(found.dataEnd) + Int64(found.byteCount) { report.sealsCompleted.append(file.fileName) }
            segment.footer = found
            return .keep(segment)
        case .damagedFooter where isLast, .endOfFile where isLast, .zeroFill where isLast:
            // A torn or damaged footer of the last segment: its batches all checked out, so the
            // segment simply stays active (the next roll seals it again).
            if case .damagedFooter(let offset) = scan.ending {
                let reason = "damaged footer of the last segment; its batches verify and it stays active"
                let size: Int64
                do { size = try file.handle.size() } catch { throw .io(error) }
                try saveAndTruncate(file, at: offset, reason: reason, tornTail: true)
                report.truncations.append(
                    RecoveryReport.Truncation(
                        file: file.fileName, offset: offset, bytesDropped: size - offset, unsyncedBatchesDropped: 0,
                        reason: reason))
            }
            return .keep(segment)
        case .endOfFile, .zeroFill, .damagedFooter:
            // A sealed segment whose footer is gone or damaged, while every batch checks out:
            // the footer is derived data, so write it again.
            guard scan.batchCount > 0 else {
                return try refuseOrCut(
                    segment, at: scan.dataEnd,
                    LogError.corruption(
                        file: file.fileName, offset: scan.dataEnd, lsnRange: "\(file.baseLSN)...",
                        reason: "a segment before the last holds no batch"))
            }
            segment.footer = try rebuildFooter(file, scan: scan)
            report.footersRebuilt.append(file.fileName)
            return .keep(segment)
        case .damage(let damage):
            if damage.isTornTail && isLast {
                try saveAndTruncate(file, at: damage.offset, reason: "torn tail: \(damage.reason)", tornTail: true)
                report.truncations.append(
                    RecoveryReport.Truncation(
                        file: file.fileName, offset: damage.offset, bytesDropped: damage.bytesAfter,
                        unsyncedBatchesDropped: damage.validBatchesAfter, reason: damage.reason))
                return .keep(segment)
            }
            return try refuseOrCut(segment, at: damage.offset, Self.corruption(in: file, damage: damage, isLast: isLast))
        }
    }

    /// Strict: throw. Salvage: quarantine this segment and everything after it.
    private func refuseOrDrop(_ error: LogError, reason: String) throws(LogError) -> Decision {
        guard mode == .salvage else { throw error }
        return .drop(reason: "\(reason): \(error)")
    }

    /// Strict: throw. Salvage: cut this segment at `offset` (its bytes from there saved) and
    /// quarantine every later segment.
    private mutating func refuseOrCut(
        _ segment: RecoveredSegment, at offset: Int64, _ error: LogError
    ) throws(LogError) -> Decision {
        guard mode == .salvage else { throw error }
        try saveAndTruncate(segment.file, at: offset, reason: "\(error)")
        var kept = segment
        kept.footer = nil
        return .cut(kept, reason: "\(error)")
    }

    /// A segment must start right after the previous one ends and continue its CRC chain.
    static func continuityProblem(_ file: SegmentFile, after previous: RecoveredSegment?) -> LogError? {
        guard let previous else { return nil }
        let expected = previous.lastLSN.advanced(by: 1)
        if file.baseLSN != expected {
            let range = file.baseLSN > expected
                ? "\(expected)...\(file.baseLSN.predecessor)" : "\(file.baseLSN)...\(previous.lastLSN)"
            return .corruption(
                file: file.fileName, offset: 0, lsnRange: range,
                reason: file.baseLSN > expected
                    ? "LSNs \(expected)...\(file.baseLSN.predecessor) are missing: a segment is gone"
                    : "segment overlaps \(previous.file.fileName), which ends at LSN \(previous.lastLSN)")
        }
        if file.header.previousBatchCRC != previous.lastBatchCRC {
            return .corruption(
                file: file.fileName, offset: 12, lsnRange: "\(file.baseLSN)...",
                reason: "CRC chain broken: segment header says the previous batch CRC is "
                    + "0x\(String(file.header.previousBatchCRC, radix: 16)), \(previous.file.fileName) ends with "
                    + "0x\(String(previous.lastBatchCRC, radix: 16))")
        }
        return nil
    }

    static func corruption(in file: SegmentFile, damage: SegmentScanner.Damage, isLast: Bool) -> LogError {
        var reason = damage.reason
        if let claim = damage.laterBatchClaimingDurability {
            reason += "; a valid batch at byte \(claim.offset) (LSN \(claim.lsnRange)) was written after LSN "
                + "\(damage.expectedLSN) was synced, so this is corruption, not a torn tail"
        } else if !damage.tornWriteSignature {
            reason += "; the damaged bytes were fully written, so this is corruption, not a torn write"
        } else if !isLast {
            reason += "; the segment was sealed (synced) before the next one was created, so this is corruption"
        }
        return .corruption(file: file.fileName, offset: damage.offset, lsnRange: "\(damage.expectedLSN)...", reason: reason)
    }

    // MARK: - Repairs

    /// Copies what would be cut (up to the last non-zero byte) into quarantine, then truncates:
    /// the file ends at `offset` and space after it reads as zeros again.
    ///
    /// A torn tail was never acknowledged, so saving it is a courtesy: when the copy cannot be
    /// made (typically a full disk, the very reason a write tore), the cut goes ahead and the
    /// report says so. Anything else cut (salvage) must be saved first.
    private mutating func saveAndTruncate(
        _ file: SegmentFile, at offset: Int64, reason: String, tornTail: Bool = false
    ) throws(LogError) {
        do throws(LogError) {
            if let saved = try Quarantine(directory: directory, fileSystem: fileSystem)
                .saveTail(of: file, from: offset, reason: reason)
            {
                report.quarantined.append(saved)
            }
        } catch {
            guard tornTail else { throw error }
            report.warnings.append(
                "could not save the torn tail of \(file.fileName) from byte \(offset) to quarantine (\(error)); "
                    + "it was never acknowledged and is truncated anyway")
        }
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

    private mutating func quarantine(segmentsNamed names: [String], because reason: String) throws(LogError) {
        let quarantine = Quarantine(directory: directory, fileSystem: fileSystem)
        for name in names {
            report.quarantined.append(try quarantine.moveSegment(named: name, reason: reason))
        }
    }

    private func finishSeal(_ file: SegmentFile, footer: SegmentFooter) throws(LogError) {
        do {
            try file.handle.truncate(toSize: Int64(footer.dataEnd) + Int64(footer.byteCount))
        } catch { throw .io(error) }
        do { try file.handle.synchronizeData() } catch { throw .syncFailed(error) }
    }

    /// Writes a footer from the scan of a sealed segment whose own footer was damaged or lost.
    private func rebuildFooter(_ file: SegmentFile, scan: SegmentScanner.Result) throws(LogError) -> SegmentFooter {
        let footer = SegmentFooter(
            batchCount: UInt32(scan.batchCount), lastLSN: scan.lastLSN, dataEnd: UInt64(scan.dataEnd),
            lastTimestamp: scan.lastTimestamp, lastEpoch: scan.lastEpoch, lastBatchCRC: scan.lastBatchCRC,
            index: scan.index)
        let bytes = footer.encoded(baseLSN: file.baseLSN)
        do {
            try file.handle.write(bytes, toAbsoluteOffset: scan.dataEnd)
            try file.handle.truncate(toSize: scan.dataEnd + Int64(bytes.count))
        } catch { throw .io(error) }
        do { try file.handle.synchronizeData() } catch { throw .syncFailed(error) }
        return footer
    }
}
