// Reading Prometheus text exposition back: for tests that scrape a live mount, and for tools
// that check an endpoint.
//
// Invariants:
// - Every sample line must be `NAME{LABELS} VALUE` or `NAME VALUE` with a NAME declared by a
//   preceding `# TYPE` line; a counter's name must end in `_total`. Anything else is an error
//   naming the line, never a trap.

public enum PrometheusText {
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var line: String
        public var why: String
        public var description: String { "\(why): \(line)" }
    }

    /// Samples by series (`name` or `name{labels}` as written) → value.
    public static func parse(_ bytes: [UInt8]) throws(ParseError) -> [String: Double] {
        var out: [String: Double] = [:]
        var types: [String: String] = [:]
        for raw in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let line = String(raw)
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4 else { throw ParseError(line: line, why: "malformed TYPE line") }
                types[String(parts[2])] = String(parts[3])
                continue
            }
            if line.hasPrefix("#") { continue }
            guard let space = line.lastIndex(of: " "), let v = Double(line[line.index(after: space)...]) else {
                throw ParseError(line: line, why: "no value")
            }
            let key = String(line[..<space])
            let name = String(key.prefix { $0 != "{" })
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" }) else {
                throw ParseError(line: line, why: "bad metric name")
            }
            guard let type = types[name] else { throw ParseError(line: line, why: "sample before its TYPE line") }
            if type == "counter", !name.hasSuffix("_total") { throw ParseError(line: line, why: "counter without _total") }
            out[key] = v
        }
        return out
    }
}
