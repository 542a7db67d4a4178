// swift-tools-version: 6.2
// zbdfs: a storage engine and file system for zoned block devices.
// Dependencies point one way: everything may import ZonedCore; backends import only ZonedCore and
// their C module; only the CLI and the tests pick a concrete device.
// A warning in our own code is an error (see the end of this file).
import PackageDescription

let package = Package(
    name: "zbdfs",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ZonedCore", targets: ["ZonedCore"]),
        .library(name: "ZonedBackendFile", targets: ["ZonedBackendFile"]),
        .library(name: "ZonedBackendKernel", targets: ["ZonedBackendKernel"]),
        .library(name: "ZonedBackendNVMe", targets: ["ZonedBackendNVMe"]),
        .library(name: "ZonedConformance", targets: ["ZonedConformance"]),
        .library(name: "ZonedMonitor", targets: ["ZonedMonitor"]),
        .library(name: "ZonedAllocator", targets: ["ZonedAllocator"]),
        .library(name: "ZonedEngine", targets: ["ZonedEngine"]),
        .library(name: "ZonedIndex", targets: ["ZonedIndex"]),
        .library(name: "ZonedFS", targets: ["ZonedFS"]),
        .library(name: "ZonedFUSE", targets: ["ZonedFUSE"]),
        .executable(name: "zbdfs", targets: ["zbdfs"]),
        .executable(name: "zbdfs-conformance", targets: ["zbdfs-conformance"]),
        .executable(name: "zbdfs-bench", targets: ["zbdfs-bench"]),
        .executable(name: "zbdfs-kernel-smoke", targets: ["zbdfs-kernel-smoke"]),
        .executable(name: "zbdfs-demo-files", targets: ["zbdfs-demo-files"]),
        .executable(name: "zbdfs-fs-check", targets: ["zbdfs-fs-check"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries, found through pkg-config.
        .systemLibrary(name: "CURing", pkgConfig: "liburing",
                       providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CZBD", pkgConfig: "libzbd",
                       providers: [.apt(["libzbd-dev"])]),
        .systemLibrary(name: "CNVMe", pkgConfig: "libnvme",
                       providers: [.apt(["libnvme-dev", "libjson-c-dev", "libssl-dev"])]),
        .systemLibrary(name: "CFUSE3", pkgConfig: "fuse3",
                       providers: [.apt(["libfuse3-dev"])]),
        // The one small C shim: only what Swift cannot call (ioctl request macros, libzbd macros).
        .target(name: "CZonedShim"),

        .target(name: "ZonedCore", dependencies: ["CZonedShim"]),
        .target(name: "ZonedBackendFile", dependencies: ["ZonedCore", "CZonedShim"]),
        .target(name: "ZonedBackendKernel", dependencies: ["ZonedCore", "CURing", "CZBD", "CZonedShim"]),
        // NVMe ZNS namespaces through their generic char device: libnvme + io_uring passthrough.
        .target(name: "ZonedBackendNVMe", dependencies: ["ZonedCore", "CURing", "CNVMe", "CZonedShim"]),
        .target(name: "ZonedConformance", dependencies: ["ZonedCore"]),
        // Monitoring: status snapshots, the top view, Prometheus metrics and their HTTP endpoint.
        .target(name: "ZonedMonitor", dependencies: ["ZonedCore", "ZonedAllocator", "ZonedEngine", "ZonedFS",
                                                     .product(name: "Prometheus", package: "swift-prometheus")]),
        .target(name: "ZonedAllocator", dependencies: ["ZonedCore"]),
        .target(name: "ZonedEngine", dependencies: ["ZonedCore", "ZonedAllocator"]),
        // The metadata index (docs/ON-DISK.md, version 2): keys, entries, tables, the block cache.
        .target(name: "ZonedIndex", dependencies: ["ZonedCore"]),
        // The file system: on-device format, metadata log, namespace, mount, fsck.
        .target(name: "ZonedFS", dependencies: ["ZonedCore", "ZonedAllocator", "ZonedEngine", "ZonedIndex"]),
        // The file system through libfuse3's low-level API (`zbdfs mount`).
        .target(name: "ZonedFUSE", dependencies: ["ZonedCore", "ZonedEngine", "ZonedFS", "CFUSE3"]),
        .executableTarget(name: "zbdfs", dependencies: [
            "ZonedCore", "ZonedBackendFile", "ZonedBackendKernel", "ZonedBackendNVMe", "ZonedMonitor", "ZonedFS", "ZonedEngine", "ZonedFUSE",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // tools/demo: files written, read back and listed through the file system library.
        .executableTarget(name: "zbdfs-demo-files", dependencies: ["ZonedCore", "ZonedBackendFile", "ZonedFS", "ZonedEngine"]),
        // The file system's write-and-verify workload and a `zbdfs zones --json` check, on a kernel
        // zoned device in the QEMU guest (Emulation/run-suite) or an emulated image.
        .executableTarget(name: "zbdfs-fs-check", dependencies: [
            "ZonedCore", "ZonedBackendFile", "ZonedBackendKernel", "ZonedBackendNVMe", "ZonedEngine", "ZonedFS", "ZonedMonitor",
        ]),
        // tools/bench: the engine next to fio on the same kind of backing file.
        .executableTarget(name: "zbdfs-bench", dependencies: ["ZonedCore", "ZonedBackendFile", "ZonedAllocator", "ZonedEngine", "ZonedFS"]),
        // Runs the conformance suite against a device outside `swift test` (the QEMU guest).
        .executableTarget(name: "zbdfs-conformance", dependencies: [
            "ZonedCore", "ZonedBackendFile", "ZonedBackendKernel", "ZonedBackendNVMe", "ZonedConformance",
        ]),
        // Checks KernelZonedDevice against a real kernel zoned device and records the kernel's
        // own errno per zone rule (run in the QEMU guest by Emulation/run-guest).
        .executableTarget(name: "zbdfs-kernel-smoke", dependencies: ["ZonedCore", "ZonedBackendKernel"]),

        .testTarget(name: "ZonedCoreTests", dependencies: ["ZonedCore", "ZonedTestSupport"]),
        .testTarget(name: "ZonedBackendFileTests", dependencies: ["ZonedCore", "ZonedBackendFile"]),
        .testTarget(name: "ConformanceTests", dependencies: [
            "ZonedCore", "ZonedBackendFile", "ZonedBackendKernel", "ZonedConformance",
        ]),
        .testTarget(name: "ZonedBackendNVMeTests", dependencies: ["ZonedCore", "ZonedBackendNVMe", "ZonedConformance", "ZonedAllocator", "ZonedEngine"]),
        .testTarget(name: "ZonedAllocatorTests", dependencies: ["ZonedCore", "ZonedAllocator", "ZonedBackendFile", "ZonedTestSupport"]),
        .testTarget(name: "ZonedIndexTests", dependencies: ["ZonedCore", "ZonedIndex"]),
        .testTarget(name: "ZonedEngineTests", dependencies: ["ZonedCore", "ZonedAllocator", "ZonedEngine", "ZonedBackendFile", "ZonedTestSupport"]),
        .testTarget(name: "ZonedFSTests", dependencies: ["ZonedCore", "ZonedAllocator", "ZonedEngine", "ZonedFS", "ZonedIndex", "ZonedBackendFile", "ZonedTestSupport"]),
        .testTarget(name: "ZonedMonitorTests", dependencies: ["ZonedCore", "ZonedMonitor", "ZonedFS", "ZonedEngine", "ZonedBackendFile"]),
        .testTarget(name: "CLITests", dependencies: ["ZonedCore", "ZonedTestSupport"]),
        // Real mounts of the built `zbdfs` binary, driven by standard tools.
        // Finding and running the built programs, for the test targets that run them.
        .target(name: "ZonedTestSupport", path: "Tests/Support"),
        .testTarget(name: "FUSETests", dependencies: ["ZonedCore", "ZonedBackendFile", "ZonedFS", "ZonedFUSE", "ZonedMonitor", "ZonedTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

// Warnings are errors in every target of ours (Swift and the C shim); tools version 6.2 for
// `treatAllWarnings`. Our dependencies are untouched (SwiftPM builds them with -suppress-warnings),
// and SwiftPM drops warning-control settings of a package it builds as a dependency, so a program
// that depends on our libraries does not inherit them either.
for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + [.treatAllWarnings(as: .error)]
    target.cSettings = (target.cSettings ?? []) + [.treatAllWarnings(as: .error)]
}
