// Umbrella header for libzbd. Order matters for liburing (notes/emulation.md: fd_set conflict).
#include <libzbd/zbd.h>
