import ShipLog

extension Commands {
    static let promote = CommandSpec(
        path: ["promote"], summary: "Make a follower the primary of a new epoch.",
        discussion: """
            The follower stops following, starts a new epoch with an epoch-start record and \
            accepts appends. Its old primary stops accepting appends as soon as a node of the new \
            epoch reaches it (fencing); point the other followers at it (they also find it \
            themselves when started with --primary A,B,C), and restart the old primary with \
            `shiplog follow`: it truncates what it wrote after the new epoch began into \
            quarantine/ and follows.
            """,
        flags: [
            .value("server", placeholder: "HOST:PORT", help: "The follower to promote.", required: true),
            .value("epoch", .unsignedInteger(1...UInt64(Int64.max)), placeholder: "N", help: "Start at least this epoch (default: one above the node's)."),
            secretFileFlag(),
            clusterFlag(),
        ])
}

/// `shiplog promote --server HOST:PORT [--epoch N]`.
struct PromoteCommand {
    let arguments: ParsedArguments
    let server: Endpoint
    let epoch: Epoch

    init(_ arguments: ParsedArguments) throws {
        self.arguments = arguments
        server = try Commands.endpoint(arguments, "server")
        epoch = Epoch(try arguments.uint64("epoch") ?? 0)
    }

    func run() throws -> Int32 {
        let client = try Commands.connect(arguments, to: server)
        defer { client.close() }
        do {
            let (epoch, first) = try client.promote(minimumEpoch: epoch)
            Output.standard.line("promoted \(client.nodeID) at \(server): epoch \(epoch), first LSN \(first)")
            return 0
        } catch {
            throw CommandError("promote \(server): \(error)")
        }
    }
}
