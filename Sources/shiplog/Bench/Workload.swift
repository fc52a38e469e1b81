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

/// Application log lines of about 100 bytes (60-150), such as
///
///     2026-09-21T13:20:00.412Z INFO  api http GET /v1/orders/48213 user=user:000123 status=200 dur_ms=12 bytes=5123
///
/// A few event shapes with repeating field names, timestamps that advance by a few
/// milliseconds, user keys skewed towards a hot set, small numbers. LZ4 compresses 64 KiB
/// record blocks of these lines about 2.5 times (see ``Workload``'s documentation).
struct LogLineGenerator: RecordGenerator {
    private var random: SplitMix64
    /// Milliseconds since the Unix epoch.
    private var clockMillis: UInt64

    init(seed: UInt64, startMillis: UInt64 = 1_790_000_000_000) {
        random = SplitMix64(seed: seed)
        clockMillis = startMillis
    }

    mutating func generate(into line: inout [UInt8]) {
        line.removeAll(keepingCapacity: true)
        clockMillis += random.next(below: 4)
        Self.appendTimestamp(clockMillis, to: &line)
        let event = random.next(below: 100)
        switch event {
        case 0..<45: httpRequest(&line)
        case 45..<60: login(&line)
        case 60..<75: cart(&line)
        case 75..<88: query(&line)
        default: failure(&line)
        }
    }

    // MARK: Event shapes

    private mutating func httpRequest(_ line: inout [UInt8]) {
        let slow = random.chance(1, in: 20)
        line += slow ? Lit.warn : Lit.info
        line += Lit.api
        let route = random.next(below: Lit.routes.count)
        line += route < 3 ? Lit.get : (route < 5 ? Lit.post : Lit.put)
        line += Lit.routes[route]
        Self.appendDecimal(random.next(below: 100_000), to: &line)
        user(&line)
        line += Lit.status
        let status = random.next(below: 100)
        line += status < 90 ? Lit.s200 : (status < 95 ? Lit.s404 : (status < 98 ? Lit.s201 : Lit.s500))
        line += Lit.durMs
        Self.appendDecimal(slow ? 200 + random.next(below: 2000) : 1 + random.next(below: 40), to: &line)
        line += Lit.bytesField
        Self.appendDecimal(random.next(below: 9_000), to: &line)
    }

    private mutating func login(_ line: inout [UInt8]) {
        let ok = random.chance(9, in: 10)
        line += ok ? Lit.info : Lit.warn
        line += Lit.auth
        user(&line)
        line += Lit.ip
        Self.appendDecimal(random.next(below: 4), to: &line)
        line.append(UInt8(ascii: "."))
        Self.appendDecimal(random.next(below: 256), to: &line)
        line.append(UInt8(ascii: "."))
        Self.appendDecimal(random.next(below: 256), to: &line)
        line += ok ? Lit.okTrue : Lit.okFalse
        line += Lit.method
        line += random.chance(3, in: 4) ? Lit.password : Lit.token
    }

    private mutating func cart(_ line: inout [UInt8]) {
        line += Lit.debug
        line += Lit.cartAdd
        user(&line)
        line += Lit.sku
        Self.appendDecimal(10_000 + random.next(below: 5_000), to: &line)
        line += Lit.qty
        Self.appendDecimal(1 + random.next(below: 3), to: &line)
        line += Lit.price
        Self.appendDecimal(1 + random.next(below: 99), to: &line)
        line += random.chance(1, in: 2) ? Lit.cents99 : Lit.cents49
        line += Lit.currency
    }

    private mutating func query(_ line: inout [UInt8]) {
        line += Lit.info
        line += Lit.db
        line += Lit.queries[random.next(below: Lit.queries.count)]
        line += Lit.rows
        Self.appendDecimal(random.next(below: 50), to: &line)
        line += Lit.durMs
        Self.appendDecimal(random.next(below: 30), to: &line)
        line += Lit.pool
        Self.appendDecimal(random.next(below: 16), to: &line)
    }

    private mutating func failure(_ line: inout [UInt8]) {
        line += Lit.error
        line += Lit.payments
        user(&line)
        line += Lit.attempt
        Self.appendDecimal(1 + random.next(below: 5), to: &line)
        line += Lit.errors[random.next(below: Lit.errors.count)]
        line += Lit.trace
        Self.appendHex(random.next() & 0xFFFF_FFFF, digits: 8, to: &line)
    }

    /// ` user=user:000123`: 40 % from 1,000 hot users, the rest from 200,000.
    private mutating func user(_ line: inout [UInt8]) {
        let id: UInt64 = random.chance(2, in: 5) ? random.next(below: 1_000) : random.next(below: 200_000)
        line += Lit.user
        Self.appendDecimal(id, to: &line, minimumDigits: 6)
    }

