/* SPDX-License-Identifier: MIT */
/*
 * zc_threshold - what does a zero-copy send cost against a copying send, by size?
 *
 * One io_uring, one registered buffer, a TCP connection over 127.0.0.1 whose
 * other end a second thread drains. For each size, send the same buffer for a
 * fixed time with IORING_OP_SEND and with IORING_OP_SEND_ZC (fixed buffer),
 * one send in flight at a time (as veloq does per socket), and report the
 * sending thread's CPU time per KiB and the rate. Loopback copies zero-copy
 * pages on delivery anyway, so this measures only the *cost* side of send_zc
 * (pinning, the notification CQE): the floor a NIC's saved copy has to beat.
 *
 * Usage: zc_threshold [seconds-per-point]   Output: one markdown table.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <liburing.h>

#define MAX_SIZE (256u << 10)

static double now(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *drain(void *arg)
{
	int fd = *(int *)arg;
	static char buf[1 << 20];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

static void connect_pair(int *a, int *b)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&sa, &len)) {
		perror("listen");
		exit(1);
	}
	*a = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(*a, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("connect");
		exit(1);
	}
	*b = accept(l, NULL, NULL);
	setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	close(l);
}

/* Send `size` bytes repeatedly for `secs`; returns CPU ns per KiB, rate in *mbps. */
static double run(struct io_uring *ring, int fd, char *buf, unsigned size, int zc, double secs,
		  double *mbps)
{
	double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_THREAD_CPUTIME_ID), t1, c1;
	unsigned long long bytes = 0;

	do {
		for (int k = 0; k < 64; k++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
			struct io_uring_cqe *cqe;
			int pending = zc ? 2 : 1, res = 0;

			if (zc)
				io_uring_prep_send_zc_fixed(sqe, fd, buf, size, MSG_NOSIGNAL, 0, 0);
			else
				io_uring_prep_send(sqe, fd, buf, size, MSG_NOSIGNAL);
			io_uring_submit(ring);
			while (pending) {
				if (io_uring_wait_cqe(ring, &cqe))
					exit(1);
				if (!(cqe->flags & IORING_CQE_F_NOTIF)) {
					res = cqe->res;
					if (!(cqe->flags & IORING_CQE_F_MORE))
						pending = 1; /* no notification follows */
				}
				pending--;
				io_uring_cqe_seen(ring, cqe);
			}
			if (res < 0) {
				fprintf(stderr, "send: %s\n", strerror(-res));
				exit(1);
			}
			bytes += (unsigned)res;
		}
		t1 = now(CLOCK_MONOTONIC);
	} while (t1 - t0 < secs);
	c1 = now(CLOCK_THREAD_CPUTIME_ID);
	*mbps = (double)bytes / (t1 - t0) / 1e6;
	return (c1 - c0) * 1e9 / ((double)bytes / 1024.0);
}

int main(int argc, char **argv)
{
	static const unsigned sizes[] = { 1024, 2048, 4096, 8192, 16384, 65536, MAX_SIZE };
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	struct io_uring ring;
	struct iovec iov;
	pthread_t t;
	char *buf = aligned_alloc(4096, MAX_SIZE);
	int a, b;

	memset(buf, 'z', MAX_SIZE);
	if (io_uring_queue_init(64, &ring, 0)) {
		perror("io_uring_queue_init");
		return 77;
	}
	iov = (struct iovec){ buf, MAX_SIZE };
	if (io_uring_register_buffers(&ring, &iov, 1)) {
		fprintf(stderr, "register_buffers failed (memlock?)\n");
		return 1;
	}
	connect_pair(&a, &b);
	pthread_create(&t, NULL, drain, &b);
	printf("| size | send ns CPU/KiB | send_zc ns CPU/KiB | zc/send | send MB/s |"
	       " send_zc MB/s |\n");
	printf("|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		double m1, m2, c1, c2;

		run(&ring, a, buf, sizes[i], 0, secs / 4, &m1); /* warm up */
		c1 = run(&ring, a, buf, sizes[i], 0, secs, &m1);
		c2 = run(&ring, a, buf, sizes[i], 1, secs, &m2);
		printf("| %u | %.0f | %.0f | %.2f | %.0f | %.0f |\n", sizes[i], c1, c2, c2 / c1, m1,
		       m2);
	}
	shutdown(a, SHUT_WR);
	pthread_join(t, NULL);
	return 0;
}
