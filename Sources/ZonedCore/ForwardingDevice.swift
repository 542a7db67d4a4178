// A device that passes every call to another one. Subclass it to change one behaviour (tests that
// break a rule on purpose or park an IO; later, counting wrappers for monitoring).
//
// Invariant: without overrides it is indistinguishable from `inner`.

open class ForwardingDevice: ZonedDevice, @unchecked Sendable {
    public let inner: any ZonedDevice

    public init(_ inner: any ZonedDevice) { self.inner = inner }

    open var geometry: DeviceGeometry { inner.geometry }
    open var kind: DeviceKind { inner.kind }
    open var path: String { inner.path }
    open func reportZones(from first: ZoneID, count: Int) throws(DeviceError) -> [Zone] { try inner.reportZones(from: first, count: count) }
    open func reset(_ zone: ZoneID) throws(DeviceError) { try inner.reset(zone) }
    open func openZone(_ zone: ZoneID) throws(DeviceError) { try inner.openZone(zone) }
    open func closeZone(_ zone: ZoneID) throws(DeviceError) { try inner.closeZone(zone) }
    open func finish(_ zone: ZoneID) throws(DeviceError) { try inner.finish(zone) }
    open func write(_ data: UnsafeRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) { try inner.write(data, at: offset) }
    open func append(_ data: UnsafeRawBufferPointer, to zone: ZoneID) throws(DeviceError) -> DeviceOffset { try inner.append(data, to: zone) }
    open func read(into buffer: UnsafeMutableRawBufferPointer, at offset: DeviceOffset) throws(DeviceError) { try inner.read(into: buffer, at: offset) }
    open func flush() throws(DeviceError) { try inner.flush() }
    open func submit(_ batch: [DeviceIO]) -> [IOCompletion] { inner.submit(batch) }
    open func close() { inner.close() }
}
