import Glibc

// Line charts as inline SVG, drawn by our own code: no scripts, no fonts or styles fetched,
// so a page holding them opens anywhere without network access.

/// A line chart of one or more series, rendered as an `<svg data-chart="…">` element with a
/// `<title>`, axes with ticks, one `<path>` per series and a legend.
struct SVGChart: Sendable {
    enum Scale: Sendable, Equatable {
        case linear
        /// Base 10; values ≤ 0 are left out.
        case logarithmic
    }

    struct Series: Sendable {
        var name: String
        var points: [SeriesPoint]
    }

    /// The `data-chart` attribute: what the chart shows (`throughput`, `latency-cdf`, ...).
    var kind: String
    var title: String
    var xLabel: String
    var yLabel: String
    var xScale = Scale.linear
    var yScale = Scale.linear
    var series: [Series] = []
    /// Extra attributes' values, e.g. `["data-phase": "group-commit-16"]` (escaped when rendered).
    var attributes: [(String, String)] = []
    /// Formats tick labels.
    var formatX: @Sendable (Double) -> String = { Format.significant($0) }
    var formatY: @Sendable (Double) -> String = { Format.significant($0) }
    var width = 640.0
    var height = 300.0

    /// Line colours, distinguishable in colour and in greyscale.
    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]
    /// Plot margins in SVG user units: left (tick labels), right, top (legend), bottom (axis label).
    static let margin = (left: 64.0, right: 28.0, top: 28.0, bottom: 40.0)
    /// Points kept per series; longer series are thinned evenly.
    static let pointsPerSeriesMax = 2000

    /// The finite points of a series that the scales can show.
    private func visible(_ points: [SeriesPoint]) -> [SeriesPoint] {
        points.filter {
            $0.seconds.isFinite && $0.value.isFinite && (xScale == .linear || $0.seconds > 0) && (yScale == .linear || $0.value > 0)
        }
    }

    func rendered() -> String {
        var svg = "<svg data-chart=\"\(HTML.escape(kind))\""
        for (name, value) in attributes { svg += " \(name)=\"\(HTML.escape(value))\"" }
        svg += " role=\"img\" viewBox=\"0 0 \(n(width)) \(n(height))\" width=\"\(n(width))\" height=\"\(n(height))\">"
        svg += "<title>\(HTML.escape(title))</title>"
        let shown = series.map { Series(name: $0.name, points: thin(visible($0.points))) }.filter { !$0.points.isEmpty }
        let legend = legendLayout(shown.map(\.name))
        let m = Self.margin
        let top = m.top + Double(legend.rows - 1) * Self.legendRowHeight
        let plot = (x: m.left, y: top, width: width - m.left - m.right, height: height - top - m.bottom)
        svg += "<rect x=\"\(n(plot.x))\" y=\"\(n(plot.y))\" width=\"\(n(plot.width))\" height=\"\(n(plot.height))\" class=\"plot\"/>"
        guard !shown.isEmpty else {
            svg += "<text x=\"\(n(width / 2))\" y=\"\(n(height / 2))\" text-anchor=\"middle\" class=\"empty\">no data</text></svg>"
            return svg
        }
        let all = shown.flatMap(\.points)
        let xAxis = Axis(values: all.map(\.seconds), scale: xScale, includeZero: true)
        let yAxis = Axis(values: all.map(\.value), scale: yScale, includeZero: true)
        func px(_ x: Double) -> Double { plot.x + xAxis.fraction(x) * plot.width }
        func py(_ y: Double) -> Double { plot.y + plot.height - yAxis.fraction(y) * plot.height }
        // Grid and ticks.
        for tick in yAxis.ticks() {
            let y = py(tick)
            svg += "<line x1=\"\(n(plot.x))\" y1=\"\(n(y))\" x2=\"\(n(plot.x + plot.width))\" y2=\"\(n(y))\" class=\"grid\"/>"
            svg += "<text x=\"\(n(plot.x - 6))\" y=\"\(n(y + 4))\" text-anchor=\"end\" class=\"tick\">\(HTML.escape(formatY(tick)))</text>"
        }
        for tick in xAxis.ticks() {
            let x = px(tick)
            svg += "<line x1=\"\(n(x))\" y1=\"\(n(plot.y))\" x2=\"\(n(x))\" y2=\"\(n(plot.y + plot.height))\" class=\"grid\"/>"
            svg += "<text x=\"\(n(x))\" y=\"\(n(plot.y + plot.height + 16))\" text-anchor=\"middle\" class=\"tick\">\(HTML.escape(formatX(tick)))</text>"
        }
        svg += "<text x=\"\(n(plot.x + plot.width / 2))\" y=\"\(n(height - 6))\" text-anchor=\"middle\" class=\"label\">\(HTML.escape(xLabel))</text>"
        svg += "<text x=\"12\" y=\"\(n(plot.y + plot.height / 2))\" text-anchor=\"middle\" class=\"label\" "
            + "transform=\"rotate(-90 12 \(n(plot.y + plot.height / 2)))\">\(HTML.escape(yLabel))</text>"
        // Lines, then the legend.
        for (index, line) in shown.enumerated() {
            let color = Self.palette[index % Self.palette.count]
            var d = ""
            for (i, point) in line.points.enumerated() {
                d += (i == 0 ? "M" : " L") + "\(n(px(point.seconds))) \(n(py(point.value)))"
            }
            if line.points.count == 1 {  // a lone point: a dot, and a path that still has its M
                d += " h0.01"
                svg += "<circle cx=\"\(n(px(line.points[0].seconds)))\" cy=\"\(n(py(line.points[0].value)))\" r=\"3\" fill=\"\(color)\"/>"
            }
            svg += "<path d=\"\(d)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.6\" stroke-linejoin=\"round\" stroke-linecap=\"round\">"
            svg += "<title>\(HTML.escape(line.name))</title></path>"
            let place = legend.positions[index]
            svg += "<rect x=\"\(n(place.x))\" y=\"\(n(place.y - 9))\" width=\"10\" height=\"10\" fill=\"\(color)\"/>"
            svg += "<text x=\"\(n(place.x + 14))\" y=\"\(n(place.y))\" class=\"legend\">\(HTML.escape(line.name))</text>"
        }
        svg += "</svg>"
        return svg
    }

    /// Height of one legend row, and the width the legend assumes per character (11 px sans-serif).
    static let legendRowHeight = 16.0
    static let legendCharacterWidth = 6.2

    /// Where each legend entry's baseline starts, wrapping to new rows at the chart's width.
    private func legendLayout(_ names: [String]) -> (positions: [(x: Double, y: Double)], rows: Int) {
        var positions: [(x: Double, y: Double)] = []
        var x = Self.margin.left
        var row = 0
        for name in names {
            let entryWidth = 24 + Double(name.count) * Self.legendCharacterWidth
            if x > Self.margin.left, x + entryWidth > width - Self.margin.right {
                row += 1
                x = Self.margin.left
            }
            positions.append((x, 17 + Double(row) * Self.legendRowHeight))
            x += entryWidth
        }
        return (positions, row + 1)
    }

    private func thin(_ points: [SeriesPoint]) -> [SeriesPoint] {
        guard points.count > Self.pointsPerSeriesMax else { return points }
        let step = Double(points.count - 1) / Double(Self.pointsPerSeriesMax - 1)
        return (0..<Self.pointsPerSeriesMax).map { points[Int((Double($0) * step).rounded())] }
    }

    /// A coordinate with two decimals at most (`12.5`, `300`).
    private func n(_ value: Double) -> String {
        let rounded = (value * 100).rounded() / 100
        return rounded == rounded.rounded() ? String(Int(rounded)) : Format.fixed(rounded, decimals: 2)
    }

    /// The range and ticks of one axis.
    struct Axis {
        var low: Double
        var high: Double
        var scale: Scale

        init(values: [Double], scale: Scale, includeZero: Bool) {
            self.scale = scale
            var low = values.min() ?? 0
            var high = values.max() ?? 1
            switch scale {
            case .linear:
                if includeZero { low = Swift.min(low, 0) }
                if high <= low { high = low + Swift.max(1, abs(low)) }
                let step = Self.niceStep((high - low) / 5)
                low = (low / step).rounded(.down) * step
                high = (high / step).rounded(.up) * step
            case .logarithmic:
                low = Self.power(of: low, rounding: .down)
                high = Self.power(of: high, rounding: .up)
                if high <= low { high = low * 10 }
            }
            self.low = low
            self.high = high
        }

        /// Where `value` lies between the ends, from 0 to 1.
        func fraction(_ value: Double) -> Double {
            switch scale {
            case .linear: return (value - low) / (high - low)
            case .logarithmic: return (log10(value) - log10(low)) / (log10(high) - log10(low))
            }
        }

        func ticks() -> [Double] {
            switch scale {
            case .linear:
                let step = Self.niceStep((high - low) / 5)
                return stride(from: low, through: high + step / 2, by: step).map { $0 }
            case .logarithmic:
                var ticks: [Double] = []
                var tick = low
                while tick <= high * 1.000001 {
                    ticks.append(tick)
                    tick *= 10
                }
                return ticks
            }
        }

        /// 1, 2 or 5 times a power of ten, at least `rough`.
        static func niceStep(_ rough: Double) -> Double {
            guard rough > 0, rough.isFinite else { return 1 }
            let magnitude = power(of: rough, rounding: .down)
            for factor in [1.0, 2, 5, 10] where magnitude * factor >= rough { return magnitude * factor }
            return magnitude * 10
        }

        /// The power of ten at or below (`.down`) or at or above (`.up`) a positive value.
        static func power(of value: Double, rounding: FloatingPointRoundingRule) -> Double {
            guard value > 0, value.isFinite else { return 1 }
            return pow10(log10(value).rounded(rounding))
        }

        private static func pow10(_ exponent: Double) -> Double {
            var result = 1.0
            let steps = Int(abs(exponent))
            for _ in 0..<steps { result *= 10 }
            return exponent < 0 ? 1 / result : result
        }
    }
}

/// Escaping for HTML text and attribute values.
enum HTML {
    /// `&`, `<`, `>`, `"` and `'` as entities; control characters other than tab and newline dropped.
    static func escape(_ text: String) -> String {
        var output = ""
        output.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": output += "&amp;"
            case "<": output += "&lt;"
            case ">": output += "&gt;"
            case "\"": output += "&quot;"
            case "'": output += "&#39;"
            case "\t", "\n": output.unicodeScalars.append(scalar)
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F { continue }
                output.unicodeScalars.append(scalar)
            }
        }
        return output
    }
}
