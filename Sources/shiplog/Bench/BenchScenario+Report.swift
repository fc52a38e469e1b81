// The scenario's results for people (a table and a few paragraphs) and for programs (JSON).

extension BenchScenarioResult {
    /// The one-line description of the run: parameters and machine.
    var headline: String {
        let p = parameters
        return "shiplog bench: \(Format.fixed(p.seconds, decimals: 1)) s per phase, \(p.recordBytes)-byte log-like records, "
            + "writers \(p.writers.map(String.init).joined(separator: "/")), primary + \(p.followers) follower\(p.followers == 1 ? "" : "s") "
            + "in one process over loopback TCP; \(machine.build) build, \(machine.cpus) CPUs, \(machine.fileSystem ?? "unknown file system")"
    }

    /// The full report: headline, phase table, baselines, bounds, delay model, notes.
    func renderedText() -> String {
        var text = headline + "\n"
        if machine.build == "debug" { text += "(a debug build: the figures are not representative; use `make bench`)\n" }
        text += "\n" + phaseTable().rendered() + Self.legend + "\n"
        if let baselines {
            text += "\nbaselines (same run, same disk):\n"
            for line in baselineLines(baselines) { text += "  " + line + "\n" }
        }
        let bounds = phases.compactMap { phase in phase.bound.map { (phase.name, $0) } }
        if !bounds.isEmpty {
            text += "\neach phase against its physical bound (measured / bound):\n"
            for (name, bound) in bounds {
                text += "  \(name): \(Self.figure(bound.measured, bound.unit)) / \(Self.figure(bound.value, bound.unit)) "
                    + "(\(bound.name)) = \(Format.fixed(bound.ratio, decimals: 2))\n"
            }
        }
        if !delayModel.isEmpty { text += "\n" + delayModelText() }
        let notes = phases.flatMap(\.notes)
        if !notes.isEmpty { text += "\n" + notes.joined(separator: "\n") + "\n" }
        if interrupted {
            text += "\ninterrupted: stopped early by a signal after \(phases.count) phase\(phases.count == 1 ? "" : "s"); the rest were skipped.\n"
        }
        return text
    }

    /// What the phase table's columns mean.
    static let legend = """
        r/s, c/s: records or commits per second; MB/s: record bytes per second; p50/p99/p99.9: latency of one \
        append or commit; lag p99: primary written → follower durable; written: bytes the primary wrote to its \
        segments; ratio: record bytes / bytes written (LZ4 and batch headers); CPU: process CPU time, user + \
        system; vs bound: measured / physical bound (below).
        """

    func phaseTable() -> TextTable {
        var table = TextTable([
            ("phase", .left), ("throughput", .right), ("MB/s", .right), ("p50", .right), ("p99", .right), ("p99.9", .right),
            ("lag p99", .right), ("written", .right), ("ratio", .right), ("CPU", .right), ("vs bound", .right),
        ])
        for phase in phases {
            let latency = phase.latency
            func percentile(_ p: Double) -> String { latency.isEmpty ? "-" : Format.nanoseconds(latency.percentile(p)) }
            table.addRow([
                phase.name + (phase.stoppedEarly ? " (stopped)" : ""),
                Format.fixed(phase.operationsPerSecond, decimals: 0, grouping: true) + (phase.unit == "commits" ? " c/s" : " r/s"),
                phase.logicalBytes > 0 ? Format.significant(phase.logicalMBPerSecond) : "-",
                percentile(50), percentile(99), percentile(99.9),
                phase.lag.isEmpty ? "-" : Format.nanoseconds(phase.lag.percentile(99)),
                phase.storedBytes > 0 ? Format.bytes(phase.storedBytes) : "-",
                phase.compressionRatio.map { Format.fixed($0, decimals: 2) + "×" } ?? "-",
                Format.fixed(Double(phase.cpu.totalNanoseconds) / 1e9, decimals: 2) + " s",
                phase.bound.map { Format.fixed($0.ratio, decimals: 2) } ?? "-",
            ])
        }
        return table
    }

