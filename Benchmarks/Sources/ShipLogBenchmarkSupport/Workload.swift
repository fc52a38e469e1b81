public import ShipLogFormat

// Deterministic inputs for the micro-benchmarks: the same seed gives the same bytes on every
// run, so thresholds compare like with like.

/// SplitMix64 (Steele, Lea and Flood): a tiny generator with a 64-bit state. Not for cryptography.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A value in `0..<bound` (`bound` > 0), by multiply-shift: stable across platforms.
    public mutating func next(below bound: Int) -> Int {
        precondition(bound > 0, "bound must be positive")
        return Int(next().multipliedFullWidth(by: UInt64(bound)).high)
    }
}

/// The records the benchmarks write and read.
public enum Workload {
    /// Seed of every generated input.
    public static let seed: UInt64 = 0x5348_4950_4C4F_4721

    /// `byteCount` bytes of uniformly random data (incompressible).
    public static func randomBytes(byteCount: Int, seed: UInt64 = Workload.seed) -> [UInt8] {
        var random = SplitMix64(seed: seed)
        return (0..<byteCount).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }

    /// `count` application log lines of about 100 bytes (85-110), such as
    ///
    ///     2026-09-21T14:13:20.005389Z INFO  api POST /v1/carts/17539 user=user:000263 status=200 dur_ms=31 req=df17ca01
    ///
    /// Repeating field names with varying numbers and ids: LZ4 shrinks them 2 to 3 times, like
    /// the `shiplog bench append` workload.
    public static func logLines(count: Int, seed: UInt64 = Workload.seed) -> [[UInt8]] {
        var random = SplitMix64(seed: seed)
        var micros = 0
        return (0..<count).map { _ in
            micros += random.next(below: 5_000)
            return Array(logLine(micros: micros, random: &random).utf8)
        }
    }

    /// A batch builder holding `recordCount` log lines.
    public static func logLineBatch(recordCount: Int, seed: UInt64 = Workload.seed) -> BatchBuilder {
        var builder = BatchBuilder()
        for line in logLines(count: recordCount, seed: seed) {
            do { try builder.append(line) } catch { fatalError("benchmark batch: \(error)") }
        }
        return builder
    }

    /// The key of entry `index` of the key-value benchmarks: `user:` and 8 digits.
    public static func key(_ index: Int) -> [UInt8] {
        Array("user:\(padded(index, width: 8))".utf8)
    }

    private static let levels = ["INFO ", "DEBUG", "WARN ", "ERROR"]
    private static let services = ["api", "cart", "orders", "auth", "billing"]
    private static let verbs = ["GET", "POST", "PUT", "DELETE"]
    private static let paths = ["/v1/carts/", "/v1/orders/", "/v1/users/", "/v1/items/"]

    private static func logLine(micros: Int, random: inout SplitMix64) -> String {
        let seconds = micros / 1_000_000
        let time = "2026-09-21T14:\(padded(13 + seconds / 60 % 47, width: 2)):\(padded(seconds % 60, width: 2))."
            + "\(padded(micros % 1_000_000, width: 6))Z"
        let level = levels[random.next(below: levels.count)]
        let service = services[random.next(below: services.count)]
        let request = verbs[random.next(below: verbs.count)] + " " + paths[random.next(below: paths.count)]
            + String(random.next(below: 100_000))
        let user = random.next(below: 4) == 0 ? random.next(below: 1_000) : random.next(below: 1_000_000)
        let status = [200, 200, 200, 201, 404, 500][random.next(below: 6)]
        let requestID = String(random.next() & 0xFFFF_FFFF, radix: 16)
        return "\(time) \(level) \(service) \(request) user=user:\(padded(user, width: 6)) status=\(status)"
            + " dur_ms=\(random.next(below: 200)) req=\(requestID)"
    }

    private static func padded(_ value: Int, width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
