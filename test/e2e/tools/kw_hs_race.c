// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_hs_race: a multi-threaded client that tries to move data on its own socket while
 * the agent owns it for a mutual-TLS handshake (t_mtls_handshake_backstop).
 *
 *   kw_hs_race [--managed] --marker TEXT HOST PORT
 *
 * Default: the main thread connect()s (enrolled: the agent holds the call while it
 * connects the socket and handshakes). A second thread waits until the socket has a
 * peer (getpeername succeeds: the agent has connected it, so the handshake is running),
 * then tries every data operation on the same descriptor, each carrying a line with
 * TEXT, and prints one line per operation:
 *
 *   handshake send: EPERM (1)         or "handshake send: ok 23" if it went through
 *   handshake held: yes               connect() was still held when the last one ended
 *   connect: ETIMEDOUT (110)          what connect() returned
 *   failed send: EPERM (1)            the same operations once connect() has failed
 *
 * and exits with connect()'s errno (0 if it succeeded).
 *
 * --managed: connect() must succeed (else exit with its errno); then a second thread
 * runs each writer with a reader, against a peer that echoes every line reversed
 * (openssl s_server -rev): the writer sends "OP-TEXT\n", the reader reads until the
 * reversed line is back. Prints "managed OP: ok N" per operation (or its errno, or
 * "managed OP: wrong reply ..."); exits 0 if every operation worked, else the errno of
 * the first that failed (EBADMSG for a wrong or missing reply).
 *
 * Operations, writers: send, write, writev, sendfile (from a memfd), splice (pipe to
 * socket); readers: recv (MSG_DONTWAIT), read, readv, splice_in (socket to pipe),
 * recvmsg (MSG_DONTWAIT). Without --managed also two socket options: zerocopy
 * (getsockopt TCP_ZEROCOPY_RECEIVE, which takes received data without recvmsg; with
 * nothing mapped it fails EINVAL when allowed) and tls_keys (getsockopt SOL_TLS TLS_TX;
 * ENOPROTOOPT when allowed, before kTLS is installed).
 */
#include "kw_common.h"

#include <fcntl.h>
#include <linux/tcp.h>
#include <linux/tls.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/uio.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

#define NOPS 5
#define NOPTS 2
#define LINE_MAX_LEN 512

static int sock_fd = -1;
static const char *marker;
static int connect_done; /* __atomic: set by the main thread once connect() returned */

struct result {
	const char *op;
	int err;   /* errno, 0 for success */
	ssize_t n; /* bytes moved on success */
	int wrong; /* --managed: the reply was not the reversed line */
};

static void line_for(const char *op, char *out, size_t size)
{
	snprintf(out, size, "%s-%s\n", op, marker);
}

static void set_result(struct result *r, const char *op, ssize_t n)
{
	r->op = op;
	r->err = n < 0 ? errno : 0;
	r->n = n;
	r->wrong = 0;
}

/* ---- writers: one call each, LINE as the payload ------------------------------------- */

static ssize_t w_send(const char *line)
{
	return send(sock_fd, line, strlen(line), MSG_NOSIGNAL);
}

static ssize_t w_write(const char *line)
{
	return write(sock_fd, line, strlen(line));
}

static ssize_t w_writev(const char *line)
{
	size_t half = strlen(line) / 2;
	struct iovec iov[2] = { { (void *)line, half }, { (void *)(line + half), strlen(line) - half } };
	return writev(sock_fd, iov, 2);
}

static ssize_t w_sendfile(const char *line)
{
	int mfd = memfd_create("kw_hs_race", MFD_CLOEXEC);
	if (mfd < 0 || kw_write_all(mfd, line, strlen(line)) < 0)
		kw_die_errno("memfd", errno);
	off_t off = 0;
	ssize_t n = sendfile(sock_fd, mfd, &off, strlen(line));
	int saved = errno;
	close(mfd);
	errno = saved;
	return n;
}

static ssize_t w_splice(const char *line)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0 || kw_write_all(p[1], line, strlen(line)) < 0)
		kw_die_errno("pipe", errno);
	ssize_t n = splice(p[0], NULL, sock_fd, NULL, strlen(line), 0);
	int saved = errno;
	close(p[0]);
	close(p[1]);
	errno = saved;
	return n;
}

/* ---- readers: one call each into BUF ---------------------------------------------------- */

static ssize_t r_recv(char *buf, size_t len)
{
	return recv(sock_fd, buf, len, MSG_DONTWAIT);
}

static ssize_t r_read(char *buf, size_t len)
{
	return read(sock_fd, buf, len);
}

