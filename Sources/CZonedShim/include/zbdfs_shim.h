// The one C shim: what Swift cannot call directly (function-like macros: ioctl request codes;
// the CPU's CRC-32C instruction, a compiler intrinsic).
#ifndef ZBDFS_SHIM_H
#define ZBDFS_SHIM_H
#include <stddef.h>
#include <stdint.h>

/// BLKGETSIZE64: device size in bytes. Returns 0 or -errno.
int zbdfs_blk_size_bytes(int fd, uint64_t *bytes);
/// BLKSSZGET: logical block size. Returns 0 or -errno.
int zbdfs_blk_logical_block_size(int fd, uint32_t *bytes);
/// BLKGETZONESZ: zone size in 512-byte sectors (0 on a non-zoned device). Returns 0 or -errno.
int zbdfs_blk_zone_sectors(int fd, uint32_t *sectors);
/// BLKGETNRZONES. Returns 0 or -errno.
int zbdfs_blk_zone_count(int fd, uint32_t *count);
/// fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) (GNU-only, hidden from Swift's Glibc
/// module). Returns 0 or -errno.
int zbdfs_punch_hole(int fd, uint64_t offset, uint64_t length);
/// 1 when the CPU has a CRC-32C instruction (x86-64 SSE4.2, arm64 CRC), else 0.
int zbdfs_crc32c_hw_available(void);
/// Raw CRC-32C update (no pre/post inversion) over n bytes with the CPU instruction. Only call when
/// zbdfs_crc32c_hw_available() returned 1.
uint32_t zbdfs_crc32c_hw(uint32_t crc, const void *data, size_t n);
#endif
