/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The connection layer of kw_load: plain sockets (kw_load, also what a workload under
 * kwarden uses: the kernel does the TLS), or, built with KW_LOAD_TLS, BoringSSL in the
 * process with its own record layer (kw_load_tls, kw_load_tls.cpp).
 */
#ifndef KW_LOAD_IO_H
#define KW_LOAD_IO_H

#include <stddef.h>
#include <sys/types.h>
#include <unistd.h>

struct kw_conn {
	int fd;	   /* -1: closed, or the handshake failed */
	void *tls; /* the SSL, in kw_load_tls */
	char mode; /* the client's mode byte, on the server */
};

#ifdef KW_LOAD_TLS

#define KW_CONN_USAGE                                                                          \
	"  TLS 1.3 with mutual authentication (kw_load_tls): --cert PEM (chain) --key PEM\n"   \
	"  --ca PEM (root) --cipher aes-128-gcm|aes-256-gcm|chacha20-poly1305 [--peer-id ID]\n" \
	"  (chacha20-poly1305 is negotiated only without AES hardware: OPENSSL_ia32cap)\n"

#ifdef __cplusplus
extern "C" {
#endif
/* Takes one of the options above; nonzero if NAME is not one. */
int kw_conn_option(const char *name, const char *value);
/* Builds the TLS context for a server or a client; nonzero (with a message) on failure. */
int kw_conn_setup(int server);
/* Runs the handshake on FD (taken over); .fd is -1 if it failed (FD is then closed). */
struct kw_conn kw_conn_start(int fd, int server);
ssize_t kw_conn_read(struct kw_conn *c, void *buf, size_t len);
int kw_conn_write_all(struct kw_conn *c, const void *buf, size_t len);
void kw_conn_close(struct kw_conn *c);
#ifdef __cplusplus
}
#endif

#else /* plain sockets */

#define KW_CONN_USAGE ""

static inline int kw_conn_option(const char *name, const char *value)
{
	(void)name;
	(void)value;
	return -1;
}

static inline int kw_conn_setup(int server)
{
	(void)server;
	return 0;
}

static inline struct kw_conn kw_conn_start(int fd, int server)
{
	(void)server;
	struct kw_conn c = { .fd = fd };
	return c;
}

static inline ssize_t kw_conn_read(struct kw_conn *c, void *buf, size_t len)
{
	return read(c->fd, buf, len);
}

static inline int kw_conn_write_all(struct kw_conn *c, const void *buf, size_t len)
{
	return kw_write_all(c->fd, buf, len);
}

static inline void kw_conn_close(struct kw_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

#endif /* KW_LOAD_TLS */

#endif /* KW_LOAD_IO_H */
