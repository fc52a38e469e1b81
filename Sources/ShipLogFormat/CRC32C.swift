internal import CShipLogSupport

/// CRC-32C (Castagnoli), the checksum of every ShipLog structure.
///
/// Uses the SSE4.2 `crc32` instruction when the CPU has it (three interleaved streams on
/// long inputs) and slicing-by-8 otherwise. `checksum(b, continuing: checksum(a))` equals
/// `checksum(a ++ b)`.
public enum CRC32C {
    /// Which implementation ``checksum(_:continuing:)`` dispatches to on this CPU.
    public static var implementation: String {
        shiplog_crc32c_hardware_available() != 0 ? "sse4.2" : "slicing-by-8"
    }

    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        _checksum(bytes.baseAddress, bytes.count, crc)
    }

    @inlinable
    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    @inlinable
    public static func checksum(_ bytes: ArraySlice<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// The portable implementation, for tests and benchmarks.
    public static func softwareChecksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        shiplog_crc32c_software(crc, bytes.baseAddress, bytes.count)
    }

    /// The SSE4.2 implementation, or `nil` when the CPU lacks it.
    public static func hardwareChecksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32? {
        guard shiplog_crc32c_hardware_available() != 0 else { return nil }
        return shiplog_crc32c_hardware(crc, bytes.baseAddress, bytes.count)
    }

    @usableFromInline
    static func _checksum(_ base: UnsafeRawPointer?, _ count: Int, _ crc: UInt32) -> UInt32 {
        shiplog_crc32c(crc, base, count)
    }
}
