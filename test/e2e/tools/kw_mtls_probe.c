// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_mtls_probe: a client as event loops and runtimes write them, for the hard cases of
 * a connect() the agent holds during the mTLS handshake (the binary the test attests).
 *
 *   kw_mtls_probe [--mode block|lt|et] [--epoll-first] [--sigurg] [--sndtimeo MS]
 *                 [--send TEXT --expect REPLY] [--write-after-fail] HOST PORT
 *
 * --mode block  blocking socket, blocking connect (the default)
 * --mode lt|et  non-blocking socket (SOCK_NONBLOCK); connect() may return 0 (the agent
 *               held it until kTLS was installed) or EINPROGRESS; then epoll, level- or
 *               edge-triggered (EPOLLET): wait EPOLLOUT (and SO_ERROR), send, wait EPOLLIN,
 *               read until the reply (edge-triggered: drain to EAGAIN at every wakeup)
 * --epoll-first register the socket with epoll before connect(), as some loops do
 * --sigurg      count SIGURG in a handler installed with SA_RESTART (Go's preemption
 *               signal); prints "sigurg: N handled, M while connect() was held"
 * --sndtimeo MS SO_SNDTIMEO on the socket before connect()
 * --send TEXT --expect REPLY  after connecting, send TEXT, read until REPLY arrives
 *               (15 s at most; else EBADMSG)
 * --write-after-fail  when connect() failed, still try to send TEXT (an app ignoring
 *               the error): prints what send() returned; the exit status stays connect's
 *
 * Prints "connect: ok after N ms", "connect: EINPROGRESS after N ms" or "connect: ENAME
 * (n) after N ms", then what was read. Exits 0 on success, else the errno of the failed
 * call (a failed connect: connect's errno).
 */
#include "kw_common.h"

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <time.h>

static volatile sig_atomic_t sigurg_count;

static void on_sigurg(int sig)
{
	(void)sig;
	sigurg_count++;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *errname(int err)
{
	const char *name = strerrorname_np(err);
	return name ? name : "E?";
}

static int mode_block, mode_et, epoll_first, count_sigurg, write_after_fail;
static int sigurg_before, sigurg_after;

static void report_sigurg(void)
{
	if (count_sigurg)
		printf("sigurg: %d handled, %d while connect() was held\n", (int)sigurg_count,
		       sigurg_after - sigurg_before);
}

static __attribute__((noreturn)) void die(const char *what, int err)
{
	report_sigurg();
	kw_die_errno(what, err);
}

/* Waits (bounded by DEADLINE) until epoll reports one of EVENTS on the one socket. */
static unsigned int wait_events(int ep, unsigned int events, long long deadline)
{
	for (;;) {
		struct epoll_event ev;
		long long left = deadline - now_ms();
		if (left <= 0)
			die("epoll_wait", ETIMEDOUT);
		int n = epoll_wait(ep, &ev, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait", errno);
		if (n == 1 && (ev.events & (events | EPOLLERR | EPOLLHUP)))
			return ev.events;
	}
}

static void set_interest(int ep, int fd, unsigned int events, int add)
{
	struct epoll_event ev = { .events = events | (mode_et ? EPOLLET : 0), .data.fd = fd };
	if (epoll_ctl(ep, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) < 0)
		die("epoll_ctl", errno);
}

/* Reads until EXPECT has arrived: 0, or EBADMSG when the peer closed or time ran out. */
static int read_reply(int fd, int ep, const char *expect)
{
	static char buf[65536];
	size_t got = 0;
	long long deadline = now_ms() + 15000;

	if (!mode_block)
		set_interest(ep, fd, EPOLLIN, 0);
	else {
		struct timeval tv = { .tv_sec = 15 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	while (got < sizeof(buf) - 1) {
		if (!mode_block)
			wait_events(ep, EPOLLIN, deadline);
		/* Edge-triggered: this wakeup will not come again, so read until EAGAIN. */
		for (;;) {
			ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN && !mode_block)
				break;
			if (n < 0)
				die("read", errno);
			if (n == 0) {
				buf[got] = '\0';
				printf("read: peer closed after %zu bytes: '%s'\n", got, buf);
				return EBADMSG;
			}
			got += (size_t)n;
			buf[got] = '\0';
			if (strstr(buf, expect)) {
				printf("received: %s\n", buf);
				return 0;
			}
			if (got == sizeof(buf) - 1 || mode_block)
				break;
		}
	}
	printf("read: expected '%s', got %zu bytes\n", expect, got);
	return EBADMSG;
}

int main(int argc, char **argv)
{
	const char *text = NULL, *expect = NULL;
	long sndtimeo_ms = 0;
	int i = 1;
	static const char usage[] =
		"usage: kw_mtls_probe [--mode block|lt|et] [--epoll-first] [--sigurg] [--sndtimeo MS]\n"
		"                     [--send TEXT --expect REPLY] [--write-after-fail] HOST PORT\n";

	mode_block = 1;
	for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
		if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
			const char *m = argv[++i];
			if (!strcmp(m, "block"))
				mode_block = 1;
			else if (!strcmp(m, "lt") || !strcmp(m, "et")) {
				mode_block = 0;
				mode_et = !strcmp(m, "et");
			} else
				kw_usage(usage);
		} else if (!strcmp(argv[i], "--epoll-first"))
			epoll_first = 1;
		else if (!strcmp(argv[i], "--sigurg"))
			count_sigurg = 1;
		else if (!strcmp(argv[i], "--sndtimeo") && i + 1 < argc)
			sndtimeo_ms = atol(argv[++i]);
		else if (!strcmp(argv[i], "--send") && i + 1 < argc)
			text = argv[++i];
		else if (!strcmp(argv[i], "--expect") && i + 1 < argc)
			expect = argv[++i];
		else if (!strcmp(argv[i], "--write-after-fail"))
			write_after_fail = 1;
		else
			kw_usage(usage);
	}
	if (argc - i != 2 || (text && !expect) || (expect && !text) || (epoll_first && mode_block))
		kw_usage(usage);
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (count_sigurg) {
		struct sigaction sa = { .sa_handler = on_sigurg, .sa_flags = SA_RESTART };
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGURG, &sa, NULL) < 0)
			die("sigaction", errno);
	}

	struct sockaddr_storage ss;
	socklen_t len;
	if (kw_parse_addr(argv[i], argv[i + 1], &ss, &len))
		return KW_EXIT_USAGE;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | (mode_block ? 0 : SOCK_NONBLOCK), 0);
	if (fd < 0)
		die("socket", errno);
	if (sndtimeo_ms > 0) {
		struct timeval tv = { .tv_sec = sndtimeo_ms / 1000, .tv_usec = (sndtimeo_ms % 1000) * 1000 };
		if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
			die("setsockopt SO_SNDTIMEO", errno);
	}
	int ep = -1;
	if (!mode_block) {
		ep = epoll_create1(EPOLL_CLOEXEC);
		if (ep < 0)
			die("epoll_create1", errno);
		if (epoll_first)
			set_interest(ep, fd, EPOLLOUT, 1);
	}

	long long t0 = now_ms();
	sigurg_before = sigurg_count;
	int rc = connect(fd, (struct sockaddr *)&ss, len);
	int err = rc < 0 ? errno : 0;
	sigurg_after = sigurg_count;
	long long took = now_ms() - t0;
	if (rc == 0) {
		printf("connect: ok after %lld ms\n", took);
	} else if (err == EINPROGRESS && !mode_block) {
		printf("connect: EINPROGRESS after %lld ms\n", took);
	} else {
		printf("connect: %s (%d) after %lld ms\n", errname(err), err, took);
		if (write_after_fail && text) {
			ssize_t n = send(fd, text, strlen(text), MSG_NOSIGNAL);
			if (n < 0)
				printf("send after failed connect: %s (%d)\n", errname(errno), errno);
			else
				printf("send after failed connect: %zd bytes accepted\n", n);
		}
		report_sigurg();
		return err > 0 && err < KW_EXIT_USAGE ? err : KW_EXIT_USAGE;
	}

	if (!mode_block) {
		if (!epoll_first)
			set_interest(ep, fd, EPOLLOUT, 1);
		unsigned int ev = wait_events(ep, EPOLLOUT, now_ms() + 30000);
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
		printf("epoll: writable (events 0x%x), SO_ERROR %d\n", ev, soerr);
		if (soerr)
			die("connect (SO_ERROR)", soerr);
	}
	rc = 0;
	if (text) {
		if (kw_write_all(fd, text, strlen(text)) < 0)
			die("send", errno);
		rc = read_reply(fd, ep, expect);
	}
	report_sigurg();
	close(fd);
	return rc;
}
