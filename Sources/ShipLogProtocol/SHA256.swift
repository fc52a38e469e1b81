/// SHA-256 as specified in FIPS 180-4, section 6.2.
///
/// Streaming use:
///
///     var hasher = SHA256()
///     hasher.update(header)
///     hasher.update(payload)
///     let digest = hasher.finalize()  // 32 bytes
///
/// or one-shot: `SHA256.hash(bytes)`.
///
/// The value is a plain struct with no heap storage: copying it forks the computation, and
/// ``finalize()`` does not consume it, so a digest of a prefix can be taken and hashing
/// continued. Messages are limited to 2^64 - 1 bits, as in the standard (far beyond anything
/// that can be fed to it in practice).
///
/// This is a portable implementation without CPU SHA extensions; it is meant for
/// authentication transcripts and checksums of modest size, not for bulk hashing.
public struct SHA256: Sendable {
    /// Bytes in a digest.
    public static let digestByteCount = 32
    /// Bytes in one block of the compression function (also the HMAC block size).
    public static let blockByteCount = 64

    /// The eight working hash values H0...H7.
    private var state: State = .initial
    /// Bytes of an incomplete block waiting for more input; the first ``bufferedCount`` are valid.
    private var buffer: Block = Block()
    private var bufferedCount: Int = 0
    /// Bytes fed so far, for the length field of the padding.
    private var messageByteCount: UInt64 = 0

    public init() {}

    /// Feeds `bytes` to the hash.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var input = bytes.baseAddress, !bytes.isEmpty else { return }
        var remaining = bytes.count
        messageByteCount &+= UInt64(remaining)

        // Top up a partially filled block first.
        if bufferedCount > 0 {
            let take = min(Self.blockByteCount - bufferedCount, remaining)
            let offset = bufferedCount
            withUnsafeMutableBytes(of: &buffer) { $0.baseAddress!.advanced(by: offset).copyMemory(from: input, byteCount: take) }
            bufferedCount += take
            input += take
            remaining -= take
            guard bufferedCount == Self.blockByteCount else { return }
            let block = buffer
            withUnsafeBytes(of: block) { Self.compress(&state, blocks: $0.baseAddress!, count: 1) }
            bufferedCount = 0
        }

        // Whole blocks straight from the input, without copying.
        let wholeBlocks = remaining / Self.blockByteCount
        if wholeBlocks > 0 {
            Self.compress(&state, blocks: input, count: wholeBlocks)
            input += wholeBlocks * Self.blockByteCount
            remaining -= wholeBlocks * Self.blockByteCount
        }

        // Keep the tail for later.
        if remaining > 0 {
            withUnsafeMutableBytes(of: &buffer) { $0.baseAddress!.copyMemory(from: input, byteCount: remaining) }
            bufferedCount = remaining
        }
    }

    /// Feeds `bytes` to the hash.
    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The digest of everything fed so far: 32 bytes. Does not change the hasher, which may be
    /// fed further.
    public func finalize() -> [UInt8] {
        var copy = self
        let bitCount = messageByteCount &* 8
        // 0x80, then zeros up to 56 mod 64, then the message length in bits, big-endian.
        let padByteCount = bufferedCount < 56 ? 56 - bufferedCount : 120 - bufferedCount
        var padding = (Block(), Block())
        withUnsafeMutableBytes(of: &padding) { pad in
            pad[0] = 0x80
            pad.storeBytes(of: bitCount.bigEndian, toByteOffset: padByteCount, as: UInt64.self)
            copy.update(UnsafeRawBufferPointer(rebasing: pad[0..<(padByteCount + 8)]))
        }
        precondition(copy.bufferedCount == 0)
        let state = copy.state
        return [UInt8](unsafeUninitializedCapacity: Self.digestByteCount) { out, initialized in
            let raw = UnsafeMutableRawBufferPointer(out)
            raw.storeBytes(of: state.a.bigEndian, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: state.b.bigEndian, toByteOffset: 4, as: UInt32.self)
            raw.storeBytes(of: state.c.bigEndian, toByteOffset: 8, as: UInt32.self)
            raw.storeBytes(of: state.d.bigEndian, toByteOffset: 12, as: UInt32.self)
            raw.storeBytes(of: state.e.bigEndian, toByteOffset: 16, as: UInt32.self)
            raw.storeBytes(of: state.f.bigEndian, toByteOffset: 20, as: UInt32.self)
            raw.storeBytes(of: state.g.bigEndian, toByteOffset: 24, as: UInt32.self)
            raw.storeBytes(of: state.h.bigEndian, toByteOffset: 28, as: UInt32.self)
            initialized = Self.digestByteCount
        }
    }

    /// The SHA-256 digest of `bytes`: 32 bytes.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalize()
    }

    /// The SHA-256 digest of `bytes`: 32 bytes.
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { hash($0) }
    }
}

