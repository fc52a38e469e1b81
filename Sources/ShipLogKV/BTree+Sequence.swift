extension BTree: Sequence {
    /// Iterates the entries in key order, copying each key and value into arrays. The iterator
    /// holds the tree as it was when it was made (later changes to the tree don't affect it).
    /// For speed, prefer `forEach(from:to:_:)` or `forEachUnsafe(from:to:_:)`.
    public struct Iterator: IteratorProtocol {
        var leaf: BTreeNode?
        var index = 0
        /// The internal nodes above `leaf`, each with the index of the child being visited.
        var ancestors: [(node: BTreeNode, index: Int)] = []

        init(root: BTreeNode?) {
            if let root { descend(from: root) }
        }

        mutating func descend(from node: BTreeNode) {
            var node = node
            while !node.isLeaf {
                ancestors.append((node, 0))
                node = node.children[0]
            }
            leaf = node
            index = 0
        }

        public mutating func next() -> (key: [UInt8], value: [UInt8])? {
            while let current = leaf {
                if index < current.count {
                    defer { index += 1 }
                    return (current.keyArray(index), current.value(at: index))
                }
                leaf = nil
                while let (node, i) = ancestors.popLast() {
                    if i + 1 < node.count {
                        ancestors.append((node, i + 1))
                        descend(from: node.children[i + 1])
                        break
                    }
                }
            }
            return nil
        }
    }

    public func makeIterator() -> Iterator { Iterator(root: root) }

    public var underestimatedCount: Int { count }
}

extension BTree {
    /// Checks every invariant, stopping the program with a description of the first broken one:
    /// key order within and across nodes, separators, node fill, uniform leaf depth, the byte
    /// heaps' accounting and prefixes, and `count`. O(n); for tests.
    public func validate() {
        guard let root else {
            precondition(count == 0, "BTree: empty root but count \(count)")
            return
        }
        var total = 0
        var leafDepth: Int?
        root.validate(
            depth: 0, lower: nil, upper: nil, isRoot: true, isRightmost: true, leafDepth: &leafDepth, total: &total)
        precondition(total == count, "BTree: count \(count) but \(total) entries")
    }

    /// Bytes allocated for the tree: nodes, their heaps and out-of-line values (with an estimate
    /// of malloc's per-allocation overhead). Shared nodes are counted once per tree.
    func allocatedBytes() -> Int {
        guard let root else { return 0 }
        return root.allocatedBytes()
    }

    /// The number of leaves and internal nodes, and the height.
    func shape() -> (leaves: Int, internalNodes: Int, height: Int) {
        guard let root else { return (0, 0, 0) }
        var leaves = 0
        var internalNodes = 0
        var height = 1
        var level = [root]
        while let first = level.first, !first.isLeaf {
            internalNodes += level.count
            level = level.flatMap { node in (0..<node.count).map { node.children[$0] } }
            height += 1
        }
        leaves = level.count
        return (leaves, internalNodes, height)
    }
}