    func baselineLines(_ b: BenchBaselines) -> [String] {
        [
            "4 KiB pwrite+fdatasync overwriting a written file, one writer: p50 \(Format.nanoseconds(b.fsync.latency.percentile(50))), "
                + "p99 \(Format.nanoseconds(b.fsync.latency.percentile(99))), \(Format.fixed(b.fsync.operationsPerSecond, decimals: 0, grouping: true))/s"
                + (b.fsyncEarlierP50.flatMap { early in b.fsyncLaterP50.map { late in
                    " (the faster of p50 \(Format.nanoseconds(early)) at the start and \(Format.nanoseconds(late)) at the end)" } } ?? ""),
            "4 KiB pwrite+fdatasync appending (the file grows: size synced too): p50 \(Format.nanoseconds(b.fsyncAppend.latency.percentile(50))), "
                + "p99 \(Format.nanoseconds(b.fsyncAppend.latency.percentile(99))), \(Format.fixed(b.fsyncAppend.operationsPerSecond, decimals: 0, grouping: true))/s",
            "loopback TCP round trip (100 bytes): p50 \(Format.nanoseconds(b.loopbackRTT.percentile(50))), "
                + "p99 \(Format.nanoseconds(b.loopbackRTT.percentile(99)))",
            "raw LZ4 (liblz4, 64 KiB blocks of the same records): compress \(Format.megabytesPerSecond(b.lz4.compression.megabytesPerSecond)), "
                + "decompress \(Format.megabytesPerSecond(b.lz4.decompression.megabytesPerSecond)), ratio \(Format.fixed(b.lz4.ratio, decimals: 2))"
                + (b.lz4Earlier.flatMap { early in b.lz4Later.map { late in
                    " (the faster of \(Format.megabytesPerSecond(early.compression.megabytesPerSecond)) / "
                        + "\(Format.megabytesPerSecond(early.decompression.megabytesPerSecond)) at the start and "
                        + "\(Format.megabytesPerSecond(late.compression.megabytesPerSecond)) / "
                        + "\(Format.megabytesPerSecond(late.decompression.megabytesPerSecond)) at the end)" } } ?? ""),
            "sequential 1 MiB writes + one fdatasync: \(Format.megabytesPerSecond(b.sequentialWrite.megabytesPerSecond))",
        ]
    }

    func delayModelText() -> String {
        var text = "synchronous replication delay: model Delay = (n−1)/n × Latency, Latency = the local commit p50 of one client;\n"
            + "measured: the p50 at `all` with n−1 followers minus the local p50, one client alternating the two levels\n"
        var table = TextTable([
            ("n", .right), ("local p50", .right), ("all p50", .right), ("measured delay", .right), ("model delay", .right),
        ])
        for row in delayModel {
            table.addRow([
                String(row.nodes), Format.nanoseconds(row.localLatency), Format.nanoseconds(row.synchronousLatency),
                Format.nanoseconds(row.measuredDelay), Format.nanoseconds(row.modelDelay),
            ])
        }
        text += table.rendered()
        for row in delayModel { text += row.explanation + "\n" }
        return text
    }

    /// `812 MB/s`, `1,234 commits/s`.
    static func figure(_ value: Double, _ unit: String) -> String {
        unit == "MB/s" ? Format.megabytesPerSecond(value) : Format.fixed(value, decimals: 0, grouping: true) + " " + unit
    }

    // MARK: JSON

