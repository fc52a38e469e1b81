public import ShipLogFormat

/// When an append counts as done.
public enum Durability: Hashable, Sendable, CustomStringConvertible {
    /// Handed to the operating system (survives a process crash, not a power loss).
    case buffered
    /// Handed to the operating system; a background fdatasync makes it durable within the interval.
    case interval(Duration)
    /// On stable storage (fdatasync returned) before the append returns. Concurrent appenders
    /// share one write and one fdatasync (group commit).
    case immediate

    public var description: String {
        switch self {
        case .buffered: "buffered"
        case .interval(let d): "interval(\(d))"
        case .immediate: "immediate"
        }
    }
}

/// Tunables of a log. Every limit is named with its unit.
public struct LogOptions: Sendable {
    /// A segment is sealed and a new one started when the next batch would take it past this size.
    /// A single batch larger than this still gets a segment of its own.
    public var segmentBytesMax: Int64 = 128 << 20
    /// The sparse index gets an entry at the first batch after every this many bytes.
    public var indexIntervalBytes: Int64 = 4096
    /// Codec for new batches; incompressible batches are stored raw whatever this says.
    public var compression: CompressionCodec = .lz4
    /// Preallocate new segments (fallocate) to `segmentBytesMax`.
    public var preallocateSegments = true
    /// Epoch stamped on new batches.
    public var epoch: Epoch = .initial
    /// Bytes of appended batches not yet handed to the OS beyond which appenders wait.
    public var pendingBytesMax = 64 << 20
    /// Group commit: after an fdatasync, the next one waits at most this long for the appenders
    /// it acknowledged to come back with their next batch (never longer than half the last
    /// fdatasync took). Zero syncs as soon as any synchronous batch is written.
    public var groupCommitGatherMax: Duration = .microseconds(200)
    /// Entries of the log directory that layers above own (e.g. `checkpoints`): recovery leaves
    /// them alone and does not report them as unrecognized.
    public var auxiliaryNames: Set<String> = []
    /// Read-ahead of sequential readers, in bytes.
    public var readBufferBytes = 256 << 10

    public init() {}

    /// Checks each limit, naming the first that is out of range.
    public func validate() throws(LogError) {
        let minimumSegment = Int64(SegmentHeader.byteCount + BatchHeader.byteCount + 4096)
        guard segmentBytesMax >= minimumSegment && segmentBytesMax <= FormatLimits.segmentBytesMax else {
            throw .invalidOption("segmentBytesMax must be in \(minimumSegment)...\(FormatLimits.segmentBytesMax) bytes, got \(segmentBytesMax)")
        }
        guard indexIntervalBytes >= 512 else {
            throw .invalidOption("indexIntervalBytes must be at least 512 bytes, got \(indexIntervalBytes)")
        }
        guard pendingBytesMax >= 1 << 20 else {
            throw .invalidOption("pendingBytesMax must be at least 1 MiB, got \(pendingBytesMax)")
        }
        guard groupCommitGatherMax >= .zero && groupCommitGatherMax <= .seconds(1) else {
            throw .invalidOption("groupCommitGatherMax must be in 0...1 s, got \(groupCommitGatherMax)")
        }
        guard readBufferBytes >= 4096 else {
            throw .invalidOption("readBufferBytes must be at least 4096 bytes, got \(readBufferBytes)")
        }
    }
}

/// Errors of the log.
public enum LogError: Error, Sendable, CustomStringConvertible {
    /// fdatasync failed: the log accepts no more writes and acknowledges nothing written
    /// after the last successful sync (PostgreSQL's fsyncgate lesson). Reopen to recover.
    case syncFailed(FileSystemError)
    /// A write failed (EIO, ENOSPC, ...): the batch was not acknowledged; the log is read-only
    /// until reopened. Earlier acknowledged data is intact.
    case writeFailed(FileSystemError)
    /// The disk is full; the batch was not acknowledged, the log is read-only until reopened
    /// with space available.
    case outOfSpace(FileSystemError)
    /// An earlier failure stopped the log; the original error is attached.
    case failed(underlying: String)
    case closed
    /// A file is damaged where damage cannot be a torn tail.
    case corruption(file: String, offset: Int64, lsnRange: String, reason: String)
    /// An LSN before the oldest retained record.
    case lsnBeforeStart(requested: LSN, firstAvailable: LSN)
    case invalidOption(String)
    case invalidArgument(String)
    case io(FileSystemError)
    /// Another process has the log open for writing.
    case locked(directory: String, FileSystemError)

    public var description: String {
        switch self {
        case .syncFailed(let e): "fdatasync failed, log stopped (nothing further is acknowledged): \(e)"
        case .writeFailed(let e): "write failed, log is read-only until reopened: \(e)"
        case .outOfSpace(let e): "disk full, batch not acknowledged, log is read-only until reopened: \(e)"
        case .failed(let why): "log stopped after an earlier failure: \(why)"
        case .closed: "log is closed"
        case .corruption(let file, let offset, let range, let reason):
            "corruption in \(file) at byte \(offset) (LSN \(range)): \(reason)"
        case .lsnBeforeStart(let lsn, let first): "LSN \(lsn) is before the first retained LSN \(first)"
        case .invalidOption(let why): "invalid option: \(why)"
        case .invalidArgument(let why): "invalid argument: \(why)"
        case .io(let e): "\(e)"
        case .locked(let directory, let e): "log \(directory) is open for writing by another process (\(e))"
        }
    }
}
