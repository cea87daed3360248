/*
 * bgc-run: measures one program inside a run's container, and reports what it measured.
 *
 *   bgc-run TIMEOUT_MS
 *
 * In the current directory it finds three files the service sent, reads them and unlinks
 * them before anything else runs: .bgc-nonce, .bgc-cmd (a shell command line) and
 * .bgc-stdin (which becomes standard input). Doing this here rather than in the bootstrap
 * script saves a process per file, which is most of a run's cost under gVisor.
 *
 * Runs `/bin/sh -c COMMAND` as a child in its own process group and waits for it. Measures the child's
 * wall time (CLOCK_MONOTONIC, from just before fork to its reaping), its CPU time and peak
 * resident memory (wait4 rusage: the child and the descendants it waited for). At
 * TIMEOUT_MS (0: none) it kills the child's process group. Then it appends one record to
 * stderr:
 *
 *   \x1e<nonce> <wall_ns> <user_us> <sys_us> <maxrss_kb> <wait_status> <timed_out>\n
 *
 * and exits with the child's exit status (128 + signal when killed).
 *
 * The record cannot be forged by the program: the nonce arrives in a file that is read and
 * unlinked before the program exists, it is never on a command line, and this process makes
 * itself non-dumpable so that a process of the same uid cannot read its memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void fail(const char *what) {
    dprintf(2, "bg-compiler: %s: %s\n", what, strerror(errno));
    _exit(125);
}

/* Reads a whole small file into a new NUL-terminated buffer, then unlinks it. */
static char *take_file(const char *path, size_t limit) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(path);
    char *buffer = malloc(limit + 1);
    if (buffer == NULL) fail("out of memory");
    size_t used = 0;
    for (;;) {
        ssize_t n = read(fd, buffer + used, limit - used);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail(path);
        if (n == 0) break;
        used += (size_t)n;
        if (used == limit) break;
    }
    buffer[used] = 0;
    close(fd);
    if (unlink(path) != 0) fail(path);
    return buffer;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        dprintf(2, "usage: bgc-run TIMEOUT_MS\n");
        return 125;
    }
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

    char *nonce = take_file(".bgc-nonce", 64);
    char *command = take_file(".bgc-cmd", 128 * 1024);
    int input = open(".bgc-stdin", O_RDONLY);
    if (input < 0 || dup2(input, 0) < 0) fail(".bgc-stdin");
    if (input != 0) close(input);
    if (unlink(".bgc-stdin") != 0) fail(".bgc-stdin");
    long long timeout_ms = atoll(argv[1]);

    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);

    long long started = now_ns();
    pid_t child = fork();
    if (child < 0) fail("cannot fork");
    if (child == 0) {
        sigprocmask(SIG_UNBLOCK, &chld, NULL);
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", command, (char *)NULL);
        fail("cannot run /bin/sh");
    }
    setpgid(child, child);

    int timed_out = 0;
    int status = 0;
    struct rusage usage;
    memset(&usage, 0, sizeof(usage));
    for (;;) {
        pid_t done = wait4(child, &status, WNOHANG, &usage);
        if (done == child) break;
        if (done < 0 && errno != EINTR) fail("cannot wait");
        if (timeout_ms > 0 && !timed_out) {
            long long left_ns = started + timeout_ms * 1000000LL - now_ns();
            if (left_ns <= 0) {
                timed_out = 1;
                kill(-child, SIGKILL);
                kill(child, SIGKILL);
                continue;
            }
            struct timespec wait_for = {left_ns / 1000000000LL, left_ns % 1000000000LL};
            sigtimedwait(&chld, NULL, &wait_for);
        } else {
            sigwaitinfo(&chld, NULL);
        }
    }
    long long finished = now_ns();

    long long user_us = (long long)usage.ru_utime.tv_sec * 1000000LL + usage.ru_utime.tv_usec;
    long long sys_us = (long long)usage.ru_stime.tv_sec * 1000000LL + usage.ru_stime.tv_usec;
    dprintf(2, "\x1e%s %lld %lld %lld %ld %d %d\n", nonce, finished - started, user_us, sys_us,
            usage.ru_maxrss, status, timed_out);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
