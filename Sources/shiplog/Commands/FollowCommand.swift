import ShipLog

extension Commands {
    static let follow = CommandSpec(
        path: ["follow"], summary: "Run a follower: store the primary's log byte for byte and serve reads and status.",
        discussion: """
            Prints `listening HOST:PORT role=follower node=ID primary=HOST:PORT` on standard output \
            once started (with the port chosen when PORT is 0), then follows the primary, \
            reconnecting after failures and re-seeding from a checkpoint when it fell behind the \
            primary's retention, until SIGTERM or SIGINT (exit 0). The node id defaults to DIR's \
            last component, so a restarted follower finds its replication slot again.
            """,
        flags: [
            .value("dir", placeholder: "DIR", help: "Log directory (created when missing).", required: true),
            .value("primary", placeholder: "HOST:PORT[,HOST:PORT...]", help: "The primary's address; more nodes after a comma are asked for the primary after a failover.", required: true),
            .value("listen", placeholder: "HOST:PORT", help: "Address serving reads, queries and status (port 0: any free port)."),
            secretFileFlag(),
            clusterFlag(),
            .value("node", placeholder: "ID", help: "This node's id, 1 to 64 bytes (default: DIR's last component)."),
        ] + nodeTuningFlags())
}
