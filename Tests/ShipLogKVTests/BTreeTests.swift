import Testing

@testable import ShipLogKV
import ShipLogTestSupport

/// SplitMix64, for reproducible random operations.
typealias BTreeTestRandom = SplitMix64

/// The reference: a dictionary, sorted on demand, and its keys in an array for drawing at random.
private struct Model {
    var entries: [[UInt8]: [UInt8]] = [:]
    var keys: [[UInt8]] = []
    var positions: [[UInt8]: Int] = [:]

    var sorted: [(key: [UInt8], value: [UInt8])] {
        entries.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map { ($0.key, $0.value) }
    }

    subscript(key: [UInt8]) -> [UInt8]? {
        get { entries[key] }
        set {
            if let newValue { updateValue(newValue, forKey: key) } else { removeValue(forKey: key) }
        }
    }

    @discardableResult
    mutating func updateValue(_ value: [UInt8], forKey key: [UInt8]) -> [UInt8]? {
        let old = entries.updateValue(value, forKey: key)
        if old == nil {
            positions[key] = keys.count
            keys.append(key)
        }
        return old
    }

    @discardableResult
    mutating func removeValue(forKey key: [UInt8]) -> [UInt8]? {
        guard let old = entries.removeValue(forKey: key) else { return nil }
        let position = positions.removeValue(forKey: key)!
        let last = keys.removeLast()
        if position < keys.count {
            keys[position] = last
            positions[last] = position
        }
        return old
    }
}

private func range(
    _ sorted: [(key: [UInt8], value: [UInt8])], from lower: [UInt8]?, to upper: [UInt8]?
) -> [(key: [UInt8], value: [UInt8])] {
    sorted.filter { entry in
        (lower.map { !entry.key.lexicographicallyPrecedes($0) } ?? true)
            && (upper.map { entry.key.lexicographicallyPrecedes($0) } ?? true)
    }
}

/// How keys are drawn: each shape stresses other comparisons.
enum BTreeKeyShape: CaseIterable, CustomStringConvertible {
    /// Short keys over a tiny alphabet with 0x00 and 0xFF: many keys are prefixes of others, the
    /// empty key occurs.
    case tiny
    /// Keys of 8 to 24 bytes sharing a 10-byte prefix: comparisons go past the 8-byte prefix.
    case sharedPrefix
    /// Uniform random 16-byte keys.
    case random16
    /// Keys of 6 to 12 bytes mostly of 0xFF: many start with eight 0xFF bytes (the largest
    /// 8-byte prefix) or are prefixes of one another.
    case highBytes

    var description: String {
        switch self {
        case .tiny: "tiny"
        case .sharedPrefix: "sharedPrefix"
        case .random16: "random16"
        case .highBytes: "highBytes"
        }
    }

    func key(_ random: inout BTreeTestRandom) -> [UInt8] {
        switch self {
        case .tiny:
            let alphabet: [UInt8] = [0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]
            return (0..<Int.random(in: 0...4, using: &random)).map { _ in alphabet.randomElement(using: &random)! }
        case .sharedPrefix:
            let common: [UInt8] = [0xFF, 0xFF, 0x00, 0x01, 0x02, 0x03, 0xFF, 0xFE, 0x42, 0x42]
            let length = Int.random(in: 8...24, using: &random)
            var key = Array(common.prefix(length))
            while key.count < length { key.append([0x00, 0x61, 0xFF].randomElement(using: &random)!) }
            return key
        case .random16:
            return (0..<16).map { _ in UInt8.random(in: 0...255, using: &random) }
        case .highBytes:
            return (0..<Int.random(in: 6...12, using: &random)).map { _ in
                [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0x00].randomElement(using: &random)!
            }
        }
    }
}

private func randomValue(_ random: inout BTreeTestRandom) -> [UInt8] {
    let length: Int
    switch Int.random(in: 0..<20, using: &random) {
    case 0: length = 0
    case 1: length = Int.random(in: 257...3000, using: &random)  // out of line
    case 2: length = Int.random(in: 250...262, using: &random)  // around the inline limit
    default: length = Int.random(in: 1...120, using: &random)
    }
    let fill = UInt8.random(in: 0...255, using: &random)
    return (0..<length).map { fill &+ UInt8(truncatingIfNeeded: $0) }
}

