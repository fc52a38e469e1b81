import Foundation
import Glibc
import ShipLogTestSupport
import Testing

// Child processes for the end-to-end tests of the `shiplog` tool (CLITests,
// KeyValueCLITests): the built binary run with posix_spawn on close-on-exec pipes, so
// concurrently running tests never leak each other's pipe ends into their children.

// MARK: - Locating the binary

enum ShiplogBinary {
    /// The `shiplog` executable built next to the test bundle, or why it cannot be found.
    static let located: Result<String, BinaryNotFound> = {
        var candidates: [String] = []
        // The test bundle (ShipLogPackageTests.xctest) sits in the same build directory.
        if let executable = Bundle.main.executableURL {
            candidates.append(executable.deletingLastPathComponent().appendingPathComponent("shiplog").path)
        }
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("shiplog").path)
        candidates.append(Bundle.main.bundleURL.appendingPathComponent("shiplog").path)
        if let own = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append(URL(fileURLWithPath: own).deletingLastPathComponent().appendingPathComponent("shiplog").path)
        }
        // Tests/ShipLogCLITests/ChildProcess.swift -> package root.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        candidates.append(root.appendingPathComponent(".build/debug/shiplog").path)
        for candidate in candidates where access(candidate, X_OK) == 0 {
            return .success(candidate)
        }
        return .failure(BinaryNotFound(candidates: candidates))
    }()

    struct BinaryNotFound: Error, CustomStringConvertible {
        let candidates: [String]
        var description: String {
            "the shiplog binary was not found (looked at \(candidates.joined(separator: ", "))): run `swift build` "
                + "(or `make test`, which runs `swift build --build-tests`) before `swift test --skip-build`"
        }
    }

    static func path() throws -> String {
        switch located {
        case .success(let path): return path
        case .failure(let error):
            Issue.record("\(error)")
            throw error
        }
    }
}

// MARK: - Spawning

/// `pipe2(O_CLOEXEC)` and `posix_spawn_file_actions_addclosefrom_np`, which the Glibc module
/// does not show to Swift, looked up at run time. With them no child spawned by another test
/// (with or without its own spawn lock) can inherit one of our pipe ends, and our children
/// inherit nothing but their three standard descriptors.
private enum SpawnSupport {
    typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>?, Int32) -> Int32
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32

    static let pipe2: Pipe2? = dlsym(nil, "pipe2").map { unsafeBitCast($0, to: Pipe2.self) }
    static let addCloseFrom: AddCloseFrom? =
        dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map { unsafeBitCast($0, to: AddCloseFrom.self) }

    /// A pipe whose both ends are close-on-exec.
    static func makePipe() -> [Int32]? {
        var fds: [Int32] = [-1, -1]
        if let pipe2 {
            guard pipe2(&fds, O_CLOEXEC) == 0 else { return nil }
        } else {
            guard pipe(&fds) == 0 else { return nil }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }
        return fds
    }
}

