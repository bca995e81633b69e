/* A native backtrace on SIGSEGV/SIGABRT for crashes inside C++ libraries (faulthandler prints
 * only Python's frames). Used by scripts/aoti_loader_check.py where gdb is missing:
 *   gcc -shared -fPIC -o /tmp/segv_backtrace.so scripts/segv_backtrace.c
 *   LD_PRELOAD=/tmp/segv_backtrace.so python ...                                           */
#define _GNU_SOURCE
#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void on_fatal(int sig) {
    void *frames[64];
    int n = backtrace(frames, 64);
    const char *head = "\n--- native backtrace (segv_backtrace.so) ---\n";
    write(STDERR_FILENO, head, strlen(head));
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    signal(sig, SIG_DFL);
    raise(sig);
}

__attribute__((constructor)) static void install(void) {
    void *warm[1];
    backtrace(warm, 1); /* loads libgcc now, not inside the handler */
    signal(SIGSEGV, on_fatal);
    signal(SIGABRT, on_fatal);
    signal(SIGBUS, on_fatal);
}
