// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_guard_probe: what an attacker next to a workload tries (to read its memory or take
 * its sockets), and a workload that holds a connection for it to try on. The tests run
 * copies of it: one the policy attests (the workload), one it does not (the attacker),
 * one it lists in allow_debuggers.
 *
 *   kw_guard_probe attach PID        PTRACE_ATTACH, wait for the stop, read one word
 *                                    (PTRACE_PEEKDATA), PTRACE_DETACH
 *   kw_guard_probe seize PID         the same with PTRACE_SEIZE + PTRACE_INTERRUPT
 *   kw_guard_probe mem PID           open /proc/PID/mem, read 16 bytes of the first
 *                                    readable mapping of /proc/PID/maps
 *   kw_guard_probe vmread PID        process_vm_readv of the same 16 bytes
 *   kw_guard_probe getfd PID FD [TEXT]  pidfd_getfd of PID's descriptor FD; prints what
 *                                    it is (socket type, peer); with TEXT, writes TEXT
 *                                    through it
 *   kw_guard_probe hold HOST PORT CTL   the workload: connect to HOST PORT, print
 *                                    "connected fd N local ADDR:PORT", then run the
 *                                    commands read from the FIFO CTL, one a line:
 *       send TEXT    write "TEXT\n", read one line back, print "received: LINE"
 *       pass PATH    send the connection's descriptor (SCM_RIGHTS, with one byte) to the
 *                    unix stream socket PATH; print "passed fd N to PATH"
 *       fork TEXT    a forked child does "send TEXT" on the inherited connection;
 *                    prints "child received: LINE", then "child exited N"
 *                    Exits at the end of CTL (its last writer closed it).
 *   kw_guard_probe recv PATH [TEXT]  listen on the unix stream socket PATH (mode 0666),
 *                                    accept one peer, recvmsg one byte with room for one
 *                                    descriptor; prints "recvmsg: N byte(s), K fd(s),
 *                                    flags FLAGS; open fds before B, after A"; with a
 *                                    descriptor and TEXT: "send TEXT" through it
 *
 * Prints one line per outcome; exits 0 on success, else the errno of the failed call
 * ("ptrace(PTRACE_ATTACH): EPERM (1) ..."), like the other e2e tools.
 */
#include "kw_common.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static void usage(void)
{
	kw_usage("usage: kw_guard_probe attach|seize|mem|vmread PID | getfd PID FD [TEXT]\n"
		 "       kw_guard_probe hold HOST PORT CTL_FIFO | recv SOCKPATH [TEXT]\n"
		 "  ptrace and descriptor attacks on PID, and a workload holding a connection.\n");
}

static pid_t parse_pid(const char *s)
{
	char *end = NULL;
	long v = strtol(s, &end, 10);
	if (!*s || *end || v <= 0 || v > 0x3fffffff)
		usage();
	return (pid_t)v;
}

/* Start of the first readable mapping of PID: what mem, vmread and attach read. */
static uint64_t first_readable(pid_t pid)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		kw_die_errno("open /proc/PID/maps", errno);
	while (fgets(line, sizeof(line), f)) {
		uint64_t start, end;
		char perms[8];
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s", &start, &end, perms) == 3 && perms[0] == 'r') {
			fclose(f);
			return start;
		}
	}
	fclose(f);
	printf("/proc/%d/maps: no readable mapping\n", pid);
	exit(KW_EXIT_USAGE);
}

static void print_bytes(const char *what, uint64_t addr, const unsigned char *buf, size_t n)
{
	printf("%s: read %zu bytes at 0x%" PRIx64 ":", what, n, addr);
	for (size_t i = 0; i < n; i++)
		printf(" %02x", buf[i]);
	printf("\n");
}

/* Waits for the tracee's stop, reads a word, detaches. */
static void stop_peek_detach(const char *how, pid_t pid)
{
	int status;
	if (waitpid(pid, &status, __WALL) < 0)
		kw_die_errno("waitpid", errno);
	if (!WIFSTOPPED(status)) {
		printf("%s: %d did not stop (status 0x%x)\n", how, pid, status);
		exit(KW_EXIT_USAGE);
	}
	uint64_t addr = first_readable(pid);
	errno = 0;
	long word = ptrace(PTRACE_PEEKDATA, pid, (void *)addr, NULL);
	if (errno)
		kw_die_errno("ptrace(PTRACE_PEEKDATA)", errno);
	if (ptrace(PTRACE_DETACH, pid, NULL, NULL) < 0)
		kw_die_errno("ptrace(PTRACE_DETACH)", errno);
	printf("%s: stopped %d, peeked 0x%lx at 0x%" PRIx64 ", detached\n", how, pid, (unsigned long)word, addr);
}

