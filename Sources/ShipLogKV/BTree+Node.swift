#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The nodes of `BTree`: one class for leaves and internal nodes. Hot paths touch raw memory
// only (no dynamic exclusivity checks on class properties, no per-key objects), and a lookup
// touches few cache lines: the node object itself holds its header and its entries, and the
// key bytes are in one heap per node.
//
// Node object (a ManagedBuffer, one allocation, never resized):
//
//     [object header][BTreeNodeHeader][BTreeEntry × maxCount][child × maxCount (internal only)]
//
// Heap (`head.heap`, malloc'd, grown with realloc): the key bytes of every entry, each
// followed in leaves by its value bytes when the value is inline. Entries are appended;
// overwritten and removed bytes become garbage, reclaimed when the heap is compacted (when it
// would otherwise grow, or when more than half of it is garbage).
//
// Entry i (16 bytes) describes key i; entries are kept in key order. All keys of a node share
// their first `skip` bytes (0...16, kept in the header: prefix truncation), and an entry's
// `prefix` is the next 8 bytes of its key, big-endian, zero-padded: comparing prefixes as
// integers orders most keys without touching the heap, even keys with long common prefixes.
// Search counts the prefixes below the key's in one linear pass over all entries (independent
// loads, so a cold node costs about one memory latency, not one per probe of a binary search),
// then compares full keys only among entries with an equal prefix. Unused entries hold the
// prefix UInt64.max, so the pass need not wait for `count`.
//
// Internal nodes hold `count` children; entry i is child i and its lower bound (every key in
// child i is >= key i, and < key i+1). Key 0 is always empty (it would be the parent's bound).

enum BTreeLayout {
    /// Entries per leaf and children per internal node, at most. (One value: `find` scans
    /// `leafCapacity` entries in either kind.)
    @inline(__always) static var leafCapacity: Int { 64 }
    @inline(__always) static var internalCapacity: Int { leafCapacity }
    /// A node other than the root and the rightmost node of its level holds at least this many
    /// (deletion merges or rebalances below it); splits leave halves of capacity / 2.
    @inline(__always) static var leafMinimum: Int { leafCapacity / 3 }
    @inline(__always) static var internalMinimum: Int { internalCapacity / 3 }
    /// Values up to this many bytes are stored inline in the leaf heap; longer ones as their own
    /// `[UInt8]`, so that copying a leaf (copy-on-write) never copies large values.
    @inline(__always) static var inlineValueMax: Int { 256 }
    /// The longest key (the entry has 21 bits for it).
    @inline(__always) static var keyLengthMax: Int { 1 << 20 }
    @inline(__always) static var minimumHeap: Int { 64 }
}

/// One entry: the key's 8-byte prefix and where the key (and inline value) is in the heap.
///
/// `slot`: bits 0..<32 the heap offset of the key, 32..<53 the key length; bits 53..<63 the
/// inline value's length (its bytes follow the key), or, when bit 63 is set, the index of the
/// value in `outOfLine`. Internal nodes: value bits 0.
struct BTreeEntry {
    var prefix: UInt64
    var slot: UInt64

    @inline(__always) var offset: Int { Int(truncatingIfNeeded: slot & 0xFFFF_FFFF) }
    @inline(__always) var keyLength: Int { Int(truncatingIfNeeded: (slot &>> 32) & 0x1F_FFFF) }
    @inline(__always) var isOutOfLine: Bool { slot &>> 63 != 0 }
    /// The inline value's length (0 when out of line).
    @inline(__always) var inlineLength: Int { isOutOfLine ? 0 : Int(truncatingIfNeeded: slot &>> 53) }
    @inline(__always) var outOfLineIndex: Int { Int(truncatingIfNeeded: (slot &>> 53) & 0x3FF) }
    /// The bytes the entry takes in the heap.
    @inline(__always) var heapBytes: Int { keyLength &+ inlineLength }

