import ShipLogFormat
import ShipLogProtocol
import Testing

@testable import ShipLogFailover

/// The term record's encoding and the candidate rule it carries (docs/FAILOVER.md 9).
@Suite struct TermRecordTests {
    @Test func recordWithOddNodeIDsRoundTrips() throws {
        let record = TermRecord(epoch: Epoch(42), leader: "node one", level: .flush(followers: 2), synchronousSet: ["a,b", "100%", "..", "c"])
        let text = String(decoding: record.encoded, as: UTF8.self)
        #expect(text == "shiplog-term 1 42 node%20one flush:2 %2E%2E,100%25,a%2Cb,c")
        #expect(TermRecord(decoding: record.encoded) == record)
    }

    @Test func emptySynchronousSetIsWrittenAsADash() throws {
        let record = TermRecord(epoch: Epoch(1), leader: "n1", level: .all)
        #expect(String(decoding: record.encoded, as: UTF8.self) == "shiplog-term 1 1 n1 all -")
        #expect(TermRecord(decoding: record.encoded) == record)
    }

    @Test(arguments: [
        "", "shiplog-term 1 1 n1 all", "shiplog-term 2 1 n1 all -", "shiplog-member 1 1 n1 all -", "shiplog-term 1 x n1 all -",
        "shiplog-term 1 1 n1 flush:0 -", "shiplog-term 1 1 n1 sometimes -", "shiplog-term 1 1 n%ZZ all -", "shiplog-term 1 1 n1 all a,,b",
        "shiplog-term 1 1 n1 all -  ", "shiplog-term 1 1 n1 all - extra",
    ])
    func malformedRecordIsRefused(_ text: String) {
        #expect(TermRecord(decoding: Array(text.utf8)) == nil, "\(text)")
    }

    @Test func oversizedRecordIsRefusedBeforeParsing() {
        let huge = Array("shiplog-term 1 1 n1 all ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: CoordinationLimits.valueBytesMax)
        #expect(TermRecord(decoding: huge) == nil)
    }

    /// Every acknowledged write is on K members of the set: any |set| - K + 1 of them include one.
    @Test func candidatesRequiredFollowFromTheLevelAndTheSet() {
        let two: Set<String> = ["b", "c"]
        #expect(TermRecord(epoch: Epoch(3), leader: "a", level: .flush(followers: 1), synchronousSet: two).candidatesRequired == 2)
        #expect(TermRecord(epoch: Epoch(3), leader: "a", level: .flush(followers: 2), synchronousSet: two).candidatesRequired == 1)
        #expect(TermRecord(epoch: Epoch(3), leader: "a", level: .write(followers: 1), synchronousSet: ["b", "c", "d"]).candidatesRequired == 3)
        #expect(TermRecord(epoch: Epoch(3), leader: "a", level: .apply(followers: 2), synchronousSet: ["b", "c", "d"]).candidatesRequired == 2)
        // `all`: the set may have grown after a write was acknowledged, so every member is needed.
        #expect(TermRecord(epoch: Epoch(3), leader: "a", level: .all, synchronousSet: two).candidatesRequired == 2)
        // More followers required than the set holds (it is still filling): one is enough to lead.
        #expect(TermRecord(epoch: Epoch(3), leader: "a", level: .flush(followers: 3), synchronousSet: two).candidatesRequired == 1)
        #expect(TermRecord(epoch: Epoch(3), leader: "a", level: .local, synchronousSet: two).candidatesRequired == nil)
        #expect(TermRecord(epoch: Epoch(3), leader: "a", level: .flush(followers: 1)).candidatesRequired == nil)
    }
}