private typealias Entries = [(key: [UInt8], value: [UInt8])]

private func contents(_ tree: BTree, from lower: [UInt8]? = nil, to upper: [UInt8]? = nil) -> Entries {
    var result: Entries = []
    tree.forEach(from: lower, to: upper) { key, value in
        result.append((key, value))
        return true
    }
    return result
}

private func expectSame(
    _ actual: [(key: [UInt8], value: [UInt8])], _ expected: [(key: [UInt8], value: [UInt8])],
    _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(actual.count == expected.count, comment, sourceLocation: sourceLocation)
    guard actual.count == expected.count else { return }
    for (a, e) in zip(actual, expected) where a.key != e.key || a.value != e.value {
        Issue.record(
            "first difference at key \(e.key): got \(a.key) = \(a.value.count) bytes", sourceLocation: sourceLocation)
        return
    }
}

private func expectMatches(_ tree: BTree, _ model: Model, sourceLocation: SourceLocation = #_sourceLocation) {
    tree.validate()
    #expect(tree.count == model.entries.count, sourceLocation: sourceLocation)
    expectSame(contents(tree), model.sorted, sourceLocation: sourceLocation)
}

@Suite("BTree")
struct BTreeTests {
    @Test func emptyTree() {
        var tree = BTree()
        tree.validate()
        #expect(tree.isEmpty && tree.count == 0)
        #expect(tree[[]] == nil && tree[[1]] == nil)
        #expect(tree.first(atOrAfter: []) == nil)
        #expect(contents(tree).isEmpty)
        #expect(Array(tree).isEmpty)
        let removed = tree.removeValue(forKey: [1])
        #expect(removed == nil)
        tree.forEach(prefix: []) { _, _ in
            Issue.record("entry in an empty tree")
            return true
        }
        tree.validate()
    }

    @Test func pointOperations() {
        var tree = BTree()
        let first = tree.updateValue([1], forKey: [0x61])
        let second = tree.updateValue([2], forKey: [0x61])
        #expect(first == nil && second == [1])
        #expect(tree[[0x61]] == [2])
        #expect(tree.contains([0x61]) && !tree.contains([0x61, 0]))
        tree[[0x62]] = [3]
        #expect(tree[[0x62]] == [3])
        tree[[0x62]] = nil
        #expect(tree[[0x62]] == nil && tree.count == 1)
        let removed = tree.removeValue(forKey: [0x61])
        #expect(removed == [2])
        #expect(tree.isEmpty)
        tree.validate()
        // The raw-bytes forms.
        let key: [UInt8] = [9, 9]
        key.withUnsafeBytes { k in
            let inserted = [UInt8](repeating: 7, count: 5).withUnsafeBytes { v in tree.setValue(v, forKey: k) }
            let replaced = [UInt8](repeating: 8, count: 300).withUnsafeBytes { v in tree.setValue(v, forKey: k) }
            #expect(!inserted && replaced)
            #expect(tree.withValue(forKey: k) { Array($0) } == [UInt8](repeating: 8, count: 300))
            let removed = tree.removeValue(forKey: k)
            let removedAgain = tree.removeValue(forKey: k)
            #expect(removed && !removedAgain)
            #expect(tree.withValue(forKey: k) { $0.count } == nil)
        }
        #expect(tree.isEmpty)
    }

