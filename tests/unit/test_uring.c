/* SPDX-License-Identifier: MIT */
/* The io_uring driver's ops on real rings and real loopback sockets. */
#include "vq_check.h"
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"

struct env {
	struct vq_pool pool;
	struct vq_driver drv;
};

/* An op and everything it was handed back with. */
struct rec {
	struct vq_op op;
	int n;
	int res[256];
	struct vq_buf *buf[256];
	unsigned flags[256];
	int final; /* a completion without VQ_CQE_MORE arrived */
};

static void record(struct vq_op *op, int res, struct vq_buf *b, unsigned flags)
{
	struct rec *r = (struct rec *)op;

	ck_assert_int_lt(r->n, 256);
	r->res[r->n] = res;
	r->buf[r->n] = b;
	r->flags[r->n] = flags;
	r->n++;
	if (!(flags & VQ_CQE_MORE))
		r->final = 1;
}

static void env_init(struct env *e, uint32_t count, uint32_t size, uint32_t provided)
{
	struct vq_pool_params pp = { .count = count, .size = size, .node = -1, .home = -1 };
	struct vq_driver_params dp = { .sq_entries = 64, .provided = provided };

	memset(e, 0, sizeof(*e));
	ck_assert_int_eq(vq_pool_init(&e->pool, &pp), 0);
	e->drv.ops = &vq_uring_driver;
	ck_assert_int_eq(e->drv.ops->init(&e->drv, &dp), 0);
	ck_assert_int_eq(e->drv.ops->register_pool(&e->drv, &e->pool), 0);
}

/* Tear down and insist that every buffer is home and no op is left. */
static void env_fini(struct env *e)
{
	ck_assert_uint_eq(e->drv.inflight, e->drv.internal);
	e->drv.ops->fini(&e->drv);
	ck_assert_uint_eq(vq_pool_fini(&e->pool), 0);
}

static void turn(struct env *e, int64_t ns)
{
	e->drv.ops->replenish(&e->drv);
	ck_assert_int_ge(e->drv.ops->wait(&e->drv, ns), 0);
}

