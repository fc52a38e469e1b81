import Glibc

/// Buffered output to a file descriptor, written with write(2) (no stdio, no Foundation).
final class Output: @unchecked Sendable {
    // @unchecked: each instance is used from one thread at a time (the main thread, or the
    // serial printer queue of `append`).
    static let standard = Output(descriptor: 1)
    static let error = Output(descriptor: 2)

    private let descriptor: Int32
    private var buffer: [UInt8] = []

    init(descriptor: Int32) {
        self.descriptor = descriptor
        buffer.reserveCapacity(64 << 10)
    }

    func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 64 << 10 { flush() }
    }

    func write(bytes: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: bytes)
        if buffer.count >= 64 << 10 { flush() }
    }

    func line(_ text: String) {
        write(text)
        write("\n")
        if descriptor == 2 { flush() }
    }

    /// Writes out everything buffered. Exits quietly when the reader has gone (EPIPE).
    func flush() {
        var offset = 0
        while offset < buffer.count {
            let n = buffer.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE { exit(0) }
                break
            }
            offset += n
        }
        buffer.removeAll(keepingCapacity: true)
    }
}
