import Testing
@testable import ShipLogProtocol
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104 / RFC 4231), constant-time comparison, and the
/// handshake's challenge–response authentication.
///
/// Expected values come from the standards' published vectors; the aggregate vectors
/// ("digest of digests") and the authentication golden values were computed independently
/// with Python's `hashlib`, `hmac` and `struct` modules.
@Suite("Crypto")
struct CryptoTests {
    // MARK: Helpers

    private static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] }, as: UTF8.self)
    }

    private static func bytes(hex: String) -> [UInt8] {
        let nibbles = hex.utf8.map { c -> UInt8 in
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            default: return c - UInt8(ascii: "a") + 10
            }
        }
        return stride(from: 0, to: nibbles.count, by: 2).map { nibbles[$0] << 4 | nibbles[$0 + 1] }
    }

    private static func ascii(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// Deterministic message bytes: byte i is (7i + 3) mod 256.
    private static func message(_ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
    }

    // MARK: SHA-256

    @Test func sha256NISTVectors() {
        let vectors: [(String, String)] = [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
            ),
            (
                "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
            ),
        ]
        for (input, expected) in vectors {
            #expect(Self.hex(SHA256.hash(Self.ascii(input))) == expected, "SHA-256 of \"\(input)\"")
        }
    }

    @Test func sha256OneMillionA() {
        let expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        #expect(Self.hex(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))) == expected)

        // The same, fed in 1000 pieces of 1000 bytes.
        var hasher = SHA256()
        let thousand = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { hasher.update(thousand) }
        #expect(Self.hex(hasher.finalize()) == expected)
    }

    /// Every message length from 0 to 259 bytes, covering each padding case (one or two final
    /// blocks, the 55/56 and 63/64 boundaries) several times.
    @Test func sha256EveryLengthAcrossPaddingBoundaries() {
        var all = SHA256()
        for length in 0..<260 { all.update(SHA256.hash(Self.message(length))) }
        #expect(Self.hex(all.finalize()) == "d6ed1a47ea2944ad7c9eaa695aaa1d9bb5dcc0313186a43b70bc86f556664c5f")
    }

    @Test(arguments: [1, 2, 3, 7, 13, 55, 56, 63, 64, 65, 127, 128, 129, 1000])
    func sha256StreamingInChunksEqualsOneShot(chunk: Int) {
        let data = Self.message(3 * 1024 + 37)
        let expected = SHA256.hash(data)
        var hasher = SHA256()
        var offset = 0
        while offset < data.count {
            let end = min(offset + chunk, data.count)
            data[offset..<end].withUnsafeBytes { hasher.update($0) }
            offset = end
        }
        #expect(hasher.finalize() == expected)
    }

    @Test func sha256StreamingInIrregularChunksEqualsOneShot() {
        let data = Self.message(5000)
        let expected = SHA256.hash(data)
        for seed in 1...20 {
            var hasher = SHA256()
            var offset = 0
            var step = seed
            while offset < data.count {
                step = (step * 37 + 11) % 150  // includes zero-length updates
                let end = min(offset + step, data.count)
                hasher.update(Array(data[offset..<end]))
                offset = end
            }
            #expect(hasher.finalize() == expected, "seed \(seed)")
        }
    }

    @Test func sha256FinalizeDoesNotConsumeTheHasher() {
        var hasher = SHA256()
        hasher.update(Self.ascii("ab"))
        let copy = hasher
        hasher.update(Self.ascii("c"))
        #expect(copy.finalize() == SHA256.hash(Self.ascii("ab")))
        #expect(hasher.finalize() == hasher.finalize())
        #expect(Self.hex(hasher.finalize()) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        hasher.update(Self.ascii("d"))
        #expect(hasher.finalize() == SHA256.hash(Self.ascii("abcd")))
        #expect(SHA256().finalize().count == SHA256.digestByteCount)
    }

    @Test func sha256RawBufferAndArrayAgree() {
        let data = Self.message(333)
        #expect(data.withUnsafeBytes { SHA256.hash($0) } == SHA256.hash(data))
        #expect(SHA256.hash(UnsafeRawBufferPointer(start: nil, count: 0)) == SHA256.hash([]))
    }

    // MARK: HMAC-SHA256 (RFC 4231)

    @Test func hmacRFC4231TestCases() {
        let cases: [(name: String, key: [UInt8], data: [UInt8], mac: String)] = [
            (
                "1", [UInt8](repeating: 0x0b, count: 20), Self.ascii("Hi There"),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
            ),
            (
                "2 (key shorter than the output)", Self.ascii("Jefe"), Self.ascii("what do ya want for nothing?"),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
            ),
            (
                "3", [UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50),
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"
            ),
            (
                "4", Array(1...25), [UInt8](repeating: 0xcd, count: 50),
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"
            ),
            (
                "6 (key larger than a block)", [UInt8](repeating: 0xaa, count: 131),
                Self.ascii("Test Using Larger Than Block-Size Key - Hash Key First"),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
            ),
            (
                "7 (key and data larger than a block)", [UInt8](repeating: 0xaa, count: 131),
                Self.ascii(
                    "This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."
                ),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
            ),
        ]
        for testCase in cases {
            let mac = HMACSHA256.authenticationCode(for: testCase.data, key: testCase.key)
            #expect(Self.hex(mac) == testCase.mac, "RFC 4231 test case \(testCase.name)")
            #expect(mac.count == HMACSHA256.byteCount)
        }
    }

    /// RFC 4231 test case 5: output truncated to 128 bits, compared on the first 16 bytes.
    @Test func hmacRFC4231TestCase5Truncated() {
        let mac = HMACSHA256.authenticationCode(
            for: Self.ascii("Test With Truncation"), key: [UInt8](repeating: 0x0c, count: 20))
        #expect(Self.hex(Array(mac.prefix(16))) == "a3b6167473100ee06e0c796c2955552b")
    }

    /// Keys of every length from 0 to 199 bytes: below, at and above the 64-byte block, where
    /// keys switch from zero-padding to being hashed first.
    @Test func hmacEveryKeyLength() {
        var all = SHA256()
        for length in 0..<200 {
            all.update(HMACSHA256.authenticationCode(for: Self.ascii("ShipLog"), key: Self.message(length)))
        }
        #expect(Self.hex(all.finalize()) == "328ccc025d2cb89e3f0402d2b3424a4f8c30a3d83c1f4bc8ffa93ffeb4c2c064")
    }

    @Test func hmacStreamingEqualsOneShot() {
        let key = Self.message(40)
        let data = Self.message(1000)
        let expected = HMACSHA256.authenticationCode(for: data, key: key)
        for chunk in [1, 5, 63, 64, 65, 999] {
            var mac = HMACSHA256(key: key)
            var offset = 0
            while offset < data.count {
                let end = min(offset + chunk, data.count)
                data[offset..<end].withUnsafeBytes { mac.update($0) }
                offset = end
            }
            #expect(mac.finalize() == expected, "chunk \(chunk)")
            #expect(mac.finalize() == expected, "finalize twice, chunk \(chunk)")
        }
        let raw = data.withUnsafeBytes { d in key.withUnsafeBytes { k in HMACSHA256.authenticationCode(for: d, key: k) } }
        #expect(raw == expected)
    }

    // MARK: Constant-time comparison

    @Test func constantTimeEqualsCompares() {
        let a = Self.message(32)
        #expect(constantTimeEquals(a, a))
        #expect(constantTimeEquals([], []))
        for i in a.indices {
            var b = a
            b[i] ^= 0x01
            #expect(!constantTimeEquals(a, b), "differs at \(i)")
            b[i] ^= 0x81
            #expect(!constantTimeEquals(a, b), "differs at \(i) in the high bit")
        }
        #expect(!constantTimeEquals(a, Array(a.prefix(31))))
        #expect(!constantTimeEquals(Array(a.prefix(31)), a))
        #expect(!constantTimeEquals(a, a + [0]))
        #expect(!constantTimeEquals([], [0]))
        #expect(!constantTimeEquals([0], []))
        let raw = a.withUnsafeBytes { x in a.withUnsafeBytes { y in constantTimeEquals(x, y) } }
        #expect(raw)
    }

    // MARK: Authentication

    private static let secretBytes = ascii("correct horse battery staple 42")
    private static let clusterID = ascii("cluster-7")
    private static let primaryID = ascii("node-1")
    private static let followerID = ascii("node-2")
    private static let primaryNonce = Nonce(bytes: Array(32..<64))!
    private static let followerNonce = Nonce(bytes: Array(0..<32))!

    private static func secret() throws -> SharedSecret { try SharedSecret(bytes: secretBytes) }

    /// The exact transcript and proof bytes, checked against an independent computation.
    @Test func transcriptAndProofGoldenBytes() throws {
        let transcript = Authentication.transcript(
            role: .follower, proverNonce: Self.followerNonce, verifierNonce: Self.primaryNonce,
            clusterID: Self.clusterID, proverNodeID: Self.followerID)
        #expect(
            Self.hex(transcript)
                == "736869706c6f672d617574682d763108000000666f6c6c6f77657220000000"
                + "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20000000"
                + "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
                + "09000000636c75737465722d37060000006e6f64652d32")
        let proof = Authentication.proof(
            secret: try Self.secret(), role: .follower, ownNonce: Self.followerNonce, peerNonce: Self.primaryNonce,
            clusterID: Self.clusterID, nodeID: Self.followerID)
        #expect(Self.hex(proof) == "0769a54c2646bcf84af6ad2987b9585c91997927b006e3e1fec2e7d4ec1e9bdb")
        #expect(proof.count == Authentication.proofByteCount)
        #expect(proof == HMACSHA256.authenticationCode(for: transcript, key: Self.secretBytes))
    }

    @Test func mutualAuthenticationSucceeds() throws {
        let secret = try Self.secret()
        // The primary proves to the follower...
        let primaryProof = Authentication.proof(
            secret: secret, role: .primary, ownNonce: Self.primaryNonce, peerNonce: Self.followerNonce,
            clusterID: Self.clusterID, nodeID: Self.primaryID)
        #expect(
            Authentication.verify(
                primaryProof, secret: secret, peerRole: .primary, peerNonce: Self.primaryNonce,
                ownNonce: Self.followerNonce, clusterID: Self.clusterID, peerNodeID: Self.primaryID))
        // ...and the follower to the primary.
        let followerProof = Authentication.proof(
            secret: secret, role: .follower, ownNonce: Self.followerNonce, peerNonce: Self.primaryNonce,
            clusterID: Self.clusterID, nodeID: Self.followerID)
        #expect(
            Authentication.verify(
                followerProof, secret: secret, peerRole: .follower, peerNonce: Self.followerNonce,
                ownNonce: Self.primaryNonce, clusterID: Self.clusterID, peerNodeID: Self.followerID))
        #expect(primaryProof != followerProof)
    }

    @Test func clientAuthenticatesWithEmptyNodeID() throws {
        let secret = try Self.secret()
        let clientNonce = try Nonce.random()
        let proof = Authentication.proof(
            secret: secret, role: .client, ownNonce: clientNonce, peerNonce: Self.primaryNonce,
            clusterID: Self.clusterID, nodeID: [])
        #expect(
            Authentication.verify(
                proof, secret: secret, peerRole: .client, peerNonce: clientNonce, ownNonce: Self.primaryNonce,
                clusterID: Self.clusterID, peerNodeID: []))
        #expect(
            !Authentication.verify(
                proof, secret: secret, peerRole: .follower, peerNonce: clientNonce, ownNonce: Self.primaryNonce,
                clusterID: Self.clusterID, peerNodeID: []))
    }

    /// The primary's proof sent back to the primary as if it were the follower's fails, whatever
    /// the attacker claims: the role label and the order of the nonces differ by direction.
    @Test func reflectedProofFails() throws {
        let secret = try Self.secret()
        let primaryProof = Authentication.proof(
            secret: secret, role: .primary, ownNonce: Self.primaryNonce, peerNonce: Self.followerNonce,
            clusterID: Self.clusterID, nodeID: Self.primaryID)
        for role in Authentication.Role.allCases {
            for nodeID in [Self.primaryID, Self.followerID] {
                // As the primary sees it: the peer's nonce is the follower's, its own is the primary's.
                #expect(
                    !Authentication.verify(
                        primaryProof, secret: secret, peerRole: role, peerNonce: Self.followerNonce,
                        ownNonce: Self.primaryNonce, clusterID: Self.clusterID, peerNodeID: nodeID),
                    "reflected as \(role) \(Self.hex(nodeID))")
            }
        }
        // The follower's proof likewise cannot be reflected to the follower.
        let followerProof = Authentication.proof(
            secret: secret, role: .follower, ownNonce: Self.followerNonce, peerNonce: Self.primaryNonce,
            clusterID: Self.clusterID, nodeID: Self.followerID)
        #expect(
            !Authentication.verify(
                followerProof, secret: secret, peerRole: .primary, peerNonce: Self.primaryNonce,
                ownNonce: Self.followerNonce, clusterID: Self.clusterID, peerNodeID: Self.followerID))
    }

    /// Same nonces in the same order and same node ID, another role label: a different
    /// transcript. (Reflection is stopped by the role label and the nonce order each on its own.)
    @Test func roleLabelMatters() throws {
        let secret = try Self.secret()
        for proverRole in Authentication.Role.allCases {
            let proof = Authentication.proof(
                secret: secret, role: proverRole, ownNonce: Self.followerNonce, peerNonce: Self.primaryNonce,
                clusterID: Self.clusterID, nodeID: Self.followerID)
            for claimedRole in Authentication.Role.allCases {
                let verified = Authentication.verify(
                    proof, secret: secret, peerRole: claimedRole, peerNonce: Self.followerNonce,
                    ownNonce: Self.primaryNonce, clusterID: Self.clusterID, peerNodeID: Self.followerID)
                #expect(verified == (proverRole == claimedRole), "made as \(proverRole), checked as \(claimedRole)")
            }
        }
    }

    /// Same role label, nonces in the other order: still a different transcript.
    @Test func nonceOrderMatters() throws {
        let secret = try Self.secret()
        let a = Authentication.proof(
            secret: secret, role: .follower, ownNonce: Self.followerNonce, peerNonce: Self.primaryNonce,
            clusterID: Self.clusterID, nodeID: Self.followerID)
        let b = Authentication.proof(
            secret: secret, role: .follower, ownNonce: Self.primaryNonce, peerNonce: Self.followerNonce,
            clusterID: Self.clusterID, nodeID: Self.followerID)
        #expect(a != b)
        #expect(
            !Authentication.verify(
                a, secret: secret, peerRole: .follower, peerNonce: Self.primaryNonce, ownNonce: Self.followerNonce,
                clusterID: Self.clusterID, peerNodeID: Self.followerID))
    }

    /// A proof recorded on one connection does not verify on another (fresh nonces), nor for
    /// another cluster, node ID or secret, nor once altered or truncated.
    @Test func proofForOtherInputsFails() throws {
        let secret = try Self.secret()
        let proof = Authentication.proof(
            secret: secret, role: .follower, ownNonce: Self.followerNonce, peerNonce: Self.primaryNonce,
            clusterID: Self.clusterID, nodeID: Self.followerID)
        func verify(
            _ proof: [UInt8], secret: SharedSecret, peerNonce: Nonce = Self.followerNonce,
            ownNonce: Nonce = Self.primaryNonce, clusterID: [UInt8] = Self.clusterID, peerNodeID: [UInt8] = Self.followerID
        ) -> Bool {
            Authentication.verify(
                proof, secret: secret, peerRole: .follower, peerNonce: peerNonce, ownNonce: ownNonce,
                clusterID: clusterID, peerNodeID: peerNodeID)
        }
        #expect(verify(proof, secret: secret))

        // Replay on a new connection: the verifier drew a new nonce (and the peer, maybe too).
        let freshPrimary = try Nonce.random()
        let freshFollower = try Nonce.random()
        #expect(!verify(proof, secret: secret, ownNonce: freshPrimary))
        #expect(!verify(proof, secret: secret, peerNonce: freshFollower))
        #expect(!verify(proof, secret: secret, peerNonce: freshFollower, ownNonce: freshPrimary))
        // One bit of one nonce.
        var flipped = Self.primaryNonce.bytes
        flipped[31] ^= 1
        #expect(!verify(proof, secret: secret, ownNonce: Nonce(bytes: flipped)!))

        #expect(!verify(proof, secret: secret, clusterID: Self.ascii("cluster-8")))
        #expect(!verify(proof, secret: secret, clusterID: []))
        #expect(!verify(proof, secret: secret, peerNodeID: Self.primaryID))
        #expect(!verify(proof, secret: try SharedSecret(bytes: Self.ascii("correct horse battery staple 43"))))

        for i in proof.indices {
            var altered = proof
            altered[i] ^= 0x40
            #expect(!verify(altered, secret: secret), "byte \(i) altered")
        }
        #expect(!verify(Array(proof.prefix(16)), secret: secret))
        #expect(!verify(proof + [0], secret: secret))
        #expect(!verify([], secret: secret))
    }

    /// Length prefixes: moving bytes from one field to the next changes the transcript.
    @Test func fieldBoundariesAreUnambiguous() throws {
        let secret = try Self.secret()
        func proof(cluster: String, node: String) -> [UInt8] {
            Authentication.proof(
                secret: secret, role: .follower, ownNonce: Self.followerNonce, peerNonce: Self.primaryNonce,
                clusterID: Self.ascii(cluster), nodeID: Self.ascii(node))
        }
        #expect(proof(cluster: "ab", node: "c") != proof(cluster: "a", node: "bc"))
        #expect(proof(cluster: "abc", node: "") != proof(cluster: "", node: "abc"))
    }

    /// A peer echoing the verifier's own nonce as its challenge is refused even with a proof
    /// that is otherwise right.
    @Test func echoedNonceIsRefused() throws {
        let secret = try Self.secret()
        let proof = Authentication.proof(
            secret: secret, role: .follower, ownNonce: Self.primaryNonce, peerNonce: Self.primaryNonce,
            clusterID: Self.clusterID, nodeID: Self.followerID)
        #expect(
            !Authentication.verify(
                proof, secret: secret, peerRole: .follower, peerNonce: Self.primaryNonce, ownNonce: Self.primaryNonce,
                clusterID: Self.clusterID, peerNodeID: Self.followerID))
    }

    // MARK: Nonces

    @Test func noncesAreRandomAndSized() throws {
        var seen = Set<Nonce>()
        for _ in 0..<64 {
            let nonce = try Nonce.random()
            #expect(nonce.bytes.count == Nonce.byteCount)
            seen.insert(nonce)
        }
        #expect(seen.count == 64)
        #expect(Nonce(bytes: Array(repeating: 0, count: 31)) == nil)
        #expect(Nonce(bytes: Array(repeating: 0, count: 33)) == nil)
        #expect(Nonce(bytes: Array(0..<32))?.description == Self.hex(Array(0..<32)))
    }

    // MARK: Shared secret files

    /// A fresh directory for one test, removed with its files afterwards.
    private final class TemporaryDirectory {
        let path: String
        private var files: [String] = []

        init() throws {
            var template = Array("/tmp/shiplog-crypto-tests-XXXXXX".utf8CString)
            let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
            try #require(made != nil)
            path = String(cString: made!)
        }

        /// Writes `bytes` to a file named `name` and returns its path.
        func create(_ name: String, _ bytes: [UInt8]) throws -> String {
            let file = path + "/" + name
            let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            try #require(fd >= 0)
            defer { close(fd) }
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            try #require(written == bytes.count)
            files.append(file)
            return file
        }

        deinit {
            for file in files { unlink(file) }
            rmdir(path)
        }
    }

    /// A secret read from a file makes the same proofs as the same bytes given directly.
    private static func sameSecret(_ a: SharedSecret, _ b: SharedSecret) -> Bool {
        let proof = { (secret: SharedSecret) in
            Authentication.proof(
                secret: secret, role: .primary, ownNonce: primaryNonce, peerNonce: followerNonce, clusterID: [],
                nodeID: [])
        }
        return a.byteCount == b.byteCount && proof(a) == proof(b)
    }

    @Test func secretFileIsReadAndOneTrailingNewlineStripped() throws {
        let directory = try TemporaryDirectory()
        let body = Self.ascii("0123456789abcdef-secret")
        let direct = try SharedSecret(bytes: body)

        let plain = try SharedSecret(contentsOfFile: try directory.create("plain", body))
        #expect(Self.sameSecret(plain, direct))
        let newline = try SharedSecret(contentsOfFile: try directory.create("newline", body + [0x0a]))
        #expect(Self.sameSecret(newline, direct))
        let crlf = try SharedSecret(contentsOfFile: try directory.create("crlf", body + [0x0d, 0x0a]))
        #expect(Self.sameSecret(crlf, direct))

        // Only one newline goes; anything else is part of the secret.
        let two = try SharedSecret(contentsOfFile: try directory.create("two", body + [0x0a, 0x0a]))
        #expect(two.byteCount == body.count + 1)
        #expect(!Self.sameSecret(two, direct))
        let space = try SharedSecret(contentsOfFile: try directory.create("space", body + [0x20]))
        #expect(space.byteCount == body.count + 1)
        let carriageReturn = try SharedSecret(contentsOfFile: try directory.create("cr", body + [0x0d]))
        #expect(carriageReturn.byteCount == body.count + 1)
    }

    @Test func secretFileSizeLimits() throws {
        let directory = try TemporaryDirectory()
        let sixteen = try directory.create("16", Self.message(16))
        #expect(try SharedSecret(contentsOfFile: sixteen).byteCount == 16)
        let sixteenAndNewline = try directory.create("16nl", Self.ascii("sixteen-bytes-ok\n"))
        #expect(try SharedSecret(contentsOfFile: sixteenAndNewline).byteCount == 16)
        let limit = try directory.create("4096", [UInt8](repeating: 0x41, count: 4096))
        #expect(try SharedSecret(contentsOfFile: limit).byteCount == 4096)

        let fifteen = try directory.create("15", Self.message(15))
        #expect(throws: AuthenticationError.secretTooShort(path: fifteen, byteCount: 15)) {
            try SharedSecret(contentsOfFile: fifteen)
        }
        // 16 bytes in the file, but the 16th is the newline.
        let fifteenAndNewline = try directory.create("15nl", Self.ascii("fifteen-bytes!!\n"))
        #expect(throws: AuthenticationError.secretTooShort(path: fifteenAndNewline, byteCount: 15)) {
            try SharedSecret(contentsOfFile: fifteenAndNewline)
        }
        let empty = try directory.create("empty", [])
        #expect(throws: AuthenticationError.secretTooShort(path: empty, byteCount: 0)) {
            try SharedSecret(contentsOfFile: empty)
        }
        let newlineOnly = try directory.create("newline-only", [0x0a])
        #expect(throws: AuthenticationError.secretTooShort(path: newlineOnly, byteCount: 0)) {
            try SharedSecret(contentsOfFile: newlineOnly)
        }

        let tooLarge = try directory.create("4097", [UInt8](repeating: 0x41, count: 4097))
        #expect(throws: AuthenticationError.secretTooLong(path: tooLarge, byteCount: 4097)) {
            try SharedSecret(contentsOfFile: tooLarge)
        }
        // The limit is on the file: a newline does not buy a 4097th byte.
        let limitAndNewline = try directory.create("4096nl", [UInt8](repeating: 0x41, count: 4096) + [0x0a])
        #expect(throws: AuthenticationError.secretTooLong(path: limitAndNewline, byteCount: 4097)) {
            try SharedSecret(contentsOfFile: limitAndNewline)
        }
        let huge = try directory.create("huge", [UInt8](repeating: 0x41, count: 1 << 20))
        #expect(throws: AuthenticationError.secretTooLong(path: huge, byteCount: 1 << 20)) {
            try SharedSecret(contentsOfFile: huge)
        }
    }

    @Test func secretErrorsNameThePath() throws {
        let directory = try TemporaryDirectory()
        let missing = directory.path + "/does-not-exist"
        do {
            _ = try SharedSecret(contentsOfFile: missing)
            Issue.record("a missing file was accepted")
        } catch {
            #expect(error == .secretFileUnreadable(path: missing, errno: ENOENT))
            #expect(error.description.contains(missing))
        }
        do {
            _ = try SharedSecret(contentsOfFile: directory.path)
            Issue.record("a directory was accepted")
        } catch {
            #expect(error == .secretFileUnreadable(path: directory.path, errno: EISDIR))
            #expect(error.description.contains(directory.path))
        }
        let short = try directory.create("short", Self.ascii("short"))
        do {
            _ = try SharedSecret(contentsOfFile: short)
            Issue.record("a short secret was accepted")
        } catch {
            #expect(error.description.contains(short))
            #expect(error.description.contains("16"))
        }
        let long = try directory.create("long", Self.message(5000))
        do {
            _ = try SharedSecret(contentsOfFile: long)
            Issue.record("a long secret was accepted")
        } catch {
            #expect(error.description.contains(long))
            #expect(error.description.contains("4096"))
        }
    }

    @Test func secretFromBytesChecksLength() throws {
        #expect(throws: AuthenticationError.secretTooShort(path: nil, byteCount: 15)) {
            try SharedSecret(bytes: Self.message(15))
        }
        #expect(throws: AuthenticationError.secretTooLong(path: nil, byteCount: 4097)) {
            try SharedSecret(bytes: Self.message(4097))
        }
        #expect(try SharedSecret(bytes: Self.message(16)).byteCount == 16)
        #expect(try SharedSecret(bytes: Self.message(4096)).byteCount == 4096)
    }

    @Test func secretIsNeverPrinted() throws {
        let secret = try SharedSecret(bytes: Self.ascii("hunter2-hunter2-hunter2"))
        var dumped = ""
        dump(secret, to: &dumped)
        for text in [secret.description, String(reflecting: secret), "\(secret)", dumped] {
            #expect(!text.contains("hunter2"), "\(text)")
            #expect(text.contains("23"), "\(text)")
        }
    }
}
