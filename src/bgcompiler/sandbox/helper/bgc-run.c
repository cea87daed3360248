/*
 * bgc-run: measures one program inside a run's container, and reports what it measured.
 *
 *   bgc-run TIMEOUT_MS [--unpacked | --unpack-only]
 *   bgc-run --seccomp HEX -- PROGRAM [ARG...]
 *   bgc-run --hold
 *   bgc-run --adopt PID_FILE -- PROGRAM [ARG...]
 *
 * (The last three serve the OCI engine; see them at the end, before main. --adopt runs on
 * the host, the others in a container.)
 *
 * First it unpacks the run's archive (ustar, as the service writes it) from standard input
 * into the current directory, unless --unpacked says a script did it already (--unpack-only:
 * only that, for a script). Then it reads and unlinks the three files the service sent
 * along, before anything else runs: .bgc-nonce, .bgc-cmd (a shell command line) and
 * .bgc-stdin (which becomes standard input). Doing all this here rather than in a shell
 * script with tar saves processes, which are most of a run's cost under gVisor.
 *
 * An interactive run's archive has .bgc-live instead of .bgc-stdin. Then the archive is read
 * exactly to its last record (RECORD_BYTES), and what follows on standard input is a stream
 * of frames from the service. The program gets a pipe as its standard input instead; but
 * it can still write into the container's standard input (as PID 1's fd 0, the init runs
 * as its uid), so each frame carries the nonce, which the program never sees: at the first
 * frame without it, nothing more is read and the program's input ends. Whatever it wrote
 * there, the program only ever changes its own input and signals its own processes. Each
 * frame is a type byte, the nonce, a 4-byte big-endian length and that many bytes:
 *   'd' bytes for the program's standard input (kept, at most LIVE_PENDING_MAX, until the
 *       program reads them; past that no frame is read until it does),
 *   'e' end of the program's input (once what is pending was written), as is the end of
 *       this process's standard input,
 *   's' one byte, a signal number: sent at once to the program's process group, then the
 *       program (the way the time limit kills it). Any signal, SIGKILL and SIGSTOP too:
 *       this process does not receive them, so it stays to report.
 * Frames of any other type are skipped.
 *
 * Runs `/bin/sh -c COMMAND` (or COMMAND's words directly, when there is nothing in it for
 * a shell to interpret) as a child in its own process group and waits for it. Measures the child's
 * wall time (CLOCK_MONOTONIC, from just before fork to its reaping), its CPU time and peak
 * resident memory (wait4 rusage: the child and the descendants it waited for). At
 * TIMEOUT_MS (0: none) it kills the child's process group. Then it appends one record to
 * stderr:
 *
 *   \x1e<nonce> <wall_ns> <user_us> <sys_us> <maxrss_kb> <wait_status> <timed_out>\n
 *
 * after writing "\x1e<nonce>\n" to stdout, and exits with the child's exit status (128 +
 * signal when killed). Seeing both, the service knows that all the program's output has
 * arrived (each stream is one pipe, in order) without waiting for the container to end.
 *
 * The record cannot be forged by the program: the nonce arrives in a file that is read and
 * unlinked before the program exists, it is never on a command line, and this process makes
 * itself non-dumpable so that a process of the same uid cannot read its memory.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LIVE_NAME ".bgc-live"
/* The service's archives are padded to whole records of this size (Python's tarfile). */
#define RECORD_BYTES 10240
#define LIVE_PENDING_MAX (1024 * 1024)

/* Bytes of the archive read from fd 0 so far. */
static long long consumed = 0;

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

static int read_exactly(int fd, char *buffer, size_t size) {
    size_t used = 0;
    while (used < size) {
        ssize_t n = read(fd, buffer + used, size - used);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        used += (size_t)n;
        consumed += n;
    }
    return 0;
}

static long long octal(const char *field, size_t width) {
    long long value = 0;
    for (size_t i = 0; i < width && field[i] >= '0' && field[i] <= '7'; i++)
        value = value * 8 + (field[i] - '0');
    return value;
}

/* A name from the archive is used only if it stays below the current directory. */
static int safe_name(const char *name) {
    if (name[0] == 0 || name[0] == '/') return 0;
    const char *part = name;
    while (*part) {
        const char *end = strchr(part, '/');
        size_t length = end ? (size_t)(end - part) : strlen(part);
        if ((length == 1 && part[0] == '.') || (length == 2 && part[0] == '.' && part[1] == '.'))
            return 0;
        if (!end) break;
        part = end + 1;
    }
    return 1;
}

