import ShipLog

// Deterministic record generators for benchmarks: the same seed gives the same records on
// every platform and Swift version (no stdlib or Foundation randomness is involved).

/// SplitMix64 (Steele, Lea and Flood): a tiny, fast generator with a 64-bit state; good
/// enough for workloads and for seeding other generators. Not for cryptography.
struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    @inline(__always)
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A value in `0..<bound` (`bound` > 0), by multiply-shift: a bias below 2^-32 for the
    /// small bounds used here, and stable across platforms (unlike `random(in:using:)`).
    @inline(__always)
    mutating func next(below bound: UInt64) -> UInt64 {
        precondition(bound > 0)
        return next().multipliedFullWidth(by: bound).high
    }

    @inline(__always)
    mutating func next(below bound: Int) -> Int { Int(next(below: UInt64(bound))) }

    /// `true` with probability `numerator / denominator`.
    @inline(__always)
    mutating func chance(_ numerator: UInt64, in denominator: UInt64) -> Bool {
        next(below: denominator) < numerator
    }
}

/// Something that produces one record at a time into a caller-owned buffer.
protocol RecordGenerator: Sendable {
    /// Replaces the contents of `record` with the next record. Does not allocate when
    /// `record` has enough capacity (and is uniquely referenced).
    mutating func generate(into record: inout [UInt8])
}

/// Application log lines of about 105 bytes (94-113), such as
///
///     2026-09-21T14:13:20.005389Z INFO  api POST /v1/carts/17539 user=user:000263 status=200 dur_ms=31 req=df17ca01
///     2026-09-21T14:13:20.007624Z DEBUG cart add_item user=user:000669 sku=SKU-14933 qty=3 sid=bbf0dc3b
///     2026-09-21T14:13:20.011242Z INFO  orders db query=insert_order_line rows=30 dur_ms=18 conn=14 req=b446141c
///     2026-09-21T14:13:20.021037Z WARN  auth login user=user:493113 ip=10.1.181.126 ok=false method=password
///     2026-09-21T14:13:20.001716Z ERROR billing charge user=user:067357 attempt=4 err=timeout trace=341ebd74
///
/// Five event shapes with repeating field names, microsecond timestamps advancing by up to
/// 5 ms, `user:NNNNNN` keys (a quarter from 1,000 hot users), small numbers and a few hex ids.
/// LZ4 compresses 64 KiB record blocks of these lines about 2.7 times.
///
/// Lines are formatted through a raw cursor into stack memory (no per-byte array checks); the
/// date, hour and minute of the timestamp are formatted once per minute.
struct LogLineGenerator: RecordGenerator {
    /// The longest line any shape produces is well below this.
    static let maximumLineBytes = 192

    private var random: SplitMix64
    /// Microseconds since the Unix epoch.
    private var clockMicros: UInt64
    /// `clockMicros / 60_000_000` of ``minutePrefix``.
    private var prefixMinute: UInt64 = .max
    /// `2026-09-21T14:13:` (17 bytes) for ``prefixMinute``.
    private var minutePrefix: (UInt64, UInt64, UInt64) = (0, 0, 0)

    /// - Parameter startMicros: the first timestamp, in microseconds since the Unix epoch.
    init(seed: UInt64, startMicros: UInt64 = 1_790_000_000_000_000) {
        random = SplitMix64(seed: seed)
        clockMicros = startMicros
    }