    @inline(__always)
    static func slot(offset: Int, keyLength: Int, inlineLength: Int) -> UInt64 {
        UInt64(truncatingIfNeeded: offset) | UInt64(truncatingIfNeeded: keyLength) &<< 32
            | UInt64(truncatingIfNeeded: inlineLength) &<< 53
    }

    @inline(__always)
    static func slot(offset: Int, keyLength: Int, outOfLineIndex: Int) -> UInt64 {
        UInt64(truncatingIfNeeded: offset) | UInt64(truncatingIfNeeded: keyLength) &<< 32
            | UInt64(truncatingIfNeeded: outOfLineIndex) &<< 53 | 1 &<< 63
    }

    @inline(__always)
    mutating func setOffset(_ offset: Int) {
        slot = slot & ~0xFFFF_FFFF | UInt64(truncatingIfNeeded: offset)
    }
}

struct BTreeNodeHeader {
    var count: Int
    let isLeaf: Bool
    /// The number of leading bytes every key shares (internal nodes: every key but key 0), at
    /// most 16; they are `common0` and `common1`, big-endian, zero-padded.
    var skip: Int
    var common0: UInt64
    var common1: UInt64
    var heap: UnsafeMutableRawPointer
    var heapCapacity: Int
    /// Bytes in use at the start of the heap, garbage included.
    var heapEnd: Int
    var heapGarbage: Int
    /// Leaves: out-of-line values; entries no slot refers to any more are empty arrays (every
    /// out-of-line value is longer than `inlineValueMax`), reused before the array grows.
    var outOfLine: [[UInt8]]
}

/// A key being looked up or inserted: its bytes and their 8-byte prefix.
struct BTreeKey {
    let base: UnsafeRawPointer
    let count: Int
    let prefix: UInt64

    @inline(__always)
    init(base: UnsafeRawPointer, count: Int) {
        self.base = base
        self.count = count
        self.prefix = BTreeKey.prefix(base, count)
    }

    @inline(__always)
    init(_ bytes: UnsafeRawBufferPointer) {
        // An empty buffer may have no address; nothing is ever read through it then.
        self.init(base: bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!, count: bytes.count)
    }

    static var empty: BTreeKey { BTreeKey(base: UnsafeRawPointer(bitPattern: 8)!, count: 0) }

    /// The first 8 bytes, big-endian, zero-padded.
    @inline(__always)
    static func prefix(_ p: UnsafeRawPointer, _ n: Int) -> UInt64 {
        if n >= 8 { return UInt64(bigEndian: p.loadUnaligned(as: UInt64.self)) }
        var v: UInt64 = 0
        var i = 0
        while i < n {
            v |= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) &<< UInt64(56 &- 8 &* i)
            i &+= 1
        }
        return v
    }
}

final class BTreeNode: ManagedBuffer<BTreeNodeHeader, BTreeEntry> {
    // Mutated only while uniquely referenced (copy-on-write), so sharing between threads is safe
    // exactly as for the standard library's collections.

    static func make(isLeaf: Bool, heapCapacity: Int) -> BTreeNode {
        let capacity = max(heapCapacity, BTreeLayout.minimumHeap)
        let entries =
            isLeaf
            ? BTreeLayout.leafCapacity
            : BTreeLayout.internalCapacity
                + (BTreeLayout.internalCapacity * MemoryLayout<BTreeNode>.stride + MemoryLayout<BTreeEntry>.stride - 1)
                / MemoryLayout<BTreeEntry>.stride
        let node = unsafeDowncast(
            create(minimumCapacity: entries) { _ in
                BTreeNodeHeader(
                    count: 0, isLeaf: isLeaf, skip: 0, common0: 0, common1: 0, heap: malloc(capacity)!,
                    heapCapacity: capacity, heapEnd: 0,
                    heapGarbage: 0, outOfLine: [])
            }, to: BTreeNode.self)
        node.entries.initialize(repeating: BTreeEntry(prefix: .max, slot: 0), count: node.maxCount)
        if !isLeaf {
            // Zeros where there is no child yet, for `childIndex` to read.
            UnsafeMutableRawPointer(node.entries + BTreeLayout.internalCapacity)
                .initializeMemory(as: UInt.self, repeating: 0, count: BTreeLayout.internalCapacity)
            UnsafeMutableRawPointer(node.entries + BTreeLayout.internalCapacity).bindMemory(
                to: BTreeNode.self, capacity: BTreeLayout.internalCapacity)
        }
        return node
    }

