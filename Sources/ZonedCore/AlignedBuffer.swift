// Page-aligned memory for O_DIRECT IO.
//
// Invariants: the base address is aligned to `AlignedBuffer.alignment` (4096, enough for every
// logical block size up to 4096 and for O_DIRECT on the file systems we run on); the memory is
// zero-filled at allocation unless the caller says it will overwrite it (`zeroed: false`, for hot
// paths), and freed exactly once, in deinit.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public final class AlignedBuffer: @unchecked Sendable {
    public static let alignment = 4096
    public let count: Int
    public let base: UnsafeMutableRawPointer

    public init(count: Int, zeroed: Bool = true) {
        precondition(count >= 0, "buffer size cannot be negative")
        var p: UnsafeMutableRawPointer?
        let rc = posix_memalign(&p, AlignedBuffer.alignment, max(count, 1))
        precondition(rc == 0 && p != nil, "out of memory allocating \(count) aligned bytes")
        base = p!
        self.count = count
        if zeroed {
            base.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1))
        } else {
            base.bindMemory(to: UInt8.self, capacity: max(count, 1))
        }
    }

    /// Whether `p` may be handed to O_DIRECT IO as it is.
    public static func isAligned(_ p: UnsafeRawPointer?) -> Bool {
        guard let p else { return false }
        return Int(bitPattern: p) % alignment == 0
    }

    /// A buffer holding a copy of `bytes`.
    public convenience init<C: Collection>(copying bytes: C) where C.Element == UInt8 {
        self.init(count: bytes.count)
        var i = 0
        for b in bytes { base.storeBytes(of: b, toByteOffset: i, as: UInt8.self); i += 1 }
    }

    deinit { free(base) }

    public var readOnly: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
    public var mutable: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }
    public func slice(_ offset: Int, _ length: Int) -> UnsafeMutableRawBufferPointer {
        precondition(offset >= 0 && length >= 0 && offset + length <= count, "slice out of range")
        return UnsafeMutableRawBufferPointer(start: base + offset, count: length)
    }
    public var bytes: [UInt8] { Array(readOnly) }

    public func fill(_ byte: UInt8) { base.initializeMemory(as: UInt8.self, repeating: byte, count: count) }
}
