// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kw_uring_connect: connect through io_uring (IORING_OP_CONNECT), which must meet the
 * same LSM hook as connect(2).
 *
 *   kw_uring_connect HOST PORT [TEXT]
 *
 * The completion's result is the outcome: exits 0 when res == 0, else -res
 * ("io_uring connect: EPERM (1)"). If io_uring itself is unavailable (ENOSYS, or EPERM
 * from kernel.io_uring_disabled) the line says "io_uring_queue_init" instead, so a
 * test can tell the two EPERMs apart from the output. TEXT, if given, is written with
 * write(2) after the connect.
 */
#include "kw_common.h"

#include <liburing.h>

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct io_uring ring;
	struct io_uring_cqe *cqe;

	if (argc != 3 && argc != 4)
		kw_usage("usage: kw_uring_connect HOST PORT [TEXT]\n"
			 "  IORING_OP_CONNECT to HOST PORT; exit 0, or the completion's errno.\n");
	if (kw_parse_addr(argv[1], argv[2], &ss, &len))
		return KW_EXIT_USAGE;
	setvbuf(stdout, NULL, _IOLBF, 0);
	int rc = io_uring_queue_init(4, &ring, 0);
	if (rc < 0)
		kw_die_errno("io_uring_queue_init", -rc);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		kw_die_errno("socket", errno);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	if (!sqe)
		kw_die_errno("io_uring_get_sqe", EBUSY);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&ss, len);
	rc = io_uring_submit(&ring);
	if (rc < 0)
		kw_die_errno("io_uring_submit", -rc);
	rc = io_uring_wait_cqe(&ring, &cqe);
	if (rc < 0)
		kw_die_errno("io_uring_wait_cqe", -rc);
	int res = cqe->res;
	io_uring_cqe_seen(&ring, cqe);
	io_uring_queue_exit(&ring);
	if (res < 0)
		kw_die_errno("io_uring connect", -res);
	if (argc == 4) {
		if (kw_write_all(fd, argv[3], strlen(argv[3])) < 0)
			kw_die_errno("send", errno);
		kw_finish_stream(fd);
		printf("io_uring connect: ok, sent %zu bytes\n", strlen(argv[3]));
	} else {
		printf("io_uring connect: ok\n");
	}
	close(fd);
	return 0;
}
