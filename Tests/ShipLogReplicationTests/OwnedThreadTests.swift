#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import ShipLogStorage
import Testing
@testable import ShipLogReplication

@Suite struct OwnedThreadTests {
    /// The calling thread's name as the kernel shows it.
    static func currentThreadName() -> String {
        guard let file = fopen("/proc/thread-self/comm", "r") else { return "?" }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 64)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return "?" }
        let text = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return text.hasSuffix("\n") ? String(text.dropLast()) : text
    }

    @Test func bodyRunsOnAThreadWithTheNameCutTo15Bytes() {
        let seen = Locked<(name: String, isCurrent: Bool)?>(nil)
        let box = Locked<OwnedThread?>(nil)
        let ready = ConditionLock()
        let thread = OwnedThread.start(name: "shiplog.replication.receiver") {
            ready.lock()
            while box.withLock({ $0 }) == nil { ready.wait() }
            ready.unlock()
            let isCurrent = box.withLock { $0!.isCurrent }
            seen.withLock { $0 = (Self.currentThreadName(), isCurrent) }
        }
        ready.withLock {
            box.withLock { $0 = thread }
            ready.broadcast()
        }
        thread.join()
        #expect(seen.withLock { $0?.name } == "shiplog.replica")
        #expect(seen.withLock { $0?.isCurrent } == true)
        #expect(!thread.isCurrent)
        #expect(thread.isFinished)
    }

    @Test func multibyteNameIsNotCutInsideACharacter() {
        let seen = Locked<String?>(nil)
        // 14 ASCII bytes, then a 2-byte character that would end at byte 16.
        let thread = OwnedThread.start(name: "abcdefghijklmné") { seen.withLock { $0 = Self.currentThreadName() } }
        thread.join()
        #expect(seen.withLock { $0 } == "abcdefghijklmn")
    }

    @Test func joinFromManyThreadsAtOnceWaitsForTheBodyInEachOfThem() {
        let done = Atomic<Bool>(false)
        let worker = OwnedThread.start(name: "worker") {
            usleep(50_000)
            done.store(true, ordering: .sequentiallyConsistent)
        }
        let sawDone = Atomic<Int>(0)
        let joiners = (0..<4).map { index in
            OwnedThread.start(name: "joiner-\(index)") {
                worker.join()
                if done.load(ordering: .sequentiallyConsistent) { sawDone.add(1, ordering: .sequentiallyConsistent) }
            }
        }
        worker.join()
        let isDone = done.load(ordering: .sequentiallyConsistent)
        #expect(isDone)
        for joiner in joiners { joiner.join() }
        let joinersThatSawDone = sawDone.load(ordering: .sequentiallyConsistent)
        #expect(joinersThatSawDone == 4)
        worker.join()  // again: idempotent
    }

    @Test func joinFromTheThreadItselfDoesNotDeadlock() {
        let box = Locked<OwnedThread?>(nil)
        let ready = ConditionLock()
        let returned = Atomic<Bool>(false)
        let thread = OwnedThread.start(name: "self-join") {
            ready.lock()
            while box.withLock({ $0 }) == nil { ready.wait() }
            ready.unlock()
            box.withLock { $0 }!.join()
            usleep(20_000)
            returned.store(true, ordering: .sequentiallyConsistent)
        }
        ready.withLock {
            box.withLock { $0 = thread }
            ready.broadcast()
        }
        // Whether this join comes before or after the self-join, it must wait for the body.
        thread.join()
        let bodyReturned = returned.load(ordering: .sequentiallyConsistent)
        #expect(bodyReturned)
        box.withLock { $0 = nil }
    }

    @Test func unjoinedThreadIsReleasedWhenDropped() {
        let ran = Atomic<Bool>(false)
        do {
            _ = OwnedThread.start(name: "detached") { ran.store(true, ordering: .sequentiallyConsistent) }
        }
        for _ in 0..<1000 where !ran.load(ordering: .sequentiallyConsistent) { usleep(1000) }
        let didRun = ran.load(ordering: .sequentiallyConsistent)
        #expect(didRun)
    }

    @Test func timedWaitReturnsFalseAtTheDeadlineAndTrueWhenSignalled() {
        let condition = ConditionLock()
        let start = ConditionLock.monotonicNanoseconds()
        let signalled = condition.withLock {
            condition.wait(untilMonotonicNanoseconds: ConditionLock.deadline(after: .milliseconds(30))!)
        }
        #expect(!signalled)
        #expect(ConditionLock.monotonicNanoseconds() - start >= 30_000_000)

        let flag = Locked(false)
        let signaller = OwnedThread.start(name: "signaller") {
            usleep(10_000)
            condition.withLock {
                flag.withLock { $0 = true }
                condition.broadcast()
            }
        }
        let woke = condition.withLock {
            let deadline = ConditionLock.deadline(after: .seconds(10))!
            while !flag.withLock({ $0 }) {
                if !condition.wait(untilMonotonicNanoseconds: deadline) { return false }
            }
            return true
        }
        signaller.join()
        #expect(woke)
    }

    @Test func durationsConvertToNanosecondsSaturatingAndClampingNegatives() {
        #expect(Duration.milliseconds(1).nanoseconds == 1_000_000)
        #expect(Duration.nanoseconds(-5).nanoseconds == 0)
        #expect(Duration.seconds(Int64.max).nanoseconds == UInt64.max)
        #expect(ConditionLock.deadline(after: .seconds(Int64.max)) == UInt64.max)
        #expect(ConditionLock.deadline(after: nil) == nil)
    }
}
