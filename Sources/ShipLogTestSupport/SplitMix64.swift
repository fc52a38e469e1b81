/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast, seedable generator. Deterministic on
/// every platform and toolchain; the bounded helpers below do not depend on the standard
/// library's algorithms, so a seed always replays the same simulation.
public struct SplitMix64: RandomNumberGenerator, Sendable, Hashable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `0..<bound` (rejection sampling, no modulo bias). `bound` must be positive.
    public mutating func uniform(below bound: Int) -> Int {
        precondition(bound > 0, "bound must be positive")
        let b = UInt64(bound)
        let limit = UInt64.max - UInt64.max % b
        while true {
            let x = next()
            if x < limit { return Int(x % b) }
        }
    }

    /// A fair coin.
    public mutating func coin() -> Bool { next() >> 63 == 1 }

    /// True with probability `numerator / denominator`.
    public mutating func chance(_ numerator: Int, in denominator: Int) -> Bool {
        uniform(below: denominator) < numerator
    }
}