    deinit {
        let h = head
        if !h.pointee.isLeaf { children.deinitialize(count: h.pointee.count) }
        free(h.pointee.heap)
        // ManagedBuffer destroys the header.
    }

    // MARK: Layout

    @inline(__always) var head: UnsafeMutablePointer<BTreeNodeHeader> { withUnsafeMutablePointerToHeader { $0 } }
    @inline(__always) var entries: UnsafeMutablePointer<BTreeEntry> { withUnsafeMutablePointerToElements { $0 } }
    @inline(__always) var children: UnsafeMutablePointer<BTreeNode> {
        UnsafeMutableRawPointer(entries + BTreeLayout.internalCapacity).assumingMemoryBound(to: BTreeNode.self)
    }
    @inline(__always) var isLeaf: Bool { head.pointee.isLeaf }
    @inline(__always) var count: Int { head.pointee.count }
    @inline(__always) var heap: UnsafeMutableRawPointer { head.pointee.heap }
    @inline(__always) var maxCount: Int { isLeaf ? BTreeLayout.leafCapacity : BTreeLayout.internalCapacity }
    @inline(__always) var minimum: Int { isLeaf ? BTreeLayout.leafMinimum : BTreeLayout.internalMinimum }

    // MARK: Reading

    @inline(__always) func keyBase(_ i: Int) -> UnsafeRawPointer { UnsafeRawPointer(heap + entries[i].offset) }
    @inline(__always) func keyLength(_ i: Int) -> Int { entries[i].keyLength }
    @inline(__always) func key(_ i: Int) -> UnsafeRawBufferPointer {
        let entry = entries[i]
        return UnsafeRawBufferPointer(start: heap + entry.offset, count: entry.keyLength)
    }
    @inline(__always) func keyRef(_ i: Int) -> BTreeKey {
        let entry = entries[i]
        return BTreeKey(base: heap + entry.offset, count: entry.keyLength)
    }
    func keyArray(_ i: Int) -> [UInt8] { Array(key(i)) }

    /// Key `i`, whose prefix equals that of `key` (both after the node's `skip` common bytes),
    /// compared with `key`: negative, zero or positive.
    @inline(__always)
    func compareTail(_ i: Int, _ key: BTreeKey, skip: Int) -> Int {
        let entry = entries[i]
        let length = entry.keyLength
        let n = min(length, key.count)
        // The first `skip` bytes are common, the next 8 (up to n) equal by the prefixes.
        // Compare the rest 8 bytes at a time.
        let stored = UnsafeRawPointer(heap + entry.offset)
        var offset = skip &+ 8
        if n &- offset > 64 {
            let c = memcmp(stored + offset, key.base + offset, n &- offset)
            if c != 0 { return Int(c) }
            return length &- key.count
        }
        while n &- offset >= 8 {
            let a = UInt64(bigEndian: (stored + offset).loadUnaligned(as: UInt64.self))
            let b = UInt64(bigEndian: (key.base + offset).loadUnaligned(as: UInt64.self))
            if a != b { return a < b ? -1 : 1 }
            offset &+= 8
        }
        while offset < n {
            let a = stored.load(fromByteOffset: offset, as: UInt8.self)
            let b = key.base.load(fromByteOffset: offset, as: UInt8.self)
            if a != b { return a < b ? -1 : 1 }
            offset &+= 1
        }
        return length &- key.count
    }

    /// A mask of the first `n` (0...8) bytes of a big-endian word.
    @inline(__always)
    static func mask(_ n: Int) -> UInt64 { n == 0 ? 0 : ~0 &<< UInt64(64 &- 8 &* n) }