/* Unpacks a ustar stream from fd 0 into the current directory: files and directories. */
static void unpack(void) {
    char header[512], data[65536];
    for (;;) {
        if (read_exactly(0, header, sizeof(header)) != 0) fail("the archive ended early");
        int empty = 1;
        for (size_t i = 0; i < sizeof(header); i++) empty &= header[i] == 0;
        if (empty) break;
        char name[257] = {0};
        if (header[345]) {
            snprintf(name, sizeof(name), "%.155s/%.100s", header + 345, header);
        } else {
            snprintf(name, sizeof(name), "%.100s", header);
        }
        long long size = octal(header + 124, 12);
        int mode = (int)octal(header + 100, 8) & 0777;
        char type = header[156];
        int fd = -1;
        if (!safe_name(name)) {
            errno = EINVAL;
            fail("an unsafe name in the archive");
        }
        if (type == '5') {
            if (mkdir(name, 0755) != 0 && errno != EEXIST) fail(name);
        } else if (type == '0' || type == 0) {
            fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
            if (fd < 0) fail(name);
        }
        long long left = size + (512 - size % 512) % 512;
        long long payload = size;
        while (left > 0) {
            size_t chunk = left < (long long)sizeof(data) ? (size_t)left : sizeof(data);
            if (read_exactly(0, data, chunk) != 0) fail("the archive ended early");
            if (fd >= 0 && payload > 0) {
                size_t keep = payload < (long long)chunk ? (size_t)payload : chunk;
                for (size_t done = 0; done < keep;) {
                    ssize_t n = write(fd, data + done, keep - done);
                    if (n < 0 && errno == EINTR) continue;
                    if (n < 0) fail(name);
                    done += (size_t)n;
                }
                payload -= (long long)keep;
            }
            left -= (long long)chunk;
        }
        if (fd >= 0) close(fd);
    }
    if (access(LIVE_NAME, F_OK) == 0) {
        /* Interactive: the frames that follow are not ours to read here. */
        while (consumed % RECORD_BYTES) {
            size_t left = (size_t)(RECORD_BYTES - consumed % RECORD_BYTES);
            if (read_exactly(0, data, left < sizeof(data) ? left : sizeof(data)) != 0)
                fail("the archive ended early");
        }
        return;
    }
    while (read(0, data, sizeof(data)) > 0) {
        /* the record padding after the end mark */
    }
}

static void on_child(int signal_number) { (void)signal_number; }

/*
 * The time left (ns) before the limit of TIMEOUT_MS from STARTED; -1 when there is none
 * (no limit, or the child was killed for it already). At the limit: kills the child's
 * process group and the child, sets *timed_out and returns 0 (then reap the child).
 */
static long long time_left(pid_t child, long long started, long long timeout_ms, int *timed_out) {
    if (timeout_ms <= 0 || *timed_out) return -1;
    long long left_ns = started + timeout_ms * 1000000LL - now_ns();
    if (left_ns > 0) return left_ns;
    *timed_out = 1;
    kill(-child, SIGKILL);
    kill(child, SIGKILL);
    return 0;
}

/*
 * An interactive run's wait: reaps the child like the plain wait below, while passing the
 * service's frames on (see the top of this file). `input` is the write end of the
 * program's standard input. Returns whether the time limit killed it.
 */