    mutating func generate(into line: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.maximumLineBytes) { buffer in
            let count = generate(into: UnsafeMutableRawBufferPointer(buffer))
            line.removeAll(keepingCapacity: true)
            line.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[..<count]))
        }
    }

    /// Writes the next line at the start of `buffer` (at least ``maximumLineBytes`` long) and
    /// returns its length.
    mutating func generate(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        precondition(buffer.count >= Self.maximumLineBytes, "buffer too small for a log line")
        var out = LineWriter(buffer.baseAddress!.assumingMemoryBound(to: UInt8.self))
        clockMicros += random.next(below: 5_000)
        timestamp(&out)
        let event = random.next(below: 100)
        switch event {
        case 0..<45: httpRequest(&out)
        case 45..<60: login(&out)
        case 60..<75: cart(&out)
        case 75..<88: query(&out)
        default: failure(&out)
        }
        let count = out.count(from: buffer.baseAddress!)
        assert(count <= Self.maximumLineBytes)
        return count
    }

    // MARK: Event shapes

    private mutating func httpRequest(_ out: inout LineWriter) {
        let slow = random.chance(1, in: 20)
        out.put(slow ? " WARN  " : " INFO  ")
        out.put("api ")
        let route = random.next(below: 7)
        out.put(route < 3 ? "GET " : (route < 5 ? "POST " : "PUT "))
        out.put(Self.routes[route])
        out.decimal(random.next(below: 100_000))
        user(&out)
        out.put(" status=")
        let status = random.next(below: 100)
        out.put(status < 90 ? "200" : (status < 95 ? "404" : (status < 98 ? "201" : "500")))
        out.put(" dur_ms=")
        out.decimal(slow ? 200 + random.next(below: 2000) : 1 + random.next(below: 40))
        out.put(" req=")
        out.hex(random.next(), digits: 8)
    }

    private mutating func login(_ out: inout LineWriter) {
        let ok = random.chance(9, in: 10)
        out.put(ok ? " INFO  " : " WARN  ")
        out.put("auth login")
        user(&out)
        out.put(" ip=10.")
        out.decimal(random.next(below: 4))
        out.byte(UInt8(ascii: "."))
        out.decimal(random.next(below: 256))
        out.byte(UInt8(ascii: "."))
        out.decimal(random.next(below: 256))
        out.put(ok ? " ok=true" : " ok=false")
        out.put(" method=")
        out.put(random.chance(3, in: 4) ? "password" : "token")
    }

    private mutating func cart(_ out: inout LineWriter) {
        out.put(" DEBUG ")
        out.put("cart add_item")
        user(&out)
        out.put(" sku=SKU-")
        out.decimal(10_000 + random.next(below: 5_000))
        out.put(" qty=")
        out.decimal(1 + random.next(below: 3))
        out.put(" sid=")
        out.hex(random.next(), digits: 8)
    }

    private mutating func query(_ out: inout LineWriter) {
        out.put(" INFO  ")
        out.put("orders db query=")
        out.put(Self.queries[random.next(below: 4)])
        out.put(" rows=")
        out.decimal(random.next(below: 50))
        out.put(" dur_ms=")
        out.decimal(random.next(below: 30))
        out.put(" conn=")
        out.decimal(random.next(below: 16))
        out.put(" req=")
        out.hex(random.next(), digits: 8)
    }

    private mutating func failure(_ out: inout LineWriter) {
        out.put(" ERROR ")
        out.put("billing charge")
        user(&out)
        out.put(" attempt=")
        out.decimal(1 + random.next(below: 5))
        out.put(Self.errors[random.next(below: 4)])
        out.put(" trace=")
        out.hex(random.next() & 0xFFFF_FFFF, digits: 8)
    }

    /// ` user=user:000123`: 25 % from 1,000 hot users, the rest from 1,000,000.
    private mutating func user(_ out: inout LineWriter) {
        let id: UInt64 = random.chance(1, in: 4) ? random.next(below: 1_000) : random.next(below: 1_000_000)
        out.put(" user=user:")
        out.decimal(id, minimumDigits: 6)
    }

    /// `2026-09-21T13:20:00.412345Z` (UTC).
    private mutating func timestamp(_ out: inout LineWriter) {
        let minute = clockMicros / 60_000_000
        if minute != prefixMinute {
            prefixMinute = minute
            withUnsafeMutableBytes(of: &minutePrefix) { raw in
                var prefix = LineWriter(raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
                Self.writeMinute(minute, to: &prefix)
            }
        }
        withUnsafeBytes(of: &minutePrefix) { out.put(UnsafeRawBufferPointer(rebasing: $0[..<17])) }
        let microsOfMinute = clockMicros % 60_000_000
        out.decimal(microsOfMinute / 1_000_000, minimumDigits: 2)
        out.byte(UInt8(ascii: "."))
        out.decimal(microsOfMinute % 1_000_000, minimumDigits: 6)
        out.byte(UInt8(ascii: "Z"))
    }

    /// `2026-09-21T14:13:` for the minute `minute` since the Unix epoch.
    private static func writeMinute(_ minute: UInt64, to out: inout LineWriter) {
        let days = Int64(minute / 1440)
        let minuteOfDay = minute % 1440
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        out.decimal(UInt64(year), minimumDigits: 4)
        out.byte(UInt8(ascii: "-"))
        out.decimal(UInt64(month), minimumDigits: 2)
        out.byte(UInt8(ascii: "-"))
        out.decimal(UInt64(day), minimumDigits: 2)
        out.byte(UInt8(ascii: "T"))
        out.decimal(minuteOfDay / 60, minimumDigits: 2)
        out.byte(UInt8(ascii: ":"))
        out.decimal(minuteOfDay % 60, minimumDigits: 2)
        out.byte(UInt8(ascii: ":"))
    }

    private static let routes: [StaticString] = [
        "/v1/orders/", "/v1/users/", "/v1/items/", "/v1/orders/", "/v1/carts/", "/v1/users/", "/v2/sessions/",
    ]
    private static let queries: [StaticString] = [
        "select_order_by_id", "select_user_orders", "update_order_status", "insert_order_line",
    ]
    private static let errors: [StaticString] = [" err=timeout", " err=card_declined", " err=upstream_503", " err=rate_limited"]
}

