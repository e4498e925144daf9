// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_load: the load generator of `make bench` (bench/guest.sh), client and server in one
 * binary, over plain TCP sockets. The same source built with KW_LOAD_TLS and
 * kw_load_tls.cpp is kw_load_tls, whose connections run BoringSSL in the process (the
 * library pattern). Under kwarden the plain binary is the workload: the agent makes its
 * sockets mTLS+kTLS without it knowing.
 *
 *   kw_load serve   [--accept-threads N] HOST PORT       serves every client mode below
 *   kw_load connect --duration S [--threads P] [--watch-pid PID] HOST PORT
 *                   connect() + close() per second
 *   kw_load newconn --duration S [--threads P] [--watch-pid PID] HOST PORT
 *                   connections per second: connect, 1-byte exchange, close
 *   kw_load bulk    --duration S --conns P HOST PORT     receive the server's 64 KiB writes
 *   kw_load latency --duration S [--size B] HOST PORT    B bytes each way, every round trip timed
 *   kw_load hold    --conns N [--threads P] HOST PORT    open N connections (1-byte exchange
 *                   each), print a line, keep them until SIGTERM
 *   kw_load exec    --duration S [--watch-pid PID] PATH  posix_spawn(PATH) + wait per second
 *   kw_load mmap    --duration S PATH                    mmap(PATH, PROT_EXEC) + munmap per second
 *   kw_load pipe    --duration S [--size B]              write(2) B bytes into a pipe, read(2) them
 *                   back, per second
 *   kw_load echo    --duration S [--size B] HOST PORT    send(2) B bytes, recv(2) the echo, per
 *                   second, on one connection (the plain binary only)
 *   kw_load sysinfo                                      the CPU's hypervisor signature
 *
 * Timed modes first run for --warmup seconds (default 0.5) and then measure --repeats
 * windows (default 1) of --duration seconds, back to back, on the same connections and
 * threads: counts, bytes and CPU are differences across each window. CPU is
 * the whole machine's busy time from /proc/stat (user+nice+system+irq+softirq+steal),
 * i.e. every process involved and the kernel's own work; --watch-pid adds one process's
 * utime+stime over the same window. Each window prints one JSON object on stdout. Exit 0,
 * or the errno of the first failed call (see kw_common.h), or KW_EXIT_USAGE.
 *
 * Protocol: after connecting, the client sends one mode byte: 'B' the server writes
 * 64 KiB until the connection breaks; 'E' it echoes until EOF; 'P' it answers one byte
 * and waits for EOF; 'H' it answers one byte and keeps the connection open. A
 * connection closed before any byte (the connect mode) is closed back.
 */
#include "kw_common.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

#include "kw_load_io.h"

#define CHUNK (64 * 1024)
#define MAX_THREADS 1024
#define THREAD_STACK (256 * 1024)

extern char **environ;

struct options {
	double duration, warmup;
	int repeats, threads, conns, accept_threads;
	int size;
	int watch_pid;
	struct sockaddr_storage addr;
	socklen_t addr_len;
};

static struct options opt = { .duration = 2, .warmup = 0.5, .repeats = 1, .threads = 1, .conns = 1,
			       .accept_threads = 4, .size = 1024 };
static atomic_int stopping;

/* ---- time and CPU ------------------------------------------------------------------------ */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Busy seconds of the whole machine: /proc/stat "cpu" user nice system idle iowait irq
 * softirq steal (guest time is already inside user). */