static int live_wait(pid_t child, int input, const char *nonce, long long started,
                     long long timeout_ms, int *status, struct rusage *usage) {
    static char pending[LIVE_PENDING_MAX];
    size_t pending_length = 0;
    size_t nonce_length = strlen(nonce);
    unsigned char head[1 + 64 + 4];
    size_t head_size = 1 + nonce_length + 4, head_length = 0;
    unsigned long body_left = 0;
    char type = 0;
    int reading = 1, ending = 0, timed_out = 0;
    sigset_t during;
    sigprocmask(SIG_SETMASK, NULL, &during);
    sigdelset(&during, SIGCHLD);
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = on_child;
    sigaction(SIGCHLD, &action, NULL);
    fcntl(input, F_SETFL, fcntl(input, F_GETFL) | O_NONBLOCK);
    for (;;) {
        pid_t done = wait4(child, status, WNOHANG, usage);
        if (done == child) break;
        if (done < 0 && errno != EINTR) fail("cannot wait");
        struct timespec wait_for, *deadline = NULL;
        long long left_ns = time_left(child, started, timeout_ms, &timed_out);
        if (left_ns == 0) continue;
        if (left_ns > 0) {
            wait_for.tv_sec = left_ns / 1000000000LL;
            wait_for.tv_nsec = left_ns % 1000000000LL;
            deadline = &wait_for;
        }
        if (ending && pending_length == 0 && input >= 0) {
            close(input);
            input = -1;
        }
        struct pollfd fds[2] = {
            {reading && pending_length < sizeof(pending) ? 0 : -1, POLLIN, 0},
            {input >= 0 && pending_length > 0 ? input : -1, POLLOUT, 0},
        };
        if (ppoll(fds, 2, deadline, &during) < 0) continue; /* EINTR: a child changed */
        if (fds[1].revents) {
            ssize_t n = write(input, pending, pending_length);
            if (n > 0) {
                memmove(pending, pending + n, pending_length - (size_t)n);
                pending_length -= (size_t)n;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                close(input); /* the program closed its input: the rest is not wanted */
                input = -1;
                pending_length = 0;
            }
        }
        if (!fds[0].revents) continue;
        unsigned char chunk[65536];
        size_t room = sizeof(pending) - pending_length;
        ssize_t n = read(0, chunk, room < sizeof(chunk) ? room : sizeof(chunk));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            reading = 0;
            ending = 1;
            continue;
        }
        for (ssize_t at = 0; at < n;) {
            if (body_left == 0 && head_length < head_size) {
                head[head_length++] = chunk[at++];
                if (head_length < head_size) continue;
                if (memcmp(head + 1, nonce, nonce_length) != 0) {
                    reading = 0; /* not the service's: trust nothing more on this stream */
                    ending = 1;
                    break;
                }
                type = (char)head[0];
                unsigned char *length = head + 1 + nonce_length;
                body_left = ((unsigned long)length[0] << 24) | ((unsigned long)length[1] << 16) |
                            ((unsigned long)length[2] << 8) | length[3];
                if (type == 'e') ending = 1;
                if (body_left == 0) head_length = 0;
                continue;
            }
            size_t take = (size_t)(n - at) < body_left ? (size_t)(n - at) : body_left;
            if (type == 'd' && input >= 0 && !ending) {
                memcpy(pending + pending_length, chunk + at, take);
                pending_length += take;
            } else if (type == 's') {
                kill(-child, chunk[at]);
                kill(child, chunk[at]);
            }
            at += (ssize_t)take;
            body_left -= take;
            if (body_left == 0) head_length = 0;
        }
    }
    if (input >= 0) close(input);
    return timed_out;
}

/*
 * A command line with nothing for a shell to interpret (only words of letters, digits and
 * `_-./,:+@%^`, separated by spaces) whose first word is not a shell builtin means the same
 * exec'd directly as under `/bin/sh -c`; skipping the shell saves a process image, which
 * costs ~10 ms under gVisor. If the program is not found, the shell is asked after all, so
 * that its answer (127 and its message) is the one given.
 */
static const char *const builtins[] = {
    ".", ":", "[", "alias", "bg", "break", "cd", "command", "continue", "echo", "eval", "exec",
    "exit", "export", "false", "fc", "fg", "getopts", "hash", "jobs", "kill", "let", "local",
    "printf", "pwd", "read", "readonly", "return", "set", "shift", "source", "test", "times",
    "trap", "true", "type", "ulimit", "umask", "unalias", "unset", "wait", NULL,
};

static int is_builtin(const char *word) {
    for (int i = 0; builtins[i]; i++)
        if (strcmp(word, builtins[i]) == 0) return 1;
    return 0;
}

static int simple_words(const char *command, char **words, int most) {
    static char copy[4096];
    if (strlen(command) >= sizeof(copy)) return 0;
    for (const char *c = command; *c; c++) {
        if (!(isalnum((unsigned char)*c) || strchr("_-./,:+@%^ ", *c))) return 0;
    }
    strcpy(copy, command);
    int count = 0;
    for (char *word = strtok(copy, " "); word; word = strtok(NULL, " ")) {
        if (count == most - 1) return 0;
        words[count++] = word;
    }
    words[count] = NULL;
    return count > 0 && !is_builtin(words[0]) ? count : 0;
}

