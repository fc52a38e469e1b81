import ShipLog

extension Commands {
    static let status = CommandSpec(
        path: ["status"], summary: "Show a node's role, epoch, LSNs and, on a primary, each follower's positions and lag.",
        discussion: """
            The primary lists every follower of its replica set with the LSNs it has written, \
            flushed (made durable) and applied, and how far it lags (PostgreSQL's \
            pg_stat_replication). --json prints the node's status document as it sent it.
            """,
        flags: [
            .value("server", placeholder: "HOST:PORT", help: "The node to ask.", required: true),
            secretFileFlag(),
            clusterFlag(),
            .flag("json", help: "Print the status document (JSON) instead of a table."),
        ])
}

/// `shiplog status --server HOST:PORT [--json]`.
struct StatusCommand {
    /// Top-level fields of the status document shown in the table, in this order.
    static let summaryFields = [
        "role", "node_id", "cluster_id", "epoch", "first_lsn", "last_lsn", "durable_lsn", "applied_lsn",
        "commit_level", "commit_timeout_policy", "degraded", "degraded_answers", "fenced_by_epoch",
        "primary", "connected", "primary_last_lsn", "last_error", "reseeds",
    ]
    /// Columns of the followers table: heading and status-document field.
    static let followerColumns = [
        ("NODE", "node_id"), ("CONNECTED", "connected"), ("WRITTEN", "written_lsn"), ("FLUSHED", "flushed_lsn"),
        ("APPLIED", "applied_lsn"), ("LAG_RECORDS", "lag_records"), ("LAG_BYTES", "lag_bytes"), ("LAG_MS", "lag_ms"),
        ("ADDRESS", "address"),
    ]

    let arguments: ParsedArguments
    let server: Endpoint
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        self.arguments = arguments
        server = try Commands.endpoint(arguments, "server")
        json = arguments.flag("json")
    }

    func run() throws -> Int32 {
        let client = try Commands.connect(arguments, to: server)
        defer { client.close() }
        let document: String
        do { document = try client.status() } catch { throw CommandError("status of \(server): \(error)") }
        if json {
            Output.standard.line(document)
            return 0
        }
        let parsed: ParsedJSON
        do { parsed = try ParsedJSON.parse(document) } catch { throw CommandError("status of \(server): \(error)") }
        guard case .object(let fields) = parsed else { throw CommandError("status of \(server): not a JSON object") }
        Output.standard.write(Self.table(fields))
        return 0
    }

    /// The readable form of a status document.
    static func table(_ fields: [String: ParsedJSON]) -> String {
        var rows: [[String]] = []
        for key in summaryFields {
            guard let value = fields[key] else { continue }
            if key == "last_error", value == .string("") { continue }
            rows.append([key, value.text])
        }
        let followers: [ParsedJSON]
        if case .array(let items)? = fields["followers"], fields["role"] == .string("primary") {
            followers = items
            rows.append(["followers", "\(items.count)"])
        } else {
            followers = []
        }
        var text = aligned(rows)
        guard !followers.isEmpty else { return text }
        var table = [followerColumns.map(\.0)]
        for case .object(let follower) in followers {
            table.append(followerColumns.map { follower[$0.1]?.text ?? "-" })
        }
        for line in aligned(table).split(separator: "\n") { text += "  \(line)\n" }
        return text
    }

    /// Rows of cells, each column padded to its widest cell.
    static func aligned(_ rows: [[String]]) -> String {
        let columns = rows.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        var text = ""
        for row in rows {
            var line = ""
            for (index, cell) in row.enumerated() {
                line += index == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[index] - cell.count + 2)
            }
            text += line + "\n"
        }
        return text
    }
}
