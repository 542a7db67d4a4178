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

// Three independent blocks per loop: crc32 has a latency of about three cycles and a throughput of
// one per cycle, so one dependency chain leaves two thirds of the unit idle.
__attribute__((target("sse4.2")))
void zbdfs_crc32c_hw_blocks(const void *data, size_t block, size_t count, uint32_t *out) {
    const unsigned char *p = data;
    size_t i = 0;
    for (; i + 3 <= count; i += 3) {
        const unsigned char *a = p + i * block, *b = a + block, *c = b + block;
        uint64_t ca = 0xFFFFFFFFu, cb = 0xFFFFFFFFu, cc = 0xFFFFFFFFu;
        for (size_t o = 0; o < block; o += 8) {
            uint64_t va, vb, vc;
            memcpy(&va, a + o, 8);
            memcpy(&vb, b + o, 8);
            memcpy(&vc, c + o, 8);
            ca = __builtin_ia32_crc32di(ca, va);
            cb = __builtin_ia32_crc32di(cb, vb);
            cc = __builtin_ia32_crc32di(cc, vc);
        }
        out[i] = ~(uint32_t)ca;
        out[i + 1] = ~(uint32_t)cb;
        out[i + 2] = ~(uint32_t)cc;
    }
    for (; i < count; i++) out[i] = ~zbdfs_crc32c_hw(0xFFFFFFFFu, p + i * block, block);
}
#else
void zbdfs_crc32c_hw_blocks(const void *data, size_t block, size_t count, uint32_t *out) { (void)data; (void)block; (void)count; (void)out; }
int zbdfs_crc32c_hw_available(void) { return 0; }
uint32_t zbdfs_crc32c_hw(uint32_t crc, const void *data, size_t n) { (void)data; (void)n; return crc; }
#endif

#include <fcntl.h>
#include <errno.h>
int zbdfs_punch_hole(int fd, uint64_t offset, uint64_t length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) == 0 ? 0 : -errno;
}

#include <string.h>
#include <linux/io_uring.h>
#include <linux/nvme_ioctl.h>
void zbdfs_nvme_prep_io(void *sqe, int fd, uint64_t user_data, const struct zbdfs_nvme_io *cmd) {
    struct io_uring_sqe *s = sqe;
    memset(s, 0, 128);  /* the whole 128-byte entry: stale command bytes must not reach the device */
    s->opcode = IORING_OP_URING_CMD;
    s->fd = fd;
    s->cmd_op = NVME_URING_CMD_IO;
    s->user_data = user_data;
    struct nvme_uring_cmd c;
    memset(&c, 0, sizeof c);
    c.opcode = cmd->opcode;
    c.nsid = cmd->nsid;
    c.addr = cmd->addr;
    c.data_len = cmd->data_len;
    c.cdw10 = cmd->cdw10;
    c.cdw11 = cmd->cdw11;
    c.cdw12 = cmd->cdw12;
    c.cdw13 = cmd->cdw13;
    c.cdw14 = cmd->cdw14;
    c.cdw15 = cmd->cdw15;
    _Static_assert(sizeof(struct nvme_uring_cmd) <= 80, "nvme_uring_cmd must fit the SQE128 command area");
    memcpy(s->cmd, &c, sizeof c);
}
