import Glibc
import ShipLog

/// `shiplog append --server HOST:PORT`: stdin lines become records appended on the primary,
/// many requests in flight at once; one LSN per input line on stdout, in input order, as the
/// acknowledgements arrive.
struct RemoteAppendCommand {
    /// Bytes read from stdin at a time.
    static let readChunkBytes = 64 << 10
    /// Record bytes per AppendRequest at most (a longer line still travels alone).
    static let requestRecordBytesMax = 1 << 20

    /// How long to look for a new primary after losing the current one.
    static let failoverPatience: Duration = .seconds(30)
    /// Pause before sending failed requests again, so a primary that is still gathering its
    /// followers is not asked again at once.
    static let failoverBackoff: Duration = .milliseconds(100)

    let arguments: ParsedArguments
    let server: Endpoint
    /// Every node named by `--server A,B,C`: with more than one, a lost or replaced primary is
    /// looked for again among them and the unanswered requests are sent to the new one.
    let servers: [Endpoint]
    let level: CommitLevel?

    init(_ arguments: ParsedArguments, server: Endpoint) throws {
        self.arguments = arguments
        self.server = server
        servers = try Commands.endpoints(arguments, "server")
        level = try Commands.commitLevel(arguments)
    }

    func run() throws -> Int32 {
        var client = servers.count > 1
            ? try Commands.connectToPrimary(arguments, among: servers, knownEpoch: Epoch(0), patience: Self.failoverPatience)
            : try Commands.connect(arguments, to: server)
        let level = self.level  // nil: the primary's default (commitKind 5)
        let sequencer = AcknowledgementSequencer(retrying: servers.count > 1)
        var records: [[UInt8]] = []
        var recordBytes = 0
        var lineNumber = 0

        func send(_ index: Int, _ batch: [[UInt8]], on client: ReplicationClient) {
            client.submitAppend(batch, level: level) { result in sequencer.finished(index, result) }
        }

        func submit() {
            guard !records.isEmpty else { return }
            let index = sequencer.started(firstLine: lineNumber - records.count + 1, records: records)
            send(index, records, on: client)
            records.removeAll(keepingCapacity: true)
            recordBytes = 0
        }

        /// After a failover: every request that failed for a reason a new primary can fix is
        /// sent again, in order, to the primary found among the servers. (A request whose
        /// answer was lost may have been appended by the old primary: it is then appended
        /// twice; only the acknowledged LSNs are printed.)
        var retryingSince: ContinuousClock.Instant?
        var acknowledgedBeforeRetrying = 0
        func failOver() throws {
            sequencer.waitForAll()
            // A primary found by the last failover acknowledged appends: this is a new
            // failover, with a patience of its own.
            if sequencer.acknowledgedCount > acknowledgedBeforeRetrying { retryingSince = nil }
            guard sequencer.needsRetry else {
                retryingSince = nil
                return
            }
            if retryingSince == nil { acknowledgedBeforeRetrying = sequencer.acknowledgedCount }
            let since = retryingSince ?? .now
            retryingSince = since
            guard ContinuousClock.now - since < Self.failoverPatience else {
                sequencer.giveUpRetries()
                throw CommandError("append --server: no primary among the servers took the appends again within \(Self.failoverPatience)")
            }
            let retry = sequencer.takeRetries()
            usleep(UInt32(Self.failoverBackoff.nanoseconds / 1000))
            client.close()
            client = try Commands.connectToPrimary(arguments, among: servers, knownEpoch: sequencer.highestEpoch, patience: Self.failoverPatience)
            for (index, batch) in retry { send(index, batch, on: client) }
        }

        func add(_ line: ArraySlice<UInt8>) throws {
            guard line.count <= FormatLimits.recordBytesMax else {
                throw CommandError("line \(lineNumber + 1) has \(line.count) bytes, more than recordBytesMax (\(FormatLimits.recordBytesMax))")
            }
            if recordBytes + line.count > Self.requestRecordBytesMax { submit() }
            lineNumber += 1
            records.append(Array(line))
            recordBytes += line.count
        }

        var inputError: (any Error)?
        do {
            var lines = LineReader(descriptor: 0, chunkBytes: Self.readChunkBytes, lineBytesMax: FormatLimits.recordBytesMax)
            while !sequencer.hasFailure, let chunk = try lines.nextChunk() {
                for line in chunk { try add(line) }
                submit()
                if sequencer.needsRetry { try failOver() }
            }
            submit()
            while true {
                sequencer.waitForAll()
                guard sequencer.needsRetry else { break }
                try failOver()
            }
        } catch {
            inputError = error
        }
        sequencer.waitForAll()
        client.close()
        Output.standard.flush()
        if let inputError { throw inputError }
        if let (line, error) = sequencer.failure {
            throw CommandError("append --server \(server): stopped at input line \(line) (the LSNs of the lines before it were printed): \(error)")
        }
        return 0
    }
}

/// Stdin split into lines, a read(2) at a time: each call returns the complete lines of the
/// next read (a last line without its newline included at the end of input).
struct LineReader {
    let descriptor: Int32
    let lineBytesMax: Int
    private var chunk: [UInt8]
    private var partial: [UInt8] = []
    private var ended = false

    init(descriptor: Int32, chunkBytes: Int, lineBytesMax: Int) {
        self.descriptor = descriptor
        self.lineBytesMax = lineBytesMax
        chunk = [UInt8](repeating: 0, count: chunkBytes)
    }

