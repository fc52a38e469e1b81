/// What a benchmark's setup made (an open log, a temporary directory) until its teardown
/// removes it: the harness's teardown closure takes no argument, so setup registers here.
///
///     let teardown = Teardown()
///     Benchmark(...) { benchmark, log in ... } setup: {
///         let fixture = try LogFixture(...)
///         teardown.register { try fixture.remove() }
///         return fixture.log
///     } teardown: {
///         try teardown.run()
///     }
public final class Teardown {
    private var steps: [() throws -> Void] = []

    public init() {}

    /// Adds a step; ``run()`` runs the steps in reverse order of registration.
    public func register(_ step: @escaping () throws -> Void) {
        steps.append(step)
    }

    /// Runs and forgets every registered step, the last registered first.
    public func run() throws {
        defer { steps.removeAll() }
        for step in steps.reversed() { try step() }
    }
}
