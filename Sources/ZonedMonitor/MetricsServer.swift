// A minimal HTTP endpoint for Prometheus scrapes: GET /metrics answers the exposition text.
//
// Invariants:
// - It binds before it is started, so "address in use" is reported to whoever mounts, not lost
//   in a background thread.
// - One connection at a time, each with a 2 s receive timeout and closed after one answer: a
//   stalled client delays scrapes by at most that, never the file system (it runs on its own
//   thread and only reads snapshots).
// - Only GET (and HEAD) of /metrics and / are answered 200; anything else gets 404 or 405.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import ZonedCore

public final class MetricsServer: @unchecked Sendable {
    public let address: String
    public private(set) var port: UInt16
    private let fd: Int32
    private let body: @Sendable () -> [UInt8]
    private var thread: Thread?

    /// Binds `address:port` (IPv4; port 0 picks a free one). Throws a DeviceError naming the cause.
    public init(address: String, port: UInt16, body: @escaping @Sendable () -> [UInt8]) throws(DeviceError) {
        self.address = address
        self.body = body
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        guard inet_pton(AF_INET, address, &addr.sin_addr) == 1 else {
            throw DeviceError(errno: EINVAL, .open, "\(address) is not an IPv4 address (give e.g. 127.0.0.1)")
        }
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw DeviceError(errno: errno, .open, "socket for the metrics endpoint") }
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(s, 16) == 0 else {
            let e = errno
            close(s)
            throw DeviceError(errno: e, .open, "cannot listen on \(address):\(port)\(e == EADDRINUSE ? " (the port is in use; pick another)" : "")")
        }
        var got = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &got) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        self.port = UInt16(bigEndian: got.sin_port)
        self.fd = s
    }

    /// Serves on a thread of its own until `stop`.
    public func start() {
        let t = Thread { [self] in serve() }
        t.name = "zbdfs-metrics"
        thread = t
        t.start()
    }

    /// Stops accepting (the serving thread ends at its next accept).
    public func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    private func serve() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return  // closed by stop()
            }
            answer(c)
            close(c)
        }
    }

    private func answer(_ c: Int32) {
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var request: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while request.count < 16 << 10, !MetricsServer.headerEnded(request) {
            let n = chunk.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            request += chunk[0..<n]
        }
        let (status, type, payload, head) = MetricsServer.route(request, body: body)
        var reply = Array("HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(payload.count)\r\nConnection: close\r\n\r\n".utf8)
        if !head { reply += payload }
        var sent = 0
        while sent < reply.count {
            let n = reply[sent...].withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return }
            sent += n
        }
    }

    static func headerEnded(_ b: [UInt8]) -> Bool {
        b.count >= 4 && b.indices.dropLast(3).contains { b[$0] == 13 && b[$0 + 1] == 10 && b[$0 + 2] == 13 && b[$0 + 3] == 10 }
    }

    /// (status line, content type, body, HEAD?) for a request.
    static func route(_ request: [UInt8], body: () -> [UInt8]) -> (String, String, [UInt8], Bool) {
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
        guard line.count >= 2 else { return ("400 Bad Request", "text/plain", Array("bad request\n".utf8), false) }
        let method = line[0], path = line[1].split(separator: "?").first.map(String.init) ?? ""
        guard method == "GET" || method == "HEAD" else {
            return ("405 Method Not Allowed", "text/plain", Array("only GET\n".utf8), false)
        }
        switch path {
        case "/metrics": return ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body(), method == "HEAD")
        case "/": return ("200 OK", "text/plain", Array("zbdfs metrics: GET /metrics\n".utf8), method == "HEAD")
        default: return ("404 Not Found", "text/plain", Array("not found; the metrics are at /metrics\n".utf8), method == "HEAD")
        }
    }
}
