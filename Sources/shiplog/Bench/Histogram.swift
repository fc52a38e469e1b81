import Glibc

/// Nanoseconds from `CLOCK_MONOTONIC`: the clock of every benchmark measurement.
enum MonotonicClock {
    /// Nanoseconds since an arbitrary, fixed point (boot); never goes backwards.
    @inline(__always)
    static func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }

    /// Nanoseconds elapsed since `start` (a value of ``now()``).
    @inline(__always)
    static func elapsed(since start: UInt64) -> UInt64 { now() &- start }
}

/// A log-linear histogram of non-negative integer values (nanoseconds, by convention), in the
/// manner of HdrHistogram.
///
/// Values below 128 are counted exactly. Above, each power-of-two range [2^k, 2^(k+1)) is split
/// into 64 equal sub-buckets, so a bucket is at most 1/64 of its lower bound wide; reported
/// values are bucket midpoints (clamped to the observed min and max), within 1/128 ≈ 0.8 % of
/// the true value. Values above ``highestTrackableValue`` (2^42 - 1 ns, about 73 minutes) are
/// counted in the last bucket; ``max`` still reports them exactly.
///
/// The counts live in one array allocated at `init`; ``record(_:)`` never allocates.
/// Not thread-safe: give each thread its own and ``merge(_:)`` them.
struct Histogram: Sendable, Equatable {
    static let subBucketBits = 6
    static let subBucketCount = 1 << subBucketBits  // 64
    /// Values below this are their own bucket.
    static let exactLimit: UInt64 = 2 << subBucketBits  // 128
    static let highestTrackableValue: UInt64 = (1 << 42) - 1
    static let bucketCount = index(of: highestTrackableValue) + 1

    private var counts: [UInt64]
    /// Number of recorded values.
    private(set) var count: UInt64 = 0
    private(set) var sum: UInt128 = 0
    private var minimum: UInt64 = .max
    private var maximum: UInt64 = 0

    init() {
        counts = [UInt64](repeating: 0, count: Self.bucketCount)
    }

    /// The smallest recorded value (0 when empty).
    var min: UInt64 { count == 0 ? 0 : minimum }
    /// The largest recorded value (0 when empty).
    var max: UInt64 { maximum }
    /// The arithmetic mean of the recorded values (0 when empty), exact up to Double rounding.
    var mean: Double { count == 0 ? 0 : Double(sum) / Double(count) }
    var isEmpty: Bool { count == 0 }

    @inline(__always)
    mutating func record(_ value: UInt64) {
        counts[Self.index(of: Swift.min(value, Self.highestTrackableValue))] &+= 1
        count &+= 1
        sum &+= UInt128(value)
        if value < minimum { minimum = value }
        if value > maximum { maximum = value }
    }

    /// Records `value` `times` times (for coordinated-omission correction or pre-binned data).
    mutating func record(_ value: UInt64, times: UInt64) {
        guard times > 0 else { return }
        counts[Self.index(of: Swift.min(value, Self.highestTrackableValue))] &+= times
        count &+= times
        sum &+= UInt128(value) * UInt128(times)
        if value < minimum { minimum = value }
        if value > maximum { maximum = value }
    }

    /// Records a `Duration` in nanoseconds (negative durations count as 0).
    mutating func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return record(0) }
        record(UInt64(seconds) &* 1_000_000_000 &+ UInt64(attoseconds / 1_000_000_000))
    }

    /// Adds every value recorded in `other`.
    mutating func merge(_ other: Histogram) {
        guard other.count > 0 else { return }
        counts.withUnsafeMutableBufferPointer { mine in
            other.counts.withUnsafeBufferPointer { theirs in
                for i in mine.indices { mine[i] &+= theirs[i] }
            }
        }
        count &+= other.count
        sum &+= other.sum
        minimum = Swift.min(minimum, other.minimum)
        maximum = Swift.max(maximum, other.maximum)
    }

    /// Forgets every value, keeping the memory.
    mutating func reset() {
        counts.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        count = 0
        sum = 0
        minimum = .max
        maximum = 0
    }

    /// The value at or below which `percentile` percent of the recorded values lie
    /// (`percentile` in 0...100): the value of rank ⌈p/100 · count⌉ (at least 1) in sorted
    /// order, to within the bucket resolution. 0 when empty; 100 gives ``max``, 0 gives ``min``.
    func percentile(_ percentile: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let p = Swift.min(Swift.max(percentile, 0), 100)
        if p == 0 { return min }
        if p == 100 { return max }
        var rank = UInt64((p / 100 * Double(count)).rounded(.up))
        rank = Swift.min(Swift.max(rank, 1), count)
        var seen: UInt64 = 0
        for i in counts.indices where counts[i] != 0 {
            seen += counts[i]
            if seen >= rank {
                let (lower, width) = Self.bounds(ofBucket: i)
                return Swift.min(Swift.max(lower + (width - 1) / 2, min), max)
            }
        }
        return max
    }

    /// Calls `body` with the lower bound, width and count of every non-empty bucket, in
    /// increasing order of value.
    func forEachBucket(_ body: (_ lower: UInt64, _ width: UInt64, _ count: UInt64) -> Void) {
        for i in counts.indices where counts[i] != 0 {
            let (lower, width) = Self.bounds(ofBucket: i)
            body(lower, width, counts[i])
        }
    }

    /// Convenience: p50, p90, p99, p99.9 and max.
    var summary: (p50: UInt64, p90: UInt64, p99: UInt64, p999: UInt64, max: UInt64) {
        (percentile(50), percentile(90), percentile(99), percentile(99.9), max)
    }

    // MARK: Layout

    /// The bucket of `value` (≤ ``highestTrackableValue``).
    @inline(__always)
    static func index(of value: UInt64) -> Int {
        if value < exactLimit { return Int(value) }
        let msb = 63 - value.leadingZeroBitCount  // ≥ 7
        let shift = msb - subBucketBits  // ≥ 1
        let sub = Int(value >> UInt64(shift)) - subBucketCount  // 0..<64
        return Int(exactLimit) + (msb - subBucketBits - 1) * subBucketCount + sub
    }

    /// The smallest value of bucket `index` and the number of values it covers.
    static func bounds(ofBucket index: Int) -> (lower: UInt64, width: UInt64) {
        if index < Int(exactLimit) { return (UInt64(index), 1) }
        let offset = index - Int(exactLimit)
        let shift = offset / subBucketCount + 1
        let sub = offset % subBucketCount
        return (UInt64(subBucketCount + sub) << UInt64(shift), 1 << UInt64(shift))
    }
}
