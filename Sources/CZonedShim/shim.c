#define _GNU_SOURCE
#include "zbdfs_shim.h"
#include <errno.h>
#include <stddef.h> /* size_t, which <linux/fs.h> uses in BLKGETSIZE64 without including it */
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <linux/blkzoned.h>

int zbdfs_blk_size_bytes(int fd, uint64_t *bytes) {
    return ioctl(fd, BLKGETSIZE64, bytes) == 0 ? 0 : -errno;
}
int zbdfs_blk_logical_block_size(int fd, uint32_t *bytes) {
    int v = 0;
    if (ioctl(fd, BLKSSZGET, &v) != 0) return -errno;
    *bytes = (uint32_t)v;
    return 0;
}
int zbdfs_blk_zone_sectors(int fd, uint32_t *sectors) {
    return ioctl(fd, BLKGETZONESZ, sectors) == 0 ? 0 : -errno;
}
int zbdfs_blk_zone_count(int fd, uint32_t *count) {
    return ioctl(fd, BLKGETNRZONES, count) == 0 ? 0 : -errno;
}

// CRC-32C with the CPU instruction. The instruction computes the same reflected Castagnoli CRC as
// ZonedCore's table-driven code; ZonedCore checks both against each other in its tests.
#if defined(__x86_64__)
#include <string.h>
int zbdfs_crc32c_hw_available(void) { return __builtin_cpu_supports("sse4.2") ? 1 : 0; }

__attribute__((target("sse4.2")))
uint32_t zbdfs_crc32c_hw(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n > 0) {
        c32 = __builtin_ia32_crc32qi(c32, *p);
        p++;
        n--;
    }
    return c32;
}
#else
int zbdfs_crc32c_hw_available(void) { return 0; }
uint32_t zbdfs_crc32c_hw(uint32_t crc, const void *data, size_t n) { (void)data; (void)n; return crc; }
#endif

#include <fcntl.h>
#include <errno.h>
int zbdfs_punch_hole(int fd, uint64_t offset, uint64_t length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) == 0 ? 0 : -errno;
}
