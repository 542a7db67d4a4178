// Umbrella header for fuse3. Order matters for liburing (notes/emulation.md: fd_set conflict).
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
