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

    let arguments: ParsedArguments
    let server: Endpoint
    let level: CommitLevel?

    init(_ arguments: ParsedArguments, server: Endpoint) throws {
        self.arguments = arguments
        self.server = server
        level = try Commands.commitLevel(arguments)
    }

    func run() throws -> Int32 {
        let client = try Commands.connect(arguments, to: server)
        let level = self.level  // nil: the primary's default (commitKind 5)
        let sequencer = AcknowledgementSequencer()
        var records: [[UInt8]] = []
        var recordBytes = 0
        var lineNumber = 0

        func submit() {
            guard !records.isEmpty else { return }
            let index = sequencer.started(firstLine: lineNumber - records.count + 1, count: records.count)
            client.submitAppend(records, level: level) { result in sequencer.finished(index, result) }
            records.removeAll(keepingCapacity: true)
            recordBytes = 0
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
            }
            submit()
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
    private var firstLines: [Int: Int] = [:]
    private var answers: [Int: Result<AppendResult, ReplicationError>] = [:]
    private var started = 0
    private var nextToPrint = 0
    private var outstanding = 0
    private var anyFailure = false
    private(set) var stoppedAt: (line: Int, error: ReplicationError)?

    /// Registers a request of `count` records starting at input line `firstLine`; returns its index.
    func started(firstLine: Int, count: Int) -> Int {
        lock.withLock {
            defer { started += 1 }
            firstLines[started] = firstLine
            outstanding += 1
            return started
        }
    }

    /// Called with each answer, on the client's thread.
    func finished(_ index: Int, _ result: Result<AppendResult, ReplicationError>) {
        lock.withLock {
            answers[index] = result
            outstanding -= 1
            if case .failure = result { anyFailure = true }
            printReady()
        }
        lock.signal()
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
