// The one C shim: what Swift cannot call directly (function-like macros: ioctl request codes).
#ifndef ZBDFS_SHIM_H
#define ZBDFS_SHIM_H
#include <stdint.h>

/// BLKGETSIZE64: device size in bytes. Returns 0 or -errno.
int zbdfs_blk_size_bytes(int fd, uint64_t *bytes);
/// BLKSSZGET: logical block size. Returns 0 or -errno.
int zbdfs_blk_logical_block_size(int fd, uint32_t *bytes);
/// BLKGETZONESZ: zone size in 512-byte sectors (0 on a non-zoned device). Returns 0 or -errno.
int zbdfs_blk_zone_sectors(int fd, uint32_t *sectors);
/// BLKGETNRZONES. Returns 0 or -errno.
int zbdfs_blk_zone_count(int fd, uint32_t *count);
#endif
