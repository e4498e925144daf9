// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_seccomp_inject: the attacker who steers another program's syscalls through a
 * seccomp user-notification listener.
 *
 *   kw_seccomp_inject [--write TEXT] -- CMD [ARGS...]
 *   kw_seccomp_inject --enroll-keeping SOCKET
 *
 * Makes a TCP socket of its own, installs a seccomp filter that traps socket(2) with a
 * listener (SECCOMP_FILTER_FLAG_NEW_LISTENER, WAIT_KILLABLE_RECV), keeps the listener and forks; the child
 * execs CMD, which inherits the filter. Every socket() of CMD is
 * answered with the attacker's socket (SECCOMP_IOCTL_NOTIF_ADDFD, SECCOMP_ADDFD_FLAG_SEND),
 * reported on stderr as "injected the attacker's socket into pid N as fd M": whatever
 * CMD then connects, it connects for the attacker. As soon as its own socket is
 * connected, the tool prints "attacker socket connected to ADDR:PORT", writes TEXT
 * (--write) through it and shuts it down (CMD sees the end of its stream); if it never
 * was, it prints "attacker socket not connected". Exits with CMD's status.
 *
 * --enroll-keeping: enrols itself with the agent at SOCKET as `kwarden exec` does, but
 * keeps its own copy of the listener; prints the agent's answer line and exits 0.
 */
#include "kw_common.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>

static int install_listener(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		kw_die_errno("prctl(PR_SET_NO_NEW_PRIVS)", errno);
	/* Killable, as the agent requires of a listener it serves: what refuses the
	 * enrolment that keeps a copy must be the copy. */
	long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
			  SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, &prog);
	if (fd < 0)
		kw_die_errno("seccomp(NEW_LISTENER | WAIT_KILLABLE_RECV)", errno);
	return (int)fd;
}

/* Answers one trapped call: socket() gets the attacker's socket. */
static void answer(int listener, int mine)
{
	struct seccomp_notif req;
	struct seccomp_notif_resp resp;

	memset(&req, 0, sizeof(req));
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req))
		return; /* the caller died, or nothing was pending */
	if (req.data.nr == __NR_socket) {
		struct seccomp_notif_addfd add = {
			.id = req.id,
			.flags = SECCOMP_ADDFD_FLAG_SEND,
			.srcfd = (__u32)mine,
			.newfd_flags = O_CLOEXEC,
		};
		int got = ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
		if (got >= 0) {
			fprintf(stderr, "kw_seccomp_inject: injected the attacker's socket into pid %u as fd %d\n", req.pid,
				got);
			return;
		}
		fprintf(stderr, "kw_seccomp_inject: ADDFD: %s\n", strerror(errno));
	}
	memset(&resp, 0, sizeof(resp));
	resp.id = req.id;
	resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
	ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
}

/* Sends the enrolment request with LISTENER attached, keeping our copy. */
static int enroll_keeping(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	/* Connected before the filter exists: socket() is what it traps. */
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		kw_die_errno("socket", errno);
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	if (connect(sock, (struct sockaddr *)&addr, sizeof(addr)))
		kw_die_errno("connect", errno);
	int listener = install_listener();
	char text[128];
	int n = snprintf(text, sizeof(text), "{\"op\":\"enroll\",\"pid\":%d,\"command\":\"kw_seccomp_inject\"}\n",
			 (int)getpid());
	struct iovec iov = { .iov_base = text, .iov_len = (size_t)n };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	memset(&control, 0, sizeof(control));
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			      .msg_controllen = sizeof(control.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &listener, sizeof(int));
	if (sendmsg(sock, &msg, 0) < 0)
		kw_die_errno("sendmsg", errno);
	char reply[1024];
	size_t got = 0;
	while (got < sizeof(reply) - 1) {
		ssize_t r = read(sock, reply + got, 1);
		if (r <= 0 || reply[got] == '\n')
			break;
		got++;
	}
	reply[got] = '\0';
	printf("agent: %s\n", reply);
	fflush(stdout);
	close(listener);
	return 0;
}

int main(int argc, char **argv)
{
	int i = 1;

	if (argc == 3 && !strcmp(argv[1], "--enroll-keeping"))
		return enroll_keeping(argv[2]);

	const char *text = NULL;
	while (i + 1 < argc && argv[i][0] == '-' && strcmp(argv[i], "--")) {
		if (!strcmp(argv[i], "--write"))
			text = argv[i + 1];
		else
			break;
		i += 2;
	}
	if (i < argc && !strcmp(argv[i], "--"))
		i++;
	if (i >= argc)
		kw_usage("usage: kw_seccomp_inject [--write TEXT] -- CMD [ARGS...]\n"
			 "       kw_seccomp_inject --enroll-keeping SOCKET\n");

	/* Made before the filter: the attacker's own socket() is not trapped. */
	int mine = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (mine < 0)
		kw_die_errno("socket", errno);
	int listener = install_listener();
	pid_t child = fork();
	if (child < 0)
		kw_die_errno("fork", errno);
	if (child == 0) {
		execvp(argv[i], &argv[i]);
		kw_die_errno("execvp", errno);
	}

	int status = 0, used = 0;
	for (;;) {
		struct pollfd p = { .fd = listener, .events = POLLIN };
		if (poll(&p, 1, 10) > 0 && (p.revents & POLLIN))
			answer(listener, mine);
		struct sockaddr_in peer;
		socklen_t len = sizeof(peer);
		if (!used && getpeername(mine, (struct sockaddr *)&peer, &len) == 0) {
			char addr[INET_ADDRSTRLEN] = "?";
			inet_ntop(AF_INET, &peer.sin_addr, addr, sizeof(addr));
			printf("attacker socket connected to %s:%u\n", addr, ntohs(peer.sin_port));
			fflush(stdout);
			usleep(500 * 1000); /* let CMD write what it came to write first */
			if (text && write(mine, text, strlen(text)) < 0)
				printf("attacker write: %s\n", strerror(errno));
			shutdown(mine, SHUT_RDWR);
			used = 1;
		}
		pid_t w = waitpid(child, &status, WNOHANG);
		if (w == child)
			break;
		if (w < 0 && errno != EINTR)
			kw_die_errno("waitpid", errno);
	}
	if (!used)
		printf("attacker socket not connected\n");
	fflush(stdout);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