static double machine_busy_s(void)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "re");
	if (!f || fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
			 &v[6], &v[7]) != 8)
		kw_die_errno("read /proc/stat", errno ? errno : EIO);
	fclose(f);
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* utime+stime of PID (all its threads), in seconds; 0 without --watch-pid. */
static double pid_cpu_s(int pid)
{
	char path[64], buf[4096];
	unsigned long long utime = 0, stime = 0;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		kw_die_errno("open /proc/PID/stat of --watch-pid", errno);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		kw_die_errno("read /proc/PID/stat of --watch-pid", n < 0 ? errno : EIO);
	buf[n] = 0;
	/* Fields after the command name, which may hold spaces: state is field 3, utime 14. */
	const char *p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
		kw_die_errno("parse /proc/PID/stat of --watch-pid", EIO);
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* One end of a measured window; a window is the difference of two marks. */
struct mark {
	double t, busy, watched;
	unsigned long long count;
};

static struct mark mark_now(unsigned long long count)
{
	struct mark m = { now_s(), machine_busy_s(), pid_cpu_s(opt.watch_pid), count };
	return m;
}

static struct mark window_of(struct mark a, struct mark b)
{
	struct mark w = { b.t - a.t, b.busy - a.busy, b.watched - a.watched, b.count - a.count };
	return w;
}

/* ---- connections ----------------------------------------------------------------------- */

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int tcp_connect(void)
{
	int fd = socket(opt.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		kw_die_errno("socket", errno);
	set_nodelay(fd);
	if (connect(fd, (struct sockaddr *)&opt.addr, opt.addr_len) < 0)
		kw_die_errno("connect", errno);
	return fd;
}

static struct kw_conn client_open(void)
{
	return kw_conn_start(tcp_connect(), 0);
}

static void read_exact(struct kw_conn *c, char *buf, size_t len, const char *what)
{
	while (len > 0) {
		ssize_t n = kw_conn_read(c, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			kw_die_errno(what, n < 0 ? errno : ECONNRESET);
		buf += n;
		len -= (size_t)n;
	}
}

static void write_exact(struct kw_conn *c, const char *buf, size_t len, const char *what)
{
	if (kw_conn_write_all(c, buf, len) < 0)
		kw_die_errno(what, errno);
}

/* Sends MODE and, for 'P' and 'H', waits for the server's one-byte answer: the
 * connection really carries data both ways (through kwarden: the handshakes are done). */
static void client_hello(struct kw_conn *c, char mode)
{
	char b = mode;
	write_exact(c, &b, 1, "send mode byte");
	if (mode == 'P' || mode == 'H')
		read_exact(c, &b, 1, "read answer byte");
}

static pthread_t start_thread(void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	pthread_t t;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	int err = pthread_create(&t, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	if (err)
		kw_die_errno("pthread_create", err);
	return t;
}

/* ---- server ----------------------------------------------------------------------------- */

static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kw_conn *held;
static size_t held_n, held_cap;

static void keep_open(struct kw_conn c)
{
	pthread_mutex_lock(&held_lock);
	if (held_n == held_cap) {
		held_cap = held_cap ? held_cap * 2 : 1024;
		held = realloc(held, held_cap * sizeof(*held));
		if (!held)
			kw_die_errno("realloc", ENOMEM);
	}
	held[held_n++] = c;
	pthread_mutex_unlock(&held_lock);
}

/* 'B' and 'E' get a thread of their own: they last as long as the client wants. */
static void *serve_stream(void *arg)
{
	struct kw_conn *c = arg;
	char *buf = malloc(CHUNK);
	if (!buf)
		kw_die_errno("malloc", ENOMEM);
	memset(buf, 'k', CHUNK);
	if (c->mode == 'B') {
		while (kw_conn_write_all(c, buf, CHUNK) == 0)
			;
	} else {
		for (;;) {
			ssize_t n = kw_conn_read(c, buf, CHUNK);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0 || kw_conn_write_all(c, buf, (size_t)n) < 0)
				break;
		}
	}
	kw_conn_close(c);
	free(buf);
	free(c);
	return NULL;
}

static void serve_one(int fd)
{
	char b;
	set_nodelay(fd);
	struct kw_conn c = kw_conn_start(fd, 1);
	if (c.fd < 0)
		return; /* a failed handshake: kw_conn_start said why */
	ssize_t n = kw_conn_read(&c, &b, 1);
	if (n == 1 && (b == 'P' || b == 'H')) {
		if (kw_conn_write_all(&c, &b, 1) < 0) {
			kw_conn_close(&c);
			return;
		}
		if (b == 'H') {
			keep_open(c);
			return;
		}
		char rest[64];
		while (kw_conn_read(&c, rest, sizeof(rest)) > 0)
			;
	} else if (n == 1 && (b == 'B' || b == 'E')) {
		struct kw_conn *own = malloc(sizeof(*own));
		if (!own)
			kw_die_errno("malloc", ENOMEM);
		*own = c;
		own->mode = b;
		pthread_detach(start_thread(serve_stream, own));
		return;
	}
	kw_conn_close(&c);
}

static void *accept_loop(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			/* The listener is blocking, but under kwarden a held accept() can return
			 * EAGAIN when several threads wait in accept() at once (the agent takes
			 * the listener's O_NONBLOCK, set by its own held call, for the app's):
			 * wait for a connection like a poll-then-accept server, and go on. */
			if (errno == EAGAIN) {
				struct pollfd p = { .fd = lfd, .events = POLLIN };
				if (poll(&p, 1, -1) < 0 && errno != EINTR)
					kw_die_errno("poll", errno);
				continue;
			}
			kw_die_errno("accept", errno);
		}
		serve_one(fd);
	}
	return NULL;
}

static int cmd_serve(void)
{
	int one = 1;
	int lfd = socket(opt.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		kw_die_errno("socket", errno);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&opt.addr, opt.addr_len) < 0)
		kw_die_errno("bind", errno);
	if (listen(lfd, 4096) < 0)
		kw_die_errno("listen", errno);
	printf("{\"mode\":\"serve\",\"accept_threads\":%d}\n", opt.accept_threads);
	/* Several threads in accept(): under kwarden each holds one call the agent serves, so
	 * server handshakes can run while another connection is handed over. */
	for (int i = 1; i < opt.accept_threads; i++)
		pthread_detach(start_thread(accept_loop, (void *)(intptr_t)lfd));
	accept_loop((void *)(intptr_t)lfd);
	return 0;
}

