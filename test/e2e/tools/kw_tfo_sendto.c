// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_tfo_sendto: TCP Fast Open, the path that opens a connection without connect(2).
 *
 *   kw_tfo_sendto HOST PORT TEXT
 *
 * socket(SOCK_STREAM) then sendto(TEXT, MSG_FASTOPEN, HOST:PORT): the kernel sends the
 * SYN (with the data when a cookie is cached or the server needs none). Exits 0 when
 * sendto succeeded, else its errno ("sendto: EPERM (1)"). The client side needs bit 1 of
 * net.ipv4.tcp_fastopen (the default, 1); otherwise sendto fails with EOPNOTSUPP.
 */
#include "kw_common.h"

#include <netinet/tcp.h>

#ifndef MSG_FASTOPEN
#define MSG_FASTOPEN 0x20000000
#endif

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (argc != 4)
		kw_usage("usage: kw_tfo_sendto HOST PORT TEXT\n"
			 "  sendto(MSG_FASTOPEN) on a fresh TCP socket; exit 0, or the errno.\n");
	if (kw_parse_addr(argv[1], argv[2], &ss, &len))
		return KW_EXIT_USAGE;
	setvbuf(stdout, NULL, _IOLBF, 0);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		kw_die_errno("socket", errno);
	size_t n = strlen(argv[3]);
	ssize_t sent = sendto(fd, argv[3], n, MSG_FASTOPEN, (struct sockaddr *)&ss, len);
	if (sent < 0)
		kw_die_errno("sendto", errno);
	/* Without a cookie the kernel may accept only part of it; send the rest. */
	if ((size_t)sent < n && kw_write_all(fd, argv[3] + sent, n - (size_t)sent) < 0)
		kw_die_errno("send", errno);
	kw_finish_stream(fd);
	printf("sendto: ok, %zu bytes (MSG_FASTOPEN)\n", n);
	close(fd);
	return 0;
}