    /// `key` against the node's common bytes: negative when it orders before every key of the
    /// node, positive when after, zero when it starts with them.
    @inline(__always)
    func compareCommon(_ key: BTreeKey, skip: Int) -> Int {
        let h = head
        let n = min(skip, key.count)
        let n0 = min(n, 8)
        let k0 = BTreeKey.prefix(key.base, n0)
        let c0 = h.pointee.common0 & Self.mask(n0)
        if k0 != c0 { return k0 < c0 ? -1 : 1 }
        if n > 8 {
            let k1 = BTreeKey.prefix(key.base + 8, n &- 8)
            let c1 = h.pointee.common1 & Self.mask(n &- 8)
            if k1 != c1 { return k1 < c1 ? -1 : 1 }
        }
        // A proper prefix of the common bytes orders first.
        return key.count < skip ? -1 : 0
    }

    /// The first index in `start..<count` whose key is >= `key`, and whether it is equal.
    @inline(__always)
    func find(_ key: BTreeKey, start: Int = 0) -> (index: Int, found: Bool) {
        let entries = self.entries
        let skip = head.pointee.skip
        var prefix = key.prefix
        if skip > 0 {
            let c = compareCommon(key, skip: skip)
            if c != 0 { return (c < 0 ? start : count, false) }
            prefix = BTreeKey.prefix(key.base + skip, key.count &- skip)
        }
        // Count the prefixes below the key's, over all entries.
        var below = 0
        for i in 0..<BTreeLayout.leafCapacity where entries[i].prefix < prefix { below &+= 1 }
        let n = count
        var low = max(below, start)
        // Usually no key has the same prefix.
        guard low < n && entries[low].prefix == prefix else { return (low, false) }
        // Binary search among the keys from there (prefixes first, so the heap is read only
        // for equal prefixes).
        var high = n
        while low < high {
            let mid = (low &+ high) &>> 1
            let p = entries[mid].prefix
            let c = p != prefix ? (p < prefix ? -1 : 1) : compareTail(mid, key, skip: skip)
            if c < 0 {
                low = mid &+ 1
            } else if c > 0 {
                high = mid
            } else {
                return (mid, true)
            }
        }
        return (low, false)
    }

    /// Internal nodes: the child whose range holds `key`.
    @inline(__always)
    func childIndex(_ key: BTreeKey) -> Int {
        // Load one word of each cache line of the children while the entries are searched, so
        // that reading the child after costs no further memory latency. (Pointers are 8-byte
        // aligned, so their xor never has the low bit set; the branch only keeps the loads.)
        let children = UnsafeRawPointer(self.children).assumingMemoryBound(to: UInt.self)
        var touch: UInt = 0
        for line in stride(from: 0, to: BTreeLayout.internalCapacity, by: 8) { touch ^= children[line] }
        if touch & 1 != 0 { BTreeNode.neverCalled() }
        let (i, found) = find(key, start: 1)
        return found ? i : i &- 1
    }

    @inline(never)
    static func neverCalled() { preconditionFailure("unaligned node pointer") }

    /// Leaves: calls `body` with the bytes of value `i`.
    @inline(__always)
    func withValue<R>(at i: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let entry = entries[i]
        if !entry.isOutOfLine {
            return try body(
                UnsafeRawBufferPointer(start: heap + entry.offset + entry.keyLength, count: entry.inlineLength))
        }
        return try head.pointee.outOfLine[entry.outOfLineIndex].withUnsafeBytes(body)
    }

    /// Leaves: value `i` as an array (out-of-line values are shared, not copied).
    @inline(__always)
    func value(at i: Int) -> [UInt8] {
        let entry = entries[i]
        if !entry.isOutOfLine {
            return Array(
                UnsafeRawBufferPointer(start: heap + entry.offset + entry.keyLength, count: entry.inlineLength))
        }
        return head.pointee.outOfLine[entry.outOfLineIndex]
    }

