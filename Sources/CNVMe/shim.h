// Umbrella header for libnvme. Order matters for liburing (notes/emulation.md: fd_set conflict).
#include <libnvme.h>