/* ---- timed client modes ---------------------------------------------------------------- */

struct worker {
	pthread_t thread;
	atomic_ullong count; /* connections (connect, newconn) or bytes (bulk) */
	atomic_int ready;
	struct kw_conn conn;
};

static struct worker workers[MAX_THREADS];

static void *connect_worker(void *arg)
{
	struct worker *w = arg;
	atomic_store(&w->ready, 1);
	while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
		int fd = tcp_connect();
		close(fd);
		atomic_fetch_add_explicit(&w->count, 1, memory_order_relaxed);
	}
	return NULL;
}

static void *newconn_worker(void *arg)
{
	struct worker *w = arg;
	atomic_store(&w->ready, 1);
	while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
		struct kw_conn c = client_open();
		if (c.fd < 0)
			kw_die_errno("handshake", ECONNREFUSED);
		client_hello(&c, 'P');
		kw_conn_close(&c);
		atomic_fetch_add_explicit(&w->count, 1, memory_order_relaxed);
	}
	return NULL;
}

static void *bulk_worker(void *arg)
{
	struct worker *w = arg;
	char *buf = malloc(CHUNK);
	if (!buf)
		kw_die_errno("malloc", ENOMEM);
	w->conn = client_open();
	if (w->conn.fd < 0)
		kw_die_errno("handshake", ECONNREFUSED);
	client_hello(&w->conn, 'B');
	atomic_store(&w->ready, 1);
	for (;;) {
		ssize_t n = kw_conn_read(&w->conn, buf, CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (atomic_load(&stopping))
				break;
			kw_die_errno("bulk read", n < 0 ? errno : ECONNRESET);
		}
		atomic_fetch_add_explicit(&w->count, (unsigned long long)n, memory_order_relaxed);
	}
	free(buf);
	return NULL;
}

static unsigned long long total_count(int n)
{
	unsigned long long sum = 0;
	for (int i = 0; i < n; i++)
		sum += atomic_load(&workers[i].count);
	return sum;
}

/* Starts N workers, waits until each is ready (connected, for bulk), runs the warmup,
 * then measures --repeats windows back to back, each printed by REPORT. */