/*
 * --seccomp HEX -- PROGRAM [ARG...]: installs the seccomp filter HEX (a BPF program in hex,
 * 8 bytes per instruction, as the kernel holds it) on this process, then becomes PROGRAM.
 * The OCI engine starts each runc container with it before the init: it is the very
 * filter runc makes of Docker's profile, which runc would otherwise compile again at every
 * start (about 12 ms of CPU); the engine takes it once from a container of runc's own
 * (--hold). The runtime has set no_new_privs by now, so installing it needs no privilege,
 * and nothing else runs in the container before it is in place.
 */
static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int filter_and_exec(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        dprintf(2, "usage: bgc-run --seccomp HEX -- PROGRAM [ARG...]\n");
        return 125;
    }
    const char *hex = argv[2];
    size_t length = strlen(hex);
    size_t instruction = 2 * sizeof(struct sock_filter);
    if (length == 0 || length % instruction != 0 || length / instruction > BPF_MAXINSNS) {
        dprintf(2, "bgc-run: not a seccomp program\n");
        return 125;
    }
    unsigned char *program = malloc(length / 2);
    if (program == NULL) fail("out of memory");
    for (size_t i = 0; i < length / 2; i++) {
        int high = hex_digit(hex[2 * i]), low = hex_digit(hex[2 * i + 1]);
        if (high < 0 || low < 0) {
            dprintf(2, "bgc-run: not a seccomp program\n");
            return 125;
        }
        program[i] = (unsigned char)(high << 4 | low);
    }
    struct sock_fprog filter = {
        .len = (unsigned short)(length / instruction),
        .filter = (struct sock_filter *)program,
    };
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter) != 0) fail("cannot install the seccomp filter");
    free(program);
    execv(argv[4], argv + 4);
    fail(argv[4]);
    return 127;
}

/* --hold: waits for the end of standard input; a process whose filter can be read. */
static int hold(void) {
    char buffer[64];
    while (read(0, buffer, sizeof buffer) > 0) {
    }
    return 0;
}

/*
 * --adopt PID_FILE -- PROGRAM [ARG...]: runs PROGRAM (`runsc run --detach --pid-file
 * PID_FILE ...`) as a child, and adopts what it leaves running: as a child subreaper, this
 * process becomes the parent of the gVisor sandbox, its gofer and their helper processes
 * once PROGRAM has exited. It reaps every one of them, and exits once none is left, with
 * the sandbox's status (the container's: its init's exit code, 128 + signal when killed,
 * 137 when the kernel killed the sandbox), as `runc run` exits with its container's. If
 * PROGRAM fails, with PROGRAM's status (the runtime logged why). So the OCI engine learns
 * the end and the exit code of a runsc container from a process of its own, at once,
 * instead of from `runsc wait` (a Go process per run, which answers only once the sandbox,
 * nobody's child any more, has been reaped by the host's init). It writes nothing: its
 * standard streams are the container's, and it closes them once PROGRAM has them.
 */
static int exit_code_of(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 255;
}