static int do_attach(pid_t pid)
{
	if (ptrace(PTRACE_ATTACH, pid, NULL, NULL) < 0)
		kw_die_errno("ptrace(PTRACE_ATTACH)", errno);
	stop_peek_detach("attach", pid);
	return 0;
}

static int do_seize(pid_t pid)
{
	if (ptrace(PTRACE_SEIZE, pid, NULL, NULL) < 0)
		kw_die_errno("ptrace(PTRACE_SEIZE)", errno);
	if (ptrace(PTRACE_INTERRUPT, pid, NULL, NULL) < 0)
		kw_die_errno("ptrace(PTRACE_INTERRUPT)", errno);
	stop_peek_detach("seize", pid);
	return 0;
}

static int do_mem(pid_t pid)
{
	char path[64];
	unsigned char buf[16];
	uint64_t addr = first_readable(pid);
	snprintf(path, sizeof(path), "/proc/%d/mem", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		kw_die_errno("open /proc/PID/mem", errno);
	ssize_t n = pread(fd, buf, sizeof(buf), (off_t)addr);
	if (n < 0)
		kw_die_errno("pread /proc/PID/mem", errno);
	print_bytes("mem", addr, buf, (size_t)n);
	close(fd);
	return 0;
}

static int do_vmread(pid_t pid)
{
	unsigned char buf[16];
	uint64_t addr = first_readable(pid);
	struct iovec local = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct iovec remote = { .iov_base = (void *)addr, .iov_len = sizeof(buf) };
	ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
	if (n < 0)
		kw_die_errno("process_vm_readv", errno);
	print_bytes("vmread", addr, buf, (size_t)n);
	return 0;
}

static void describe_fd(const char *what, int fd)
{
	int type = 0;
	socklen_t len = sizeof(type);
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
		printf("%s fd %d: not a socket\n", what, fd);
		return;
	}
	if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0 && peer.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&peer;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	}
	printf("%s fd %d: socket %s peer %s:%u\n", what, fd, type == SOCK_STREAM ? "SOCK_STREAM" : "other", host,
	       port);
}

static int do_getfd(pid_t pid, const char *fdarg, const char *text)
{
	int target_fd = atoi(fdarg);
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		kw_die_errno("pidfd_open", errno);
	int fd = (int)syscall(SYS_pidfd_getfd, pidfd, target_fd, 0);
	if (fd < 0)
		kw_die_errno("pidfd_getfd", errno);
	describe_fd("getfd: got", fd);
	if (text && kw_write_all(fd, text, strlen(text)) < 0)
		kw_die_errno("write", errno);
	if (text)
		printf("getfd: wrote %zu bytes through it\n", strlen(text));
	return 0;
}

/* "send TEXT": prints "received: LINE", or the errno; returns 0 or the errno. */
static int converse(const char *who, int fd, const char *text)
{
	char line[4096];
	if (kw_write_all(fd, text, strlen(text)) < 0 || kw_write_all(fd, "\n", 1) < 0) {
		int err = errno;
		printf("%swrite: %s (%d)\n", who, strerrorname_np(err), err);
		return err;
	}
	int err = kw_read_line(fd, line, sizeof(line));
	if (err) {
		printf("%sread: %s (%d)\n", who, strerrorname_np(err), err);
		return err;
	}
	printf("%sreceived: %s\n", who, line);
	return 0;
}

static void send_text(int fd, const char *text)
{
	(void)converse("", fd, text);
}

static int unix_socket_at(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path)) {
		fprintf(stderr, "socket path too long: %s\n", path);
		exit(KW_EXIT_USAGE);
	}
	strcpy(sun->sun_path, path);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		kw_die_errno("socket(AF_UNIX)", errno);
	return s;
}