static void run_workers(int n, void *(*fn)(void *), void (*report)(int repeat, struct mark w))
{
	if (n < 1 || n > MAX_THREADS) {
		fprintf(stderr, "kw_load: between 1 and %d threads or connections\n", MAX_THREADS);
		exit(KW_EXIT_USAGE);
	}
	for (int i = 0; i < n; i++)
		workers[i].thread = start_thread(fn, &workers[i]);
	for (int i = 0; i < n; i++)
		while (!atomic_load(&workers[i].ready))
			sleep_s(0.001);
	sleep_s(opt.warmup);
	struct mark m0 = mark_now(total_count(n));
	for (int r = 1; r <= opt.repeats; r++) {
		sleep_s(opt.duration);
		struct mark m1 = mark_now(total_count(n));
		report(r, window_of(m0, m1));
		m0 = m1;
	}
}

static void stop_workers(int n, int shut)
{
	atomic_store(&stopping, 1);
	for (int i = 0; i < n; i++) {
		if (shut && workers[i].conn.fd >= 0)
			shutdown(workers[i].conn.fd, SHUT_RDWR); /* wakes a blocked read */
		pthread_join(workers[i].thread, NULL);
	}
}

/* Ends a result line: the --watch-pid process's CPU, if one is watched. */
static void end_line(struct mark w)
{
	if (opt.watch_pid > 0)
		printf(",\"watch_pid\":%d,\"watch_cpu_s\":%.3f", opt.watch_pid, w.watched);
	printf("}\n");
}

static const char *connect_mode;

static void report_connect(int repeat, struct mark w)
{
	printf("{\"mode\":\"%s\",\"repeat\":%d,\"threads\":%d,\"seconds\":%.4f,\"count\":%llu,\"per_s\":%.2f,"
	       "\"cpu_busy_s\":%.3f",
	       connect_mode, repeat, opt.threads, w.t, w.count, (double)w.count / w.t, w.busy);
	end_line(w);
}

static int cmd_connect(int with_exchange)
{
	connect_mode = with_exchange ? "newconn" : "connect";
	run_workers(opt.threads, with_exchange ? newconn_worker : connect_worker, report_connect);
	stop_workers(opt.threads, 0);
	return 0;
}

static void report_bulk(int repeat, struct mark w)
{
	double gb = (double)w.count / 1e9;
	printf("{\"mode\":\"bulk\",\"repeat\":%d,\"conns\":%d,\"seconds\":%.4f,\"bytes\":%llu,\"mb_per_s\":%.2f,"
	       "\"cpu_busy_s\":%.3f,\"cpu_s_per_gb\":%.3f}\n",
	       repeat, opt.conns, w.t, w.count, (double)w.count / 1e6 / w.t, w.busy, gb > 0 ? w.busy / gb : 0.0);
}

