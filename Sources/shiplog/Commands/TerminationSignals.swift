import Glibc

/// The write end of the self-pipe, written by the signal handler (async-signal-safe: one
/// write(2) of one byte). Set once, before the handler is installed.
nonisolated(unsafe) private var terminationPipeWriteFD: Int32 = -1

/// SIGTERM and SIGINT turned into bytes on a pipe (the self-pipe trick), so that a command's
/// own thread can wait for them with poll(2) alongside a timeout. Works whichever thread the
/// kernel delivers the signal to; needs no RunLoop and no blocked signal masks.
struct TerminationSignals {
    /// The signals that ask a node to stop.
    static let handled: [Int32] = [SIGTERM, SIGINT]

    private let readFD: Int32

    /// Installs the handlers (and ignores SIGPIPE: a vanished peer is an error, not a kill).
    static func install() throws -> TerminationSignals {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw CommandError("pipe: \(String(cString: strerror(errno)))") }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        terminationPipeWriteFD = fds[1]
        _ = Glibc.signal(SIGPIPE, SIG_IGN)
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { signal in
            var byte = UInt8(truncatingIfNeeded: signal)
            _ = Glibc.write(terminationPipeWriteFD, &byte, 1)
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_RESTART
        for signal in handled { sigaction(signal, &action, nil) }
        return TerminationSignals(readFD: fds[0])
    }

    /// Waits up to `timeout` for a handled signal; returns its number, or `nil` on timeout.
    func wait(timeout: Duration) -> Int32? {
        var descriptor = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
        let millis = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        let ready = poll(&descriptor, 1, millis)
        guard ready > 0 else { return nil }
        var byte: UInt8 = 0
        guard Glibc.read(readFD, &byte, 1) == 1 else { return nil }
        return Int32(byte)
    }

    /// Restores the default actions: a second SIGTERM or SIGINT during shutdown ends the
    /// process at once.
    func restoreDefaults() {
        for signal in Self.handled { _ = Glibc.signal(signal, SIG_DFL) }
    }

    static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGTERM: "SIGTERM"
        case SIGINT: "SIGINT"
        default: "signal \(signal)"
        }
    }
}
