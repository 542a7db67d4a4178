// Umbrella header for libnvme. Order matters when a target imports this and CURing together
// (notes/emulation.md: the fd_set module conflict): the system headers liburing's shim includes
// first come first here too.
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <signal.h>
#include <fcntl.h>
#include <sched.h>
#include <time.h>
#include <libnvme.h>
