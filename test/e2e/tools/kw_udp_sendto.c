// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_udp_sendto: one datagram on an unconnected UDP socket, the path that reaches a
 * peer without connect(2).
 *
 *   kw_udp_sendto HOST PORT TEXT
 *
 * Exits 0 when sendto succeeded, else its errno ("sendto: EPERM (1)").
 */
#include "kw_common.h"

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (argc != 4)
		kw_usage("usage: kw_udp_sendto HOST PORT TEXT\n"
			 "  sendto() of one datagram on an unconnected UDP socket; exit 0, or the errno.\n");
	if (kw_parse_addr(argv[1], argv[2], &ss, &len))
		return KW_EXIT_USAGE;
	setvbuf(stdout, NULL, _IOLBF, 0);
	int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		kw_die_errno("socket", errno);
	size_t n = strlen(argv[3]);
	if (sendto(fd, argv[3], n, 0, (struct sockaddr *)&ss, len) < 0)
		kw_die_errno("sendto", errno);
	printf("sendto: ok, %zu bytes (udp)\n", n);
	close(fd);
	return 0;
}
