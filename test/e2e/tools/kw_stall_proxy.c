// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_stall_proxy: a TCP proxy that stalls the server's answers, so that a handshake is
 * reliably in progress (the agent holding an enrolled process's connect()) while a test
 * signals or kills that process.
 *
 *   kw_stall_proxy [--delay-ms N] [--hang] CAPTURE LISTEN_PORT UPSTREAM_PORT
 *
 * Listens on 127.0.0.1:LISTEN_PORT and relays each connection to 127.0.0.1:UPSTREAM_PORT.
 * Client -> server bytes pass at once and are appended to CAPTURE as they pass (a test
 * greps it: a marker the client sent must never be on the wire in cleartext). Server ->
 * client bytes are held until N ms after the connection was accepted (the ServerHello
 * waits), then flow freely; with --hang they are never forwarded, so a TLS handshake
 * stalls until the client gives up. Either side closing ends the connection.
 *
 * stdout, one line each, flushed: "ready" once listening; "conn K accepted" when
 * connection K (from 1) arrives; "conn K closed after T ms: c2s X bytes, s2c Y forwarded,
 * Z held" at its end. Each connection is served by a child process; runs until killed.
 */
#include "kw_common.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <time.h>

#define S2C_BUF (1 << 20)

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_upstream(const char *port)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (kw_parse_addr("127.0.0.1", port, &ss, &len))
		exit(KW_EXIT_USAGE);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) < 0)
		return -1;
	return fd;
}

/* Relays one connection; returns when either side is done. */
static void relay(int conn, int client, const char *upstream_port, int capture, long long delay_ms, int hang)
{
	static char s2c[S2C_BUF];
	char buf[65536];
	size_t held = 0, c2s_bytes = 0, s2c_sent = 0;
	long long accepted_at = now_ms(), release_at = accepted_at + delay_ms;
	int up = connect_upstream(upstream_port);
	int up_eof = 0;

	if (up < 0) {
		printf("conn %d: upstream connect: %s\n", conn, strerror(errno));
		return;
	}
	for (;;) {
		int released = !hang && now_ms() >= release_at;
		if (released && held > 0) {
			if (kw_write_all(client, s2c, held) < 0)
				break;
			s2c_sent += held;
			held = 0;
		}
		if (up_eof && held == 0)
			break;
		struct pollfd p[2] = {
			{ .fd = client, .events = POLLIN },
			{ .fd = up, .events = (!up_eof && held < sizeof(s2c)) ? POLLIN : 0 },
		};
		int timeout = -1;
		if (!hang && !released && held > 0)
			timeout = (int)(release_at - now_ms()) + 1;
		if (poll(p, 2, timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents) {
			ssize_t n = read(client, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (kw_write_all(capture, buf, (size_t)n) < 0 || kw_write_all(up, buf, (size_t)n) < 0)
				break;
			c2s_bytes += (size_t)n;
		}
		if (p[1].revents) {
			ssize_t n = read(up, s2c + held, sizeof(s2c) - held);
			if (n <= 0)
				up_eof = 1;
			else
				held += (size_t)n;
		}
	}
	printf("conn %d closed after %lld ms: c2s %zu bytes, s2c %zu forwarded, %zu held\n", conn, now_ms() - accepted_at,
	       c2s_bytes, s2c_sent, held);
	close(up);
}

int main(int argc, char **argv)
{
	long long delay_ms = 0;
	int hang = 0, i = 1;
	static const char usage[] =
		"usage: kw_stall_proxy [--delay-ms N] [--hang] CAPTURE LISTEN_PORT UPSTREAM_PORT\n"
		"  relay 127.0.0.1:LISTEN_PORT to 127.0.0.1:UPSTREAM_PORT; client bytes appended to\n"
		"  CAPTURE; server bytes held N ms after accept (--hang: forever).\n";

	for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
		if (!strcmp(argv[i], "--delay-ms") && i + 1 < argc)
			delay_ms = atoll(argv[++i]);
		else if (!strcmp(argv[i], "--hang"))
			hang = 1;
		else
			kw_usage(usage);
	}
	if (argc - i != 3 || delay_ms < 0)
		kw_usage(usage);
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	/* Children are never waited for: no zombies. */
	struct sigaction sa = { .sa_handler = SIG_IGN, .sa_flags = SA_NOCLDWAIT };
	sigaction(SIGCHLD, &sa, NULL);

	int capture = open(argv[i], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (capture < 0)
		kw_die_errno("open CAPTURE", errno);
	int lfd = kw_listen_loopback(argv[i + 1], 64);
	printf("ready\n");

	for (int conn = 1;; conn++) {
		int client = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (client < 0) {
			if (errno == EINTR || errno == ECONNABORTED) {
				conn--;
				continue;
			}
			kw_die_errno("accept", errno);
		}
		printf("conn %d accepted\n", conn);
		pid_t pid = fork();
		if (pid < 0)
			kw_die_errno("fork", errno);
		if (pid == 0) {
			close(lfd);
			relay(conn, client, argv[i + 2], capture, delay_ms, hang);
			_exit(0);
		}
		close(client);
	}
}
