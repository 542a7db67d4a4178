// Umbrella header for fuse3. Order matters for liburing (notes/emulation.md: fd_set conflict).
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <sys/ioctl.h>
// The request loop (ZonedFUSE/RequestLoop.swift): not in Swift's Glibc module.
#include <sys/eventfd.h>
#include <sys/signalfd.h>

// What Swift cannot call: the ioctl request macro and variadic ioctl(2) itself.

/// The request `zbdfs umount` sends to a mount's root directory: flush everything (data and
/// metadata log) and answer with the outcome, before the unmount. No data in either direction.
static inline unsigned int zbdfs_fuse_sync_request(void) { return _IO('z', 1); }

/// ioctl(fd, request) for a request that carries no argument. Returns 0 or -1 with errno set.
static inline int zbdfs_ioctl_none(int fd, unsigned int request) { return ioctl(fd, request); }
