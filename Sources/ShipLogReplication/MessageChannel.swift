import ShipLogFormat
import ShipLogProtocol
import ShipLogStorage

/// The receiving side of a connection: bytes from the transport through a `FrameDecoder` into
/// checked messages. Owned by one thread (the connection's reader).
struct MessageReceiver: ~Copyable {
    let connection: any Connection
    private var decoder: FrameDecoder
    private var buffer: [UInt8]
    /// When set (monotonic nanoseconds), receiving past it throws `.timedOut`, however the
    /// bytes trickle in.
    var deadline: UInt64?

    /// Starts with the handshake's frame limit (docs/PROTOCOL.md 3.4): an unauthenticated peer
    /// cannot make this side buffer more than 4 KiB.
    init(connection: any Connection) {
        self.connection = connection
        self.decoder = FrameDecoder(frameBytesLimit: ProtocolLimits.handshakeFrameBytesMax)
        self.buffer = [UInt8](repeating: 0, count: ReplicationLimits.receiveChunkBytes)
    }

    /// Raises the frame limit to `frameBytesMax` once the peer has authenticated.
    mutating func peerAuthenticated() {
        decoder.frameBytesLimit = ProtocolLimits.frameBytesMax
    }

    /// Whether a whole frame is already buffered or the buffer is empty: with `false`, the
    /// next ``receive()`` will block for more bytes of a frame already started.
    var hasBufferedFrameBytes: Bool { decoder.bufferedByteCount > 0 }

    /// The next message, blocking until it has arrived; `nil` when the peer closed the stream
    /// at a frame boundary.
    mutating func receive() throws(ReplicationError) -> Message? {
        while true {
            if let message = try decoded() { return message }
            guard try fill() else {
                if decoder.bufferedByteCount > 0 {
                    throw .truncatedStream(peer: connection.peer, bufferedBytes: decoder.bufferedByteCount, streamOffset: decoder.streamOffset)
                }
                return nil
            }
        }
    }

    /// The next message if a whole one is already buffered, without blocking.
    mutating func receiveBuffered() throws(ReplicationError) -> Message? { try decoded() }

    private mutating func decoded() throws(ReplicationError) -> Message? {
        do {
            return try decoder.nextMessage()
        } catch {
            throw .protocolViolation(peer: connection.peer, error)
        }
    }

    /// Reads once from the transport into the decoder. False at the end of the stream.
    private mutating func fill() throws(ReplicationError) -> Bool {
        if let deadline {
            let now = monotonicNanoseconds()
            guard now < deadline else { throw .transport(.timedOut(operation: "the handshake", peer: connection.peer)) }
            connection.setTimeouts(receive: .nanoseconds(Int64(deadline - now)), send: .nanoseconds(Int64(deadline - now)))
        }
        let capacity = min(buffer.count, decoder.freeCapacity)
        precondition(capacity > 0, "the decoder has room after returning nil")
        let connection = connection
        let count = try buffer.withUnsafeMutableBytes { raw in
            Result { () throws(TransportError) in
                try connection.receive(into: UnsafeMutableRawBufferPointer(rebasing: raw[..<capacity]))
            }
        }.mapError { ReplicationError.transport($0) }.get()
        if count == 0 { return false }
        buffer.withUnsafeBytes { raw in decoder.append(UnsafeRawBufferPointer(rebasing: raw[..<count])) }
        return true
    }
}

/// The sending side of a connection: whole frames, one at a time (a lock keeps frames of
/// concurrent senders from interleaving). Sends block the calling thread: call only from
/// threads the replication layer owns.
final class MessageSender: @unchecked Sendable {
    // @unchecked: `failure` is guarded by `lock`; the connection is thread-safe.
    let connection: any Connection
    private let lock = ConditionLock()
    private var failure: ReplicationError?

    init(connection: any Connection) { self.connection = connection }

    var peer: String { connection.peer }

    /// Encodes and sends `message`.
    func send(_ message: Message) throws(ReplicationError) {
        let frame: [UInt8]
        do { frame = try message.encodedFrame() } catch { throw .protocolViolation(peer: "self", error) }
        try send(frame: frame)
    }

    /// Sends an encoded frame. After one failure every later send fails the same way.
    func send(frame: [UInt8]) throws(ReplicationError) {
        lock.lock()
        defer { lock.unlock() }
        if let failure { throw failure }
        do throws(TransportError) {
            try connection.send(frame)
        } catch {
            failure = .transport(error)
            throw .transport(error)
        }
    }

