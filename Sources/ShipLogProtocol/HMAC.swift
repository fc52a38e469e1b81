/// HMAC-SHA256 as specified in RFC 2104 (test vectors in RFC 4231).
///
///     HMAC(K, m) = SHA256((K' ^ opad) || SHA256((K' ^ ipad) || m))
///
/// where K' is the key zero-padded to the 64-byte block size, after first being replaced by
/// its SHA-256 digest if it is longer than 64 bytes; ipad is 0x36 repeated and opad 0x5c
/// repeated.
///
/// Streaming use:
///
///     var mac = HMACSHA256(key: key)
///     mac.update(part1)
///     mac.update(part2)
///     let tag = mac.finalize()  // 32 bytes
///
/// or one-shot: `HMACSHA256.authenticationCode(for: message, key: key)`.
///
/// Compare tags with ``constantTimeEquals(_:_:)``,
/// never with `==`. Truncated tags (RFC 2104 section 5) are the leading bytes of the full tag.
public struct HMACSHA256: Sendable {
    /// Bytes in a tag.
    public static let byteCount = SHA256.digestByteCount

    /// Already fed with K' ^ ipad; the message goes here.
    private var inner: SHA256
    /// Already fed with K' ^ opad; the inner digest goes here at the end.
    private var outer: SHA256

    /// Starts a MAC under `key`, which may have any length (longer than 64 bytes is hashed
    /// first; RFC 2104 recommends at least 32 bytes).
    public init(key: UnsafeRawBufferPointer) {
        let blockByteCount = SHA256.blockByteCount
        var inner = SHA256()
        var outer = SHA256()
        withUnsafeTemporaryAllocation(byteCount: 2 * blockByteCount, alignment: 8) { pads in
            let innerPad = UnsafeMutableRawBufferPointer(rebasing: pads[0..<blockByteCount])
            let outerPad = UnsafeMutableRawBufferPointer(rebasing: pads[blockByteCount...])
            innerPad.initializeMemory(as: UInt8.self, repeating: 0)
            if key.count > blockByteCount {
                let digest = SHA256.hash(key)
                digest.withUnsafeBytes { innerPad.copyMemory(from: $0) }
            } else if key.count > 0 {
                innerPad.copyMemory(from: key)
            }
            for i in 0..<blockByteCount {
                let keyByte = innerPad[i]
                innerPad[i] = keyByte ^ 0x36
                outerPad[i] = keyByte ^ 0x5c
            }
            inner.update(UnsafeRawBufferPointer(innerPad))
            outer.update(UnsafeRawBufferPointer(outerPad))
            pads.initializeMemory(as: UInt8.self, repeating: 0)
        }
        self.inner = inner
        self.outer = outer
    }

    /// Starts a MAC under `key`; see ``init(key:)``.
    public init(key: [UInt8]) {
        self = key.withUnsafeBytes { HMACSHA256(key: $0) }
    }

    /// Feeds message bytes.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        inner.update(bytes)
    }

    /// Feeds message bytes.
    public mutating func update(_ bytes: [UInt8]) {
        inner.update(bytes)
    }

    /// The tag of everything fed so far: 32 bytes. Does not change the MAC, which may be fed
    /// further.
    public func finalize() -> [UInt8] {
        var outer = outer
        outer.update(inner.finalize())
        return outer.finalize()
    }

    /// HMAC-SHA256 of `message` under `key`: 32 bytes.
    public static func authenticationCode(for message: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer) -> [UInt8] {
        var mac = HMACSHA256(key: key)
        mac.update(message)
        return mac.finalize()
    }

    /// HMAC-SHA256 of `message` under `key`: 32 bytes.
    public static func authenticationCode(for message: [UInt8], key: [UInt8]) -> [UInt8] {
        var mac = HMACSHA256(key: key)
        mac.update(message)
        return mac.finalize()
    }
}

/// Whether `a` and `b` hold the same bytes, taking time that depends only on the two lengths,
/// never on the contents: there is no early exit at the first difference, so an attacker
/// timing the comparison of a forged tag learns nothing about how many leading bytes were
/// right. Different lengths compare unequal, after the same full pass over the longer input.
@inline(never)
public func constantTimeEquals(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    let aCount = a.count, bCount = b.count
    // Branches below test only lengths and indices, which are not secret.
    var difference: UInt8 = aCount == bCount ? 0 : 1
    for i in 0..<max(aCount, bCount) {
        let x: UInt8 = i < aCount ? a[i] : 0
        let y: UInt8 = i < bCount ? b[i] : 0
        difference |= x ^ y
    }
    return difference == 0
}

/// Whether `a` and `b` hold the same bytes, in time independent of their contents; see
/// ``constantTimeEquals(_:_:)``.
@inline(never)
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.withUnsafeBytes { a in b.withUnsafeBytes { b in constantTimeEquals(a, b) } }
}
