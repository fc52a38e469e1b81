/// An ordered map from byte-string keys to byte-string values: a B+-tree with copy-on-write
/// nodes.
///
/// Keys are ordered bytewise (unsigned, lexicographically, a proper prefix first). `BTree` is a
/// value type: a copy is O(1) and is an immutable snapshot; mutating a tree whose nodes are
/// shared with a copy copies only the nodes on the path it changes, and mutating an unshared
/// tree copies nothing. So a single writer can keep changing the live tree while readers on
/// other threads read copies taken at any moment.
///
/// Layout (see `BTree+Node.swift`): up to 64 entries per leaf and 64 children per internal node;
/// each node is one object holding 16-byte entries (an 8-byte key prefix, after the bytes all of
/// the node's keys share, and the key's place) plus one byte heap with the keys and the values
/// up to 256 bytes. Longer values are kept as their own `[UInt8]` (shared, not copied, when given
/// as an array). Keys are at most `keyLengthMax` (1 MiB) bytes.
public struct BTree: @unchecked Sendable {
    // Sendable as the standard library's collections are: nodes are changed only while uniquely
    // referenced (`isKnownUniquelyReferenced`), so a node reachable from two trees, perhaps on
    // two threads, is never written. (`@unchecked` because nodes are ManagedBuffer subclasses.)
    var root: BTreeNode?

    /// The number of entries.
    public private(set) var count: Int = 0

    /// The longest key accepted, in bytes.
    public static var keyLengthMax: Int { BTreeLayout.keyLengthMax }

    /// An empty tree (allocates nothing).
    public init() {}

    public var isEmpty: Bool { count == 0 }

    // MARK: Point operations

    /// The value of `key`, or `nil`. Setting `nil` removes the key.
    public subscript(key: [UInt8]) -> [UInt8]? {
        get {
            key.withUnsafeBytes { bytes -> [UInt8]? in
                root?.withEntry(BTreeKey(bytes)) { leaf, i in leaf.value(at: i) }
            }
        }
        set {
            if let newValue { updateValue(newValue, forKey: key) } else { removeValue(forKey: key) }
        }
    }