// MARK: - Compression function

extension SHA256 {
    /// 64 bytes of inline storage, with no heap allocation.
    fileprivate struct Block: Sendable {
        var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    }

    fileprivate struct State: Sendable {
        var a, b, c, d, e, f, g, h: UInt32

        /// FIPS 180-4 section 5.3.3: the first 32 bits of the fractional parts of the square
        /// roots of the first eight primes.
        static let initial = State(
            a: 0x6a09_e667, b: 0xbb67_ae85, c: 0x3c6e_f372, d: 0xa54f_f53a,
            e: 0x510e_527f, f: 0x9b05_688c, g: 0x1f83_d9ab, h: 0x5be0_cd19)
    }

    /// FIPS 180-4 section 4.2.2: the first 32 bits of the fractional parts of the cube roots
    /// of the first 64 primes.
    private static let roundConstants: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]

    @inline(__always)
    private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 {
        (x &>> n) | (x &<< (32 &- n))
    }

    /// Runs the compression function over `count` consecutive 64-byte blocks at `blocks`
    /// (any alignment). The message schedule lives in one stack allocation for the whole call.
    private static func compress(_ state: inout State, blocks: UnsafeRawPointer, count: Int) {
        roundConstants.withUnsafeBufferPointer { k in
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
                let k = k.baseAddress!
                let w = w.baseAddress!
                var s = state
                var block = blocks
                for _ in 0..<count {
                    // 6.2.2 step 1: the message schedule.
                    for t in 0..<16 {
                        w[t] = block.loadUnaligned(fromByteOffset: t &* 4, as: UInt32.self).bigEndian
                    }
                    for t in 16..<64 {
                        let w15 = w[t &- 15], w2 = w[t &- 2]
                        let sigma0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 &>> 3)
                        let sigma1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 &>> 10)
                        w[t] = sigma1 &+ w[t &- 7] &+ sigma0 &+ w[t &- 16]
                    }

                    // Steps 2 and 3: the 64 rounds.
                    var a = s.a, b = s.b, c = s.c, d = s.d, e = s.e, f = s.f, g = s.g, h = s.h
                    for t in 0..<64 {
                        let bigSigma1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                        let choose = (e & f) ^ (~e & g)
                        let t1 = h &+ bigSigma1 &+ choose &+ k[t] &+ w[t]
                        let bigSigma0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                        let majority = (a & b) ^ (a & c) ^ (b & c)
                        let t2 = bigSigma0 &+ majority
                        h = g
                        g = f
                        f = e
                        e = d &+ t1
                        d = c
                        c = b
                        b = a
                        a = t1 &+ t2
                    }

                    // Step 4: the intermediate hash value.
                    s.a &+= a
                    s.b &+= b
                    s.c &+= c
                    s.d &+= d
                    s.e &+= e
                    s.f &+= f
                    s.g &+= g
                    s.h &+= h
                    block += 64
                }
                state = s
            }
        }
    }
}
