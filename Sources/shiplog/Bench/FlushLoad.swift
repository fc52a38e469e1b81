import Glibc
import ShipLog

/// Threads that each append small blocks to a scratch file of their own and fdatasync after
/// every one, at a steady rate: the flush load that followers put on a disk they share with
/// their primary, without their CPU (no network, no decoding, no state machine). The
/// `bench replicate` ceilings run a primary alone under it, to show what the followers'
/// fdatasyncs alone cost the primary's own group commit on this disk.
final class FlushLoad: Sendable {
    /// Bytes per append (about one group of the 16-client phase).
    static let blockBytes = 1200
    /// Bytes each scratch file is preallocated to; appends wrap around within it.
    static let fileBytes: Int64 = 64 << 20

    private let stopFlag = AtomicFlag()
    private let threads: [OwnedThread]
    private let done: [AtomicCounter]
    private let started: UInt64

    /// Starts one thread per entry of `rates` (fdatasyncs per second) on scratch files in
    /// `directory`, removed when the load stops.
    init(directory: String, rates: [Double]) throws {
        var files: [(fd: Int32, path: String)] = []
        for index in rates.indices {
            let path = directory + "/.shiplog-flush-load-\(getpid())-\(index).tmp"
            let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                for file in files { close(file.fd); unlink(file.path) }
                throw CommandError("cannot create the flush-load file \(path): \(String(cString: strerror(errno)))")
            }
            _ = posix_fallocate(fd, 0, off_t(Self.fileBytes))  // as segments are; best effort
            files.append((fd, path))
        }
        let stop = stopFlag
        let counters = rates.map { _ in AtomicCounter() }
        started = MonotonicClock.now()
        threads = zip(files, zip(rates, counters)).map { file, load in
            OwnedThread.start(name: "bench-flush") {
                defer {
                    close(file.fd)
                    unlink(file.path)
                }
                Self.run(fd: file.fd, rate: load.0, count: load.1, until: stop)
            }
        }
        done = counters
    }

    /// Stops the threads; returns the fdatasyncs per second each achieved.
    func stop() -> [Double] {
        stopFlag.set()
        for thread in threads { thread.join() }
        let seconds = Double(MonotonicClock.elapsed(since: started)) / 1e9
        return done.map { Double($0.value) / max(seconds, 1e-9) }
    }

    private static func run(fd: Int32, rate: Double, count: AtomicCounter, until stop: AtomicFlag) {
        guard rate > 0 else { return }
        let block = [UInt8](repeating: 0x5A, count: blockBytes)
        let period = UInt64(1e9 / rate)
        let start = MonotonicClock.now()
        var offset: Int64 = 0
        var operations: UInt64 = 0
        while !stop.isSet {
            let written = block.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, off_t(offset)) }
            guard written == block.count, fdatasync(fd) == 0 else { return }
            operations += 1
            count.add(1)
            offset = offset + Int64(blockBytes) + Int64(blockBytes) > fileBytes ? 0 : offset + Int64(blockBytes)
            let due = start &+ operations &* period
            let now = MonotonicClock.now()
            if due > now { usleep(UInt32(min((due - now) / 1000, 1_000_000))) }
        }
    }
}