    /// Calls `body` with the bytes of the value of `key` (valid only during the call) and returns
    /// its result, or returns `nil` when the key is absent. Copies nothing.
    public func withValue<R>(forKey key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows
        -> R?
    {
        guard let root else { return nil }
        return try root.withEntry(BTreeKey(key)) { leaf, i in try leaf.withValue(at: i, body) }
    }

    /// Whether the tree holds `key`.
    public func contains(_ key: [UInt8]) -> Bool {
        key.withUnsafeBytes { bytes in root?.withEntry(BTreeKey(bytes)) { _, _ in true } ?? false }
    }

    /// Sets the value of `key`, returning the value it replaces, if any.
    ///
    /// Values longer than 256 bytes are stored as the array given (shared, not copied).
    @discardableResult
    public mutating func updateValue(_ value: [UInt8], forKey key: [UInt8]) -> [UInt8]? {
        key.withUnsafeBytes { keyBytes in
            if value.count > BTreeLayout.inlineValueMax {
                return insert(
                    BTreeKey(keyBytes), UnsafeRawBufferPointer(start: nil, count: 0), value, returningOld: true
                )
                .old
            }
            return value.withUnsafeBytes { valueBytes in
                insert(BTreeKey(keyBytes), valueBytes, nil, returningOld: true).old
            }
        }
    }

    /// Sets the value of `key` to a copy of `value`; returns whether it replaced a value.
    /// The allocation-free form of `updateValue(_:forKey:)` (values up to 256 bytes).
    @discardableResult
    public mutating func setValue(_ value: UnsafeRawBufferPointer, forKey key: UnsafeRawBufferPointer) -> Bool {
        if value.count > BTreeLayout.inlineValueMax {
            return insert(
                BTreeKey(key), UnsafeRawBufferPointer(start: nil, count: 0), Array(value), returningOld: false
            )
            .found
        }
        return insert(BTreeKey(key), value, nil, returningOld: false).found
    }

    /// Removes `key`, returning its value, if any.
    @discardableResult
    public mutating func removeValue(forKey key: [UInt8]) -> [UInt8]? {
        key.withUnsafeBytes { remove(BTreeKey($0), returningOld: true).old }
    }

    /// Removes `key`; returns whether it was present. Allocates nothing.
    @discardableResult
    public mutating func removeValue(forKey key: UnsafeRawBufferPointer) -> Bool {
        remove(BTreeKey(key), returningOld: false).found
    }

    /// Removes every entry.
    public mutating func removeAll() {
        root = nil
        count = 0
    }

    // MARK: Ordered access

    /// Calls `body` with each entry whose key is in `lowerBound..<upperBound` (a missing bound is
    /// unbounded), in key order, until it returns `false`.
    public func forEach(
        from lowerBound: [UInt8]? = nil, to upperBound: [UInt8]? = nil,
        _ body: (_ key: [UInt8], _ value: [UInt8]) throws -> Bool
    ) rethrows {
        try forEachEntry(from: lowerBound, to: upperBound) { node, i in
            try body(node.keyArray(i), node.value(at: i))
        }
    }

    /// Calls `body` with each entry whose key starts with `prefix`, in key order, until it returns `false`.
    public func forEach(prefix: [UInt8], _ body: (_ key: [UInt8], _ value: [UInt8]) throws -> Bool) rethrows {
        try forEach(from: prefix, to: Self.prefixEnd(prefix), body)
    }

    /// `forEach(from:to:_:)` without copying: `key` and `value` point into the tree and are
    /// valid only during the call to `body`.
    public func forEachUnsafe(
        from lowerBound: [UInt8]? = nil, to upperBound: [UInt8]? = nil,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) rethrows {
        try forEachEntry(from: lowerBound, to: upperBound) { node, i in
            try node.withValue(at: i) { value in try body(node.key(i), value) }
        }
    }

    /// `forEach(prefix:_:)` without copying; see `forEachUnsafe(from:to:_:)`.
    public func forEachUnsafe(
        prefix: [UInt8], _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) rethrows {
        try forEachUnsafe(from: prefix, to: Self.prefixEnd(prefix), body)
    }

    /// The first entry whose key is `>= key`.
    public func first(atOrAfter key: [UInt8]) -> (key: [UInt8], value: [UInt8])? {
        var result: (key: [UInt8], value: [UInt8])?
        forEachEntry(from: key, to: nil) { node, i in
            result = (node.keyArray(i), node.value(at: i))
            return false
        }
        return result
    }

    /// The smallest key greater than every key starting with `prefix`, or `nil` when there is
    /// none (an empty prefix or one of only 0xFF bytes).
    static func prefixEnd(_ prefix: [UInt8]) -> [UInt8]? {
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return nil
    }

    // MARK: Implementation

    struct Outcome {
        var found = false
        var old: [UInt8]?
        let returningOld: Bool
    }

    mutating func insert(
        _ key: BTreeKey, _ value: UnsafeRawBufferPointer, _ outOfLine: [UInt8]?, returningOld: Bool
    ) -> Outcome {
        precondition(key.count <= Self.keyLengthMax, "BTree: key of \(key.count) bytes exceeds keyLengthMax")
        var outcome = Outcome(returningOld: returningOld)
        guard root != nil else {
            let leaf = BTreeNode.make(isLeaf: true, heapCapacity: 0)
            leaf.insertEntry(at: 0, key: key, value: value, outOfLine: outOfLine, child: nil)
            root = leaf
            count = 1
            return outcome
        }
        if !isKnownUniquelyReferenced(&root) { root = root!.copy() }
        if let right = root!.insert(key, value, outOfLine, rightmost: true, &outcome) {
            let left = root!
            let newRoot = BTreeNode.make(isLeaf: false, heapCapacity: 0)
            newRoot.insertEntry(
                at: 0, key: .empty, value: UnsafeRawBufferPointer(start: nil, count: 0), outOfLine: nil, child: left)
            newRoot.adoptChild(right, at: 1, after: left)
            root = newRoot
        }
        if !outcome.found { count += 1 }
        return outcome
    }

    mutating func remove(_ key: BTreeKey, returningOld: Bool) -> Outcome {
        var outcome = Outcome(returningOld: returningOld)
        guard root != nil else { return outcome }
        var verified = false
        if !isKnownUniquelyReferenced(&root) {
            // Copy the path only when there is something to remove.
            guard root!.withEntry(key, { _, _ in true }) != nil else { return outcome }
            verified = true
            root = root!.copy()
        }
        guard root!.remove(key, verified: verified, &outcome) else { return outcome }
        count -= 1
        while let node = root, !node.isLeaf, node.count == 1 { root = node.children[0] }
        if root!.count == 0 { root = nil }
        return outcome
    }

    /// Calls `body` with the node and index of each entry in `lowerBound..<upperBound`, in order,
    /// until it returns `false`.
    func forEachEntry(from lowerBound: [UInt8]?, to upperBound: [UInt8]?, _ body: (BTreeNode, Int) throws -> Bool)
        rethrows
    {
        guard let root else { return }
        try Self.withKey(lowerBound) { lower in
            try Self.withKey(upperBound) { upper in
                _ = try root.forEach(from: lower, to: upper, body)
            }
        }
    }

    static func withKey<R>(_ key: [UInt8]?, _ body: (BTreeKey?) throws -> R) rethrows -> R {
        guard let key else { return try body(nil) }
        return try key.withUnsafeBytes { try body(BTreeKey($0)) }
    }
}

extension BTreeNode {
    /// Inserts or replaces `key` in this uniquely referenced subtree; returns the new right
    /// sibling when this node had to split. `rightmost`: this node is the last of its level.
    func insert(
        _ key: BTreeKey, _ value: UnsafeRawBufferPointer, _ outOfLine: [UInt8]?, rightmost: Bool,
        _ outcome: inout BTree.Outcome
    ) -> BTreeNode? {
        if isLeaf {
            let (i, found) = find(key)
            if found {
                outcome.found = true
                outcome.old = replaceValue(
                    at: i, value: value, outOfLine: outOfLine, returningOld: outcome.returningOld)
                return nil
            }
            if count < BTreeLayout.leafCapacity {
                insertEntry(at: i, key: key, value: value, outOfLine: outOfLine, child: nil)
                return nil
            }
            return splitLeaf(inserting: key, value, outOfLine, at: i, appending: rightmost && i == count)
        }
        let i = childIndex(key)
        let children = self.children
        if !isKnownUniquelyReferenced(&children[i]) { children[i] = children[i].copy() }
        let isLast = rightmost && i == count - 1
        guard
            let right = child(i)._withUnsafeGuaranteedRef({
                $0.insert(key, value, outOfLine, rightmost: isLast, &outcome)
            })
        else { return nil }
        // Child i split: add `right` after it.
        let left = children[i]
        if count < BTreeLayout.internalCapacity {
            adoptChild(right, at: i + 1, after: left)
            return nil
        }
        if rightmost && i + 1 == count {
            // Appending at the end of the key space: start a new node and leave this one full.
            // Its key 0 is the separator, for the parent to take.
            let sibling = BTreeNode.make(isLeaf: false, heapCapacity: 0)
            sibling.adoptChild(right, at: 0, after: left)
            return sibling
        }
        let mid = count / 2
        let sibling = BTreeNode.make(isLeaf: false, heapCapacity: 0)
        sibling.adoptSkip(of: self)
        sibling.insertEntries(from: self, mid..<count, at: 0)
        removeEntries(mid..<count)
        compactAfterSplit()
        resetSkip()
        sibling.resetSkip()
        if i + 1 <= mid {
            adoptChild(right, at: i + 1, after: left)
        } else {
            sibling.adoptChild(right, at: i + 1 - mid, after: left)
        }
        // Key 0 of `sibling` (the old key `mid`) moves up to the parent.
        return sibling
    }

