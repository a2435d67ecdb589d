// One chart panel of an SVG picture: data ranges mapped to a rectangle (the vertical axis linear or
// logarithmic), a frame with tick marks, tick labels and grid lines, and series drawn as lines
// with a marker per point. The report pictures (curves.svg, `maxq results --svg`) are made of these.
import Foundation

public struct SVGPanel: Sendable {
    public let left: Double, top: Double, width: Double, height: Double
    public let xRange: ClosedRange<Double>, yRange: ClosedRange<Double>
    public let logY: Bool

    public init(
        left: Double, top: Double, width: Double, height: Double, x: ClosedRange<Double>, y: ClosedRange<Double>,
        logY: Bool = false
    ) {
        (self.left, self.top, self.width, self.height) = (left, top, width, height)
        (xRange, yRange, self.logY) = (x, y, logY)
    }

    public func x(_ value: Double) -> Double {
        let span = xRange.upperBound - xRange.lowerBound
        return left + (span > 0 ? (value - xRange.lowerBound) / span : 0.5) * width
    }

    /// Values outside the range are drawn at its edge.
    public func y(_ value: Double) -> Double {
        let (v, low, high) =
            logY
            ? (log10(max(value, 1e-12)), log10(yRange.lowerBound), log10(yRange.upperBound))
            : (value, yRange.lowerBound, yRange.upperBound)
        let fraction = high > low ? (v - low) / (high - low) : 0.5
        return top + (1 - min(max(fraction, 0), 1)) * height
    }

    /// The frame, a grid line and label at each tick, and the axis titles.
    public func frame(xTicks: [Double], yTicks: [Double], xTitle: String, yTitle: String) -> String {
        var svg = "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(width))\" height=\"\(f(height))\" "
        svg += "fill=\"none\" stroke=\"#555\"/>\n"
        for tick in xTicks where xRange.contains(tick) {
            let px = f(x(tick))
            svg += "<line x1=\"\(px)\" y1=\"\(f(top))\" x2=\"\(px)\" y2=\"\(f(top + height))\" stroke=\"#eee\"/>"
            svg += "<text x=\"\(px)\" y=\"\(f(top + height + 14))\" text-anchor=\"middle\">\(label(tick))</text>\n"
        }
        for tick in yTicks where yRange.contains(tick) {
            let py = f(y(tick))
            svg += "<line x1=\"\(f(left))\" y1=\"\(py)\" x2=\"\(f(left + width))\" y2=\"\(py)\" stroke=\"#eee\"/>"
            svg += "<text x=\"\(f(left - 4))\" y=\"\(f(y(tick) + 4))\" text-anchor=\"end\">\(label(tick))</text>\n"
        }
        svg += "<text x=\"\(f(left + width / 2))\" y=\"\(f(top + height + 30))\" text-anchor=\"middle\">"
        svg += "\(xTitle)</text>\n"
        svg += "<text x=\"\(f(left))\" y=\"\(f(top - 8))\">\(yTitle)</text>\n"
        return svg
    }

    /// A line through `points` with a circle at each (a square when `dash`).
    public func series(_ points: [(x: Double, y: Double)], color: String, dash: Bool = false) -> String {
        let coordinates = points.map { "\(f(x($0.x))),\(f(y($0.y)))" }
        let pattern = dash ? " stroke-dasharray=\"6 4\"" : ""
        var svg = "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(pattern) "
        svg += "points=\"\(coordinates.joined(separator: " "))\"/>\n"
        for point in points {
            let (px, py) = (x(point.x), y(point.y))
            svg +=
                dash
                ? "<rect x=\"\(f(px - 3))\" y=\"\(f(py - 3))\" width=\"6\" height=\"6\" fill=\"\(color)\"/>"
                : "<circle cx=\"\(f(px))\" cy=\"\(f(py))\" r=\"3\" fill=\"\(color)\"/>"
        }
        return svg + "\n"
    }

    /// About `count` round ticks over `range` (1, 2 or 5 times a power of ten apart).
    public static func ticks(_ range: ClosedRange<Double>, count: Int = 5) -> [Double] {
        let span = range.upperBound - range.lowerBound
        guard span > 0, span.isFinite else { return [range.lowerBound] }
        let raw = span / Double(max(count, 1)), power = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= raw } ?? 10 * power
        let first = (range.lowerBound / step).rounded(.up) * step
        return stride(from: first, through: range.upperBound + step * 1e-9, by: step).map { $0 }
    }

    /// Powers of ten over `range` (a logarithmic axis), and their 2x and 5x when it spans at most
    /// three decades.
    public static func logTicks(_ range: ClosedRange<Double>) -> [Double] {
        guard range.lowerBound > 0 else { return [] }
        let decades = Int(floor(log10(range.lowerBound)))...Int(ceil(log10(range.upperBound)))
        let steps: [Double] = decades.count > 4 ? [1] : [1, 2, 5]
        return decades.flatMap { d in steps.map { $0 * pow(10, Double(d)) } }.filter { range.contains($0) }
    }

    private func label(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e6 ? String(Int(value)) : String(format: "%.3g", value)
    }

    private func f(_ value: Double) -> String { String(format: "%.1f", value) }
}
