// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_early_close: one end of a TCP connection that ends it early, right after connecting
 * or right after its first write, in one of three ways (t_mtls_early_close). The tests
 * run two attested copies, a client and a server, both enrolled, so every connection is
 * a mutual-TLS one the agent set up.
 *
 *   kw_early_close connect [--send TEXT] --end HOW HOST PORT
 *   kw_early_close serve [--send TEXT] --end HOW PORT LOG
 *
 * connect: connect, write "TEXT\n" when given, then end the connection as HOW says.
 * serve:   listen on 127.0.0.1:PORT (LOG.ready is written then) and take connections one
 *          at a time, for ever: write "TEXT\n" when given, then end it as HOW says.
 *
 * HOW:
 *   shut   shutdown(SHUT_WR) (a FIN), then read until the peer closes
 *   close  close()
 *   rst    SO_LINGER 0, then close(): an RST instead of a FIN
 *   read   read until the peer closes; the server then answers "ack:DATA\n" (DATA: what
 *          it read, newlines included) and closes
 *
 * Whatever a side reads is reported as one line, "got 'DATA' then END", END being EOF or
 * the errno name of the read that failed (ECONNRESET); newlines in DATA are shown as \n.
 * The client prints it; the server appends it to LOG, one line per connection. The client
 * also prints "connect: ok", and either side "write: ok N" after its write (one write,
 * so one TLS record). Exits 0, else with the errno of the call that failed (kw_common.h),
 * printed as "CALL: ENAME (n) ...". A read waits 15 s at most (END is then EAGAIN).
 */
#include "kw_common.h"

#include <fcntl.h>
#include <signal.h>

enum how { END_SHUT, END_CLOSE, END_RST, END_READ };

static __attribute__((noreturn)) void usage(void)
{
	kw_usage("usage: kw_early_close connect [--send TEXT] --end shut|close|rst|read HOST PORT\n"
		 "       kw_early_close serve [--send TEXT] --end shut|close|rst|read PORT LOG\n"
		 "  one TCP connection ended early: a FIN, a close or an RST, after TEXT or at once.\n");
}

static enum how parse_how(const char *s)
{
	if (!strcmp(s, "shut"))
		return END_SHUT;
	if (!strcmp(s, "close"))
		return END_CLOSE;
	if (!strcmp(s, "rst"))
		return END_RST;
	if (!strcmp(s, "read"))
		return END_READ;
	fprintf(stderr, "kw_early_close: unknown --end '%s'\n", s);
	usage();
}

/* Reads FD until EOF or an error; what came and how it ended, as one line in OUT. DATA
 * gets the raw bytes (for the server's answer). */
static void read_all(int fd, char *out, size_t out_size, char *data, size_t data_size)
{
	struct timeval tv = { .tv_sec = 15 };
	size_t got = 0;
	const char *end = "EOF";

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (;;) {
		if (got >= data_size - 1) {
			end = "too much data";
			break;
		}
		ssize_t n = read(fd, data + got, data_size - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			const char *name = strerrorname_np(errno);
			end = name ? name : "E?";
			break;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	data[got] = '\0';
	size_t o = (size_t)snprintf(out, out_size, "got '");
	for (size_t i = 0; i < got && o + 8 < out_size; i++) {
		if (data[i] == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = data[i];
		}
	}
	snprintf(out + o, out_size - o, "' then %s", end);
}

/* Ends the connection FD as HOW says; for shut and read, REPORT gets what was read. */
static void end_connection(int fd, enum how how, char *report, size_t report_size, char *data, size_t data_size)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	report[0] = '\0';
	switch (how) {
	case END_SHUT:
		if (shutdown(fd, SHUT_WR) < 0)
			kw_die_errno("shutdown", errno);
		read_all(fd, report, report_size, data, data_size);
		break;
	case END_READ:
		read_all(fd, report, report_size, data, data_size);
		break;
	case END_RST:
		if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
			kw_die_errno("setsockopt SO_LINGER", errno);
		/* fallthrough */
	case END_CLOSE:
		break;
	}
}

/* "TEXT\n" in one write: one record under kTLS, so that a reset right after it cannot
 * leave half a line unsent (the peer then gets the line or nothing). */
static void send_text(int fd, const char *text)
{
	if (!text)
		return;
	size_t len = strlen(text);
	char *line = malloc(len + 2);
	if (!line)
		kw_die_errno("malloc", ENOMEM);
	memcpy(line, text, len);
	line[len] = '\n';
	if (kw_write_all(fd, line, len + 1) < 0)
		kw_die_errno("write", errno);
	free(line);
	printf("write: ok %zu\n", len + 1);
}

static int do_connect(const char *host, const char *port, const char *text, enum how how)
{
	char report[8192], data[4096];

	int fd = kw_connect_tcp(host, port);
	printf("connect: ok\n");
	send_text(fd, text);
	end_connection(fd, how, report, sizeof(report), data, sizeof(data));
	if (report[0])
		printf("%s\n", report);
	if (close(fd) < 0)
		kw_die_errno("close", errno);
	return 0;
}

static void append_line(const char *path, const char *line)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0 || kw_write_all(fd, line, strlen(line)) < 0 || kw_write_all(fd, "\n", 1) < 0)
		kw_die_errno("write LOG", errno);
	close(fd);
}

static int serve(const char *port, const char *log, const char *text, enum how how)
{
	char report[8192], data[4096], ready[4096];

	int lfd = kw_listen_loopback(port, 16);
	snprintf(ready, sizeof(ready), "%s.ready", log);
	append_line(ready, "ready");
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			kw_die_errno("accept", errno);
		}
		send_text(fd, text);
		end_connection(fd, how, report, sizeof(report), data, sizeof(data));
		if (how == END_READ) {
			(void)kw_write_all(fd, "ack:", 4);
			(void)kw_write_all(fd, data, strlen(data));
			(void)kw_write_all(fd, "\n", 1);
		}
		append_line(log, report[0] ? report : "ended");
		close(fd);
	}
}

int main(int argc, char **argv)
{
	const char *text = NULL;
	int how = -1;
	int i = 2;

	if (argc < 2)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
		if (!strcmp(argv[i], "--send") && i + 1 < argc)
			text = argv[++i];
		else if (!strcmp(argv[i], "--end") && i + 1 < argc)
			how = parse_how(argv[++i]);
		else
			usage();
	}
	if (how < 0 || argc - i != 2)
		usage();
	if (!strcmp(argv[1], "connect"))
		return do_connect(argv[i], argv[i + 1], text, (enum how)how);
	if (!strcmp(argv[1], "serve"))
		return serve(argv[i], argv[i + 1], text, (enum how)how);
	usage();
}