    // MARK: Formatting without allocation

    static func appendDecimal(_ value: UInt64, to line: inout [UInt8], minimumDigits: Int = 1) {
        var digits: (UInt64, UInt64) = (0, 0)  // 16 bytes of stack, most significant last
        var count = 0
        var v = value
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[count] = UInt8(truncatingIfNeeded: v % 10) + 0x30
                v /= 10
                count += 1
            } while v > 0 && count < 16
            while count < minimumDigits && count < 16 {
                buffer[count] = 0x30
                count += 1
            }
            while count > 0 {
                count -= 1
                line.append(buffer[count])
            }
        }
    }

    static func appendHex(_ value: UInt64, digits: Int, to line: inout [UInt8]) {
        var shift = (digits - 1) * 4
        while shift >= 0 {
            let nibble = UInt8(truncatingIfNeeded: (value >> UInt64(shift)) & 0xF)
            line.append(nibble < 10 ? nibble + 0x30 : nibble - 10 + 0x61)
            shift -= 4
        }
    }

    /// `2026-09-21T13:20:00.412Z` (UTC).
    static func appendTimestamp(_ millis: UInt64, to line: inout [UInt8]) {
        let days = Int64(millis / 86_400_000)
        let msOfDay = millis % 86_400_000
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
        appendDecimal(UInt64(year), to: &line, minimumDigits: 4)
        line.append(UInt8(ascii: "-"))
        appendDecimal(UInt64(month), to: &line, minimumDigits: 2)
        line.append(UInt8(ascii: "-"))
        appendDecimal(UInt64(day), to: &line, minimumDigits: 2)
        line.append(UInt8(ascii: "T"))
        appendDecimal(msOfDay / 3_600_000, to: &line, minimumDigits: 2)
        line.append(UInt8(ascii: ":"))
        appendDecimal(msOfDay / 60_000 % 60, to: &line, minimumDigits: 2)
        line.append(UInt8(ascii: ":"))
        appendDecimal(msOfDay / 1000 % 60, to: &line, minimumDigits: 2)
        line.append(UInt8(ascii: "."))
        appendDecimal(msOfDay % 1000, to: &line, minimumDigits: 3)
        line.append(UInt8(ascii: "Z"))
    }

    /// The fixed words of the lines, as bytes (allocated once per process).
    private enum Lit {
        static let info = ascii(" INFO  ")
        static let warn = ascii(" WARN  ")
        static let debug = ascii(" DEBUG ")
        static let error = ascii(" ERROR ")
        static let api = ascii("api http ")
        static let get = ascii("GET ")
        static let post = ascii("POST ")
        static let put = ascii("PUT ")
        static let routes = [
            "/v1/orders/", "/v1/users/", "/v1/items/", "/v1/orders/", "/v1/carts/", "/v1/users/", "/v2/sessions/",
        ].map(ascii)
        static let user = ascii(" user=user:")
        static let status = ascii(" status=")
        static let s200 = ascii("200")
        static let s201 = ascii("201")
        static let s404 = ascii("404")
        static let s500 = ascii("500")
        static let durMs = ascii(" dur_ms=")
        static let bytesField = ascii(" bytes=")
        static let auth = ascii("auth login")
        static let ip = ascii(" ip=10.")
        static let okTrue = ascii(" ok=true")
        static let okFalse = ascii(" ok=false")
        static let method = ascii(" method=")
        static let password = ascii("password")
        static let token = ascii("token")
        static let cartAdd = ascii("cart add_item")
        static let sku = ascii(" sku=SKU-")
        static let qty = ascii(" qty=")
        static let price = ascii(" price=")
        static let cents99 = ascii(".99")
        static let cents49 = ascii(".49")
        static let currency = ascii(" currency=EUR")
        static let db = ascii("orders db query=")
        static let queries = ["select_order_by_id", "select_user_orders", "update_order_status", "insert_order_line"]
            .map(ascii)
        static let rows = ascii(" rows=")
        static let pool = ascii(" pool_conn=")
        static let payments = ascii("payments charge_failed")
        static let attempt = ascii(" attempt=")
        static let errors = [" err=timeout", " err=card_declined", " err=upstream_503", " err=rate_limited"].map(ascii)
        static let trace = ascii(" trace=")

        private static func ascii(_ text: String) -> [UInt8] { Array(text.utf8) }
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
        /// ``LogLineGenerator``: ~100-byte application log lines, LZ4 ratio about 2.5.
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
