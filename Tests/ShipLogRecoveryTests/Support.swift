import ShipLog
import ShipLogTestSupport

/// How many seeds a seeded suite runs: `SHIPLOG_SEEDS` overrides (`make soak` raises it).
func seedCount(default value: Int) -> Int {
    guard let text = getenvString("SHIPLOG_SEEDS"), let count = Int(text), count > 0 else { return value }
    return count
}

/// The seed to start from: `SHIPLOG_SEED` replays one failing seed.
func firstSeed() -> UInt64? {
    getenvString("SHIPLOG_SEED").flatMap { UInt64($0) }
}

#if canImport(Glibc)
import Glibc
#endif

func getenvString(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}
