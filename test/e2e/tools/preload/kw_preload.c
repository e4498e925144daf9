// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The injected library of t_guard_exec: loaded with LD_PRELOAD (or LD_AUDIT, as an
 * audit module), it announces itself on stderr before main(), as code an attacker slips
 * under a workload's identity would run. The kernel must give such an exec no identity.
 * With KW_PRELOAD_SEND=PORT:TEXT it also connects to 127.0.0.1:PORT and sends TEXT, as
 * injected code using the identity would (t_code_unpinned_refused).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void kw_send(const char *spec)
{
	char *text = strchr(spec, ':');
	if (!text)
		return;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(spec)) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		fprintf(stderr, "kw_preload: connect: %s\n", strerror(errno));
	else if (write(fd, text + 1, strlen(text + 1)) > 0)
		fprintf(stderr, "kw_preload: sent\n");
	close(fd);
}

__attribute__((constructor)) static void kw_injected(void)
{
	fprintf(stderr, "kw_preload: injected into pid %d\n", (int)getpid());
	const char *spec = getenv("KW_PRELOAD_SEND");
	if (spec)
		kw_send(spec);
}

/* As an LD_AUDIT module: the version handshake, so that ld.so keeps it loaded. */
unsigned int la_version(unsigned int version)
{
	return version;
}