    /// Child `i`, unretained: for descending without reference counting while `self` holds it.
    @inline(__always)
    func child(_ i: Int) -> Unmanaged<BTreeNode> {
        Unmanaged.fromOpaque(UnsafeRawPointer(children).load(fromByteOffset: i &* 8, as: UnsafeRawPointer.self))
    }

    /// Calls `body` with the leaf and index of `key`, or returns `nil`.
    @inline(__always)
    func withEntry<R>(_ key: BTreeKey, _ body: (BTreeNode, Int) throws -> R) rethrows -> R? {
        var node = Unmanaged.passUnretained(self)
        while let next = node._withUnsafeGuaranteedRef({ $0.isLeaf ? nil : $0.child($0.childIndex(key)) }) {
            node = next
        }
        return try node._withUnsafeGuaranteedRef { leaf in
            let (i, found) = leaf.find(key)
            return found ? try body(leaf, i) : nil
        }
    }

    // MARK: Heap

    /// Makes room for `extra` more heap bytes.
    @inline(__always)
    func reserveHeap(_ extra: Int) {
        let h = head
        if h.pointee.heapEnd &+ extra > h.pointee.heapCapacity { growHeap(extra) }
    }

    /// Grows the heap in place with realloc when it has no garbage; otherwise compacts it into
    /// a new allocation.
    @inline(never)
    func growHeap(_ extra: Int) {
        let h = head
        let needed = h.pointee.heapEnd - h.pointee.heapGarbage + extra
        let capacity = max(needed + needed / 4, needed + 128)
        if h.pointee.heapGarbage == 0 {
            h.pointee.heap = realloc(h.pointee.heap, capacity)!
            h.pointee.heapCapacity = capacity
        } else {
            compact(capacity: capacity)
        }
    }

    /// Rewrites the heap without garbage, in key order, into a new allocation of `capacity` bytes.
    func compact(capacity: Int) {
        let h = head
        precondition(capacity >= h.pointee.heapEnd - h.pointee.heapGarbage)
        let old = h.pointee.heap
        let new = malloc(max(capacity, 1))!
        let entries = self.entries
        let n = h.pointee.count
        if !h.pointee.outOfLine.isEmpty {
            var kept: [[UInt8]] = []
            for i in 0..<n where entries[i].isOutOfLine {
                kept.append(h.pointee.outOfLine[entries[i].outOfLineIndex])
                entries[i].slot = BTreeEntry.slot(
                    offset: entries[i].offset, keyLength: entries[i].keyLength, outOfLineIndex: kept.count - 1)
            }
            h.pointee.outOfLine = kept
        }
        var end = 0
        for i in 0..<n {
            let bytes = entries[i].heapBytes
            if bytes > 0 { (new + end).copyMemory(from: old + entries[i].offset, byteCount: bytes) }
            entries[i].setOffset(end)
            end += bytes
        }
        free(old)
        h.pointee.heap = new
        h.pointee.heapCapacity = capacity
        h.pointee.heapEnd = end
        h.pointee.heapGarbage = 0
    }

    /// Compacts when more than half of a heap of some size is garbage.
    @inline(__always)
    func shrinkIfSparse() {
        let h = head
        if h.pointee.heapGarbage > 512 && h.pointee.heapGarbage > h.pointee.heapCapacity / 2 {
            let live = h.pointee.heapEnd - h.pointee.heapGarbage
            compact(capacity: max(live + live / 8, BTreeLayout.minimumHeap))
        }
    }

    /// Copies `bytes` (which must not point into this node's heap) to the end of the heap,
    /// which has room; returns their offset.
    @inline(__always)
    func appendToHeap(_ bytes: UnsafeRawPointer, _ n: Int) -> Int {
        let h = head
        let offset = h.pointee.heapEnd
        if n > 0 { (h.pointee.heap + offset).copyMemory(from: bytes, byteCount: n) }
        h.pointee.heapEnd = offset &+ n
        return offset
    }

