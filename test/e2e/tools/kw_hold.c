// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_hold: one TCP exchange, then the connection is held open until the process is
 * killed, so that a test can look at a live process that owns an established (kTLS)
 * connection: its memory, its sockets.
 *
 *   kw_hold serve PORT            listen on 127.0.0.1:PORT, accept one connection, read
 *                                 one line L, answer "ack:L\n"
 *   kw_hold connect HOST PORT L   connect, send "L\n", read the answer line
 *
 * Prints "received: LINE" (what the peer sent), then "held" once the exchange is done,
 * and sleeps. Exits with the errno of a failed call ("accept: EPERM (1)"), or EBADMSG
 * when no full line arrives within 15 s.
 */
#include "kw_common.h"

#include <sys/time.h>

static void usage(void)
{
	kw_usage("usage: kw_hold serve PORT | kw_hold connect HOST PORT LINE\n"
		 "  one line each way over TCP, then hold the connection until killed.\n");
}

/* Reads one line (without its newline) into BUF; exits EBADMSG if none comes. */
static void read_line(int fd, char *buf, size_t size)
{
	int err = kw_read_line(fd, buf, size);
	if (err == EBADMSG) {
		printf("read: no complete line (%zu bytes: '%s')\n", strlen(buf), buf);
		exit(EBADMSG);
	}
	if (err)
		kw_die_errno("read", err);
}

static void send_line(int fd, const char *prefix, const char *line)
{
	if (kw_write_all(fd, prefix, strlen(prefix)) < 0 || kw_write_all(fd, line, strlen(line)) < 0 ||
	    kw_write_all(fd, "\n", 1) < 0)
		kw_die_errno("write", errno);
}

/* The connection stays open: the process holds it until it is killed. */
static void serve(const char *port)
{
	char line[4096];

	int lfd = kw_listen_loopback(port, 4);
	int fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		kw_die_errno("accept", errno);
	read_line(fd, line, sizeof(line));
	printf("received: %s\n", line);
	send_line(fd, "ack:", line);
}

static void connect_to(const char *host, const char *port, const char *text)
{
	char line[4096];

	int fd = kw_connect_tcp(host, port);
	send_line(fd, "", text);
	read_line(fd, line, sizeof(line));
	printf("received: %s\n", line);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "serve"))
		serve(argv[2]);
	else if (argc == 5 && !strcmp(argv[1], "connect"))
		connect_to(argv[2], argv[3], argv[4]);
	else
		usage();
	printf("held\n");
	for (;;)
		pause();
}