/* Turn the loop until *cond is non-zero, for at most 5 s. */
#define RUN_UNTIL(e, cond)                                                                     \
	do {                                                                                   \
		time_t until_ = time(NULL) + 5;                                                \
		while (!(cond)) {                                                              \
			ck_assert_msg(time(NULL) < until_, "timed out waiting for " #cond);    \
			turn(e, 50000000);                                             \
		}                                                                              \
	} while (0)

static int listener(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(fd, 64), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static int dial(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* A connected TCP pair: fds[0] dialled, fds[1] accepted. */
static void tcp_pair(int fds[2])
{
	uint16_t port;
	int l = listener(&port);

	fds[0] = dial(port);
	fds[1] = accept(l, NULL, NULL);
	ck_assert_int_ge(fds[1], 0);
	close(l);
}

START_TEST(multishot_accept)
{
	struct env e;
	struct rec r = { 0 };
	uint16_t port;
	int l, c[3];

	env_init(&e, 16, 4096, 8);
	l = listener(&port);
	vq_op_prep(&r.op, VQ_OP_ACCEPT, l, NULL, record);
	r.op.flags = VQ_OPF_MULTISHOT;
	ck_assert_int_eq(vq_driver_submit(&e.drv, &r.op), 0);
	for (int i = 0; i < 3; i++)
		c[i] = dial(port);
	RUN_UNTIL(&e, r.n == 3);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_ge(r.res[i], 0);
		ck_assert_uint_eq(r.flags[i] & VQ_CQE_MORE, VQ_CQE_MORE);
		close(r.res[i]);
		close(c[i]);
	}
	ck_assert_int_eq(e.drv.ops->cancel(&e.drv, &r.op), 0);
	RUN_UNTIL(&e, r.final);
	ck_assert_int_eq(r.res[r.n - 1], -ECANCELED);
	close(l);
	env_fini(&e);
}
END_TEST

START_TEST(multishot_recv_in_order)
{
	struct env e;
	struct rec r = { 0 };
	int fds[2];
	char expect[64 * 100], got[64 * 100];
	size_t have = 0;

	env_init(&e, 16, 4096, 8);
	tcp_pair(fds);
	vq_op_prep(&r.op, VQ_OP_RECV, fds[1], NULL, record);
	r.op.flags = VQ_OPF_MULTISHOT | VQ_OPF_POOLED;
	ck_assert_int_eq(vq_driver_submit(&e.drv, &r.op), 0);
	for (int i = 0; i < 100; i++) {
		memset(expect + 64 * i, 'a' + i % 26, 64);
		ck_assert_int_eq(send(fds[0], expect + 64 * i, 64, 0), 64);
		/* Consume as it comes, releasing buffers so the ring never runs dry. */
		turn(&e, 0);
		for (; r.n; r.n--) {
			struct vq_buf *b = r.buf[0];

			ck_assert_ptr_nonnull(b);
			ck_assert_uint_eq(b->state, VQ_BUF_USER);
			memcpy(got + have, vq_buf_bytes(b), b->len);
			have += b->len;
			vq_buf_release(b);
			memmove(r.buf, r.buf + 1, sizeof(r.buf[0]) * (size_t)(r.n - 1));
		}
	}
	close(fds[0]); /* EOF ends the multishot */
	RUN_UNTIL(&e, r.final);
	for (int i = 0; i < r.n; i++) {
		if (r.buf[i]) {
			memcpy(got + have, vq_buf_bytes(r.buf[i]), r.buf[i]->len);
			have += r.buf[i]->len;
			vq_buf_release(r.buf[i]);
		}
	}
	ck_assert_int_eq(r.res[r.n - 1], 0);
	ck_assert_uint_eq(have, sizeof(expect));
	ck_assert_mem_eq(got, expect, sizeof(expect));
	close(fds[1]);
	env_fini(&e);
}
END_TEST

/* A provided ring of 2 buffers: the recv must park on ENOBUFS and resume once buffers return. */
START_TEST(recv_recovers_from_enobufs)
{
	struct env e;
	struct rec r = { 0 };
	int fds[2];
	static char expect[4096 * 8];
	size_t have = 0;
	uint64_t sum_expect = 0, sum_got = 0;

	env_init(&e, 16, 4096, 2);
	tcp_pair(fds);
	for (size_t i = 0; i < sizeof(expect); i++) {
		expect[i] = (char)(i * 7 + i / 4096);
		sum_expect += (unsigned char)expect[i];
	}
	vq_op_prep(&r.op, VQ_OP_RECV, fds[1], NULL, record);
	r.op.flags = VQ_OPF_MULTISHOT | VQ_OPF_POOLED;
	ck_assert_int_eq(vq_driver_submit(&e.drv, &r.op), 0);
	ck_assert_int_eq(send(fds[0], expect, sizeof(expect), 0), (int)sizeof(expect));
	/* Hold every buffer we get: the ring (2 entries) runs dry. */
	RUN_UNTIL(&e, e.drv.st.nobufs > 0);
	ck_assert_int_eq(r.final, 0);
	while (have < sizeof(expect)) {
		for (int i = 0; i < r.n; i++) {
			ck_assert_int_gt(r.res[i], 0);
			ck_assert_ptr_nonnull(r.buf[i]);
			ck_assert_mem_eq(vq_buf_bytes(r.buf[i]), expect + have, r.buf[i]->len);
			for (uint32_t j = 0; j < r.buf[i]->len; j++)
				sum_got += vq_buf_bytes(r.buf[i])[j];
			have += r.buf[i]->len;
			vq_buf_release(r.buf[i]); /* replenish refills and re-arms */
		}
		r.n = 0;
		if (have < sizeof(expect))
			RUN_UNTIL(&e, r.n > 0);
	}
	ck_assert_uint_eq(sum_got, sum_expect);
	ck_assert_uint_gt(e.drv.st.rearms, 0);
	ck_assert_int_eq(e.drv.ops->cancel(&e.drv, &r.op), 0);
	RUN_UNTIL(&e, r.final);
	for (int i = 0; i < r.n; i++)
		if (r.buf[i])
			vq_buf_release(r.buf[i]);
	close(fds[0]);
	close(fds[1]);
	env_fini(&e);
}
END_TEST

/*
 * A one-shot pooled recv (how connections read while the pool runs short on
 * kernels without the recv cap) that finds the provided ring empty parks like
 * a multishot one, and completes once a buffer comes back: -ENOBUFS would
 * end the connection.
 */
START_TEST(oneshot_recv_parks_on_enobufs)
{
	struct env e;
	struct rec r = { 0 };
	struct vq_buf *held[8];
	int fds[2], n = 0;

	env_init(&e, 4, 4096, 2);
	tcp_pair(fds);
	while ((held[n] = vq_pool_alloc(&e.pool)))
		n++; /* nothing left to refill the ring with */
	ck_assert_int_eq(send(fds[0], "x", 1, 0), 1);
	for (int i = 0; i < 3; i++) { /* the ring's 2 buffers, then none */
		memset(&r, 0, sizeof(r));
		vq_op_prep(&r.op, VQ_OP_RECV, fds[1], NULL, record);
		r.op.flags = VQ_OPF_POOLED;
		ck_assert_int_eq(vq_driver_submit(&e.drv, &r.op), 0);
		if (i < 2) {
			RUN_UNTIL(&e, r.final);
			ck_assert_int_eq(r.res[0], 1);
			held[n++] = r.buf[0];
			ck_assert_int_eq(send(fds[0], "y", 1, 0), 1);
		}
	}
	RUN_UNTIL(&e, e.drv.st.nobufs > 0);
	ck_assert_int_eq(r.final, 0);
	vq_buf_release(held[--n]); /* replenish refills the ring and re-arms the recv */
	RUN_UNTIL(&e, r.final);
	ck_assert_int_eq(r.res[0], 1);
	ck_assert_ptr_nonnull(r.buf[0]);
	ck_assert_int_eq(vq_buf_bytes(r.buf[0])[0], 'y');
	vq_buf_release(r.buf[0]);
	while (n)
		vq_buf_release(held[--n]);
	close(fds[0]);
	close(fds[1]);
	env_fini(&e);
}
END_TEST

/*
 * A recv cancelled from its own data completion (as a connection pausing for a
 * slow reader does) while the ring runs dry in the same batch: it must end as
 * cancelled, not with a spurious -ENOBUFS.
 */
static struct vq_driver *cancel_drv;

static void cancel_on_first(struct vq_op *op, int res, struct vq_buf *b, unsigned flags)
{
	struct rec *r = (struct rec *)op;

	record(op, res, b, flags);
	if (r->n == 1)
		cancel_drv->ops->cancel(cancel_drv, op);
}

START_TEST(cancel_while_ring_dry)
{
	struct env e;
	struct rec r = { 0 };
	int fds[2];
	static char data[4096 * 4];

	env_init(&e, 8, 4096, 2);
	cancel_drv = &e.drv;
	tcp_pair(fds);
	vq_op_prep(&r.op, VQ_OP_RECV, fds[1], NULL, cancel_on_first);
	r.op.flags = VQ_OPF_MULTISHOT | VQ_OPF_POOLED;
	ck_assert_int_eq(vq_driver_submit(&e.drv, &r.op), 0);
	turn(&e, 0);
	ck_assert_int_eq(send(fds[0], data, sizeof(data), 0), (int)sizeof(data));
	usleep(20000);
	RUN_UNTIL(&e, r.final);
	ck_assert_int_eq(r.res[r.n - 1], -ECANCELED);
	for (int i = 0; i < r.n; i++)
		if (r.buf[i])
			vq_buf_release(r.buf[i]);
	close(fds[0]);
	close(fds[1]);
	env_fini(&e);
}
END_TEST

struct slow_reader {
	int fd;
	size_t want;
	unsigned char *got;
};

static void *read_slowly(void *arg)
{
	struct slow_reader *sr = arg;
	size_t have = 0;

	usleep(50000); /* let the sender fill the socket first */
	while (have < sr->want) {
		ssize_t n = recv(sr->fd, sr->got + have, 4096, 0);

		if (n <= 0)
			break;
		have += (size_t)n;
		usleep(200);
	}
	sr->want = have;
	return NULL;
}

START_TEST(partial_sends_resume)
{
	struct env e;
	struct rec r = { 0 };
	struct slow_reader sr;
	pthread_t th;
	int fds[2], small = 4096;
	struct vq_buf *b;

	env_init(&e, 4, 1 << 20, 2);
	tcp_pair(fds);
	/* A small send buffer makes short sends certain; the receive buffer stays default
	 * (a tiny one stalls loopback TCP, whose MSS exceeds it, on window updates). */
	setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	b = vq_pool_alloc(&e.pool);
	b->len = 1 << 20;
	for (uint32_t i = 0; i < b->len; i++)
		b->data[i] = (unsigned char)(i * 31 + (i >> 12));
	sr = (struct slow_reader){ fds[0], b->len, malloc(b->len) };
	pthread_create(&th, NULL, read_slowly, &sr);
	vq_op_prep(&r.op, VQ_OP_SEND, fds[1], b, record);
	r.op.flags = VQ_OPF_ALL;
	ck_assert_int_eq(vq_driver_submit(&e.drv, &r.op), 0);
	ck_assert_uint_eq(b->state, VQ_BUF_KERNEL);
	RUN_UNTIL(&e, r.final);
	pthread_join(th, NULL);
	ck_assert_int_eq(r.res[0], 1 << 20);
	ck_assert_ptr_eq(r.buf[0], b); /* the same buffer comes back */
	ck_assert_uint_eq(b->state, VQ_BUF_USER);
	ck_assert_uint_gt(e.drv.st.partial, 0);
	ck_assert_uint_eq(sr.want, 1 << 20);
	ck_assert_mem_eq(sr.got, b->data, 1 << 20);
	free(sr.got);
	vq_buf_release(b);
	close(fds[0]);
	close(fds[1]);
	env_fini(&e);
}
END_TEST

START_TEST(cancel_returns_buffer)
{
	struct env e;
	struct rec r = { 0 };
	int fds[2];
	struct vq_buf *b;

	env_init(&e, 4, 4096, 2);
	tcp_pair(fds);
	b = vq_pool_alloc(&e.pool);
	vq_op_prep(&r.op, VQ_OP_RECV, fds[1], b, record);
	ck_assert_int_eq(vq_driver_submit(&e.drv, &r.op), 0);
	turn(&e, 0); /* the recv is now waiting in the kernel */
	ck_assert_int_eq(r.n, 0);
	ck_assert_uint_eq(e.pool.st.kernel, 1 + 2);
	ck_assert_int_eq(e.drv.ops->cancel(&e.drv, &r.op), 0);
	RUN_UNTIL(&e, r.final);
	ck_assert_int_eq(r.res[0], -ECANCELED);
	ck_assert_ptr_eq(r.buf[0], b);
	ck_assert_uint_eq(b->state, VQ_BUF_USER);
	vq_buf_release(b);
	close(fds[0]);
	close(fds[1]);
	env_fini(&e);
}
END_TEST

START_TEST(cancel_fd_ends_every_op)
{
	struct env e;
	struct rec r1 = { 0 }, r2 = { 0 };
	int fds[2];
	struct vq_buf *b = NULL;

	env_init(&e, 4, 4096, 2);
	tcp_pair(fds);
	vq_op_prep(&r1.op, VQ_OP_RECV, fds[1], NULL, record);
	r1.op.flags = VQ_OPF_MULTISHOT | VQ_OPF_POOLED;
	b = vq_pool_alloc(&e.pool);
	vq_op_prep(&r2.op, VQ_OP_RECV, fds[1], b, record);
	ck_assert_int_eq(vq_driver_submit(&e.drv, &r1.op), 0);
	ck_assert_int_eq(vq_driver_submit(&e.drv, &r2.op), 0);
	turn(&e, 0);
	ck_assert_int_eq(e.drv.ops->cancel_fd(&e.drv, fds[1]), 0);
	RUN_UNTIL(&e, r1.final && r2.final);
	ck_assert_int_eq(r1.res[r1.n - 1], -ECANCELED);
	ck_assert_int_eq(r2.res[0], -ECANCELED);
	ck_assert_ptr_eq(r2.buf[0], b);
	vq_buf_release(b);
	close(fds[0]);
	close(fds[1]);
	env_fini(&e);
}
END_TEST

START_TEST(timeouts_fire_and_cancel)
{
	struct env e;
	struct rec fast = { 0 }, slow = { 0 };
	struct timespec t0, t1;

	env_init(&e, 4, 4096, 2);
	vq_op_prep(&fast.op, VQ_OP_TIMEOUT, -1, NULL, record);
	fast.op.timeout_ns = 20000000;
	vq_op_prep(&slow.op, VQ_OP_TIMEOUT, -1, NULL, record);
	slow.op.timeout_ns = 10000000000;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(vq_driver_submit(&e.drv, &fast.op), 0);
	ck_assert_int_eq(vq_driver_submit(&e.drv, &slow.op), 0);
	RUN_UNTIL(&e, fast.final);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_eq(fast.res[0], 0);
	ck_assert_int_ge((t1.tv_sec - t0.tv_sec) * 1000000000l + (t1.tv_nsec - t0.tv_nsec),
			 20000000);
	ck_assert_int_eq(slow.n, 0);
	ck_assert_int_eq(e.drv.ops->cancel(&e.drv, &slow.op), 0);
	RUN_UNTIL(&e, slow.final);
	ck_assert_int_eq(slow.res[0], -ECANCELED);
	env_fini(&e);
}
END_TEST

START_TEST(close_and_errors_are_values)
{
	struct env e;
	struct rec c = { 0 }, s = { 0 };
	int fds[2];
	struct vq_buf *b;

	env_init(&e, 4, 4096, 2);
	tcp_pair(fds);
	vq_op_prep(&c.op, VQ_OP_CLOSE, fds[0], NULL, record);
	ck_assert_int_eq(vq_driver_submit(&e.drv, &c.op), 0);
	RUN_UNTIL(&e, c.final);
	ck_assert_int_eq(c.res[0], 0);
	/* Sending to a socket whose peer is gone: an error value, and the buffer back. */
	b = vq_pool_alloc(&e.pool);
	b->len = 4096;
	for (int i = 0; i < 50 && !(s.n && s.res[0] < 0); i++) {
		s = (struct rec){ 0 };
		vq_op_prep(&s.op, VQ_OP_SEND, fds[1], b, record);
		ck_assert_int_eq(vq_driver_submit(&e.drv, &s.op), 0);
		RUN_UNTIL(&e, s.final);
		ck_assert_ptr_eq(s.buf[0], b);
	}
	ck_assert_int_lt(s.res[0], 0);
	/* An op on a closed fd: -EBADF through the completion, not a crash. */
	s = (struct rec){ 0 };
	vq_op_prep(&s.op, VQ_OP_SEND, fds[0], b, record);
	ck_assert_int_eq(vq_driver_submit(&e.drv, &s.op), 0);
	RUN_UNTIL(&e, s.final);
	ck_assert_int_eq(s.res[0], -EBADF);
	vq_buf_release(b);
	close(fds[1]);
	env_fini(&e);
}
END_TEST

START_TEST(wake_from_another_thread)
{
	struct env e;
	struct timespec t0, t1;

	env_init(&e, 4, 4096, 2);
	ck_assert_int_eq(e.drv.ops->wake(&e.drv, NULL), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	turn(&e, 5000000000); /* returns at once: the doorbell rang */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 2);
	ck_assert_uint_ge(e.drv.st.wakeups, 1);
	env_fini(&e);
}
END_TEST

START_TEST(wake_between_rings)
{
	struct env a, b;

	env_init(&a, 4, 4096, 2);
	env_init(&b, 4, 4096, 2);
	ck_assert_int_eq(b.drv.ops->wake(&b.drv, &a.drv), 0);
	turn(&a, 0); /* submits the MSG_RING */
	turn(&b, 2000000000);
	ck_assert_uint_ge(b.drv.st.wakeups, 1);
	env_fini(&a);
	env_fini(&b);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("uring");
	TCase *tc = tcase_create("ops on sockets");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, multishot_accept);
	tcase_add_test(tc, multishot_recv_in_order);
	tcase_add_test(tc, recv_recovers_from_enobufs);
	tcase_add_test(tc, oneshot_recv_parks_on_enobufs);
	tcase_add_test(tc, cancel_while_ring_dry);
	tcase_add_test(tc, partial_sends_resume);
	tcase_add_test(tc, cancel_returns_buffer);
	tcase_add_test(tc, cancel_fd_ends_every_op);
	tcase_add_test(tc, timeouts_fire_and_cancel);
	tcase_add_test(tc, close_and_errors_are_values);
	tcase_add_test(tc, wake_from_another_thread);
	tcase_add_test(tc, wake_between_rings);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return vq_check_run(suite());
}