    /// Internal nodes: inserts `child`, just split off `leftNeighbor`, as child `i`, with the
    /// separator between them (a split-off internal node carries it as its key 0, which is then
    /// cleared).
    func adoptChild(_ child: BTreeNode, at i: Int, after leftNeighbor: BTreeNode) {
        let separator = child.isLeaf ? BTreeNode.separator(between: leftNeighbor, child) : child.keyRef(0)
        insertEntry(
            at: i, key: separator, value: UnsafeRawBufferPointer(start: nil, count: 0), outOfLine: nil, child: child)
        if !child.isLeaf { child.replaceKey(at: 0, with: .empty) }
    }

    func splitLeaf(
        inserting key: BTreeKey, _ value: UnsafeRawBufferPointer, _ outOfLine: [UInt8]?, at i: Int, appending: Bool
    ) -> BTreeNode {
        let sibling: BTreeNode
        if appending {
            // Sequential inserts: leave this leaf full.
            sibling = BTreeNode.make(isLeaf: true, heapCapacity: (head.pointee.heapEnd - head.pointee.heapGarbage) / 4)
            sibling.insertEntry(at: 0, key: key, value: value, outOfLine: outOfLine, child: nil)
            sibling.resetSkip()
            return sibling
        }
        let mid = count / 2
        sibling = BTreeNode.make(isLeaf: true, heapCapacity: 0)
        sibling.adoptSkip(of: self)
        sibling.insertEntries(from: self, mid..<count, at: 0)
        removeEntries(mid..<count)
        compactAfterSplit()
        resetSkip()
        sibling.resetSkip()
        if i <= mid {
            insertEntry(at: i, key: key, value: value, outOfLine: outOfLine, child: nil)
        } else {
            sibling.insertEntry(at: i - mid, key: key, value: value, outOfLine: outOfLine, child: nil)
        }
        return sibling
    }

