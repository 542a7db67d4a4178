// Umbrella header for liburing. Order matters for liburing (notes/emulation.md: fd_set conflict).
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <signal.h>
#include <fcntl.h>
#include <sched.h>
#include <time.h>
#include <liburing.h>
