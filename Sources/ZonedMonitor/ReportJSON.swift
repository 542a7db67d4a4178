// The one JSON form of every report zbdfs prints or serves: pretty, key-sorted, snake_case keys,
// slashes left as they are (device paths read as paths).

import Foundation

/// `value` as a report's JSON.
public func reportJSON(_ value: some Encodable) -> String {
    let enc = JSONEncoder()
    enc.keyEncodingStrategy = .convertToSnakeCase
    enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    // Encoding plain value types cannot fail; a failure here is a programmer error.
    return String(decoding: try! enc.encode(value), as: UTF8.self)
}