static ssize_t r_readv(char *buf, size_t len)
{
	struct iovec iov[2] = { { buf, len / 2 }, { buf + len / 2, len - len / 2 } };
	return readv(sock_fd, iov, 2);
}

static ssize_t r_splice_in(char *buf, size_t len)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		kw_die_errno("pipe", errno);
	ssize_t n = splice(sock_fd, NULL, p[1], NULL, len, SPLICE_F_NONBLOCK);
	int saved = errno;
	if (n > 0)
		n = read(p[0], buf, (size_t)n);
	else
		errno = saved;
	saved = errno;
	close(p[0]);
	close(p[1]);
	errno = saved;
	return n;
}

static ssize_t r_recvmsg(char *buf, size_t len)
{
	struct iovec iov = { buf, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	return recvmsg(sock_fd, &msg, MSG_DONTWAIT);
}

static const struct {
	const char *name;
	ssize_t (*fn)(const char *line);
} writers[NOPS] = {
	{ "send", w_send }, { "write", w_write }, { "writev", w_writev }, { "sendfile", w_sendfile }, { "splice", w_splice },
};

static const struct {
	const char *name;
	ssize_t (*fn)(char *buf, size_t len);
} readers[NOPS] = {
	{ "recv", r_recv }, { "read", r_read }, { "readv", r_readv }, { "splice_in", r_splice_in }, { "recvmsg", r_recvmsg },
};

/* ---- socket options that move data or keys ------------------------------------------- */

static ssize_t o_zerocopy(void)
{
	struct tcp_zerocopy_receive zc;
	socklen_t len = sizeof(zc);
	memset(&zc, 0, sizeof(zc));
	return getsockopt(sock_fd, IPPROTO_TCP, TCP_ZEROCOPY_RECEIVE, &zc, &len);
}

static ssize_t o_tls_keys(void)
{
	struct tls12_crypto_info_aes_gcm_128 info;
	socklen_t len = sizeof(info);
	ssize_t rc = getsockopt(sock_fd, SOL_TLS, TLS_TX, &info, &len);
	explicit_bzero(&info, sizeof(info));
	return rc;
}

static const struct {
	const char *name;
	ssize_t (*fn)(void);
} options[NOPTS] = {
	{ "zerocopy", o_zerocopy }, { "tls_keys", o_tls_keys },
};

#define NTRIES (2 * NOPS + NOPTS)

/* Every operation once, results in OUT (writers, readers, options). */
static void try_all(struct result out[NTRIES])
{
	char line[LINE_MAX_LEN], buf[LINE_MAX_LEN];

	for (int i = 0; i < NOPS; i++) {
		line_for(writers[i].name, line, sizeof(line));
		set_result(&out[i], writers[i].name, writers[i].fn(line));
	}
	for (int i = 0; i < NOPS; i++)
		set_result(&out[NOPS + i], readers[i].name, readers[i].fn(buf, sizeof(buf)));
	for (int i = 0; i < NOPTS; i++)
		set_result(&out[2 * NOPS + i], options[i].name, options[i].fn());
}

static void print_results(const char *phase, const struct result *r, int n)
{
	for (int i = 0; i < n; i++) {
		if (r[i].wrong)
			printf("%s %s: wrong reply\n", phase, r[i].op);
		else if (r[i].err) {
			const char *name = strerrorname_np(r[i].err);
			printf("%s %s: %s (%d)\n", phase, r[i].op, name ? name : "E?", r[i].err);
		} else
			printf("%s %s: ok %zd\n", phase, r[i].op, r[i].n);
	}
}

/* ---- the racing thread, during the handshake ------------------------------------------- */

struct race {
	struct result res[NTRIES];
	int connected; /* the socket got a peer while connect() was held */
	int held;      /* connect() was still held after the last operation */
};

static void *race_handshake(void *arg)
{
	struct race *race = arg;
	struct sockaddr_storage peer;

	for (int i = 0; i < 500 && !__atomic_load_n(&connect_done, __ATOMIC_SEQ_CST); i++) {
		socklen_t len = sizeof(peer);
		if (getpeername(sock_fd, (struct sockaddr *)&peer, &len) == 0) {
			race->connected = 1;
			break;
		}
		usleep(10 * 1000);
	}
	if (!race->connected || __atomic_load_n(&connect_done, __ATOMIC_SEQ_CST))
		return NULL;
	try_all(race->res);
	race->held = !__atomic_load_n(&connect_done, __ATOMIC_SEQ_CST);
	return NULL;
}

/* ---- the other thread, on a kTLS socket ------------------------------------------------ */

/* Reads with reader OP until EXPECT is in what arrived (10 s at most), into R. */
static void read_reply(int op, const char *expect, struct result *r)
{
	char got[4 * LINE_MAX_LEN] = "";
	size_t have = 0;

	r->op = readers[op].name;
	r->n = 0;
	for (int tries = 0; tries < 100 && !strstr(got, expect); tries++) {
		struct pollfd p = { .fd = sock_fd, .events = POLLIN };
		if (poll(&p, 1, 100) == 0)
			continue;
		ssize_t n = readers[op].fn(got + have, sizeof(got) - 1 - have);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0) {
			r->err = errno;
			return;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		r->n += n;
		got[have] = '\0';
	}
	if (!strstr(got, expect)) {
		r->wrong = 1;
		printf("%s: expected '%s', got '%s'\n", r->op, expect, got);
	}
}

static void *race_managed(void *arg)
{
	struct result *res = arg;
	char line[LINE_MAX_LEN], expect[LINE_MAX_LEN];

	for (int i = 0; i < NOPS; i++) {
		line_for(writers[i].name, line, sizeof(line));
		set_result(&res[i], writers[i].name, writers[i].fn(line));
		if (res[i].err == 0 && res[i].n != (ssize_t)strlen(line))
			res[i].wrong = 1; /* short write: the reply could not match */
		/* s_server -rev answers the line without its newline, reversed, then "\n". */
		size_t len = strlen(line) - 1;
		for (size_t k = 0; k < len; k++)
			expect[k] = line[len - 1 - k];
		expect[len] = '\n';
		expect[len + 1] = '\0';
		memset(&res[NOPS + i], 0, sizeof(res[NOPS + i]));
		if (res[i].err || res[i].wrong) {
			res[NOPS + i].op = readers[i].name;
			res[NOPS + i].err = ECANCELED; /* nothing to read back */
			continue;
		}
		read_reply(i, expect, &res[NOPS + i]);
	}
	return NULL;
}

static int first_failure(const struct result *r, int n)
{
	for (int i = 0; i < n; i++) {
		if (r[i].err)
			return r[i].err;
		if (r[i].wrong)
			return EBADMSG;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int managed = 0;
	int i = 1;
	static const char usage[] = "usage: kw_hs_race [--managed] --marker TEXT HOST PORT\n"
				    "  move data on the socket from a second thread while the agent handshakes\n"
				    "  (default) or once kTLS is in (--managed); see the source for the output.\n";

	for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
		if (!strcmp(argv[i], "--managed"))
			managed = 1;
		else if (!strcmp(argv[i], "--marker") && i + 1 < argc)
			marker = argv[++i];
		else
			kw_usage(usage);
	}
	if (argc - i != 2 || !marker || strlen(marker) > 200)
		kw_usage(usage);
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);

	struct sockaddr_storage ss;
	socklen_t len;
	if (kw_parse_addr(argv[i], argv[i + 1], &ss, &len))
		return KW_EXIT_USAGE;
	sock_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock_fd < 0)
		kw_die_errno("socket", errno);

	pthread_t t;
	if (managed) {
		if (connect(sock_fd, (struct sockaddr *)&ss, len) < 0)
			kw_die_errno("connect", errno);
		printf("connect: ok\n");
		struct result res[2 * NOPS];
		memset(res, 0, sizeof(res));
		int err = pthread_create(&t, NULL, race_managed, res);
		if (err || (err = pthread_join(t, NULL)))
			kw_die_errno("pthread", err);
		/* Writer and reader of a pair side by side, in the order they ran. */
		for (int k = 0; k < NOPS; k++) {
			print_results("managed", &res[k], 1);
			print_results("managed", &res[NOPS + k], 1);
		}
		close(sock_fd);
		return first_failure(res, 2 * NOPS);
	}

	struct race race;
	memset(&race, 0, sizeof(race));
	int err = pthread_create(&t, NULL, race_handshake, &race);
	if (err)
		kw_die_errno("pthread_create", err);
	int rc = connect(sock_fd, (struct sockaddr *)&ss, len);
	int connect_err = rc < 0 ? errno : 0;
	__atomic_store_n(&connect_done, 1, __ATOMIC_SEQ_CST);
	if ((err = pthread_join(t, NULL)))
		kw_die_errno("pthread_join", err);

	if (!race.connected)
		printf("handshake: the socket never had a peer while connect() was held\n");
	else
		print_results("handshake", race.res, NTRIES);
	printf("handshake held: %s\n", race.held ? "yes" : "no");
	if (connect_err) {
		const char *name = strerrorname_np(connect_err);
		printf("connect: %s (%d)\n", name ? name : "E?", connect_err);
	} else {
		printf("connect: ok\n");
	}

	struct result after[NTRIES];
	try_all(after);
	print_results("failed", after, NTRIES);
	close(sock_fd);
	return connect_err;
}
