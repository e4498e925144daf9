// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_xfer: a full-duplex bulk transfer over one TCP connection, to prove that a stream
 * crosses the agent's mTLS+kTLS byte-exact in both directions at once.
 *
 *   kw_xfer [--sendfile] [--listen] [--fin-after-eof] --send FILE --recv OUTFILE HOST PORT
 *
 * Connects to HOST PORT (or, with --listen, binds HOST PORT and accepts one connection),
 * then sends FILE while a second thread writes everything the peer sends to OUTFILE.
 * With --sendfile the data goes out with sendfile(2), else with read/write loops. After
 * the last byte it half-closes (shutdown SHUT_WR, a FIN; kTLS sends no close_notify) and
 * exits once the peer has half-closed too; with --fin-after-eof it half-closes only once
 * its reading has ended (for peers that quit as soon as they read the end). Prints the socket's upper-layer protocol
 * ("ulp: tls" when the kernel carries TLS on it), then "sent N bytes (how)" and
 * "received N bytes" (also when reading failed). Exits 0, or the errno of the first failed call ("recv: EIO (5)":
 * on a kTLS socket, a non-data TLS record).
 */
#include "kw_common.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/stat.h>

#define CHUNK (256 * 1024)
/* A stalled transfer fails rather than hangs (software-emulated VMs are slow, not stuck). */
#define STALL_SECONDS 120

struct receiver {
	int sock;
	int out;
	unsigned long long bytes;
	int err;
	const char *what;
};

static void *receive_all(void *arg)
{
	struct receiver *r = arg;
	static char buf[CHUNK];

	for (;;) {
		ssize_t n = read(r->sock, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r->err = errno;
			r->what = "recv";
			return NULL;
		}
		if (n == 0)
			return NULL;
		if (kw_write_all(r->out, buf, (size_t)n) < 0) {
			r->err = errno;
			r->what = "write OUTFILE";
			return NULL;
		}
		r->bytes += (unsigned long long)n;
	}
}

/* Sends all of IN; returns the bytes sent, or dies with the errno. */
static unsigned long long send_file(int sock, int in, int use_sendfile)
{
	static char buf[CHUNK];
	struct stat st;
	unsigned long long sent = 0;

	if (fstat(in, &st) < 0)
		kw_die_errno("fstat FILE", errno);
	while (sent < (unsigned long long)st.st_size) {
		ssize_t n;
		if (use_sendfile) {
			/* Ask for exactly what is left: the last chunk then goes out without
			 * SPLICE_F_MORE, so no TLS record is left open waiting for more. */
			n = sendfile(sock, in, NULL, (size_t)st.st_size - sent);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				kw_die_errno("sendfile", errno);
			if (n == 0) {
				printf("sendfile: FILE ended early at %llu bytes\n", sent);
				exit(KW_EXIT_USAGE);
			}
		} else {
			n = read(in, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				kw_die_errno("read FILE", errno);
			if (n == 0)
				break;
			if (kw_write_all(sock, buf, (size_t)n) < 0)
				kw_die_errno("send", errno);
		}
		sent += (unsigned long long)n;
	}
	return sent;
}

static int open_connection(const char *host, const char *port, int listen_mode)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;

	if (kw_parse_addr(host, port, &ss, &len))
		exit(KW_EXIT_USAGE);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		kw_die_errno("socket", errno);
	if (!listen_mode) {
		if (connect(fd, (struct sockaddr *)&ss, len) < 0)
			kw_die_errno("connect", errno);
		return fd;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		kw_die_errno("bind", errno);
	if (listen(fd, 1) < 0)
		kw_die_errno("listen", errno);
	int conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
	if (conn < 0)
		kw_die_errno("accept", errno);
	close(fd);
	return conn;
}

int main(int argc, char **argv)
{
	const char *send_path = NULL, *recv_path = NULL;
	int use_sendfile = 0, listen_mode = 0, fin_after_eof = 0;
	int i = 1;
	static const char usage[] =
		"usage: kw_xfer [--sendfile] [--listen] [--fin-after-eof] --send FILE --recv OUTFILE HOST PORT\n"
		"  connect (--listen: accept one connection), send FILE (--sendfile: with sendfile(2))\n"
		"  while writing what the peer sends to OUTFILE; half-close (--fin-after-eof: once\n"
		"  reading has ended); exit 0 or the errno.\n";

	for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
		if (!strcmp(argv[i], "--sendfile"))
			use_sendfile = 1;
		else if (!strcmp(argv[i], "--listen"))
			listen_mode = 1;
		else if (!strcmp(argv[i], "--fin-after-eof"))
			fin_after_eof = 1;
		else if (!strcmp(argv[i], "--send") && i + 1 < argc)
			send_path = argv[++i];
		else if (!strcmp(argv[i], "--recv") && i + 1 < argc)
			recv_path = argv[++i];
		else
			kw_usage(usage);
	}
	if (argc - i != 2 || !send_path || !recv_path)
		kw_usage(usage);
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);

	int in = open(send_path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		kw_die_errno("open FILE", errno);
	struct receiver r = { .sock = -1 };
	r.out = open(recv_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (r.out < 0)
		kw_die_errno("open OUTFILE", errno);

	int sock = open_connection(argv[i], argv[i + 1], listen_mode);
	struct timeval tv = { .tv_sec = STALL_SECONDS };
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	char ulp[16] = "";
	socklen_t ulp_len = sizeof(ulp) - 1;
	if (getsockopt(sock, IPPROTO_TCP, TCP_ULP, ulp, &ulp_len) < 0)
		kw_die_errno("getsockopt TCP_ULP", errno);
	printf("ulp: %s\n", ulp[0] ? ulp : "none");

	r.sock = sock;
	pthread_t thread;
	int err = pthread_create(&thread, NULL, receive_all, &r);
	if (err)
		kw_die_errno("pthread_create", err);
	unsigned long long sent = send_file(sock, in, use_sendfile);
	printf("sent %llu bytes (%s)\n", sent, use_sendfile ? "sendfile" : "write");
	if (fin_after_eof)
		pthread_join(thread, NULL);
	if (shutdown(sock, SHUT_WR) < 0 && !(fin_after_eof && r.err))
		kw_die_errno("shutdown SHUT_WR", errno);
	if (!fin_after_eof)
		pthread_join(thread, NULL);
	printf("received %llu bytes\n", r.bytes);
	if (r.err)
		kw_die_errno(r.what, r.err);
	if (close(r.out) < 0)
		kw_die_errno("close OUTFILE", errno);
	close(sock);
	return 0;
}
