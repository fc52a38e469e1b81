/// A log sequence number: the position of one record in the log.
///
/// LSNs are dense: every record gets the next one, starting at ``LSN/first``.
/// LSN 0 is never assigned; it stands for "before the first record".
public struct LSN: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// The LSN of the first record of every log.
    public static let first = LSN(1)
    /// Precedes every record; the "last LSN" of an empty log.
    public static let zero = LSN(0)

    @inlinable public static func < (lhs: LSN, rhs: LSN) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The LSN `count` records later.
    @inlinable public func advanced(by count: UInt64) -> LSN { LSN(rawValue + count) }

    /// The LSN just before this one (`LSN.zero` stays zero).
    @inlinable public var predecessor: LSN { LSN(rawValue == 0 ? 0 : rawValue - 1) }

    public var description: String { String(rawValue) }
}

/// The term of one primary. Every promotion starts a new, larger epoch.
public struct Epoch: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public static let initial = Epoch(1)

    @inlinable public static func < (lhs: Epoch, rhs: Epoch) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { String(rawValue) }
}

/// A non-empty, closed range of LSNs: the records of one batch or one append.
public struct LSNRange: Hashable, Sendable, CustomStringConvertible {
    /// The first LSN in the range.
    public let first: LSN
    /// The last LSN in the range (inclusive).
    public let last: LSN

    @inlinable public init(first: LSN, last: LSN) {
        precondition(first <= last, "LSNRange must not be empty")
        self.first = first
        self.last = last
    }

    @inlinable public init(first: LSN, count: UInt32) {
        precondition(count > 0, "LSNRange must not be empty")
        self.first = first
        self.last = first.advanced(by: UInt64(count) - 1)
    }

    /// How many records the range holds.
    @inlinable public var count: UInt64 { last.rawValue - first.rawValue + 1 }

    /// The LSN after the last one.
    @inlinable public var next: LSN { last.advanced(by: 1) }

    @inlinable public func contains(_ lsn: LSN) -> Bool { first <= lsn && lsn <= last }

    public var description: String { first == last ? "\(first)" : "\(first)...\(last)" }
}