struct ChildProcessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A running `shiplog` process with pipes on its standard input, output and error.
final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    /// Write end of the child's stdin; -1 once closed.
    private var stdinFD: Int32
    private let condition = NSCondition()
    private var out: [UInt8] = []
    private var err: [UInt8] = []
    private var openStreams = 2
    private var status: Int32?

    private static let ignoreSIGPIPE: Void = { _ = Glibc.signal(SIGPIPE, SIG_IGN) }()
    /// Serializes pipe creation and spawning in this process, for when pipe2 is missing (the
    /// ends then get FD_CLOEXEC just after pipe()).
    private static let spawnLock = NSLock()

    init(_ arguments: [String], keepStdinOpen: Bool = false) throws {
        _ = Self.ignoreSIGPIPE
        let binary = try ShiplogBinary.path()
        Self.spawnLock.lock()
        defer { Self.spawnLock.unlock() }
        guard let input = SpawnSupport.makePipe(), let output = SpawnSupport.makePipe(),
            let error = SpawnSupport.makePipe()
        else {
            throw ChildProcessError("pipe: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, error[1], 2)
        if let addCloseFrom = SpawnSupport.addCloseFrom { _ = addCloseFrom(&actions, 3) }
        let argv: [UnsafeMutablePointer<CChar>?] = ([binary] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        // The child starts with no blocked signals and default dispositions, whatever the
        // spawning thread has (worker threads block SIGTERM; this process ignores SIGPIPE).
        var pid = pid_t()
        let result = withDefaultSignalSpawnAttributes { attributes in posix_spawn(&pid, binary, &actions, &attributes, argv, environ) }
        close(input[0])
        close(output[1])
        close(error[1])
        guard result == 0 else {
            close(input[1])
            close(output[0])
            close(error[0])
            throw ChildProcessError("posix_spawn \(binary): \(String(cString: strerror(result)))")
        }
        self.pid = pid
        self.stdinFD = input[1]
        startReader(output[0], isError: false)
        startReader(error[0], isError: true)
        if !keepStdinOpen { closeStdin() }
    }

    private func startReader(_ fd: Int32, isError: Bool) {
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                condition.lock()
                if n > 0 {
                    if isError { err.append(contentsOf: buffer[0..<n]) } else { out.append(contentsOf: buffer[0..<n]) }
                } else {
                    openStreams -= 1
                }
                condition.broadcast()
                condition.unlock()
                if n <= 0 { break }
            }
            close(fd)
        }
        thread.start()
    }

    /// Writes to the child's stdin; false once the child has gone (EPIPE).
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(stdinFD, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += n
        }
        return true
    }

    @discardableResult
    func write(_ text: String) -> Bool { write(Array(text.utf8)) }

    func closeStdin() {
        if stdinFD >= 0 {
            close(stdinFD)
            stdinFD = -1
        }
    }

    var stdout: String { condition.withLock { String(decoding: out, as: UTF8.self) } }
    var stderr: String { condition.withLock { String(decoding: err, as: UTF8.self) } }

    /// Complete lines of stdout so far (a line still being written is left out).
    var stdoutLines: [String] {
        var lines = stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // after the last newline: empty, or a line still being written
        return lines
    }

    /// Waits until `predicate` holds for stdout (true) or `timeout` passes (false).
    func waitForStdout(timeout: Duration = .seconds(10), until predicate: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds))
        condition.lock()
        defer { condition.unlock() }
        while !predicate(String(decoding: out, as: UTF8.self)) {
            if openStreams == 0 { return predicate(String(decoding: out, as: UTF8.self)) }
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }

    /// Sends `signal` unless the child was already reaped (its pid may belong to another
    /// process by then).
    func signal(_ signal: Int32) {
        if condition.withLock({ status == nil }) { kill(pid, signal) }
    }

    /// Waits for the child to exit (killing it after `timeout`) and for its output to end.
    /// Returns the exit status, or 128 + the signal that ended it.
    @discardableResult
    func wait(timeout: Duration = .seconds(20)) -> Int32 {
        if let status = condition.withLock({ status }) { return status }
        closeStdin()
        let deadline = ContinuousClock.now + timeout
        var raw: Int32 = 0
        while true {
            let result = waitpid(pid, &raw, WNOHANG)
            if result == pid { break }
            if result < 0 && errno != EINTR { break }
            if ContinuousClock.now > deadline {
                Issue.record("shiplog (pid \(pid)) did not exit within \(timeout); killing it")
                kill(pid, SIGKILL)
                _ = waitpid(pid, &raw, 0)
                break
            }
            usleep(1000)
        }
        condition.lock()
        while openStreams > 0 { condition.wait() }
        condition.unlock()
        let termination = raw & 0x7f
        let code = termination == 0 ? (raw >> 8) & 0xff : 128 + termination
        condition.withLock { status = code }
        return code
    }
}

/// Runs `shiplog arguments` with `input` on stdin to completion.
func runShiplog(_ arguments: [String], input: String = "") throws -> (status: Int32, stdout: String, stderr: String) {
    let child = try ChildProcess(arguments, keepStdinOpen: true)
    child.write(input)
    let status = child.wait()
    return (status, child.stdout, child.stderr)
}

// MARK: - Test helpers

/// A fresh temporary directory under `group` in the temporary directory; a log goes in its
/// `log` subdirectory, a key-value store in its `store` subdirectory.
struct Scratch {
    let root: String
    var log: String { root + "/log" }
    var store: String { root + "/store" }

    init(_ name: String = #function, group: String = "shiplog-cli-tests") {
        let safe = name.filter { $0.isLetter || $0.isNumber }
        root = FileManager.default.temporaryDirectory.path + "/" + group + "/" + safe.prefix(80) + "-"
            + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: root) }
}

/// Lines a feeder thread has written (or is about to write) to a child's stdin, in order.
final class SentLines: @unchecked Sendable {
    private let condition = NSCondition()
    private var lines: [String] = []
    private var stopRequested = false
    private var done = false

    var stopped: Bool { condition.withLock { stopRequested } }
    func append(_ chunk: [String]) { condition.withLock { lines += chunk } }
    func stop() { condition.withLock { stopRequested = true } }

    func finish() {
        condition.withLock { done = true }
        condition.broadcast()
    }

    func waitForFeeder() -> [String] {
        condition.lock()
        defer { condition.unlock() }
        while !done { condition.wait() }
        return lines
    }
}
