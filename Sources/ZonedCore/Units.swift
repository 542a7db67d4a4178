// Units that carry their meaning in the type.
//
// Invariants:
// - Every size and address in the engine and the device contract is in bytes. Conversion to
//   512-byte sectors or logical blocks happens only inside a backend, right before a syscall.
// - `DeviceOffset` is an absolute byte address on the device; `ByteCount` is a length. Adding a
//   length to an address gives an address; subtracting two addresses gives a length. Nothing else
//   mixes them, so "offset + offset" does not compile.
// - Arithmetic traps on overflow (Swift's default): an overflowing size is a programmer error.

/// A length in bytes.
public struct ByteCount: Hashable, Comparable, Sendable, AdditiveArithmetic, CustomStringConvertible {
    public var bytes: UInt64

    @inlinable public init(_ bytes: UInt64) { self.bytes = bytes }
    @inlinable public init(_ bytes: Int) {
        precondition(bytes >= 0, "a byte count cannot be negative")
        self.bytes = UInt64(bytes)
    }

    public static let zero = ByteCount(UInt64(0))
    @inlinable public static func kib(_ n: UInt64) -> ByteCount { ByteCount(n << 10) }
    @inlinable public static func mib(_ n: UInt64) -> ByteCount { ByteCount(n << 20) }
    @inlinable public static func gib(_ n: UInt64) -> ByteCount { ByteCount(n << 30) }

    @inlinable public static func + (a: ByteCount, b: ByteCount) -> ByteCount { ByteCount(a.bytes + b.bytes) }
    @inlinable public static func - (a: ByteCount, b: ByteCount) -> ByteCount { ByteCount(a.bytes - b.bytes) }
    @inlinable public static func * (a: ByteCount, n: UInt64) -> ByteCount { ByteCount(a.bytes * n) }
    @inlinable public static func / (a: ByteCount, n: UInt64) -> ByteCount { ByteCount(a.bytes / n) }
    @inlinable public static func < (a: ByteCount, b: ByteCount) -> Bool { a.bytes < b.bytes }

    /// How many whole `unit`s fit.
    @inlinable public func quotient(dividingBy unit: ByteCount) -> UInt64 { bytes / unit.bytes }
    @inlinable public func isMultiple(of unit: ByteCount) -> Bool { unit.bytes != 0 && bytes % unit.bytes == 0 }
    @inlinable public var isPowerOfTwo: Bool { bytes != 0 && bytes & (bytes - 1) == 0 }
    @inlinable public var int: Int { Int(bytes) }

    public var description: String { ByteCount.format(bytes) }

    /// "64 MiB", "62 MiB", "4 KiB", "1.5 GiB", "100 B": binary units, at most one decimal.
    public static func format(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
        if unit == 0 || value == value.rounded() { return "\(Int(value)) \(units[unit])" }
        let tenths = (value * 10).rounded() / 10
        return "\(tenths) \(units[unit])"
    }
}

/// An absolute byte address on a device.
public struct DeviceOffset: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var bytes: UInt64

    @inlinable public init(_ bytes: UInt64) { self.bytes = bytes }
    public static let zero = DeviceOffset(UInt64(0))

    @inlinable public static func + (a: DeviceOffset, b: ByteCount) -> DeviceOffset { DeviceOffset(a.bytes + b.bytes) }
    @inlinable public static func - (a: DeviceOffset, b: ByteCount) -> DeviceOffset { DeviceOffset(a.bytes - b.bytes) }
    /// The distance from `b` up to `a`; `a` must not be below `b`.
    @inlinable public static func - (a: DeviceOffset, b: DeviceOffset) -> ByteCount { ByteCount(a.bytes - b.bytes) }
    @inlinable public static func < (a: DeviceOffset, b: DeviceOffset) -> Bool { a.bytes < b.bytes }
    @inlinable public func isAligned(to unit: ByteCount) -> Bool { unit.bytes != 0 && bytes % unit.bytes == 0 }

    public var description: String { "0x" + String(bytes, radix: 16) }
}

/// The index of a zone on its device, from 0.
public struct ZoneID: Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    public var index: UInt32

    @inlinable public init(_ index: UInt32) { self.index = index }
    @inlinable public init(_ index: Int) {
        precondition(index >= 0 && index <= Int(UInt32.max), "zone index out of range")
        self.index = UInt32(index)
    }
    @inlinable public init(integerLiteral value: UInt32) { self.index = value }
    @inlinable public static func < (a: ZoneID, b: ZoneID) -> Bool { a.index < b.index }
    @inlinable public var int: Int { Int(index) }

    public var description: String { "zone \(index)" }
}

/// Byte-size parsing for human input ("4G", "64M", "62MiB", "4096", "1.5G").
/// Returns nil on anything it cannot read exactly, so callers can name the bad value.
extension ByteCount {
    public init?(parsing text: String) {
        let s = text.trimmedOfBlanks
        guard !s.isEmpty else { return nil }
        var digits = ""
        var suffix = ""
        for ch in s {
            if suffix.isEmpty, ch.isNumber || ch == "." { digits.append(ch) } else { suffix.append(ch) }
        }
        let shift: UInt64
        switch suffix.lowercased() {
        case "", "b": shift = 0
        case "k", "kb", "kib": shift = 10
        case "m", "mb", "mib": shift = 20
        case "g", "gb", "gib": shift = 30
        case "t", "tb", "tib": shift = 40
        default: return nil
        }
        if let whole = UInt64(digits) {
            let (v, overflow) = whole.multipliedReportingOverflow(by: 1 << shift)
            guard !overflow else { return nil }
            self.init(v)
        } else if let d = Double(digits), d >= 0 {
            let v = d * Double(UInt64(1) << shift)
            guard v == v.rounded(), v < Double(UInt64.max) else { return nil }
            self.init(UInt64(v))
        } else {
            return nil
        }
    }
}

extension String {
    /// Without leading and trailing spaces and tabs (ZonedCore does not import Foundation).
    fileprivate var trimmedOfBlanks: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