    /// Stores an out-of-line value, returning its index.
    func addOutOfLine(_ value: [UInt8]) -> Int {
        let h = head
        if let free = h.pointee.outOfLine.firstIndex(where: { $0.isEmpty }) {
            h.pointee.outOfLine[free] = value
            return free
        }
        h.pointee.outOfLine.append(value)
        return h.pointee.outOfLine.count - 1
    }

    // MARK: Prefix truncation

    /// The prefix of a key of this node (`key` 0 of an internal node has prefix 0).
    @inline(__always)
    func entryPrefix(_ base: UnsafeRawPointer, _ length: Int, at i: Int) -> UInt64 {
        let skip = head.pointee.skip
        if !isLeaf && i == 0 { return 0 }
        return BTreeKey.prefix(base + skip, length &- skip)
    }

    /// Lowers `skip` to what `key`, about to join the node, shares with its common bytes.
    @inline(__always)
    func admit(_ key: BTreeKey) {
        let h = head
        let skip = h.pointee.skip
        guard skip > 0 else { return }
        let n = min(skip, key.count)
        let n0 = min(n, 8)
        var shared = min(n0, (BTreeKey.prefix(key.base, n0) ^ h.pointee.common0).leadingZeroBitCount / 8)
        if shared == 8 && n > 8 {
            shared += min(n - 8, (BTreeKey.prefix(key.base + 8, n - 8) ^ h.pointee.common1).leadingZeroBitCount / 8)
        }
        if shared < skip { setSkip(shared, from: nil) }
    }

    /// Sets `skip`, the common bytes (from `key`, or the current ones truncated), and every prefix.
    func setSkip(_ skip: Int, from key: UnsafeRawPointer?) {
        let h = head
        if let key {
            h.pointee.common0 = BTreeKey.prefix(key, min(skip, 8))
            h.pointee.common1 = skip > 8 ? BTreeKey.prefix(key + 8, skip - 8) : 0
        } else {
            h.pointee.common0 &= Self.mask(min(skip, 8))
            h.pointee.common1 &= Self.mask(max(skip - 8, 0))
        }
        h.pointee.skip = skip
        let entries = self.entries
        for i in 0..<h.pointee.count {
            entries[i].prefix = entryPrefix(keyBase(i), entries[i].keyLength, at: i)
        }
    }

    /// Takes the common bytes of `other`, before taking keys from it (this node is empty).
    func adoptSkip(of other: BTreeNode) {
        head.pointee.skip = other.head.pointee.skip
        head.pointee.common0 = other.head.pointee.common0
        head.pointee.common1 = other.head.pointee.common1
    }

    /// Sets `skip` to the longest common prefix of the keys (up to 16 bytes), after the keys
    /// changed wholesale (a split, merge or rebalance).
    func resetSkip() {
        let n = count
        let first = isLeaf ? 0 : 1
        guard n > first else {
            setSkip(0, from: nil)
            return
        }
        // Sorted keys: what the first and last share, all share.
        let a = key(first)
        let b = key(n - 1)
        var shared = 0
        let limit = min(16, a.count, b.count)
        while shared < limit && a[shared] == b[shared] { shared += 1 }
        setSkip(shared, from: a.baseAddress)
    }

    // MARK: Changing entries (the node is uniquely referenced)

    /// Moves entries `i..<count` to `i + n..<count + n`.
    @inline(__always)
    func openGap(at i: Int, _ n: Int) {
        let tail = count &- i
        guard tail > 0 else { return }
        (entries + i + n).update(from: entries + i, count: tail)  // memmove
        if !isLeaf { (children + i + n).moveInitialize(from: children + i, count: tail) }
    }

