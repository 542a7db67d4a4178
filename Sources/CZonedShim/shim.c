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
