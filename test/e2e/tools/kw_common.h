/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Shared by the e2e syscall tools: address parsing and the exit convention.
 *
 * Every tool exits 0 on success and with the errno value on a failed syscall, after
 * printing one line such as "connect: EPERM (1)", so that a test can assert the exact
 * errno from the exit status alone. Errors that are not an errno (bad usage, bad
 * address) exit KW_EXIT_USAGE, which no errno uses.
 */
#ifndef KW_E2E_COMMON_H
#define KW_E2E_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define KW_EXIT_USAGE 200

/* Prints "WHAT: ENAME (n)" and exits with n. */
static inline __attribute__((noreturn)) void kw_die_errno(const char *what, int err)
{
	const char *name = strerrorname_np(err);
	printf("%s: %s (%d) %s\n", what, name ? name : "E?", err, strerror(err));
	fflush(stdout);
	exit(err > 0 && err < KW_EXIT_USAGE ? err : KW_EXIT_USAGE);
}

static inline __attribute__((noreturn)) void kw_usage(const char *text)
{
	fprintf(stderr, "%s", text);
	exit(KW_EXIT_USAGE);
}

/* HOST is an IPv4 or IPv6 literal (no names: a test must know exactly what it hits). */
static inline int kw_parse_addr(const char *host, const char *port, struct sockaddr_storage *ss, socklen_t *len)
{
	char *end = NULL;
	long p = strtol(port, &end, 10);

	if (!*port || *end || p < 0 || p > 65535) {
		fprintf(stderr, "bad port '%s': expected 0-65535\n", port);
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)p);
		*len = sizeof(*in);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)p);
		*len = sizeof(*in6);
		return 0;
	}
	fprintf(stderr, "bad address '%s': expected an IPv4 or IPv6 literal\n", host);
	return -1;
}

/* A TCP socket listening on 127.0.0.1:PORT (SO_REUSEADDR), or the tool exits. */
static inline int kw_listen_loopback(const char *port, int backlog)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;

	if (kw_parse_addr("127.0.0.1", port, &ss, &len))
		exit(KW_EXIT_USAGE);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		kw_die_errno("socket", errno);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&ss, len) < 0)
		kw_die_errno("bind", errno);
	if (listen(lfd, backlog) < 0)
		kw_die_errno("listen", errno);
	return lfd;
}

/* A TCP connection to HOST PORT (kw_parse_addr), or the tool exits with connect's errno. */
static inline int kw_connect_tcp(const char *host, const char *port)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (kw_parse_addr(host, port, &ss, &len))
		exit(KW_EXIT_USAGE);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		kw_die_errno("socket", errno);
	if (connect(fd, (struct sockaddr *)&ss, len) < 0)
		kw_die_errno("connect", errno);
	return fd;
}

/* After sending: half-close and wait (bounded) for the peer to close, so that when the
 * tool exits the sink has read, and recorded, everything. Best effort: the outcome of
 * the syscall under test was already decided. */
static inline void kw_finish_stream(int fd)
{
	struct timeval tv = { .tv_sec = 5, .tv_usec = 0 };
	char buf[512];

	shutdown(fd, SHUT_WR);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (int i = 0; i < 1024; i++) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
	}
}

/* Reads one line (without its newline) into BUF, waiting 15 s at most: 0, the errno of a
 * failed read (EAGAIN: the wait ran out), or EBADMSG when no line came (nothing before
 * the peer closed, or more than BUF holds). */
static inline int kw_read_line(int fd, char *buf, size_t size)
{
	struct timeval tv = { .tv_sec = 15, .tv_usec = 0 };
	size_t got = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (got < size - 1) {
		ssize_t n = read(fd, buf + got, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0 || buf[got] == '\n')
			break;
		got++;
	}
	buf[got] = '\0';
	return got == 0 || got == size - 1 ? EBADMSG : 0;
}

/* Writes all of buf or returns -1 with errno set. */
static inline int kw_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

#endif /* KW_E2E_COMMON_H */