    /// Inserts entry `i`: `key` with, in leaves, `value` (inline) or `outOfLine`, and in internal
    /// nodes `child`. The node has room for one more entry.
    @inline(__always)
    func insertEntry(
        at i: Int, key: BTreeKey, value: UnsafeRawBufferPointer, outOfLine: [UInt8]?, child: BTreeNode?
    ) {
        let inlineLength = outOfLine == nil ? value.count : 0
        if isLeaf || i > 0 { admit(key) }
        reserveHeap(key.count &+ inlineLength)
        let offset = appendToHeap(key.base, key.count)
        if inlineLength > 0 { _ = appendToHeap(value.baseAddress!, inlineLength) }
        let slot =
            if let outOfLine {
                BTreeEntry.slot(offset: offset, keyLength: key.count, outOfLineIndex: addOutOfLine(outOfLine))
            } else {
                BTreeEntry.slot(offset: offset, keyLength: key.count, inlineLength: inlineLength)
            }
        openGap(at: i, 1)
        let skip = head.pointee.skip
        let prefix =
            !isLeaf && i == 0 ? 0 : skip == 0 ? key.prefix : BTreeKey.prefix(key.base + skip, key.count &- skip)
        entries[i] = BTreeEntry(prefix: prefix, slot: slot)
        if let child { (children + i).initialize(to: child) }
        head.pointee.count &+= 1
    }

    /// Copies entries `range` of `source` (another node of the same kind) to position `i`,
    /// retaining shared children and out-of-line values.
    func insertEntries(from source: BTreeNode, _ range: Range<Int>, at i: Int) {
        let n = range.count
        guard n > 0 else { return }
        precondition(source !== self && source.isLeaf == isLeaf && count + n <= maxCount)
        let sourceEntries = source.entries
        let sourceHeap = source.heap
        var bytes = 0
        for k in range {
            bytes &+= sourceEntries[k].heapBytes
            if isLeaf || k > 0 {
                admit(BTreeKey(base: sourceHeap + sourceEntries[k].offset, count: sourceEntries[k].keyLength))
            }
        }
        // Same common bytes: the source's prefixes are right here too.
        let samePrefixes =
            source.head.pointee.skip == head.pointee.skip && source.head.pointee.common0 == head.pointee.common0
            && source.head.pointee.common1 == head.pointee.common1
        reserveHeap(bytes)
        openGap(at: i, n)
        let entries = self.entries
        let isLeaf = self.isLeaf
        var t = i
        for k in range {
            var entry = sourceEntries[k]
            let offset = appendToHeap(sourceHeap + entry.offset, entry.heapBytes)
            if entry.isOutOfLine {
                let index = addOutOfLine(source.head.pointee.outOfLine[entry.outOfLineIndex])
                entry.slot = BTreeEntry.slot(offset: offset, keyLength: entry.keyLength, outOfLineIndex: index)
            } else {
                entry.setOffset(offset)
            }
            if !isLeaf && t == 0 {
                entry.prefix = 0
            } else if !samePrefixes || (!isLeaf && k == 0) {
                entry.prefix = entryPrefix(sourceHeap + sourceEntries[k].offset, entry.keyLength, at: t)
            }
            entries[t] = entry
            if !isLeaf { (children + t).initialize(to: source.children[k]) }
            t &+= 1
        }
        head.pointee.count &+= n
    }

    /// Removes entries `range`, releasing their children and out-of-line values.
    func removeEntries(_ range: Range<Int>) {
        let n = range.count
        guard n > 0 else { return }
        let h = head
        let entries = self.entries
        for k in range {
            let entry = entries[k]
            h.pointee.heapGarbage &+= entry.heapBytes
            if entry.isOutOfLine { h.pointee.outOfLine[entry.outOfLineIndex] = [] }
        }
        if !isLeaf { (children + range.lowerBound).deinitialize(count: n) }
        let tail = h.pointee.count - range.upperBound
        if tail > 0 {
            (entries + range.lowerBound).update(from: entries + range.upperBound, count: tail)
            if !isLeaf { (children + range.lowerBound).moveInitialize(from: children + range.upperBound, count: tail) }
        }
        h.pointee.count -= n
        (entries + h.pointee.count).update(repeating: BTreeEntry(prefix: .max, slot: 0), count: n)
        if h.pointee.count == 0 {
            h.pointee.skip = 0
            h.pointee.common0 = 0
            h.pointee.common1 = 0
            h.pointee.heapEnd = 0
            h.pointee.heapGarbage = 0
            h.pointee.outOfLine = []
        }
    }