    func compactAfterSplit() {
        let live = head.pointee.heapEnd - head.pointee.heapGarbage
        compact(capacity: max(live + live / 4, BTreeLayout.minimumHeap))
    }

    /// Removes `key` from this uniquely referenced subtree, rebalancing children that fall
    /// below the minimum; returns whether it was present. `verified`: the key is known present.
    func remove(_ key: BTreeKey, verified: Bool, _ outcome: inout BTree.Outcome) -> Bool {
        if isLeaf {
            let (i, found) = find(key)
            guard found else { return false }
            outcome.found = true
            if outcome.returningOld { outcome.old = value(at: i) }
            removeEntries(i..<i + 1)
            shrinkIfSparse()
            return true
        }
        let i = childIndex(key)
        let children = self.children
        var verified = verified
        if !isKnownUniquelyReferenced(&children[i]) {
            if !verified {
                guard children[i].withEntry(key, { _, _ in true }) != nil else { return false }
                verified = true
            }
            children[i] = children[i].copy()
        }
        guard child(i)._withUnsafeGuaranteedRef({ $0.remove(key, verified: verified, &outcome) }) else { return false }
        if child(i)._withUnsafeGuaranteedRef({ $0.count < $0.minimum }) { rebalance(child: i) }
        return true
    }

    /// Internal nodes: merges child `i` with a sibling, or moves entries between them, so that
    /// both are at least at the minimum again.
    func rebalance(child i: Int) {
        guard count >= 2 else { return }  // a rightmost node's only child may stay small
        let l = i > 0 ? i - 1 : i
        let r = l + 1
        let children = self.children
        if !isKnownUniquelyReferenced(&children[l]) { children[l] = children[l].copy() }
        if !isKnownUniquelyReferenced(&children[r]) { children[r] = children[r].copy() }
        let left = children[l]
        let right = children[r]
        let leftCount = left.count
        if leftCount + right.count <= left.maxCount {
            left.insertEntries(from: right, 0..<right.count, at: leftCount)
            if !left.isLeaf { left.replaceKey(at: leftCount, with: keyRef(r)) }
            left.resetSkip()
            removeEntries(r..<r + 1)
            shrinkIfSparse()
            return
        }
        let target = (leftCount + right.count) / 2
        if leftCount < target {
            let k = target - leftCount
            left.insertEntries(from: right, 0..<k, at: leftCount)
            if !left.isLeaf {
                left.replaceKey(at: leftCount, with: keyRef(r))
                replaceKey(at: r, with: right.keyRef(k))
            }
            right.removeEntries(0..<k)
            if !right.isLeaf { right.replaceKey(at: 0, with: .empty) }
            right.shrinkIfSparse()
        } else {
            let k = leftCount - target
            right.insertEntries(from: left, target..<leftCount, at: 0)
            if !right.isLeaf {
                right.replaceKey(at: k, with: keyRef(r))
                replaceKey(at: r, with: right.keyRef(0))
                right.replaceKey(at: 0, with: .empty)
            }
            left.removeEntries(target..<leftCount)
            left.shrinkIfSparse()
        }
        if left.isLeaf { replaceKey(at: r, with: BTreeNode.separator(between: left, right)) }
        left.resetSkip()
        right.resetSkip()
    }

    /// Calls `body` with each entry in `lower..<upper`, in order; returns `false` when it stopped
    /// (`body` returned `false`, or the upper bound was reached).
    func forEach(from lower: BTreeKey?, to upper: BTreeKey?, _ body: (BTreeNode, Int) throws -> Bool) rethrows -> Bool {
        let n = count
        if isLeaf {
            var i = 0
            if let lower { i = find(lower).index }
            let end = upper.map { find($0).index } ?? n
            while i < end {
                guard try body(self, i) else { return false }
                i &+= 1
            }
            return end == n
        }
        let first = lower.map { childIndex($0) } ?? 0
        // Children after the one whose range holds `upper` are all above it.
        let last = upper.map { childIndex($0) } ?? n - 1
        var i = first
        while i <= last {
            let bound = i == first ? lower : nil
            guard try child(i)._withUnsafeGuaranteedRef({ try $0.forEach(from: bound, to: upper, body) }) else {
                return false
            }
            i &+= 1
        }
        return last == n - 1
    }
}