extension BTreeNode {
    func validate(
        depth: Int, lower: [UInt8]?, upper: [UInt8]?, isRoot: Bool, isRightmost: Bool, leafDepth: inout Int?,
        total: inout Int
    ) {
        let n = count
        let h = head.pointee
        func fail(_ message: String) -> Never {
            preconditionFailure("BTree: \(isLeaf ? "leaf" : "internal node") at depth \(depth): \(message)")
        }
        if h.skip < 0 || h.skip > 16 || h.common0 & ~Self.mask(min(h.skip, 8)) != 0
            || h.common1 & ~Self.mask(max(h.skip - 8, 0)) != 0
        {
            fail("common bytes \(h.common0) \(h.common1) beyond skip \(h.skip)")
        }
        // Fill.
        if n > maxCount { fail("\(n) entries exceed capacity \(maxCount)") }
        if isRoot {
            if n < (isLeaf ? 1 : 2) { fail("root with \(n) entries") }
        } else if isRightmost {
            if n < 1 { fail("empty rightmost node") }
        } else if n < minimum {
            fail("\(n) entries, below the minimum \(minimum)")
        }
        // Heap accounting.
        if h.heapEnd > h.heapCapacity || h.heapGarbage < 0 || h.heapGarbage > h.heapEnd {
            fail("heap end \(h.heapEnd), garbage \(h.heapGarbage), capacity \(h.heapCapacity)")
        }
        var live = 0
        var outOfLineSeen = Set<Int>()
        for i in 0..<n {
            let entry = entries[i]
            if entry.offset + entry.heapBytes > h.heapEnd { fail("entry \(i) past the heap end") }
            live += entry.heapBytes
            if isLeaf || i > 0 {
                if entry.keyLength < h.skip || compareCommon(keyRef(i), skip: h.skip) != 0 {
                    fail("key \(i) lacks the \(h.skip) common bytes")
                }
                if entry.prefix != BTreeKey.prefix(keyBase(i) + h.skip, keyLength(i) - h.skip) {
                    fail("wrong prefix of key \(i)")
                }
            } else if entry.prefix != 0 {
                fail("internal entry 0 with prefix \(entry.prefix)")
            }
            if isLeaf {
                if entry.isOutOfLine {
                    let index = entry.outOfLineIndex
                    if index >= h.outOfLine.count || !outOfLineSeen.insert(index).inserted {
                        fail("bad out-of-line index \(index) of entry \(i)")
                    }
                    if h.outOfLine[index].count <= BTreeLayout.inlineValueMax {
                        fail("out-of-line value \(i) of only \(h.outOfLine[index].count) bytes")
                    }
                } else if entry.inlineLength > BTreeLayout.inlineValueMax {
                    fail("inline value \(i) of \(entry.inlineLength) bytes")
                }
            } else if entry.slot >> 53 != 0 {
                fail("internal entry \(i) with a value")
            }
        }
        if h.outOfLine.count - outOfLineSeen.count != h.outOfLine.count(where: { $0.isEmpty }) {
            fail("out-of-line values no entry refers to")
        }
        for i in n..<maxCount where entries[i].prefix != .max {
            fail("unused entry \(i) without the UInt64.max prefix")
        }
        if live != h.heapEnd - h.heapGarbage {
            fail("heap holds \(live) live bytes, accounting says \(h.heapEnd - h.heapGarbage)")
        }
        // Keys.
        let keys = (0..<n).map { keyArray($0) }
        let first = isLeaf ? 0 : 1
        if !isLeaf && !keys[0].isEmpty { fail("key 0 of an internal node is not empty") }
        for i in first..<n {
            if i > first && !keys[i - 1].lexicographicallyPrecedes(keys[i]) {
                fail("keys \(i - 1) and \(i) out of order")
            }
            if let lower, keys[i].lexicographicallyPrecedes(lower) { fail("key \(i) below the lower bound") }
            if let upper, !keys[i].lexicographicallyPrecedes(upper) { fail("key \(i) at or above the upper bound") }
        }
        if isLeaf {
            if let expected = leafDepth, expected != depth { fail("leaf depth \(depth), others at \(expected)") }
            leafDepth = depth
            total += n
            return
        }
        for i in 0..<n {
            let child = children[i]
            if i > 0 && child.isLeaf != children[0].isLeaf { fail("mixed children") }
            child.validate(
                depth: depth + 1, lower: i == 0 ? lower : keys[i], upper: i == n - 1 ? upper : keys[i + 1],
                isRoot: false, isRightmost: isRightmost && i == n - 1, leafDepth: &leafDepth, total: &total)
        }
    }

    func allocatedBytes() -> Int {
        // malloc rounds each request up to a multiple of 16 and adds 8 bytes of header.
        func chunk(_ n: Int) -> Int { max(32, (n + 8 + 15) & ~15) }
        let h = head.pointee
        let object = 16 + MemoryLayout<BTreeNodeHeader>.stride + maxCount * (isLeaf ? 16 : 24)
        var size = chunk(object) + chunk(h.heapCapacity)
        if isLeaf {
            if h.outOfLine.capacity > 0 { size += chunk(32 + 8 * h.outOfLine.capacity) }
            for value in h.outOfLine where !value.isEmpty { size += chunk(32 + value.capacity) }
            return size
        }
        for i in 0..<count { size += children[i].allocatedBytes() }
        return size
    }
}