/// A write cursor over memory the caller sized; no bounds checks beyond debug assertions.
private struct LineWriter {
    var position: UnsafeMutablePointer<UInt8>

    init(_ start: UnsafeMutablePointer<UInt8>) { position = start }

    func count(from start: UnsafeMutableRawPointer) -> Int {
        UnsafeMutableRawPointer(position) - start
    }

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        position.pointee = value
        position += 1
    }

    @inline(__always)
    mutating func put(_ text: StaticString) {
        position.update(from: text.utf8Start, count: text.utf8CodeUnitCount)
        position += text.utf8CodeUnitCount
    }

    @inline(__always)
    mutating func put(_ bytes: UnsafeRawBufferPointer) {
        UnsafeMutableRawPointer(position).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        position += bytes.count
    }

    /// `value` in decimal, left-padded with zeros to `minimumDigits`.
    @inline(__always)
    mutating func decimal(_ value: UInt64, minimumDigits: Int = 1) {
        var digits = 1
        var limit: UInt64 = 10
        while value >= limit && digits < 20 {
            digits += 1
            if limit > UInt64.max / 10 { break }
            limit *= 10
        }
        digits = max(digits, minimumDigits)
        var v = value
        var i = digits
        while i > 0 {
            i -= 1
            position[i] = UInt8(truncatingIfNeeded: v % 10) &+ 0x30
            v /= 10
        }
        position += digits
    }

    /// The low `digits` nibbles of `value`, most significant first, in lowercase hex.
    @inline(__always)
    mutating func hex(_ value: UInt64, digits: Int) {
        var v = value
        var i = digits
        while i > 0 {
            i -= 1
            let nibble = UInt8(truncatingIfNeeded: v & 0xF)
            position[i] = nibble < 10 ? nibble &+ 0x30 : nibble &+ (0x61 - 10)
            v >>= 4
        }
        position += digits
    }
}

/// Uniformly random bytes: incompressible records of a fixed size.
struct RandomBytesGenerator: RecordGenerator {
    private var random: SplitMix64
    let recordSize: Int

    init(seed: UInt64, recordSize: Int = 100) {
        precondition(recordSize >= 0)
        random = SplitMix64(seed: seed)
        self.recordSize = recordSize
    }

    mutating func generate(into record: inout [UInt8]) {
        if record.count != recordSize {
            record.removeAll(keepingCapacity: true)
            record.append(contentsOf: repeatElement(0, count: recordSize))
        }
        record.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset + 8 <= buffer.count {
                buffer.storeBytes(of: random.next(), toByteOffset: offset, as: UInt64.self)
                offset += 8
            }
            if offset < buffer.count {
                var last = random.next()
                while offset < buffer.count {
                    buffer[offset] = UInt8(truncatingIfNeeded: last)
                    last >>= 8
                    offset += 1
                }
            }
        }
    }
}

/// A stream of benchmark records of one ``Kind``, appended straight into `BatchBuilder`s
/// through a reusable scratch buffer (no heap allocation per record).
///
/// The stream depends only on the kind, the seed and the record size: however records are
/// split into batches, the n-th record is the same (a record that does not fit a batch waits
/// for the next one).
struct Workload: Sendable {
    enum Kind: String, CaseIterable, Sendable, CustomStringConvertible {
        /// ``LogLineGenerator``: ~105-byte application log lines, LZ4 ratio about 2.7.
        case logLike = "log"
        /// ``RandomBytesGenerator``: incompressible.
        case random