    /// Every figure, with the parameters and the machine facts.
    var json: JSONValue {
        var document = JSONObject()
        document["format"] = "shiplog-bench/1"
        document["interrupted"] = JSONValue(interrupted)
        document["parameters"] = [
            "seconds_per_phase": JSONValue(parameters.seconds), "record_bytes": JSONValue(parameters.recordBytes),
            "followers": JSONValue(parameters.followers), "writers": .array(parameters.writers.map { JSONValue($0) }),
            "directory": parameters.directory.map { JSONValue($0) } ?? .null,
        ]
        document["machine"] = [
            "hostname": JSONValue(machine.hostname), "system": JSONValue(machine.system), "kernel": JSONValue(machine.kernel),
            "architecture": JSONValue(machine.architecture), "cpus": JSONValue(machine.cpus), "memory_bytes": JSONValue(machine.memoryBytes),
            "file_system": machine.fileSystem.map { JSONValue($0) } ?? .null, "crc32c": JSONValue(machine.crc32c),
            "build": JSONValue(machine.build),
        ]
        if let b = baselines {
            document["baselines"] = [
                "fdatasync_4k": [
                    "per_second": JSONValue(b.fsync.operationsPerSecond), "latency": b.fsync.latency.json,
                    "file_system": b.fsync.fileSystem.map { JSONValue($0) } ?? .null,
                ],
                "fdatasync_4k_p50_ns_start": b.fsyncEarlierP50.map { JSONValue($0) } ?? .null,
                "fdatasync_4k_p50_ns_end": b.fsyncLaterP50.map { JSONValue($0) } ?? .null,
                "fdatasync_4k_append": [
                    "per_second": JSONValue(b.fsyncAppend.operationsPerSecond), "latency": b.fsyncAppend.latency.json,
                ],
                "loopback_rtt": b.loopbackRTT.json,
                "lz4": [
                    "compress_mb_per_second": JSONValue(b.lz4.compression.megabytesPerSecond),
                    "decompress_mb_per_second": JSONValue(b.lz4.decompression.megabytesPerSecond), "ratio": JSONValue(b.lz4.ratio),
                ],
                "sequential_write_mb_per_second": JSONValue(b.sequentialWrite.megabytesPerSecond),
                "fdatasync_plus_rtt_ns": JSONValue(b.syncPlusRoundTripNanoseconds),
            ]
        }
        document["phases"] = .array(phases.map(\.json))
        document["replication_delay_model"] = .array(
            delayModel.map { row in
                [
                    "nodes": JSONValue(row.nodes), "formula": "(n-1)/n * local_latency",
                    "local_latency_p50_ns": JSONValue(row.localLatency), "all_latency_p50_ns": JSONValue(row.synchronousLatency),
                    "measured_delay_ns": JSONValue(row.measuredDelay), "model_delay_ns": JSONValue(row.modelDelay),
                    "explanation": JSONValue(row.explanation), "local_latency": row.local.json,
                    "all_latency": row.synchronous.json, "commits": JSONValue(row.commits),
                    "on_main_cluster": JSONValue(row.onMainCluster),
                ]
            })
        return .object(document)
    }
}

extension BenchPhaseResult {
    /// The phase's figures, its series and its latency CDF.
    var json: JSONValue {
        var object: JSONObject = [
            "key": JSONValue(key), "name": JSONValue(name), "unit": JSONValue(unit), "operations": JSONValue(operations),
            "seconds": JSONValue(seconds), "per_second": JSONValue(operationsPerSecond),
            "logical_bytes": JSONValue(logicalBytes), "logical_mb_per_second": JSONValue(logicalMBPerSecond),
            "stored_bytes": JSONValue(storedBytes), "compression_ratio": compressionRatio.map { JSONValue($0) } ?? .null,
            "sync_calls": JSONValue(syncCalls), "latency": latency.isEmpty ? .null : latency.json,
            "follower_lag": lag.isEmpty ? .null : lag.json,
            "cpu_seconds": JSONValue(Double(cpu.totalNanoseconds) / 1e9),
            "cpu_user_seconds": JSONValue(Double(cpu.userNanoseconds) / 1e9),
            "cpu_system_seconds": JSONValue(Double(cpu.systemNanoseconds) / 1e9),
            "stopped_early": JSONValue(stoppedEarly),
        ]
        object["bound"] = bound.map { bound in
            [
                "name": JSONValue(bound.name), "value": JSONValue(bound.value), "measured": JSONValue(bound.measured),
                "unit": JSONValue(bound.unit), "ratio": JSONValue(bound.ratio),
            ]
        } ?? .null
        object["throughput_series"] = .array(throughputSeries.map { [JSONValue($0.seconds), JSONValue($0.value)] })
        object["lag_series_ms"] = .array(lagSeries.map { [JSONValue($0.seconds), JSONValue($0.value)] })
        object["latency_cdf"] = .array(latency.cdf().map { [JSONValue($0.value), JSONValue($0.fraction)] })
        if !extra.members.isEmpty { object["extra"] = .object(extra) }
        return .object(object)
    }
}

extension Histogram {
    /// The cumulative distribution: for each non-empty bucket, its upper value (ns, clamped
    /// to the observed maximum) and the fraction of values at or below it. Empty when empty.
    func cdf() -> [(value: UInt64, fraction: Double)] {
        guard count > 0 else { return [] }
        var points: [(value: UInt64, fraction: Double)] = []
        var seen: UInt64 = 0
        forEachBucket { lower, width, bucketCount in
            seen += bucketCount
            points.append((Swift.min(Swift.max(lower + width - 1, min), max), Double(seen) / Double(count)))
        }
        return points
    }
}
