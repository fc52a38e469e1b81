public import ShipLogFormat

/// The log's epoch history: the first LSN of every epoch it holds, kept durable in the file
/// `epoch-history` (docs/FORMAT.md section 21) and written ahead of each epoch's first batch.
extension Log {
    /// Starts epoch `epoch` on this node (a promotion): batches appended from now on carry it.
    /// Its history entry is written, durably, just before its first batch (write-ahead), so a
    /// raise without an append is not remembered across a reopen.
    /// - Throws: ``LogError/invalidArgument(_:)`` unless `epoch` is greater than ``epoch``;
    ///   the log's failure when it has stopped, ``LogError/closed`` when closing.
    public func raiseEpoch(to epoch: Epoch) throws(LogError) {
        try lock.withLock { () throws(LogError) in
            if let failure = state.failure { throw Self.stopped(by: failure) }
            if state.closing { throw .closed }
            guard epoch > state.epoch else {
                throw .invalidArgument("cannot raise the epoch to \(epoch): the log's epoch is already \(state.epoch)")
            }
            state.epoch = epoch
        }
    }

    /// The first LSN of every epoch this log holds, ascending: of each epoch whose first
    /// batch has been written (assigned batches not yet written do not count). Entries of
    /// epochs whose records retention removed stay; only a truncation removes entries.
    public var epochHistory: [EpochStart] {
        lock.withLock { state.epochHistory.filter { $0.firstLSN <= state.writtenLSN } }
    }

    /// The history entry of the greatest epoch `<= epoch` in ``epochHistory``, or `nil`.
    public func epochStart(atOrBefore epoch: Epoch) -> EpochStart? {
        epochHistory.last { $0.epoch <= epoch }
    }

    /// The last LSN this log holds of the greatest epoch `<= epoch` in its history: the first
    /// LSN of the next epoch in the history minus 1, or ``writtenLSN`` when it is the newest.
    /// `nil` when the history has no epoch `<= epoch`. The divergence point of the leader-epoch
    /// walk-back (Kafka's KIP-101/KIP-279).
    public func epochEnd(atOrBefore epoch: Epoch) -> LSN? {
        let (history, written) = lock.withLock {
            (state.epochHistory.filter { $0.firstLSN <= state.writtenLSN }, state.writtenLSN)
        }
        guard let index = history.lastIndex(where: { $0.epoch <= epoch }) else { return nil }
        return index + 1 < history.count ? history[index + 1].firstLSN.predecessor : written
    }

    /// The epoch of the record at `lsn`, from the history; `nil` for LSN 0, an LSN not written
    /// yet, or one before the history's first entry.
    public func epoch(of lsn: LSN) -> Epoch? {
        let (history, written) = lock.withLock { (state.epochHistory, state.writtenLSN) }
        guard lsn != .zero, lsn <= written else { return nil }
        return history.last { $0.firstLSN <= lsn }?.epoch
    }

    // MARK: - Under the lock

    /// Refuses a batch of `epoch` that would start an epoch when the history is full (lock held).
    func checkEpochHistoryRoom(for epoch: Epoch) throws(LogError) {
        guard startsEpoch(epoch), state.epochHistory.count >= EpochHistoryFile.entriesMax else { return }
        throw .invalidArgument(
            "epoch \(epoch) cannot start: the epoch history holds \(EpochHistoryFile.entriesMax) entries, its limit")
    }

    /// Whether a batch of `epoch` assigned now is the first of its epoch (lock held).
    private func startsEpoch(_ epoch: Epoch) -> Bool {
        state.lastBatchEpoch.map { epoch > $0 } ?? true
    }

    /// Notes the batch about to be assigned at `firstLSN` with `epoch` (lock held): when it
    /// starts an epoch, adds the history entry and queues the history file's write ahead of
    /// the batch's own write.
    func recordEpochStartIfNeeded(epoch: Epoch, firstLSN: LSN) {
        if startsEpoch(epoch) {
            state.epochHistory.append(EpochStart(epoch: epoch, firstLSN: firstLSN))
            assert(EpochHistoryFile.problem(in: state.epochHistory) == nil, "epoch history must ascend")
            state.pending.append(.writeEpochHistory(state.epochHistory))
        }
        state.lastBatchEpoch = epoch
    }

