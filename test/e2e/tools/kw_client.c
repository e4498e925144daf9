// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_client: one TCP connect(2), the binary the e2e tests attest (a copy of it).
 *
 *   kw_client [--send TEXT [--expect REPLY [--tls-getsockopt]]] [--fork] [--exec-sh] [--note ARG]...
 *             HOST PORT
 *   kw_client --raw TEXT HOST PORT
 *
 * --send TEXT  after connecting, write TEXT, half-close and wait for the peer to close
 * --expect R   with --send: do not half-close; read until R arrives (exit 0) or the peer
 *              closes or 15 s pass (exit EBADMSG); what was read is printed
 * --tls-getsockopt  then read the socket's kTLS TX keys back: getsockopt(SOL_TLS,
 *              TLS_TX); exit 0 if that worked, else its errno
 * --fork       connect in a forked child (it inherits the identity); exit = child's status
 * --exec-sh    exec bash, which opens /dev/tcp/HOST/PORT itself (exec re-attests: the
 *              shell is not the attested binary); exit = bash's status
 * --raw TEXT   no TCP: TEXT goes to HOST (IPv4) PORT as a UDP datagram through a raw
 *              socket (SOCK_RAW, IPPROTO_UDP; the UDP header is written here), as code
 *              with CAP_NET_RAW can send to a destination without connect(2)
 * --note ARG   ignored: lets a test exec the attested binary with any argument (empty,
 *              long, non-ASCII, thousands of them)
 *
 * Exits 0 on success, else the errno of the failed call ("connect: EPERM (1)").
 *
 * The marker below is what a test patches (one byte, same length) to make a copy that
 * differs from the attested binary by exactly one byte. The volatile pointer and its use
 * in the usage text keep it in the binary.
 */
#include "kw_common.h"

#include <linux/tls.h>
#include <netinet/udp.h>
#include <sys/wait.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

static const char *volatile kw_marker = "KWARDEN-BYTE-PATCH-A";

static void usage(void)
{
	fprintf(stderr,
		"usage: kw_client [--send TEXT [--expect REPLY [--tls-getsockopt]]] [--fork] [--exec-sh] [--note ARG]... HOST PORT\n"
		"       kw_client --raw TEXT HOST PORT\n"
		"  TCP connect to HOST (IPv4 or IPv6 literal) PORT; exit 0, or the errno.\n"
		"  build marker: %s\n",
		kw_marker);
	exit(KW_EXIT_USAGE);
}

/* Reads FD until EXPECT shows up; 0 if it did, else EBADMSG. */
static int read_expecting(int fd, const char *expect)
{
	char buf[65536];
	size_t got = 0;
	struct timeval tv = { .tv_sec = 15 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (got < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			kw_die_errno("read", errno);
		if (n == 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
		if (strstr(buf, expect)) {
			printf("received: %s\n", buf);
			return 0;
		}
	}
	buf[got] = '\0';
	printf("read: expected '%s', got %zu bytes: '%s'\n", expect, got, buf);
	return EBADMSG;
}

static const char *expect_reply;
static int tls_getsockopt;

/* What a workload holding a kTLS socket could try: read its traffic keys. */
static int read_tls_keys(int fd)
{
	struct tls12_crypto_info_aes_gcm_128 info;
	socklen_t len = sizeof(info);

	if (getsockopt(fd, SOL_TLS, TLS_TX, &info, &len) < 0)
		kw_die_errno("getsockopt SOL_TLS TLS_TX", errno);
	printf("getsockopt SOL_TLS TLS_TX: ok, cipher %u\n", info.info.cipher_type);
	return 0;
}

static int do_connect(const char *host, const char *port, const char *text)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (kw_parse_addr(host, port, &ss, &len))
		return KW_EXIT_USAGE;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		kw_die_errno("socket", errno);
	if (connect(fd, (struct sockaddr *)&ss, len) < 0)
		kw_die_errno("connect", errno);
	if (text) {
		if (kw_write_all(fd, text, strlen(text)) < 0)
			kw_die_errno("send", errno);
		if (expect_reply) {
			int rc = read_expecting(fd, expect_reply);
			if (rc == 0 && tls_getsockopt)
				rc = read_tls_keys(fd);
			close(fd);
			return rc;
		}
		kw_finish_stream(fd);
		printf("connect: ok, sent %zu bytes\n", strlen(text));
	} else {
		printf("connect: ok\n");
	}
	close(fd);
	return 0;
}

/* One UDP datagram through a raw socket: the kernel writes the IP header, this the UDP
 * header (checksum 0: none, which IPv4 allows). */
static int send_raw(const char *host, const char *port, const char *text)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char pkt[1500];
	size_t n = strlen(text);

	if (kw_parse_addr(host, port, &ss, &len) || ss.ss_family != AF_INET || n > sizeof(pkt) - sizeof(struct udphdr))
		return KW_EXIT_USAGE;
	int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP);
	if (fd < 0)
		kw_die_errno("socket(AF_INET, SOCK_RAW, IPPROTO_UDP)", errno);
	struct udphdr uh = {
		.source = htons(40000),
		.dest = ((struct sockaddr_in *)&ss)->sin_port,
		.len = htons((uint16_t)(sizeof(uh) + n)),
	};
	memcpy(pkt, &uh, sizeof(uh));
	memcpy(pkt + sizeof(uh), text, n);
	if (sendto(fd, pkt, sizeof(uh) + n, 0, (struct sockaddr *)&ss, len) < 0)
		kw_die_errno("sendto", errno);
	printf("raw: ok, sent %zu bytes\n", n);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	const char *text = NULL, *raw = NULL;
	int fork_child = 0, exec_sh = 0;
	int i = 1;

	for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
		if (!strcmp(argv[i], "--send") && i + 1 < argc)
			text = argv[++i];
		else if (!strcmp(argv[i], "--expect") && i + 1 < argc)
			expect_reply = argv[++i];
		else if (!strcmp(argv[i], "--tls-getsockopt"))
			tls_getsockopt = 1;
		else if (!strcmp(argv[i], "--fork"))
			fork_child = 1;
		else if (!strcmp(argv[i], "--exec-sh"))
			exec_sh = 1;
		else if (!strcmp(argv[i], "--raw") && i + 1 < argc)
			raw = argv[++i];
		else if (!strcmp(argv[i], "--note") && i + 1 < argc)
			i++;
		else
			usage();
	}
	if (argc - i != 2)
		usage();
	const char *host = argv[i], *port = argv[i + 1];
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (raw)
		return send_raw(host, port, raw);
	if (exec_sh) {
		char script[256];
		snprintf(script, sizeof(script), "exec 3<>/dev/tcp/%s/%s && echo connected", host, port);
		execl("/bin/bash", "bash", "-c", script, (char *)NULL);
		kw_die_errno("execl /bin/bash", errno);
	}
	if (fork_child) {
		pid_t pid = fork();
		if (pid < 0)
			kw_die_errno("fork", errno);
		if (pid == 0) {
			fflush(stdout);
			_exit(do_connect(host, port, text));
		}
		int status;
		while (waitpid(pid, &status, 0) < 0) {
			if (errno != EINTR)
				kw_die_errno("waitpid", errno);
		}
		if (WIFEXITED(status))
			return WEXITSTATUS(status);
		printf("child killed by signal %d\n", WTERMSIG(status));
		return 128 + WTERMSIG(status);
	}
	return do_connect(host, port, text);
}
