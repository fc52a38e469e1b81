public import ShipLogFormat

/// Where the log's CRC chain stands at a given LSN: what a follower announces and a primary
/// checks when they compare positions (PROTOCOL.md section 7.1).
extension Log {
    /// The `batchCRC` of this log's batch that ends exactly at `lsn`.
    ///
    /// For `lsn == firstLSN - 1` it is the first retained segment header's `previousBatchCRC`
    /// (the link into the oldest batch the log holds), and for LSN 0 it is 0, the start of
    /// every chain. `nil` when `lsn` is not a batch boundary this log holds: it falls inside
    /// a batch, after the last batch, or before `firstLSN - 1`.
    ///
    /// May read one batch back from disk (`pread` on the calling thread) and, for a batch
    /// assigned but not yet written, wait for the I/O thread to write it: call it from a
    /// thread of your own, never from Swift's cooperative pool.
    public func batchCRC(endingAt lsn: LSN) throws(LogError) -> UInt32? {
        if lsn == .zero { return 0 }
        guard let boundary = try lastBatchBoundary(atOrBefore: lsn), boundary.lsn == lsn else { return nil }
        return boundary.batchCRC
    }

    /// The last batch boundary at or before `lsn` that this log holds, with the `batchCRC`
    /// of the batch ending there: `nextLSN - 1` and ``lastBatchCRC`` when `lsn` is at or past
    /// the end; `firstLSN - 1` and the first segment header's `previousBatchCRC` at the
    /// start. `nil` when `lsn < firstLSN - 1`.
    ///
    /// Blocking like ``batchCRC(endingAt:)``: call it from a thread of your own.
    public func lastBatchBoundary(atOrBefore lsn: LSN) throws(LogError) -> (lsn: LSN, batchCRC: UInt32)? {
        let (firstLSN, startCRC, nextLSN, lastCRC) = lock.withLock {
            (
                state.segments.first?.baseLSN ?? state.nextLSN,
                state.segments.first?.file.header.previousBatchCRC ?? state.lastBatchCRC,
                state.nextLSN, state.lastBatchCRC
            )
        }
        let endLSN = nextLSN.predecessor
        if lsn >= endLSN { return (endLSN, lastCRC) }
        if lsn.advanced(by: 1) < firstLSN { return nil }
        if lsn.advanced(by: 1) == firstLSN { return (lsn, startCRC) }
        // firstLSN <= lsn < endLSN: the batch holding lsn + 1 starts right after the boundary
        // sought, and its header names the CRC of the batch that ends there.
        let following = lsn.advanced(by: 1)
        try waitUntilWritten(through: following)
        let batch: Batch?
        do {
            batch = try self.batch(containing: following)
        } catch {
            if case .lsnBeforeStart = error { return nil }  // retention removed it meanwhile
            throw error
        }
        guard let batch, batch.lsnRange.first <= following, batch.lsnRange.last >= following else {
            throw .failed(underlying: "LSN \(following) is written but no batch holds it")
        }
        return (batch.lsnRange.first.predecessor, batch.header.previousBatchCRC)
    }

    /// Blocks until every LSN through `lsn` is written (the I/O thread broadcasts each write);
    /// throws if the log stops first. `lsn` must have been assigned (`lsn < nextLSN`).
    func waitUntilWritten(through lsn: LSN) throws(LogError) {
        lock.lock()
        defer { lock.unlock() }
        assert(lsn < state.nextLSN, "waiting for an LSN that was never assigned")
        while state.writtenLSN < lsn {
            if let failure = state.failure { throw Self.stopped(by: failure) }
            lock.wait()
        }
    }
}