    /// Internal nodes: replaces key `i` with `key` (which must not point into this node's heap).
    func replaceKey(at i: Int, with key: BTreeKey) {
        if i > 0 { admit(key) }
        let h = head
        let old = entries[i]
        var offset = old.offset
        if key.count <= old.keyLength {
            if key.count > 0 { (h.pointee.heap + offset).copyMemory(from: key.base, byteCount: key.count) }
            h.pointee.heapGarbage &+= old.keyLength &- key.count
        } else {
            reserveHeap(key.count)
            offset = appendToHeap(key.base, key.count)
            h.pointee.heapGarbage &+= old.keyLength
        }
        let prefix = i == 0 ? 0 : BTreeKey.prefix(key.base + h.pointee.skip, key.count &- h.pointee.skip)
        entries[i] = BTreeEntry(
            prefix: prefix, slot: BTreeEntry.slot(offset: offset, keyLength: key.count, inlineLength: 0))
    }

    /// Leaves: replaces value `i`, returning the old one when asked.
    func replaceValue(
        at i: Int, value: UnsafeRawBufferPointer, outOfLine: [UInt8]?, returningOld: Bool
    ) -> [UInt8]? {
        let old = returningOld ? self.value(at: i) : nil
        let h = head
        let entry = entries[i]
        if let outOfLine {
            if entry.isOutOfLine {
                h.pointee.outOfLine[entry.outOfLineIndex] = outOfLine
            } else {
                h.pointee.heapGarbage &+= entry.inlineLength
                entries[i].slot = BTreeEntry.slot(
                    offset: entry.offset, keyLength: entry.keyLength, outOfLineIndex: addOutOfLine(outOfLine))
            }
            return old
        }
        if !entry.isOutOfLine && value.count <= entry.inlineLength {
            // Fits where the old value was.
            if value.count > 0 {
                (h.pointee.heap + entry.offset + entry.keyLength).copyMemory(
                    from: value.baseAddress!, byteCount: value.count)
            }
            h.pointee.heapGarbage &+= entry.inlineLength &- value.count
            entries[i].slot = BTreeEntry.slot(
                offset: entry.offset, keyLength: entry.keyLength, inlineLength: value.count)
            return old
        }
        // Key and value are contiguous: write both anew at the end. Reserving may compact,
        // which moves the key, so find it after.
        let keyLength = entry.keyLength
        reserveHeap(keyLength &+ value.count)
        let current = entries[i]
        let offset = h.pointee.heapEnd
        let heap = h.pointee.heap
        (heap + offset).copyMemory(from: heap + current.offset, byteCount: keyLength)
        h.pointee.heapEnd = offset &+ keyLength
        if value.count > 0 { _ = appendToHeap(value.baseAddress!, value.count) }
        h.pointee.heapGarbage &+= current.heapBytes
        if current.isOutOfLine { h.pointee.outOfLine[current.outOfLineIndex] = [] }
        entries[i].slot = BTreeEntry.slot(offset: offset, keyLength: keyLength, inlineLength: value.count)
        return old
    }

    /// A copy to mutate in place of this shared node.
    func copy() -> BTreeNode {
        let h = head
        let live = h.pointee.heapEnd - h.pointee.heapGarbage
        let node = BTreeNode.make(isLeaf: isLeaf, heapCapacity: live + live / 8)
        node.adoptSkip(of: self)
        node.insertEntries(from: self, 0..<h.pointee.count, at: 0)
        return node
    }

    /// The shortest separator `s` with `key(left, last) < s <= key(right, 0)`: a prefix of the right key.
    static func separator(between left: BTreeNode, _ right: BTreeNode) -> BTreeKey {
        let a = left.key(left.count - 1)
        let b = right.key(0)
        var d = 0
        let n = min(a.count, b.count)
        while d < n && a[d] == b[d] { d += 1 }
        // a < b, so b is longer than the common prefix.
        return BTreeKey(base: b.baseAddress!, count: d + 1)
    }
}
