import Testing
@testable import shiplog
@Test func probe() { #expect(Bool(true)) }