        var description: String { rawValue }
    }

    let kind: Kind
    private var lines: LogLineGenerator
    private var randomBytes: RandomBytesGenerator
    private var scratch: [UInt8]
    /// Whether `scratch` holds a record generated but not yet handed out.
    private var pending = false
    /// Records handed out so far.
    private(set) var recordsProduced: UInt64 = 0
    /// Bytes of those records (without length prefixes).
    private(set) var bytesProduced: UInt64 = 0

    /// - Parameter recordSize: the size of ``Kind/random`` records (log lines vary).
    init(kind: Kind, seed: UInt64 = 0x5348_4950_4C4F_4721, recordSize: Int = 100) {
        self.kind = kind
        var seeds = SplitMix64(seed: seed)
        lines = LogLineGenerator(seed: seeds.next())
        randomBytes = RandomBytesGenerator(seed: seeds.next(), recordSize: recordSize)
        scratch = []
        scratch.reserveCapacity(Swift.max(256, recordSize))
    }

    /// Calls `body` with the next record. The bytes are valid only during the call.
    mutating func withNextRecord<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        fillScratch()
        pending = false
        recordsProduced += 1
        bytesProduced += UInt64(scratch.count)
        let result: Result<R, E> = scratch.withUnsafeBytes { bytes in Result { () throws(E) in try body(bytes) } }
        return try result.get()
    }

    /// Appends the next record to `builder`.
    /// - Throws: ``FormatError/batchFull`` (the record is kept for the next call).
    mutating func appendRecord(to builder: inout BatchBuilder) throws(FormatError) {
        fillScratch()
        let result: Result<Void, FormatError> = scratch.withUnsafeBytes { bytes in
            Result { () throws(FormatError) in try builder.append(bytes) }
        }
        try result.get()
        pending = false
        recordsProduced += 1
        bytesProduced += UInt64(scratch.count)
    }

    /// Appends records while the builder's record block stays within `maxBytes` (and the
    /// format's limits); returns how many were appended. The first record that does not fit
    /// is kept for the next call.
    @discardableResult
    mutating func fill(_ builder: inout BatchBuilder, upToBytes maxBytes: Int) -> Int {
        var appended = 0
        while true {
            fillScratch()
            let size = scratch.count
            guard builder.uncompressedByteCount + Self.varintLength(size) + size <= maxBytes,
                builder.canAppend(byteCount: size)
            else { return appended }
            do { try appendRecord(to: &builder) } catch { return appended }
            appended += 1
        }
    }

    /// Appends exactly `count` records.
    /// - Throws: ``FormatError/batchFull`` if the batch fills up first.
    mutating func fill(_ builder: inout BatchBuilder, records count: Int) throws(FormatError) {
        for _ in 0..<count { try appendRecord(to: &builder) }
    }

    /// Record blocks of about `blockSize` bytes each (filled as far as whole records go), laid
    /// out exactly as `BatchBuilder` lays out a batch's records: the input of the LZ4 and CRC
    /// baselines. Allocates; for setting up, not for timed loops.
    mutating func makeRecordBlocks(count: Int, blockSize: Int = 64 << 10) -> [[UInt8]] {
        var builder = BatchBuilder(capacity: blockSize)
        var blocks: [[UInt8]] = []
        blocks.reserveCapacity(count)
        for _ in 0..<count {
            builder.removeAll()
            fill(&builder, upToBytes: blockSize)
            if builder.isEmpty { try? appendRecord(to: &builder) }  // a record larger than blockSize
            let raw = builder.encode(codec: .none)
            blocks.append(Array(raw.bytes[BatchHeader.byteCount...]))
        }
        return blocks
    }

    private mutating func fillScratch() {
        guard !pending else { return }
        switch kind {
        case .logLike: lines.generate(into: &scratch)
        case .random: randomBytes.generate(into: &scratch)
        }
        pending = true
    }

    @inline(__always)
    static func varintLength(_ value: Int) -> Int {
        var v = value >> 7
        var n = 1
        while v > 0 {
            v >>= 7
            n += 1
        }
        return n
    }
}
