// Little-endian fixed-width fields and LEB128 varints, read and written at byte offsets.
// Every multi-byte integer in ShipLog's formats is little-endian.

extension UnsafeRawBufferPointer {
    /// Reads a little-endian integer at `offset`; the caller has checked the bounds.
    @inlinable
    func readLittleEndian<T: FixedWidthInteger>(at offset: Int, as _: T.Type = T.self) -> T {
        assert(offset >= 0 && offset + MemoryLayout<T>.size <= count)
        return T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

extension UnsafeMutableRawBufferPointer {
    @inlinable
    func writeLittleEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        assert(offset >= 0 && offset + MemoryLayout<T>.size <= count)
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }
}

extension Array where Element == UInt8 {
    @inlinable
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

/// Unsigned LEB128, at most 5 bytes for a UInt32.
@usableFromInline
enum Varint {
    @usableFromInline static let maxBytes = 5

    /// Writes `value` at `pointer`, returning the bytes written (1...5).
    @inlinable
    static func write(_ value: UInt32, to pointer: UnsafeMutableRawPointer) -> Int {
        var v = value
        var i = 0
        while v >= 0x80 {
            pointer.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, toByteOffset: i, as: UInt8.self)
            v >>= 7
            i += 1
        }
        pointer.storeBytes(of: UInt8(v), toByteOffset: i, as: UInt8.self)
        return i + 1
    }

    /// Reads a varint at `offset`; `nil` when it runs past `end`, is longer than 5 bytes or overflows.
    @inlinable
    static func read(from base: UnsafeRawPointer, at offset: Int, end: Int) -> (value: UInt32, length: Int)? {
        var result: UInt32 = 0
        var shift: UInt32 = 0
        var i = offset
        while i < end {
            let byte = base.load(fromByteOffset: i, as: UInt8.self)
            if shift == 28 && byte > 0x0F { return nil }  // would overflow 32 bits
            result |= UInt32(byte & 0x7F) << shift
            i += 1
            if byte & 0x80 == 0 { return (result, i - offset) }
            shift += 7
            if shift > 28 { return nil }
        }
        return nil
    }
}
