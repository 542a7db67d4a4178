// The one C shim: what Swift cannot call directly (function-like macros: ioctl request codes;
// the 128-byte io_uring SQE of an NVMe passthrough command;
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
/// CRC-32C (finished: pre- and post-inverted) of each of `count` consecutive `block`-byte blocks
/// into out[0..<count], three blocks at a time so the instruction's latency overlaps (block must be
/// a multiple of 8). Only call when zbdfs_crc32c_hw_available() returned 1.
void zbdfs_crc32c_hw_blocks(const void *data, size_t block, size_t count, uint32_t *out);

/// One NVMe IO command for io_uring passthrough (the fields of the kernel's struct nvme_uring_cmd
/// that zbdfs uses; everything else is sent as zero).
struct zbdfs_nvme_io {
    uint8_t opcode;
    uint32_t nsid;
    uint64_t addr;
    uint32_t data_len;
    uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
/// Fills `sqe`, a 128-byte submission queue entry of a ring made with IORING_SETUP_SQE128, as
/// IORING_OP_URING_CMD / NVME_URING_CMD_IO for the NVMe generic char device `fd`. C because Swift
/// can name neither the SQE's trailing command area (a zero-length array) nor the _IOWR request code.
void zbdfs_nvme_prep_io(void *sqe, int fd, uint64_t user_data, const struct zbdfs_nvme_io *cmd);
#endif
