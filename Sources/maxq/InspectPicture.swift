// `maxq inspect --svg`: a checkpoint's sparsity in one picture, a bar per convolution layer: its
// zeros (grey) and kept weights, coloured by what the zeros are (a valid N:M pattern, zeros that
// are not N:M, or a dense layer), with the pattern, zero fraction and weight count beside it.
import Foundation

enum InspectPicture {
    static func svg(_ rows: [InspectRow], title: String) -> String {
        let (rowHeight, barLeft, barWidth, top) = (18.0, 240.0, 360.0, 60.0)
        let height = top + Double(rows.count) * rowHeight + 50
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"\(Int(height))\" "
        svg += "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"10\" y=\"20\" font-size=\"14\">\(escaped(title))</text>\n"
        let legend = [
            ("#2ca02c", "kept weights, N:M valid"), ("#ff7f0e", "kept weights, zeros not N:M"),
            ("#1f77b4", "kept weights, dense layer"), ("#bbbbbb", "zeros"),
        ]
        for (i, (color, text)) in legend.enumerated() {
            let x = 10 + Double(i) * 215
            svg += "<rect x=\"\(x)\" y=\"32\" width=\"12\" height=\"12\" fill=\"\(color)\"/>"
            svg += "<text x=\"\(x + 16)\" y=\"42\">\(text)</text>\n"
        }
        for (i, row) in rows.enumerated() {
            let y = top + Double(i) * rowHeight
            let sparsity = row.sparsity
            let (color, status): (String, String) =
                if let pattern = sparsity.pattern {
                    ("#2ca02c", "\(pattern.n):\(pattern.m)")
                } else if sparsity.zeros > 0 {
                    ("#ff7f0e", "not N:M")
                } else {
                    ("#1f77b4", row.kind == "dense" ? "dense (no mask)" : "dense (mask keeps all)")
                }
            let kept = barWidth * (1 - sparsity.fraction)
            svg += "<text x=\"\(barLeft - 6)\" y=\"\(y + 12)\" text-anchor=\"end\">\(escaped(row.name))</text>"
            svg += "<rect x=\"\(barLeft)\" y=\"\(y + 2)\" width=\"\(barWidth)\" height=\"\(rowHeight - 4)\" "
            svg += "fill=\"#bbbbbb\"/>"
            svg += "<rect x=\"\(barLeft)\" y=\"\(y + 2)\" width=\"\(String(format: "%.1f", kept))\" "
            svg += "height=\"\(rowHeight - 4)\" fill=\"\(color)\"/>"
            let detail = String(
                format: "%@ · %.1f%% zeros · %@ weights", status, 100 * sparsity.fraction, count(sparsity.total))
            svg += "<text x=\"\(barLeft + barWidth + 8)\" y=\"\(y + 12)\">\(detail)</text>\n"
        }
        let zeros = rows.map(\.sparsity.zeros).reduce(0, +), total = rows.map(\.sparsity.total).reduce(0, +)
        let valid = rows.filter { $0.sparsity.pattern != nil }.count
        let summary = String(
            format: "%@ weights in %d layers, %.1f%% zeros; a valid N:M pattern in %d of %d layers", count(total),
            rows.count, 100 * Double(zeros) / Double(max(total, 1)), valid, rows.count)
        svg += "<text x=\"10\" y=\"\(Int(height - 16))\">\(summary)</text>\n</svg>\n"
        return svg
    }

    private static func count(_ n: Int) -> String {
        n >= 1_000_000
            ? String(format: "%.2fM", Double(n) / 1e6) : n >= 1000 ? String(format: "%.1fK", Double(n) / 1e3) : "\(n)"
    }

    private static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }
}
