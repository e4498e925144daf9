// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_sink: the protected service of the e2e tests. It records what reached it, so a
 * test can assert "the server received nothing" as well as "the data arrived".
 *
 *   kw_sink [--udp] [--v6] [--addr ADDR] PORT OUTFILE
 *
 * Listens on 127.0.0.1 by default; --v6 listens on :: (dual stack, so v4-mapped
 * clients arrive too); --addr binds ADDR (IPv4 or IPv6 literal, e.g. 0.0.0.0 or a veth
 * address inside a network namespace). TCP by default, with TCP_FASTOPEN enabled on the
 * listener (the server side also needs bit 2 of net.ipv4.tcp_fastopen); --udp receives
 * datagrams instead.
 *
 * OUTFILE gets every byte received, appended as it arrives; OUTFILE.conns gets one line
 * "conn" per accepted TCP connection ("dgram" per UDP datagram). Both are truncated at
 * start, and OUTFILE.ready is written once the socket is listening. Runs until killed.
 */
#include "kw_common.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <time.h>

#define MAX_CONNS 256

static int open_out(const char *path, const char *suffix)
{
	char name[4096];
	snprintf(name, sizeof(name), "%s%s", path, suffix);
	int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "kw_sink: cannot open %s: %s\n", name, strerror(errno));
		exit(KW_EXIT_USAGE);
	}
	return fd;
}

static void record(int fd, const char *buf, size_t n)
{
	if (kw_write_all(fd, buf, n) < 0)
		kw_die_errno("write OUTFILE", errno);
}

int main(int argc, char **argv)
{
	const char *addr = "127.0.0.1";
	int udp = 0;
	int i = 1;
	static const char usage[] =
		"usage: kw_sink [--udp] [--v6] [--addr ADDR] PORT OUTFILE\n"
		"  listen on 127.0.0.1 (--v6: ::, --addr: ADDR); append received bytes to OUTFILE,\n"
		"  one line per TCP connection to OUTFILE.conns; OUTFILE.ready once listening.\n";

	for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
		if (!strcmp(argv[i], "--udp"))
			udp = 1;
		else if (!strcmp(argv[i], "--v6"))
			addr = "::";
		else if (!strcmp(argv[i], "--addr") && i + 1 < argc)
			addr = argv[++i];
		else
			kw_usage(usage);
	}
	if (argc - i != 2)
		kw_usage(usage);
	const char *out = argv[i + 1];
	struct sockaddr_storage ss;
	socklen_t len;
	if (kw_parse_addr(addr, argv[i], &ss, &len))
		return KW_EXIT_USAGE;
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);

	int data_fd = open_out(out, "");
	int conns_fd = open_out(out, ".conns");

	int lfd = socket(ss.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		kw_die_errno("socket", errno);
	int one = 1, zero = 0;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6) {
		/* "::" is dual stack; a specific v6 address is v6 only. */
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		int v6only = !IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
		if (setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? &one : &zero, sizeof(int)) < 0)
			kw_die_errno("setsockopt IPV6_V6ONLY", errno);
	}
	if (bind(lfd, (struct sockaddr *)&ss, len) < 0)
		kw_die_errno("bind", errno);
	if (!udp) {
		int qlen = 16;
		if (setsockopt(lfd, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen)) < 0)
			kw_die_errno("setsockopt TCP_FASTOPEN", errno);
		if (listen(lfd, 128) < 0)
			kw_die_errno("listen", errno);
	}
	close(open_out(out, ".ready"));
	printf("kw_sink: %s %s:%s -> %s\n", udp ? "udp" : "tcp", addr, argv[i], out);

	const int trace = getenv("KW_SINK_TRACE") != NULL;
	struct pollfd fds[MAX_CONNS + 1];
	int nfds = 1;
	fds[0].fd = lfd;
	fds[0].events = POLLIN;
	char buf[65536];

	for (;;) {
		if (poll(fds, (nfds_t)nfds, -1) < 0) {
			if (errno == EINTR)
				continue;
			kw_die_errno("poll", errno);
		}
		if (fds[0].revents & POLLIN) {
			if (udp) {
				ssize_t n = recv(lfd, buf, sizeof(buf), 0);
				if (n >= 0) {
					record(conns_fd, "dgram\n", 6);
					record(data_fd, buf, (size_t)n);
				}
			} else {
				if (trace) {
					struct timespec ts;
					clock_gettime(CLOCK_REALTIME, &ts);
					fprintf(stderr, "kw_sink: %ld.%06ld accept4\n", (long)ts.tv_sec, ts.tv_nsec / 1000);
				}
				int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
				if (trace) {
					struct timespec ts;
					clock_gettime(CLOCK_REALTIME, &ts);
					fprintf(stderr, "kw_sink: %ld.%06ld accept4 -> %d\n", (long)ts.tv_sec, ts.tv_nsec / 1000, c);
				}
				if (c >= 0) {
					record(conns_fd, "conn\n", 5);
					if (nfds <= MAX_CONNS) {
						fds[nfds].fd = c;
						fds[nfds].events = POLLIN;
						fds[nfds].revents = 0;
						nfds++;
					} else {
						close(c); /* full: counted, not read */
					}
				}
			}
		}
		for (int k = 1; k < nfds; k++) {
			if (!fds[k].revents)
				continue;
			ssize_t n = read(fds[k].fd, buf, sizeof(buf));
			if (n > 0) {
				record(data_fd, buf, (size_t)n);
				continue;
			}
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			/* EOF or error: close, so the client's wait for our FIN ends. */
			close(fds[k].fd);
			fds[k] = fds[nfds - 1];
			nfds--;
			k--;
		}
	}
}