static int cmd_bulk(void)
{
	for (int i = 0; i < opt.conns; i++)
		workers[i].conn.fd = -1;
	run_workers(opt.conns, bulk_worker, report_bulk);
	stop_workers(opt.conns, 1);
	for (int i = 0; i < opt.conns; i++)
		kw_conn_close(&workers[i].conn);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The value below which a share Q of the samples lie (nearest rank). */
static double percentile(const double *sorted, size_t n, double q)
{
	size_t rank = (size_t)(q * (double)n + 0.999999);
	return sorted[rank ? rank - 1 : 0];
}

/* One round trip: SIZE bytes out, SIZE bytes back. */
static void round_trip(struct kw_conn *c, const char *req, char *resp)
{
	write_exact(c, req, (size_t)opt.size, "latency send");
	read_exact(c, resp, (size_t)opt.size, "latency read");
}

static int cmd_latency(void)
{
	char *req = malloc((size_t)opt.size), *resp = malloc((size_t)opt.size);
	size_t cap = 1 << 16;
	double *us = malloc(cap * sizeof(*us));
	if (!req || !resp || !us)
		kw_die_errno("malloc", ENOMEM);
	memset(req, 'q', (size_t)opt.size);
	struct kw_conn c = client_open();
	if (c.fd < 0)
		kw_die_errno("handshake", ECONNREFUSED);
	client_hello(&c, 'E');
	for (double t_end = now_s() + opt.warmup; now_s() < t_end;)
		round_trip(&c, req, resp);
	for (int r = 1; r <= opt.repeats; r++) {
		size_t n = 0;
		double sum = 0, start = now_s(), t0 = start, t_end = start + opt.duration;
		while (t0 < t_end) {
			round_trip(&c, req, resp);
			double t1 = now_s();
			if (n == cap) {
				cap *= 2;
				us = realloc(us, cap * sizeof(*us));
				if (!us)
					kw_die_errno("realloc", ENOMEM);
			}
			us[n++] = (t1 - t0) * 1e6;
			sum += (t1 - t0) * 1e6;
			t0 = t1;
		}
		qsort(us, n, sizeof(*us), cmp_double);
		printf("{\"mode\":\"latency\",\"repeat\":%d,\"size\":%d,\"seconds\":%.4f,\"count\":%zu,"
		       "\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f,\"max_us\":%.1f}\n",
		       r, opt.size, t0 - start, n, percentile(us, n, 0.50), percentile(us, n, 0.99), sum / (double)n,
		       us[n - 1]);
	}
	kw_conn_close(&c);
	return 0;
}

/* ---- hold ------------------------------------------------------------------------------- */

static atomic_int hold_next;

static void *hold_worker(void *arg)
{
	(void)arg;
	for (;;) {
		int i = atomic_fetch_add(&hold_next, 1);
		if (i >= opt.conns)
			return NULL;
		struct kw_conn c = client_open();
		if (c.fd < 0)
			kw_die_errno("handshake", ECONNREFUSED);
		client_hello(&c, 'H');
		keep_open(c);
	}
}

static int cmd_hold(void)
{
	sigset_t set;
	int sig;
	struct rlimit rl;
	/* Each connection is one descriptor here (and one in the server). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt.conns + 64) {
		fprintf(stderr, "kw_load: RLIMIT_NOFILE %llu is too low for %d connections\n",
			(unsigned long long)rl.rlim_cur, opt.conns);
		return KW_EXIT_USAGE;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	double start = now_s();
	int n = opt.threads < opt.conns ? opt.threads : opt.conns;
	for (int i = 0; i < n; i++)
		workers[i].thread = start_thread(hold_worker, NULL);
	for (int i = 0; i < n; i++)
		pthread_join(workers[i].thread, NULL);
	printf("{\"mode\":\"hold\",\"conns\":%zu,\"seconds\":%.3f}\n", held_n, now_s() - start);
	fflush(stdout);
	sigwait(&set, &sig);
	return 0;
}

/* ---- exec --------------------------------------------------------------------------------- */

static void spawn_wait(const char *path)
{
	pid_t pid;
	int status;
	char *argv[] = { (char *)path, NULL };
	int err = posix_spawn(&pid, path, NULL, NULL, argv, environ);
	if (err)
		kw_die_errno("posix_spawn", err);
	if (waitpid(pid, &status, 0) < 0)
		kw_die_errno("waitpid", errno);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("exec: %s did not exit 0 (status 0x%x)\n", path, status);
		exit(KW_EXIT_USAGE);
	}
}

/* Runs ONCE(ARG) for the warm-up, then counts its calls over each timed window and prints
 * one MODE line per window: the shape of every one-operation-at-a-time mode. */
static void timed_loop(const char *mode, void (*once)(const void *), const void *arg)
{
	for (double t_end = now_s() + opt.warmup; now_s() < t_end;)
		once(arg);
	struct mark m0 = mark_now(0);
	for (int r = 1; r <= opt.repeats; r++) {
		unsigned long long n = 0;
		for (double t_end = m0.t + opt.duration; now_s() < t_end; n++)
			once(arg);
		struct mark w = window_of(m0, mark_now(n));
		printf("{\"mode\":\"%s\",\"repeat\":%d,\"seconds\":%.4f,\"count\":%llu,\"per_s\":%.2f,"
		       "\"cpu_busy_s\":%.3f",
		       mode, r, w.t, w.count, (double)w.count / w.t, w.busy);
		end_line(w);
		m0 = mark_now(0);
	}
}

static void spawn_once(const void *path)
{
	spawn_wait(path);
}

static int cmd_exec(const char *path)
{
	timed_loop("exec", spawn_once, path);
	return 0;
}

/* ---- mmap ----------------------------------------------------------------------------------- */

struct map_target {
	int fd;
	size_t page;
};

/* Maps one page executable and unmaps it again: what a loader or dlopen() does per
 * segment, so the kernel's hooks on executable mappings run once per call. */
static void map_exec_once(const void *arg)
{
	const struct map_target *m = arg;
	void *p = mmap(NULL, m->page, PROT_READ | PROT_EXEC, MAP_PRIVATE, m->fd, 0);
	if (p == MAP_FAILED)
		kw_die_errno("mmap PROT_EXEC", errno);
	munmap(p, m->page);
}

static int cmd_mmap(const char *path)
{
	struct map_target m = { .fd = open(path, O_RDONLY | O_CLOEXEC), .page = (size_t)sysconf(_SC_PAGESIZE) };
	if (m.fd < 0)
		kw_die_errno("open", errno);
	timed_loop("mmap", map_exec_once, &m);
	close(m.fd);
	return 0;
}

/* ---- pipe and echo: small I/O, what every process does ---------------------------------------- */

struct io_target {
	int rd, wr;
	char *buf;
};

static void pipe_once(const void *arg)
{
	const struct io_target *t = arg;
	if (write(t->wr, t->buf, (size_t)opt.size) != opt.size)
		kw_die_errno("pipe write", errno ? errno : EIO);
	if (read(t->rd, t->buf, (size_t)opt.size) != opt.size)
		kw_die_errno("pipe read", errno ? errno : EIO);
}

static int cmd_pipe(void)
{
	int fds[2];
	struct io_target t = { .buf = calloc(1, (size_t)opt.size) };
	if (!t.buf || opt.size > 4096)
		kw_die_errno("pipe --size (at most 4096)", EINVAL);
	if (pipe(fds) < 0)
		kw_die_errno("pipe", errno);
	t.rd = fds[0];
	t.wr = fds[1];
	timed_loop("pipe", pipe_once, &t);
	return 0;
}

static void echo_once(const void *arg)
{
	const struct io_target *t = arg;
	if (send(t->wr, t->buf, (size_t)opt.size, 0) != opt.size)
		kw_die_errno("echo send", errno ? errno : EIO);
	for (int got = 0; got < opt.size;) {
		ssize_t n = recv(t->rd, t->buf + got, (size_t)(opt.size - got), 0);
		if (n <= 0)
			kw_die_errno("echo recv", n < 0 ? errno : ECONNRESET);
		got += (int)n;
	}
}

static int cmd_echo(void)
{
#ifdef KW_LOAD_TLS
	kw_die_errno("echo: plain sockets only (kw_load)", EINVAL);
#endif
	struct kw_conn c = client_open();
	if (c.fd < 0)
		kw_die_errno("connect", ECONNREFUSED);
	client_hello(&c, 'E');
	struct io_target t = { .rd = c.fd, .wr = c.fd, .buf = calloc(1, (size_t)opt.size) };
	if (!t.buf)
		kw_die_errno("malloc", ENOMEM);
	timed_loop("echo", echo_once, &t);
	kw_conn_close(&c);
	return 0;
}

/* ---- sysinfo -------------------------------------------------------------------------------- */

/* The hypervisor's CPUID signature (leaf 0x40000000), "" on bare metal: QEMU software
 * emulation (TCG) says "TCGTCGTCGTCG", KVM "KVMKVMKVM". */
static int cmd_sysinfo(void)
{
	char sig[13] = "";
#if defined(__x86_64__) || defined(__i386__)
	unsigned a = 1, b, c, d;
	__asm__ volatile("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d));
	if (c & (1u << 31)) { /* CPUID.1:ECX.hypervisor */
		a = 0x40000000;
		__asm__ volatile("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d));
		memcpy(sig, &b, 4);
		memcpy(sig + 4, &c, 4);
		memcpy(sig + 8, &d, 4);
		for (int i = 0; i < 12; i++)
			if (sig[i] < 0x20 || sig[i] > 0x7e)
				sig[i] = sig[i] ? '?' : 0;
	}
#endif
	printf("{\"hypervisor\":\"%s\",\"emulated\":%s}\n", sig, strcmp(sig, "TCGTCGTCGTCG") ? "false" : "true");
	return 0;
}

/* ---- main ------------------------------------------------------------------------------------ */

static const char usage[] =
	"usage: kw_load serve [--accept-threads N] HOST PORT\n"
	"       kw_load connect|newconn TIMING [--threads P] [--watch-pid PID] HOST PORT\n"
	"       kw_load bulk TIMING --conns P HOST PORT\n"
	"       kw_load latency TIMING [--size BYTES] HOST PORT\n"
	"       kw_load hold --conns N [--threads P] HOST PORT\n"
	"       kw_load exec TIMING [--watch-pid PID] PATH\n"
	"       kw_load mmap TIMING PATH\n"
	"       kw_load pipe TIMING [--size BYTES]\n"
	"       kw_load echo TIMING [--size BYTES] HOST PORT\n"
	"       kw_load sysinfo\n"
	"  TIMING: --duration S [--warmup S] [--repeats N]\n" KW_CONN_USAGE;

static double number(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (!*s || *end || v < 0)
		kw_usage(usage);
	return v;
}

/* The numeric options: where each goes, as a double or an int. */
static int numeric_option(const char *name, const char *value)
{
	static const struct {
		const char *name;
		double *real;
		int *whole;
	} table[] = {
		{ "--duration", &opt.duration, NULL },	  { "--warmup", &opt.warmup, NULL },
		{ "--repeats", NULL, &opt.repeats },	  { "--threads", NULL, &opt.threads },
		{ "--conns", NULL, &opt.conns },	  { "--accept-threads", NULL, &opt.accept_threads },
		{ "--size", NULL, &opt.size },		  { "--watch-pid", NULL, &opt.watch_pid },
	};
	for (size_t k = 0; k < sizeof(table) / sizeof(table[0]); k++) {
		if (strcmp(name, table[k].name))
			continue;
		if (table[k].real)
			*table[k].real = number(value);
		else
			*table[k].whole = (int)number(value);
		return 0;
	}
	return -1;
}

int main(int argc, char **argv)
{
	int i = 2;
	if (argc < 2)
		kw_usage(usage);
	const char *cmd = argv[1];
	for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
		const char *o = argv[i];
		if (i + 1 >= argc)
			kw_usage(usage);
		const char *v = argv[++i];
		if (numeric_option(o, v) != 0 && kw_conn_option(o, v) != 0)
			kw_usage(usage);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(cmd, "sysinfo"))
		return cmd_sysinfo();
	if (!strcmp(cmd, "exec")) {
		if (argc - i != 1)
			kw_usage(usage);
		return cmd_exec(argv[i]);
	}
	if (!strcmp(cmd, "mmap")) {
		if (argc - i != 1)
			kw_usage(usage);
		return cmd_mmap(argv[i]);
	}
	if (!strcmp(cmd, "pipe")) {
		if (argc - i != 0 || opt.size <= 0)
			kw_usage(usage);
		return cmd_pipe();
	}
	if (argc - i != 2 || kw_parse_addr(argv[i], argv[i + 1], &opt.addr, &opt.addr_len) || opt.size <= 0 ||
	    opt.duration <= 0 || opt.repeats < 1)
		kw_usage(usage);
	if (kw_conn_setup(!strcmp(cmd, "serve")) != 0)
		return KW_EXIT_USAGE;
	if (!strcmp(cmd, "serve"))
		return cmd_serve();
	if (!strcmp(cmd, "connect"))
		return cmd_connect(0);
	if (!strcmp(cmd, "newconn"))
		return cmd_connect(1);
	if (!strcmp(cmd, "bulk"))
		return cmd_bulk();
	if (!strcmp(cmd, "latency"))
		return cmd_latency();
	if (!strcmp(cmd, "echo"))
		return cmd_echo();
	if (!strcmp(cmd, "hold"))
		return cmd_hold();
	kw_usage(usage);
}
