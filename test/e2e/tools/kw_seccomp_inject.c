// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_seccomp_inject: the attacker who steers another program's syscalls through a
 * seccomp user-notification listener.
 *
 *   kw_seccomp_inject [--write TEXT] -- CMD [ARGS...]
 *
 * Makes a TCP socket of its own, installs a seccomp filter that traps socket(2) with a
 * listener (SECCOMP_FILTER_FLAG_NEW_LISTENER), keeps the listener and forks; the child
 * execs CMD, which inherits the filter. Every socket() of CMD is
 * answered with the attacker's socket (SECCOMP_IOCTL_NOTIF_ADDFD, SECCOMP_ADDFD_FLAG_SEND),
 * reported on stderr as "injected the attacker's socket into pid N as fd M": whatever
 * CMD then connects, it connects for the attacker. As soon as its own socket is
 * connected, the tool prints "attacker socket connected to ADDR:PORT", writes TEXT
 * (--write) through it and shuts it down (CMD sees the end of its stream); if it never
 * was, it prints "attacker socket not connected". Exits with CMD's status.
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
	long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (fd < 0)
		kw_die_errno("seccomp(NEW_LISTENER)", errno);
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

int main(int argc, char **argv)
{
	int i = 1;

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
		kw_usage("usage: kw_seccomp_inject [--write TEXT] -- CMD [ARGS...]\n");

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