static int adopt(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        dprintf(2, "usage: bgc-run --adopt PID_FILE -- PROGRAM [ARG...]\n");
        return 125;
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) fail("cannot become a subreaper");
    pid_t program = fork();
    if (program < 0) fail("fork");
    if (program == 0) {
        execv(argv[4], argv + 4);
        _exit(127);
    }
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd <= 2 && null >= 0; fd++) dup2(null, fd);
    if (null > 2) close(null);
    /* Orphans may be reaped before PROGRAM (a sandbox that ended at once is reparented to
     * us together with PROGRAM's own end): their statuses are kept until the pid is known. */
    enum { EARLY_MAX = 64 };
    pid_t early_pid[EARLY_MAX];
    int early_status[EARLY_MAX], early = 0;
    int status = 0, code = 255, program_code = -1;
    pid_t sandbox = -1;
    pid_t reaped;
    while ((reaped = waitpid(-1, &status, 0)) != -1 || errno == EINTR) {
        if (reaped == -1) continue;
        if (reaped == program) {
            program_code = exit_code_of(status);
            FILE *file = fopen(argv[2], "r");
            if (file != NULL) {
                long pid = -1;
                if (fscanf(file, "%ld", &pid) == 1) sandbox = (pid_t)pid;
                fclose(file);
            }
            for (int i = 0; i < early; i++) {
                if (early_pid[i] == sandbox) code = exit_code_of(early_status[i]);
            }
        } else if (program_code < 0 && early < EARLY_MAX) {
            early_pid[early] = reaped;
            early_status[early++] = status;
        } else if (reaped == sandbox) {
            code = exit_code_of(status);
        }
    }
    return program_code > 0 ? program_code : code;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "--seccomp") == 0) return filter_and_exec(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "--adopt") == 0) return adopt(argc, argv);
    if (argc == 2 && strcmp(argv[1], "--hold") == 0) return hold();
    int unpacked = argc == 3 && strcmp(argv[2], "--unpacked") == 0;
    int unpack_only = argc == 3 && strcmp(argv[2], "--unpack-only") == 0;
    if (argc < 2 || argc > 3 || (argc == 3 && !unpacked && !unpack_only)) {
        dprintf(2, "usage: bgc-run TIMEOUT_MS [--unpacked | --unpack-only]\n");
        return 125;
    }
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (!unpacked) unpack();
    if (unpack_only) return 0;

    char *nonce = take_file(".bgc-nonce", 64);
    char *command = take_file(".bgc-cmd", 128 * 1024);
    int live = access(LIVE_NAME, F_OK) == 0;
    int live_input[2] = {-1, -1};
    if (live) {
        if (unlink(LIVE_NAME) != 0) fail(LIVE_NAME);
        if (pipe2(live_input, O_CLOEXEC) != 0) fail("cannot make a pipe");
        signal(SIGPIPE, SIG_IGN); /* a program that closed its input must not end us */
    } else {
        int input = open(".bgc-stdin", O_RDONLY);
        if (input < 0 || dup2(input, 0) < 0) fail(".bgc-stdin");
        if (input != 0) close(input);
        if (unlink(".bgc-stdin") != 0) fail(".bgc-stdin");
    }
    long long timeout_ms = atoll(argv[1]);

    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);

    long long started = now_ns();
    pid_t child = fork();
    if (child < 0) fail("cannot fork");
    if (child == 0) {
        if (live) {
            if (dup2(live_input[0], 0) < 0) fail("cannot set up standard input");
            signal(SIGPIPE, SIG_DFL);
        }
        sigprocmask(SIG_UNBLOCK, &chld, NULL);
        setpgid(0, 0);
        char *words[64];
        if (simple_words(command, words, 64) > 0) {
            execvp(words[0], words);
            /* not found, not executable, ...: the shell says it as it would */
        }
        execl("/bin/sh", "sh", "-c", command, (char *)NULL);
        fail("cannot run /bin/sh");
    }
    setpgid(child, child);

    int timed_out = 0;
    int status = 0;
    struct rusage usage;
    memset(&usage, 0, sizeof(usage));
    if (live) {
        close(live_input[0]);
        timed_out = live_wait(child, live_input[1], nonce, started, timeout_ms, &status, &usage);
    }
    while (!live) {
        pid_t done = wait4(child, &status, WNOHANG, &usage);
        if (done == child) break;
        if (done < 0 && errno != EINTR) fail("cannot wait");
        long long left_ns = time_left(child, started, timeout_ms, &timed_out);
        if (left_ns == 0) continue;
        if (left_ns > 0) {
            struct timespec wait_for = {left_ns / 1000000000LL, left_ns % 1000000000LL};
            sigtimedwait(&chld, NULL, &wait_for);
        } else {
            sigwaitinfo(&chld, NULL);
        }
    }
    long long finished = now_ns();

    long long user_us = (long long)usage.ru_utime.tv_sec * 1000000LL + usage.ru_utime.tv_usec;
    long long sys_us = (long long)usage.ru_stime.tv_sec * 1000000LL + usage.ru_stime.tv_usec;
    dprintf(1, "\x1e%s\n", nonce);
    dprintf(2, "\x1e%s %lld %lld %lld %ld %d %d\n", nonce, finished - started, user_us, sys_us,
            usage.ru_maxrss, status, timed_out);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