    /// The lines completed by the next read; `nil` at the end of input.
    mutating func nextChunk() throws -> [ArraySlice<UInt8>]? {
        guard !ended else { return nil }
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CommandError("reading standard input: \(String(cString: strerror(errno)))")
            }
            if n == 0 {
                ended = true
                guard !partial.isEmpty else { return nil }
                defer { partial.removeAll() }
                return [partial[...]]
            }
            var lines: [ArraySlice<UInt8>] = []
            var start = 0
            for i in 0..<n where chunk[i] == UInt8(ascii: "\n") {
                if partial.isEmpty {
                    lines.append(chunk[start..<i])
                } else {
                    partial.append(contentsOf: chunk[start..<i])
                    lines.append(ArraySlice(partial))
                    partial.removeAll(keepingCapacity: true)
                }
                start = i + 1
            }
            partial.append(contentsOf: chunk[start..<n])
            guard partial.count <= lineBytesMax else {
                throw CommandError("a line is longer than recordBytesMax (\(lineBytesMax) bytes)")
            }
            return lines
        }
    }
}

/// Requests in input order and their answers, which may arrive in any order: prints the LSNs
/// of the longest answered prefix, and stops printing at the first failed request (lines
/// after it keep no LSN, so every printed LSN belongs to the line at the same position).
final class AcknowledgementSequencer: @unchecked Sendable {
    // @unchecked: every var is guarded by `lock`; stdout is written only under it.
    private let lock = NSLockLike()
    /// Whether failures a new primary can fix are kept for ``takeRetries()`` instead of
    /// stopping the output.
    private let retrying: Bool
    private var firstLines: [Int: Int] = [:]
    private var requests: [Int: [[UInt8]]] = [:]
    private var answers: [Int: Result<AppendResult, ReplicationError>] = [:]
    private var retries: [Int] = []
    private var started = 0
    private var nextToPrint = 0
    private var outstanding = 0
    private var anyFailure = false
    private var epoch = Epoch(0)
    private var acknowledged = 0
    private(set) var stoppedAt: (line: Int, error: ReplicationError)?

    init(retrying: Bool = false) { self.retrying = retrying }

    /// Registers a request of `records` starting at input line `firstLine`; returns its index.
    func started(firstLine: Int, records: [[UInt8]]) -> Int {
        lock.withLock {
            defer { started += 1 }
            firstLines[started] = firstLine
            if retrying { requests[started] = records }
            outstanding += 1
            return started
        }
    }

    /// Called with each answer, on the client's thread.
    func finished(_ index: Int, _ result: Result<AppendResult, ReplicationError>) {
        lock.withLock {
            outstanding -= 1
            if case .failure(let error) = result, retrying, Self.isFixedByFailover(error) {
                retries.append(index)
            } else {
                answers[index] = result
                requests[index] = nil
                if case .success(let appended) = result {
                    epoch = max(epoch, appended.epoch)
                    acknowledged += 1
                }
                if case .failure = result { anyFailure = true }
                printReady()
            }
        }
        lock.signal()
    }

    /// Requests acknowledged so far.
    var acknowledgedCount: Int { lock.withLock { acknowledged } }

    /// Errors after which the same request may succeed on another primary.
    static func isFixedByFailover(_ error: ReplicationError) -> Bool {
        switch error {
        case .transport, .connectionClosed, .truncatedStream, .shutDown: return true
        case .refused(_, let failure), .requestFailed(let failure):
            switch failure.reason {
            // commitUnavailable: a new primary answers before its followers have reconnected
            // (Kafka retries NOT_ENOUGH_REPLICAS the same way); nothing was appended.
            case .notPrimary, .shuttingDown, .staleEpoch, .logFailed, .commitUnavailable: return true
            default: return false
            }
        default: return false
        }
    }

    var needsRetry: Bool { lock.withLock { !retries.isEmpty } }
    var highestEpoch: Epoch { lock.withLock { epoch } }

    /// Ends the requests waiting to be sent again as failed (the command gives up).
    func giveUpRetries() {
        lock.withLock {
            for index in retries { answers[index] = .failure(.shutDown) }
            retries.removeAll()
            anyFailure = true
            printReady()
        }
    }

    /// The requests to send again (index and records), in input order; each counts as
    /// outstanding again.
    func takeRetries() -> [(Int, [[UInt8]])] {
        lock.withLock {
            let taken = retries.sorted().map { ($0, requests[$0] ?? []) }
            retries.removeAll()
            outstanding += taken.count
            return taken
        }
    }

    /// With the lock held: prints answers in order until one is missing or failed.
    private func printReady() {
        guard stoppedAt == nil else { return }
        var text = ""
        while let answer = answers.removeValue(forKey: nextToPrint) {
            switch answer {
            case .success(let result):
                for lsn in result.range.first.rawValue...result.range.last.rawValue { text += "\(lsn)\n" }
            case .failure(let error):
                stoppedAt = (firstLines[nextToPrint] ?? 0, error)
            }
            firstLines[nextToPrint] = nil
            nextToPrint += 1
            if stoppedAt != nil { break }
        }
        guard !text.isEmpty else { return }
        Output.standard.write(text)
        Output.standard.flush()
    }

    var hasFailure: Bool { lock.withLock { anyFailure } }
    var failure: (line: Int, error: ReplicationError)? { lock.withLock { stoppedAt } }

    func waitForAll() {
        lock.withLock { while outstanding > 0 { lock.wait() } }
    }
}
