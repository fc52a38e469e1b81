/// The scenario's report as one self-contained HTML page: inline CSS, inline SVG charts
/// (``SVGChart``), no scripts and nothing fetched, so it opens in any browser offline.
///
/// Charts carry `data-chart` attributes: `throughput` (one per phase, with `data-phase`),
/// `latency-cdf` and `follower-lag`.
enum BenchHTML {
    static let style = """
        body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
        h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
        table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:13px}
        th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
        th:first-child,td:first-child,.left{text-align:left}th{background:#f6f6f6}
        .charts{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figcaption{font-size:12px;color:#555}
        svg{background:#fff;font:11px sans-serif}svg .plot{fill:#fcfcfc;stroke:#999}svg .grid{stroke:#e4e4e4}
        svg .tick{fill:#555}svg .label{fill:#333}svg .legend{fill:#333}svg .empty{fill:#999}
        .note{color:#444}.warn{color:#a40}pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}
        """

    /// The whole page.
    static func page(_ result: BenchScenarioResult) -> String {
        var html = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        html += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        html += "<title>ShipLog benchmark — \(HTML.escape(result.machine.hostname))</title><style>\(style)</style></head><body>\n"
        html += "<h1>ShipLog benchmark</h1>\n<p>\(HTML.escape(result.headline))</p>\n"
        if result.machine.build == "debug" {
            html += "<p class=\"warn\">A debug build: the figures are not representative.</p>\n"
        }
        if result.interrupted { html += "<p class=\"warn\">Interrupted: the phases after the last one shown were skipped.</p>\n" }
        html += "<h2>Phases</h2>\n" + table(result.phaseTable()) + "\n<p class=\"note\">\(HTML.escape(BenchScenarioResult.legend))</p>\n"
        if let baselines = result.baselines {
            html += "<h2>Baselines (same run, same disk)</h2>\n<ul>"
            for line in result.baselineLines(baselines) { html += "<li>\(HTML.escape(line))</li>" }
            html += "</ul>\n"
        }
        var bounds = TextTable([("phase", .left), ("measured", .right), ("bound", .right), ("bound is", .left), ("ratio", .right)])
        for phase in result.phases {
            guard let bound = phase.bound else { continue }
            bounds.addRow([
                phase.name, BenchScenarioResult.figure(bound.measured, bound.unit), BenchScenarioResult.figure(bound.value, bound.unit),
                bound.name, Format.fixed(bound.ratio, decimals: 2),
            ])
        }
        if !bounds.rows.isEmpty { html += "<h2>Against physical bounds</h2>\n" + table(bounds) + "\n" }
        if !result.delayModel.isEmpty { html += delayModel(result) }
        html += charts(result)
        let notes = result.phases.flatMap(\.notes)
        if !notes.isEmpty {
            html += "<h2>Notes</h2>\n"
            for note in notes { html += "<p class=\"note\">\(HTML.escape(note))</p>\n" }
        }
        html += "<h2>Report as text</h2>\n<pre>\(HTML.escape(result.renderedText()))</pre>\n</body></html>\n"
        return html
    }

    static func table(_ table: TextTable) -> String {
        var html = "<table><thead><tr>"
        func cell(_ tag: String, _ text: String, _ column: Int) -> String {
            let left = column > 0 && table.columns[column].alignment == .left
            return "<\(tag)\(left ? " class=\"left\"" : "")>\(HTML.escape(text))</\(tag)>"
        }
        for (i, column) in table.columns.enumerated() { html += cell("th", column.title, i) }
        html += "</tr></thead><tbody>"
        for row in table.rows {
            html += "<tr>" + row.enumerated().map { cell("td", $0.element, $0.offset) }.joined() + "</tr>"
        }
        return html + "</tbody></table>"
    }

    private static func delayModel(_ result: BenchScenarioResult) -> String {
        var html = "<h2>Synchronous replication delay</h2>\n"
        html += "<p>The textbook model: Delay = (n−1)/n × Latency, with Latency the local commit p50 of one client; "
            + "measured: the p50 at <code>all</code> with n−1 followers minus the local p50, one client alternating the two "
            + "levels commit by commit.</p>\n"
        var table = TextTable([("n", .right), ("local p50", .right), ("all p50", .right), ("measured delay", .right), ("model delay", .right)])
        for row in result.delayModel {
            table.addRow([
                String(row.nodes), Format.nanoseconds(row.localLatency), Format.nanoseconds(row.synchronousLatency),
                Format.nanoseconds(row.measuredDelay), Format.nanoseconds(row.modelDelay),
            ])
        }
        html += self.table(table) + "\n"
        for row in result.delayModel { html += "<p>\(HTML.escape(row.explanation))</p>\n" }
        return html
    }

    // MARK: Charts

    private static func charts(_ result: BenchScenarioResult) -> String {
        var html = "<h2>Throughput over time</h2>\n<div class=\"charts\">"
        for phase in result.phases {
            let chart = SVGChart(
                kind: "throughput", title: "\(phase.name): \(phase.unit) per second over time", xLabel: "seconds",
                yLabel: "\(phase.unit)/s", series: [SVGChart.Series(name: phase.name, points: phase.throughputSeries)],
                attributes: [("data-phase", phase.key)], formatY: { compact($0) }, width: 360, height: 220)
            html += "<figure>\(chart.rendered())<figcaption>\(HTML.escape(phase.name))</figcaption></figure>"
        }
        html += "</div>\n<h2>Latency CDF</h2>\n"
        func cdf(_ histogram: Histogram) -> [SeriesPoint] {
            histogram.cdf().map { SeriesPoint(seconds: Double($0.value), value: $0.fraction) }
        }
        let latencies = result.phases.filter { !$0.latency.isEmpty }.map { SVGChart.Series(name: $0.name, points: cdf($0.latency)) }
            + result.delayModel.flatMap { row in
                [
                    SVGChart.Series(name: "n = \(row.nodes): local (alternating)", points: cdf(row.local)),
                    SVGChart.Series(name: "n = \(row.nodes): all (alternating)", points: cdf(row.synchronous)),
                ]
            }
        html += SVGChart(
            kind: "latency-cdf", title: "Latency CDF per phase (fraction of operations at or below a latency)",
            xLabel: "latency (log scale)", yLabel: "fraction", xScale: .logarithmic, series: latencies,
            formatX: { Format.nanoseconds($0) }, formatY: { Format.fixed($0, decimals: 1) }, width: 1000, height: 380
        ).rendered()
        html += "\n<h2>Follower lag over time</h2>\n"
        let lags = result.phases.filter { !$0.lagSeries.isEmpty }.map { SVGChart.Series(name: $0.name, points: $0.lagSeries) }
        html += SVGChart(
            kind: "follower-lag", title: "Worst follower lag (primary written → follower durable) over each phase, ms",
            xLabel: "seconds since the phase started", yLabel: "lag (ms)", series: lags, formatY: { compact($0) }, width: 1000,
            height: 320
        ).rendered()
        return html + "\n"
    }

    /// `950`, `12k`, `1.5M`.
    static func compact(_ value: Double) -> String {
        let magnitude = abs(value)
        if magnitude >= 1e6 { return Format.significant(value / 1e6) + "M" }
        if magnitude >= 1e3 { return Format.significant(value / 1e3) + "k" }
        return Format.significant(value)
    }
}