static void pass_fd(int fd, const char *path)
{
	struct sockaddr_un sun;
	int s = unix_socket_at(path, &sun);
	if (connect(s, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		printf("pass: connect %s: %s (%d)\n", path, strerrorname_np(errno), errno);
		close(s);
		return;
	}
	char byte = 'F';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(s, &msg, 0) < 0)
		printf("pass: sendmsg: %s (%d)\n", strerrorname_np(errno), errno);
	else
		printf("passed fd %d to %s\n", fd, path);
	close(s);
}

static void fork_send(int fd, const char *text)
{
	pid_t child = fork();
	if (child < 0) {
		printf("fork: %s (%d)\n", strerrorname_np(errno), errno);
		return;
	}
	if (child == 0)
		_exit(converse("child ", fd, text));
	int status = 0;
	waitpid(child, &status, 0);
	printf("child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

static int do_hold(const char *host, const char *port, const char *ctl)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char line[4096];

	if (kw_parse_addr(host, port, &ss, &len))
		exit(KW_EXIT_USAGE);
	int fd = socket(ss.ss_family, SOCK_STREAM, 0); /* no CLOEXEC: fork and exec keep it */
	if (fd < 0)
		kw_die_errno("socket", errno);
	if (connect(fd, (struct sockaddr *)&ss, len) < 0)
		kw_die_errno("connect", errno);
	struct sockaddr_in local;
	socklen_t llen = sizeof(local);
	getsockname(fd, (struct sockaddr *)&local, &llen);
	printf("connected fd %d local 127.0.0.1:%u\n", fd, ntohs(local.sin_port));
	FILE *in = fopen(ctl, "re");
	if (!in)
		kw_die_errno("open CTL", errno);
	while (fgets(line, sizeof(line), in)) {
		line[strcspn(line, "\n")] = '\0';
		if (!strncmp(line, "send ", 5))
			send_text(fd, line + 5);
		else if (!strncmp(line, "pass ", 5))
			pass_fd(fd, line + 5);
		else if (!strncmp(line, "fork ", 5))
			fork_send(fd, line + 5);
		else
			printf("unknown command '%s'\n", line);
	}
	return 0;
}

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		kw_die_errno("opendir /proc/self/fd", errno);
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

static int do_recv(const char *path, const char *text)
{
	struct sockaddr_un sun;
	int l = unix_socket_at(path, &sun);
	unlink(path);
	if (bind(l, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		kw_die_errno("bind", errno);
	chmod(path, 0666);
	if (listen(l, 1) < 0)
		kw_die_errno("listen", errno);
	printf("listening on %s\n", path);
	int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (s < 0)
		kw_die_errno("accept", errno);
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	int before = count_fds();
	ssize_t n = recvmsg(s, &msg, 0);
	if (n < 0)
		kw_die_errno("recvmsg", errno);
	int after = count_fds();
	int fds = 0, fd = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			fds += (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
		}
	}
	char flags[32];
	if (msg.msg_flags == MSG_CTRUNC)
		snprintf(flags, sizeof(flags), "MSG_CTRUNC");
	else
		snprintf(flags, sizeof(flags), "0x%x", (unsigned)msg.msg_flags);
	printf("recvmsg: %zd byte(s), %d fd(s), flags %s; open fds before %d, after %d\n", n, fds, flags, before,
	       after);
	if (fds > 0) {
		describe_fd("recv: got", fd);
		if (text)
			send_text(fd, text);
	}
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 3)
		usage();
	const char *cmd = argv[1];
	if (argc == 3 && !strcmp(cmd, "attach"))
		return do_attach(parse_pid(argv[2]));
	if (argc == 3 && !strcmp(cmd, "seize"))
		return do_seize(parse_pid(argv[2]));
	if (argc == 3 && !strcmp(cmd, "mem"))
		return do_mem(parse_pid(argv[2]));
	if (argc == 3 && !strcmp(cmd, "vmread"))
		return do_vmread(parse_pid(argv[2]));
	if ((argc == 4 || argc == 5) && !strcmp(cmd, "getfd"))
		return do_getfd(parse_pid(argv[2]), argv[3], argc == 5 ? argv[4] : NULL);
	if (argc == 5 && !strcmp(cmd, "hold"))
		return do_hold(argv[2], argv[3], argv[4]);
	if ((argc == 3 || argc == 4) && !strcmp(cmd, "recv"))
		return do_recv(argv[2], argc == 4 ? argv[3] : NULL);
	usage();
}