    /// Why `records` cannot be the records of a control batch at `baseLSN` in `epoch`, or `nil`.
    func controlRecordProblem(_ records: [ControlRecord], epoch: Epoch, baseLSN: LSN) -> String? {
        for (index, record) in records.enumerated() {
            switch record {
            case .epochStart(let started, let previous, let previousLast):
                if started != epoch {
                    return "record \(index): epochStart of epoch \(started) in a batch of epoch \(epoch)"
                }
                if previous >= started {
                    return "record \(index): previous epoch \(previous) is not before epoch \(started)"
                }
                if previousLast >= baseLSN {
                    return "record \(index): previousEpochLastLSN \(previousLast) is not before the batch's LSN \(baseLSN)"
                }
            }
        }
        return nil
    }
}

extension EpochHistoryFile {
    /// Reads and checks `epoch-history` in `directory`; `nil` when there is no such file.
    /// - Throws: ``LogError/corruption(file:offset:lsnRange:reason:)`` naming the file and
    ///   the problem when it is invalid (docs/FORMAT.md section 21), ``LogError/io(_:)``.
    public static func read(directory: FilePath, fileSystem: any FileSystem) throws(LogError) -> [EpochStart]? {
        let path = directory.appending(fileName)
        let bytes: [UInt8]
        do {
            guard let handle = try openIfPresent(path, fileSystem: fileSystem) else { return nil }
            defer { handle.close() }
            let size = try handle.size()
            guard size <= Int64(fileBytesMax) else {
                throw LogError.corruption(
                    file: fileName, offset: 0, lsnRange: "unknown", reason: "file of \(size) bytes exceeds \(fileBytesMax) bytes")
            }
            bytes = try handle.read(count: Int(size), fromAbsoluteOffset: 0)
        } catch let error as LogError {
            throw error
        } catch let error as FileSystemError {
            throw .io(error)
        } catch {
            throw .failed(underlying: "\(error)")
        }
        do {
            return try decode(bytes)
        } catch {
            throw .corruption(file: fileName, offset: 0, lsnRange: "unknown", reason: error.description)
        }
    }

    /// Opens `path` for reading; `nil` when there is no such file. (Opened rather than asked
    /// about: `fileExists` cannot tell an absent file from an I/O error.)
    private static func openIfPresent(_ path: FilePath, fileSystem: any FileSystem) throws(FileSystemError) -> (any FileHandle)? {
        do {
            return try fileSystem.openFile(at: path, options: [.read])
        } catch {
            if error.errno == ENOENT_VALUE { return nil }
            throw error
        }
    }

    /// Replaces `epoch-history` in `directory` with `entries`, durably: written as
    /// `epoch-history.tmp`, fdatasynced, renamed over the old file, directory fsynced. A crash
    /// leaves the old file or the new one (and maybe a `.tmp` the next write removes).
    package static func write(
        _ entries: [EpochStart], directory: FilePath, fileSystem: any FileSystem
    ) throws(FileSystemError) {
        let temporary = directory.appending(temporaryFileName)
        if fileSystem.fileExists(at: temporary) { try fileSystem.removeFile(at: temporary) }
        let handle = try fileSystem.openFile(at: temporary, options: [.write, .createNew])
        var failure: FileSystemError?
        do {
            try handle.write(encode(entries), toAbsoluteOffset: 0)
            try handle.synchronizeData()
        } catch {
            failure = error
        }
        handle.close()
        if failure == nil {
            do { try fileSystem.rename(from: temporary, to: directory.appending(fileName)) } catch { failure = error }
        }
        if let failure {
            try? fileSystem.removeFile(at: temporary)  // an unfinished temporary file holds nothing needed
            throw failure
        }
        try fileSystem.syncDirectory(at: directory)
    }
}