    /// Hands as much of `frame` to the connection as it takes without blocking; returns the
    /// byte count (0 when the socket buffer is full or the transport cannot, -1 after a failure).
    func trySend(frame: [UInt8]) -> Int {
        lock.lock()
        defer { lock.unlock() }
        if failure != nil { return -1 }
        let connection = connection
        let result = frame.withUnsafeBytes { raw in Result { () throws(TransportError) in try connection.trySend(raw) } }
        switch result {
        case .success(let count): return count
        case .failure(let error):
            failure = .transport(error)
            return -1
        }
    }

    /// Sends `failure` as an Error (or Refuse) message, best effort, and closes the connection.
    func fail(_ failure: Message.Failure, refuse: Bool = false) {
        try? send(refuse ? .refuse(failure) : .error(failure))
        connection.close()
    }
}

/// Frames waiting to be sent on a connection, and the thread that sends them. Lets threads
/// that must not block (the log's I/O thread completing an append) queue a response.
final class OutboundQueue: @unchecked Sendable {
    // @unchecked: every var is guarded by `lock`.
    private let sender: MessageSender
    private let lock = ConditionLock()
    private var frames: [[UInt8]] = []
    private var head = 0
    private var queuedBytes = 0
    private var closed = false
    /// A thread is handing bytes to the connection now (the queue's or an inline sender).
    private var sending = false
    private var thread: OwnedThread?

    init(sender: MessageSender, name: String) {
        self.sender = sender
        thread = OwnedThread.start(name: name) { [self] in run() }
    }

    /// Sends `message` without blocking: at once from the calling thread when nothing else is
    /// queued or being sent and the socket takes it (saving a thread switch per response),
    /// else (or for what the socket did not take) through the queue's thread. Dropped once
    /// the queue is closed.
    func enqueue(_ message: Message) {
        guard let frame = try? message.encodedFrame() else {
            assertionFailure("encoding a message this node built failed: \(message.type)")
            return
        }
        lock.lock()
        guard !closed else {
            lock.unlock()
            return
        }
        guard !sending && head == frames.count else {
            frames.append(frame)
            queuedBytes += frame.count
            lock.unlock()
            lock.broadcast()
            return
        }
        sending = true
        lock.unlock()
        let sent = sender.trySend(frame: frame)
        lock.lock()
        sending = false
        if sent < frame.count {
            // The rest goes first: nothing else was sent meanwhile (`sending` kept others out).
            let rest = sent <= 0 ? frame : Array(frame[sent...])
            frames.insert(rest, at: head)
            queuedBytes += rest.count
        }
        // Only the queue's thread can be waiting for this send to end: when frames are queued,
        // or when the queue closed and it waits to finish. Waking it otherwise would cost a
        // thread switch per response.
        let threadWaits = head != frames.count || closed
        lock.unlock()
        if threadWaits { lock.broadcast() }
    }

    /// Bytes queued and not yet sent.
    var pendingBytes: Int { lock.withLock { queuedBytes } }

    /// Blocks while more than `limit` bytes are queued (the peer reads slowly). False once closed.
    func waitForRoom(limit: Int) -> Bool {
        lock.withLock {
            while queuedBytes > limit && !closed { lock.wait() }
            return !closed
        }
    }

    /// Sends what is queued, then stops the thread. Blocks until done.
    func finish() {
        lock.withLock { closed = true }
        lock.broadcast()
        thread?.join()
    }

    /// Frames smaller than this are joined into one send; the join never grows past it, so
    /// the queue's memory stays within its own bytes plus this.
    static let joinBytesMax = 256 << 10

    private func run() {
        while true {
            let taken: [[UInt8]] = lock.withLock {
                while (head == frames.count || sending) && !closed { lock.wait() }
                while sending { lock.wait() }
                let taken = Array(frames[head...])
                frames.removeAll(keepingCapacity: true)
                head = 0
                sending = !taken.isEmpty
                return taken
            }
            if taken.isEmpty { return }
            defer {
                lock.withLock { sending = false }
                lock.broadcast()
            }
            var index = 0
            while index < taken.count {
                var bytes = taken[index]
                index += 1
                if bytes.count < Self.joinBytesMax {
                    while index < taken.count, bytes.count + taken[index].count <= Self.joinBytesMax {
                        bytes.append(contentsOf: taken[index])
                        index += 1
                    }
                }
                do throws(ReplicationError) {
                    try sender.send(frame: bytes)
                } catch {
                    lock.withLock {
                        closed = true
                        frames.removeAll()
                        queuedBytes = 0
                    }
                    lock.broadcast()
                    sender.connection.close()
                    return
                }
                lock.withLock { queuedBytes -= bytes.count }
                lock.broadcast()
            }
        }
    }
}