    /// Empty keys, keys that are prefixes of one another, 0x00 and 0xFF bytes.
    @Test func keyOrderEdges() {
        var tree = BTree()
        let keys: [[UInt8]] = [
            [], [0x00], [0x00, 0x00], [0x00, 0x01], [0x01], [0x7F], [0x80], [0xFF], [0xFF, 0x00], [0xFF, 0xFF],
            [0xFF, 0xFF, 0xFF], Array(repeating: 0xFF, count: 8), Array(repeating: 0xFF, count: 9),
            Array(repeating: 0x00, count: 8), Array(repeating: 0x00, count: 9), [0x61, 0x62, 0x63],
            [0x61, 0x62, 0x63, 0x00], [0x61, 0x62, 0x63, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
            [0x61, 0x62, 0x63, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        ]
        for (i, key) in keys.enumerated().reversed() { tree.updateValue([UInt8(i)], forKey: key) }
        tree.validate()
        let sorted = keys.sorted { $0.lexicographicallyPrecedes($1) }
        #expect(contents(tree).map(\.key) == sorted)
        #expect(Array(tree).map(\.key) == sorted)
        for (i, key) in keys.enumerated() { #expect(tree[key] == [UInt8(i)]) }
        #expect(tree[[0x61, 0x62]] == nil && tree[[0x00, 0x00, 0x00]] == nil)

        func prefixScan(_ prefix: [UInt8]) -> [[UInt8]] {
            var found: [[UInt8]] = []
            tree.forEach(prefix: prefix) { key, _ in
                found.append(key)
                return true
            }
            return found
        }
        for prefix in [[], [0x00], [0xFF], [0xFF, 0xFF], [0x61, 0x62, 0x63, 0x00], [0x62], [0x00, 0x00]] as [[UInt8]] {
            #expect(prefixScan(prefix) == sorted.filter { $0.starts(with: prefix) }, "prefix \(prefix)")
        }
        #expect(tree.first(atOrAfter: [])?.key == [])
        #expect(tree.first(atOrAfter: [0x00, 0x00, 0x00])?.key == Array(repeating: 0x00, count: 8))
        #expect(tree.first(atOrAfter: [0xFF, 0xFF, 0xFF, 0x00])?.key == Array(repeating: 0xFF, count: 8))
        #expect(tree.first(atOrAfter: Array(repeating: 0xFF, count: 10)) == nil)
        #expect(BTree.prefixEnd([0x01, 0xFF, 0xFF]) == [0x02])
        #expect(BTree.prefixEnd([0xFF, 0xFF]) == nil && BTree.prefixEnd([]) == nil)
        // Exclusive upper bound, bounds that are not keys, empty and inverted ranges.
        #expect(contents(tree, from: [0x00], to: [0x01]).map(\.key) == sorted.filter { $0.first == 0x00 })
        #expect(contents(tree, from: [0x01], to: [0x01]).isEmpty)
        #expect(contents(tree, from: [0x80], to: [0x7F]).isEmpty)
        #expect(contents(tree, to: [0x00]).map(\.key) == [[]])
        for key in keys {
            let removed = tree.removeValue(forKey: key)
            #expect(removed != nil)
        }
        #expect(tree.isEmpty)
        tree.validate()
    }

    /// Random inserts, overwrites, deletes and scans checked against a dictionary.
    @Test(arguments: BTreeKeyShape.allCases, [1, 2, 3] as [UInt64])
    func matchesModel(shape: BTreeKeyShape, seed: UInt64) {
        var random = BTreeTestRandom(seed: seed &* 7919 &+ UInt64(BTreeKeyShape.allCases.firstIndex(of: shape)!))
        var tree = BTree()
        var model = Model()
        let operations = shape == .tiny || shape == .highBytes ? 8000 : 20000
        for step in 0..<operations {
            // Phases: mostly inserts, then balanced, then mostly deletes.
            let insertShare = step < operations / 3 ? 80 : step < 2 * operations / 3 ? 50 : 20
            let roll = Int.random(in: 0..<100, using: &random)
            if roll < insertShare {
                let reuse = !model.keys.isEmpty && Bool.random(using: &random)
                let key = reuse ? model.keys.randomElement(using: &random)! : shape.key(&random)
                let value = randomValue(&random)
                let old = tree.updateValue(value, forKey: key)
                #expect(old == model.updateValue(value, forKey: key))
            } else {
                let reuse = !model.keys.isEmpty && Int.random(in: 0..<4, using: &random) != 0
                let key = reuse ? model.keys.randomElement(using: &random)! : shape.key(&random)
                let removed = tree.removeValue(forKey: key)
                #expect(removed == model.removeValue(forKey: key))
            }
            if step % 97 == 0 {
                let key = shape.key(&random)
                #expect(tree[key] == model[key])
            }
            if step % 2000 == 1999 {
                expectMatches(tree, model)
                let sorted = model.sorted
                // Random ranges and prefixes.
                for _ in 0..<5 {
                    let lower = Bool.random(using: &random) ? shape.key(&random) : nil
                    let upper = Bool.random(using: &random) ? shape.key(&random) : nil
                    expectSame(
                        contents(tree, from: lower, to: upper), range(sorted, from: lower, to: upper),
                        "range \(String(describing: lower))..<\(String(describing: upper))")
                    let probe = shape.key(&random)
                    let prefix = Array(probe.prefix(Int.random(in: 0...min(probe.count, 12), using: &random)))
                    var scanned: [(key: [UInt8], value: [UInt8])] = []
                    tree.forEach(prefix: prefix) { key, value in
                        scanned.append((key, value))
                        return true
                    }
                    expectSame(scanned, sorted.filter { $0.key.starts(with: prefix) }, "prefix \(prefix)")
                    var unsafeScanned = 0
                    tree.forEachUnsafe(prefix: prefix) { key, value in
                        if unsafeScanned < scanned.count {
                            #expect(
                                Array(key) == scanned[unsafeScanned].key && Array(value) == scanned[unsafeScanned].value
                            )
                        }
                        unsafeScanned += 1
                        return true
                    }
                    #expect(unsafeScanned == scanned.count)
                    let expectedFirst = sorted.first { !$0.key.lexicographicallyPrecedes(probe) }
                    let first = tree.first(atOrAfter: probe)
                    #expect(first?.key == expectedFirst?.key && first?.value == expectedFirst?.value)
                    // Stopping early.
                    var seen = 0
                    tree.forEach(from: lower) { _, _ in
                        seen += 1
                        return seen < 3
                    }
                    #expect(seen == min(3, range(sorted, from: lower, to: nil).count))
                }
            }
        }
        expectMatches(tree, model)
        #expect(Array(tree).map(\.key) == model.sorted.map(\.key))
        // Delete everything, in random order.
        for key in model.keys.shuffled(using: &random) {
            let removed = tree.removeValue(forKey: key)
            #expect(removed == model.removeValue(forKey: key))
        }
        #expect(tree.isEmpty && tree.root == nil)
        tree.validate()
    }

    /// Ascending keys take the append path (full left nodes); descending and random ones the
    /// even split; then everything is deleted, validating on the way down.
    @Test(arguments: ["ascending", "descending", "random"])
    func bulkLoadAndDeleteToEmpty(order: String) {
        let n = 100_000
        var keys = (0..<n).map { i -> [UInt8] in
            let v = UInt32(i)
            return [
                UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8),
                UInt8(truncatingIfNeeded: v), 0x2F,
            ]
        }
        var random = BTreeTestRandom(seed: 99)
        if order == "descending" { keys.reverse() }
        if order == "random" { keys.shuffle(using: &random) }
        var tree = BTree()
        for (i, key) in keys.enumerated() {
            tree.updateValue(Array(key.suffix(3)) + [UInt8(i & 0xFF)], forKey: key)
            if i % 50_000 == 0 { tree.validate() }
        }
        tree.validate()
        #expect(tree.count == n)
        let shape = tree.shape()
        if order == "ascending" {
            // Leaves are full except the last.
            #expect(shape.leaves == (n + BTreeLayout.leafCapacity - 1) / BTreeLayout.leafCapacity)
        }
        #expect(shape.height <= 4)
        // The keys share leading bytes within each leaf: their prefixes skip them.
        var skips = 0
        var level = [tree.root!]
        while !level[0].isLeaf { level = level.flatMap { node in (0..<node.count).map { node.children[$0] } } }
        for leaf in level where leaf.head.pointee.skip >= 2 { skips += 1 }
        #expect(skips >= level.count - 2)
        var previous: [UInt8]?
        var scanned = 0
        tree.forEachUnsafe { key, value in
            if let previous { #expect(previous.lexicographicallyPrecedes(Array(key))) }
            previous = Array(key)
            #expect(value.count == 4)
            scanned += 1
            return true
        }
        #expect(scanned == n)
        for key in keys.shuffled(using: &random).prefix(1000) { #expect(tree[key] != nil) }

        keys.shuffle(using: &random)
        for (i, key) in keys.enumerated() {
            let removed = tree.removeValue(forKey: key)
            #expect(removed != nil)
            if i % 25_000 == 0 { tree.validate() }
        }
        #expect(tree.isEmpty)
        tree.validate()
    }

    /// A copy is a snapshot: heavy changes to either side never show in the other.
    @Test func snapshotIsolation() {
        var random = BTreeTestRandom(seed: 5)
        var tree = BTree()
        var model = Model()
        for _ in 0..<20_000 {
            let key = BTreeKeyShape.random16.key(&random)
            let value = randomValue(&random)
            tree.updateValue(value, forKey: key)
            model.entries[key] = value
        }
        let snapshot = tree
        let snapshotModel = model
        let snapshotKeys = Array(model.entries.keys)

        // Mutate the original heavily: overwrite, delete half, insert more.
        for key in snapshotKeys.prefix(5000) {
            let value = randomValue(&random)
            tree.updateValue(value, forKey: key)
            model.entries[key] = value
        }
        for key in snapshotKeys.suffix(10_000) {
            tree.removeValue(forKey: key)
            model.entries[key] = nil
        }
        for _ in 0..<20_000 {
            let key = BTreeKeyShape.random16.key(&random)
            tree.updateValue([1, 2, 3], forKey: key)
            model.entries[key] = [1, 2, 3]
        }
        expectMatches(snapshot, snapshotModel)
        expectMatches(tree, model)

        // Mutating the copy doesn't affect the original either.
        var copy = tree
        let before = model
        for key in model.entries.keys.prefix(15_000) { copy.removeValue(forKey: key) }
        for _ in 0..<5000 { copy.updateValue([9], forKey: BTreeKeyShape.random16.key(&random)) }
        copy.validate()
        expectMatches(tree, before)
        expectMatches(snapshot, snapshotModel)

        // Many generations of snapshots, each frozen.
        var generations: [(BTree, Model)] = []
        var live = BTree()
        var liveModel = Model()
        for generation in 0..<30 {
            for _ in 0..<300 {
                let key = BTreeKeyShape.tiny.key(&random) + [UInt8(generation % 3)]
                if Bool.random(using: &random) {
                    live.updateValue([UInt8(generation)], forKey: key)
                    liveModel.entries[key] = [UInt8(generation)]
                } else {
                    live.removeValue(forKey: key)
                    liveModel.entries[key] = nil
                }
            }
            generations.append((live, liveModel))
        }
        for (snapshot, model) in generations { expectMatches(snapshot, model) }

        // An iterator keeps the tree it was made from.
        var iterator = tree.makeIterator()
        tree.removeAll()
        var iterated = 0
        while iterator.next() != nil { iterated += 1 }
        #expect(iterated == model.entries.count)
    }

    /// An unshared tree changes in place; a shared one copies only what it must.
    @Test func copyOnWriteCopiesOnlyWhenShared() {
        var tree = BTree()
        for i in 0..<10 { tree.updateValue([UInt8(i)], forKey: [UInt8(i)]) }
        let root = ObjectIdentifier(tree.root!)
        tree.updateValue([42], forKey: [3])
        tree.removeValue(forKey: [4])
        tree.updateValue([1], forKey: [200])
        #expect(ObjectIdentifier(tree.root!) == root, "unshared: mutated in place")

        let snapshot = tree
        tree.removeValue(forKey: [77])  // absent: nothing to copy
        #expect(ObjectIdentifier(tree.root!) == root)
        tree.updateValue([0], forKey: [5])
        #expect(ObjectIdentifier(tree.root!) != root && ObjectIdentifier(snapshot.root!) == root)
        #expect(snapshot[[5]] == [5] && tree[[5]] == [0])

        // In a deep tree, a change copies one path: every other node stays shared.
        var big = BTree()
        for i in 0..<50_000 {
            big.updateValue(
                [1], forKey: [UInt8(i >> 16), UInt8(truncatingIfNeeded: i >> 8), UInt8(truncatingIfNeeded: i)])
        }
        let frozen = big
        big.updateValue([2], forKey: [0, 1, 2])
        func leaves(_ tree: BTree) -> Set<ObjectIdentifier> {
            var result = Set<ObjectIdentifier>()
            var level = [tree.root!]
            while !level[0].isLeaf { level = level.flatMap { node in (0..<node.count).map { node.children[$0] } } }
            for leaf in level { result.insert(ObjectIdentifier(leaf)) }
            return result
        }
        let before = leaves(frozen)
        let after = leaves(big)
        #expect(before.subtracting(after).count == 1 && after.count == before.count)
        #expect(frozen[[0, 1, 2]] == [1] && big[[0, 1, 2]] == [2])
        frozen.validate()
        big.validate()
    }

    /// Values move between inline and out-of-line storage on overwrite; the heap is compacted
    /// as garbage builds up.
    @Test func valueStorageTransitions() {
        var tree = BTree()
        var model = Model()
        var random = BTreeTestRandom(seed: 11)
        let keys = (0..<200).map { i in [UInt8(i), 0x20] }
        for round in 0..<60 {
            for key in keys {
                let length = [0, 1, 100, 256, 257, 1000, 40][(round + Int(key[0])) % 7]
                let value = (0..<length).map { UInt8(truncatingIfNeeded: $0 &+ round) }
                let old = tree.updateValue(value, forKey: key)
                #expect(old == model.entries.updateValue(value, forKey: key))
            }
            if round % 10 == 0 {
                for key in keys.shuffled(using: &random).prefix(50) {
                    let removed = tree.removeValue(forKey: key)
                    #expect(removed == model.entries.removeValue(forKey: key))
                }
            }
            expectMatches(tree, model)
        }
        // The out-of-line array given is stored as is.
        let big = [UInt8](repeating: 3, count: 10_000)
        tree.updateValue(big, forKey: [1, 2, 3])
        #expect(tree[[1, 2, 3]] == big)
        var unsafeTotal = 0
        tree.forEachUnsafe(prefix: [1, 2]) { _, value in
            unsafeTotal += value.count
            return true
        }
        #expect(unsafeTotal == 10_000)
        // Memory stays proportional to the live data after churn.
        #expect(tree.allocatedBytes() < 2 * 200 * 1100 + 100_000)
    }

    /// Readers scan snapshots on other threads while the writer keeps changing the tree.
    @Test func concurrentReadersOfSnapshots() async {
        var tree = BTree()
        for i in 0..<20_000 { tree.updateValue([UInt8(i & 0xFF)], forKey: [UInt8(i >> 8), UInt8(i & 0xFF)]) }
        await withTaskGroup(of: Bool.self) { group in
            for round in 0..<8 {
                let snapshot = tree
                group.addTask {
                    var count = 0
                    var ok = true
                    snapshot.forEach { key, value in
                        ok = ok && value == [key[1]]
                        count += 1
                        return true
                    }
                    return ok && count == snapshot.count
                }
                for i in 0..<2000 {
                    let k = (i * 7 + round * 13) % 20_000
                    if i % 3 == 0 {
                        tree.removeValue(forKey: [UInt8(k >> 8), UInt8(k & 0xFF)])
                    } else {
                        tree.updateValue([UInt8(k & 0xFF)], forKey: [UInt8(k >> 8), UInt8(k & 0xFF)])
                    }
                }
            }
            for await ok in group { #expect(ok) }
        }
        tree.validate()
    }

    /// A 100k-entry tree of 16-byte keys and 100-byte values: contents, shape and memory.
    @Test func largeTree() {
        var random = BTreeTestRandom(seed: 1234)
        var tree = BTree()
        var keys: [[UInt8]] = []
        keys.reserveCapacity(100_000)
        let value = [UInt8](repeating: 0xAB, count: 100)
        for _ in 0..<100_000 {
            let key = BTreeKeyShape.random16.key(&random)
            keys.append(key)
            tree.updateValue(value, forKey: key)
        }
        tree.validate()
        #expect(tree.count == Set(keys).count)
        for key in keys.prefix(5000) { #expect(tree[key] == value) }
        let sorted = Set(keys).sorted { $0.lexicographicallyPrecedes($1) }
        #expect(Array(tree).map(\.key) == sorted)
        // Under 1.6 times the 116 bytes of data per entry.
        let bytes = tree.allocatedBytes()
        #expect(bytes < tree.count * 116 * 16 / 10, "\(bytes) bytes for \(tree.count) entries")
    }
}
