import Dispatch
import Glibc
import ShipLog

/// `shiplog append`: stdin lines -> one acknowledged LSN per line on stdout, pipelined.
struct AppendCommand {
    /// Bytes read from stdin at a time; the lines of one read become one batch.
    static let readChunkBytes = 64 << 10

    let directory: FilePath
    let durability: Durability
    let compression: CompressionCodec

    init(_ arguments: ParsedArguments) throws {
        directory = FilePath(try arguments.requiredString("dir"))
        let interval = Duration.milliseconds(Int64(try arguments.uint64("sync-interval-ms") ?? 100))
        durability = try arguments.choice(
            "durability", from: ["buffered": .buffered, "interval": .interval(interval), "immediate": .immediate])
            ?? .immediate
        compression = try arguments.choice("compression", from: ["lz4": CompressionCodec.lz4, "none": .none]) ?? .lz4
    }

    func run() throws -> Int32 {
        var options = LogOptions()
        options.compression = compression
        let log = try Log.open(directory: directory, options: options)
        let tracker = AcknowledgementTracker()
        let printer = DispatchQueue(label: "shiplog.append.printer")
        var chunk = [UInt8](repeating: 0, count: Self.readChunkBytes)
        var partial: [UInt8] = []
        var lineNumber = 0
        var batch = BatchBuilder(capacity: Self.readChunkBytes)

        func submit() throws {
            guard !batch.isEmpty else { return }
            tracker.started()
            try log.submit(batch.encode(codec: compression), durability: durability) { result in
                printer.async { tracker.acknowledge(result) }
            }
            batch.removeAll()
        }

        func add(_ line: ArraySlice<UInt8>) throws {
            lineNumber += 1
            guard line.count <= FormatLimits.recordBytesMax else {
                throw CommandError("line \(lineNumber) has \(line.count) bytes, more than recordBytesMax (\(FormatLimits.recordBytesMax))")
            }
            if !batch.canAppend(byteCount: line.count) { try submit() }
            try batch.append(line)
        }

        // Stop reading at the first bad line, but let the acknowledgements already on their
        // way finish printing before the error is reported (stdout has one writer at a time).
        var inputError: (any Error)?
        do {
            readLoop: while tracker.firstError == nil {
                let n = chunk.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw CommandError("reading standard input: \(String(cString: strerror(errno)))")
                }
                if n == 0 { break readLoop }
                var start = 0
                for i in 0..<n where chunk[i] == UInt8(ascii: "\n") {
                    if partial.isEmpty {
                        try add(chunk[start..<i])
                    } else {
                        partial.append(contentsOf: chunk[start..<i])
                        try add(partial[...])
                        partial.removeAll(keepingCapacity: true)
                    }
                    start = i + 1
                }
                partial.append(contentsOf: chunk[start..<n])
                guard partial.count <= FormatLimits.recordBytesMax else {
                    throw CommandError("line \(lineNumber + 1) is longer than recordBytesMax (\(FormatLimits.recordBytesMax) bytes)")
                }
                try submit()
            }
            if !partial.isEmpty {
                try add(partial[...])  // a last line without its newline
                try submit()
            }
        } catch {
            inputError = error
        }
        try tracker.finish(printer: printer, inputError: inputError, command: "append") { try log.close() }
        return 0
    }
}

/// Counts appends in flight and remembers the first failure.
final class AcknowledgementTracker: @unchecked Sendable {
    private let lock = NSLockLike()
    private var outstanding = 0
    private var error: (any Error)?

    func started() { lock.withLock { outstanding += 1 } }

    func finished(_ failure: (any Error)?) {
        lock.withLock {
            outstanding -= 1
            if error == nil, let failure { error = failure }
        }
        lock.signal()
    }

    var firstError: (any Error)? { lock.withLock { error } }

    /// Ends a pipelined command: waits for every acknowledgement in flight and its printing,
    /// closes, then reports the first error (a bad input line first).
    func finish(
        printer: DispatchQueue, inputError: (any Error)?, command: String, close: () throws -> Void
    ) throws {
        waitForAll()
        printer.sync {}
        let closeError: (any Error)? = {
            do { try close() } catch { return error }
            return nil
        }()
        if let inputError { throw inputError }
        if let error = firstError ?? closeError { throw CommandError("\(command) stopped: \(error)") }
    }

    /// Prints the LSNs of an acknowledged append, one per line, or records its failure.
    /// Called on the command's serial printer queue, in LSN order.
    func acknowledge(_ result: Result<LSNRange, LogError>) {
        switch result {
        case .success(let range):
            var text = ""
            for lsn in range.first.rawValue...range.last.rawValue { text += "\(lsn)\n" }
            Output.standard.write(text)
            Output.standard.flush()
            finished(nil)
        case .failure(let error):
            finished(error)
        }
    }

    func waitForAll() {
        lock.withLock { while outstanding > 0 { lock.wait() } }
    }
}

/// pthread mutex + condition for the tool's own threads.
final class NSLockLike: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }

    /// With the lock held.
    func wait() { pthread_cond_wait(&condition, &mutex) }
    func signal() { pthread_cond_broadcast(&condition) }
}

/// A failure of a command (exit 1), with a message naming what failed.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
