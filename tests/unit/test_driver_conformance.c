/* SPDX-License-Identifier: MIT */
/*
 * One suite, every driver: each test runs once per driver (loop index) on real
 * sockets, pipes and files, and asserts the exact results the driver contract
 * promises. A driver that behaves differently from the other fails here.
 * Every test ends by checking that each buffer is back in user hands or the
 * pool and that no op is left in flight.
 */
#include "vq_check.h"
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"
#include "pool.h"

/* Index 2 is uring with recv bundles (6.10), which must behave like the others. */
static const struct vq_driver_ops *const drivers[] = { &vq_uring_driver, &vq_epoll_driver,
						       &vq_uring_driver };

static struct vq_driver drv;
static struct vq_pool pool;

#define POOL_COUNT 32
#define POOL_SIZE  16384

/* One completion, as the test saw it. */
struct rec {
	struct vq_op op;
	int calls;           /* completions delivered */
	int finals;          /* of which final (no MORE) */
	int res;             /* last result */
	struct vq_buf *buf;  /* last buffer handed back */
	struct vq_buf *got[256]; /* pooled recv: buffers received, in order */
	int ngot;
	int accepted[8];     /* accept: the new fds */
	int naccepted;
	int rearms;          /* pooled multishot recv: ended with data and re-armed */
	bool no_rearm;       /* ... or left ended, as an owner that stopped reading does */
	struct iovec iov[VQ_IOV_MAX];
};

static void rec_done(struct vq_op *op, int res, struct vq_buf *b, unsigned flags)
{
	struct rec *r = (struct rec *)op;

	r->calls++;
	r->res = res;
	if (!(flags & VQ_CQE_MORE) && b && res > 0 && op->opcode == VQ_OP_RECV &&
	    op->flags & VQ_OPF_MULTISHOT && !r->no_rearm) {
		/* It took its fill (the uring driver's byte cap): the owner re-arms it. */
		int64_t deadline = op->deadline_ns;

		ck_assert_int_lt(r->ngot, 256);
		r->got[r->ngot++] = b;
		r->rearms++;
		vq_op_prep(op, VQ_OP_RECV, op->fd, NULL, rec_done);
		op->flags = VQ_OPF_POOLED | VQ_OPF_MULTISHOT;
		op->deadline_ns = deadline;
		ck_assert_int_eq(vq_driver_submit(&drv, op), 0);
		return;
	}
	if (op->opcode == VQ_OP_ACCEPT && res >= 0 && r->naccepted < 8)
		r->accepted[r->naccepted++] = res;
	if (!(flags & VQ_CQE_MORE)) {
		r->finals++;
		r->buf = b;
	} else if (b) {
		ck_assert_int_lt(r->ngot, 256);
		r->got[r->ngot++] = b;
	}
}

static void prep(struct rec *r, enum vq_opcode code, int fd, struct vq_buf *b)
{
	memset(r, 0, sizeof(*r));
	vq_op_prep(&r->op, code, fd, b, rec_done);
	r->op.iov = r->iov;
}

static void setup_driver(int i)
{
	struct vq_pool_params pp = { .count = POOL_COUNT, .size = POOL_SIZE, .node = -1,
				     .huge = VQ_HUGE_OFF, .home = 0 };
	struct vq_driver_params dp = { .sq_entries = 64, .provided = 16, .zc_min = 4096,
				       .flags = i == 2 ? VQ_DRV_RECV_BUNDLE : 0 };

	signal(SIGPIPE, SIG_IGN);
	vq_buf_set_thread_home(0);
	ck_assert_int_eq(vq_pool_init(&pool, &pp), 0);
	memset(&drv, 0, sizeof(drv));
	drv.ops = drivers[i];
	ck_assert_int_eq(drv.ops->init(&drv, &dp), 0);
	ck_assert_int_eq(drv.ops->register_pool(&drv, &pool), 0);
}

static void teardown_driver(void)
{
	ck_assert_uint_eq(drv.inflight, drv.internal);
	drv.ops->unregister_pool(&drv);
	drv.ops->fini(&drv);
	ck_assert_uint_eq(vq_pool_fini(&pool), 0); /* every buffer back */
}

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Turn the driver until *flag >= want or ms pass. */
static void run_until(const int *flag, int want, int ms)
{
	uint64_t end = ms_now() + (uint64_t)ms;

	while (*flag < want && ms_now() < end) {
		drv.ops->replenish(&drv);
		ck_assert_int_ge(drv.ops->wait(&drv, 10000000), 0);
	}
}

static void submit(struct rec *r)
{
	ck_assert_int_eq(vq_driver_submit(&drv, &r->op), 0);
}

static struct vq_buf *buf_with(const char *s)
{
	struct vq_buf *b = vq_pool_alloc(&pool);

	ck_assert_ptr_nonnull(b);
	b->len = (uint32_t)strlen(s);
	memcpy(b->data, s, b->len);
	return b;
}

static int tcp_listener(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)addr, &len), 0);
	return fd;
}

/* A connected TCP pair made through the driver's own CONNECT and ACCEPT. */
static void tcp_pair(int fds[2])
{
	struct sockaddr_in addr;
	int lfd = tcp_listener(&addr), one = 1;
	struct rec c, a;

	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	prep(&c, VQ_OP_CONNECT, fds[0], NULL);
	c.op.addr = &addr;
	c.op.addrlen = sizeof(addr);
	prep(&a, VQ_OP_ACCEPT, lfd, NULL);
	submit(&c);
	submit(&a);
	run_until(&c.finals, 1, 2000);
	run_until(&a.finals, 1, 2000);
	ck_assert_int_eq(c.res, 0);
	ck_assert_int_ge(a.res, 0);
	fds[1] = a.res;
	setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	close(lfd);
}

static char *tmpfile_fd(int *fd)
{
	static char path[64];

	snprintf(path, sizeof(path), "/tmp/vq_conf_XXXXXX");
	*fd = mkstemp(path);
	ck_assert_int_ge(*fd, 0);
	unlink(path);
	return path;
}

START_TEST(nop_and_timeouts)
{
	struct rec n, t, t2;
	uint64_t start;

	setup_driver(_i);
	prep(&n, VQ_OP_NOP, -1, NULL);
	submit(&n);
	run_until(&n.finals, 1, 1000);
	ck_assert_int_eq(n.res, 0);

	prep(&t, VQ_OP_TIMEOUT, -1, NULL);
	t.op.timeout_ns = 30000000;
	start = ms_now();
	submit(&t);
	run_until(&t.finals, 1, 2000);
	ck_assert_int_eq(t.res, 0);
	ck_assert_uint_ge(ms_now() - start, 25);

	prep(&t2, VQ_OP_TIMEOUT, -1, NULL);
	t2.op.timeout_ns = 10000000000ll;
	submit(&t2);
	drv.ops->wait(&drv, 0);
	ck_assert_int_eq(drv.ops->cancel(&drv, &t2.op), 0);
	run_until(&t2.finals, 1, 2000);
	ck_assert_int_eq(t2.res, -ECANCELED);
	ck_assert_int_eq(t2.calls, 1);
	teardown_driver();
}
END_TEST

START_TEST(connect_accept_refused)
{
	struct sockaddr_in addr;
	int fds[2], lfd, s;
	struct rec c;

	setup_driver(_i);
	tcp_pair(fds);
	close(fds[0]);
	close(fds[1]);

	/* A port nobody listens on. */
	lfd = tcp_listener(&addr);
	close(lfd);
	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	prep(&c, VQ_OP_CONNECT, s, NULL);
	c.op.addr = &addr;
	c.op.addrlen = sizeof(addr);
	submit(&c);
	run_until(&c.finals, 1, 2000);
	ck_assert_int_eq(c.res, -ECONNREFUSED);
	close(s);
	teardown_driver();
}
END_TEST

START_TEST(send_recv_short_read)
{
	int fds[2];
	struct rec s, r;
	struct vq_buf *rb;

	setup_driver(_i);
	tcp_pair(fds);
	prep(&s, VQ_OP_SEND, fds[0], buf_with("0123456789abcdefghij"));
	submit(&s);
	run_until(&s.finals, 1, 2000);
	ck_assert_int_eq(s.res, 20);
	ck_assert_ptr_nonnull(s.buf);
	vq_buf_release(s.buf);

	/* A buffer with room for 8 takes 8: a short read, not an error. */
	rb = vq_pool_alloc(&pool);
	rb->off = POOL_SIZE - 8;
	prep(&r, VQ_OP_RECV, fds[1], rb);
	submit(&r);
	run_until(&r.finals, 1, 2000);
	ck_assert_int_eq(r.res, 8);
	ck_assert_ptr_eq(r.buf, rb);
	ck_assert_int_eq(memcmp(vq_buf_bytes(rb), "01234567", 8), 0);
	vq_buf_release(rb);

	/* Pooled single-shot recv gets the rest in a pool buffer. */
	prep(&r, VQ_OP_RECV, fds[1], NULL);
	r.op.flags = VQ_OPF_POOLED;
	submit(&r);
	run_until(&r.finals, 1, 2000);
	ck_assert_int_eq(r.res, 12);
	ck_assert_ptr_nonnull(r.buf);
	ck_assert_int_eq(memcmp(vq_buf_bytes(r.buf), "89abcdefghij", 12), 0);
	vq_buf_release(r.buf);
	close(fds[0]);
	close(fds[1]);
	teardown_driver();
}
END_TEST

START_TEST(multishot_recv_then_eof)
{
	int fds[2];
	struct rec r;
	char all[64] = "";
	size_t got = 0;

	setup_driver(_i);
	tcp_pair(fds);
	prep(&r, VQ_OP_RECV, fds[1], NULL);
	r.op.flags = VQ_OPF_POOLED | VQ_OPF_MULTISHOT;
	submit(&r);
	drv.ops->wait(&drv, 0);
	for (int i = 0; i < 3; i++) {
		char m[8];
		int before = r.calls;

		snprintf(m, sizeof(m), "m%d;", i);
		ck_assert_int_eq(write(fds[0], m, 3), 3);
		run_until(&r.calls, before + 1, 2000);
	}
	shutdown(fds[0], SHUT_WR);
	run_until(&r.finals, 1, 2000);
	ck_assert_int_eq(r.res, 0); /* EOF ends it */
	ck_assert_ptr_null(r.buf);
	for (int i = 0; i < r.ngot; i++) {
		memcpy(all + got, vq_buf_bytes(r.got[i]), r.got[i]->len);
		got += r.got[i]->len;
		vq_buf_release(r.got[i]);
	}
	ck_assert_str_eq(all, "m0;m1;m2;");
	close(fds[0]);
	close(fds[1]);
	teardown_driver();
}
END_TEST

/* A send bigger than the socket buffers: the driver resumes short sends to the end. */
START_TEST(send_all_resumes_short_writes)
{
	int fds[2], sz = 4096;
	struct rec s;
	struct vq_buf *b2;
	size_t got = 0;
	char rbuf[POOL_SIZE];

	setup_driver(_i);
	b2 = vq_pool_alloc(&pool);
	tcp_pair(fds);
	setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	for (uint32_t i = 0; i < POOL_SIZE; i++)
		b2->data[i] = (uint8_t)(i * 7);
	b2->len = POOL_SIZE;
	prep(&s, VQ_OP_SEND, fds[0], b2);
	s.op.flags = VQ_OPF_ALL;
	submit(&s);
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
	while (!s.finals || got < POOL_SIZE) {
		ssize_t n;

		drv.ops->wait(&drv, 1000000);
		n = read(fds[1], rbuf + got, 1000 < POOL_SIZE - got ? 1000 : POOL_SIZE - got);
		if (n > 0)
			got += (size_t)n;
		ck_assert(n > 0 || errno == EAGAIN);
	}
	ck_assert_int_eq(s.res, POOL_SIZE);
	ck_assert_ptr_eq(s.buf, b2);
	for (uint32_t i = 0; i < POOL_SIZE; i++)
		ck_assert_int_eq((uint8_t)rbuf[i], (uint8_t)(i * 7));
	vq_buf_release(b2);
	close(fds[0]);
	close(fds[1]);
	teardown_driver();
}
END_TEST

START_TEST(peer_vanishes)
{
	int fds[2];
	struct rec s, r;
	struct linger lg = { 1, 0 };
	int tries = 0;

	setup_driver(_i);
	tcp_pair(fds);
	/* The peer resets: a pending recv fails with -ECONNRESET and gives its buffer back. */
	prep(&r, VQ_OP_RECV, fds[0], vq_pool_alloc(&pool));
	submit(&r);
	drv.ops->wait(&drv, 0);
	setsockopt(fds[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fds[1]);
	run_until(&r.finals, 1, 2000);
	ck_assert_int_eq(r.res, -ECONNRESET);
	ck_assert_ptr_nonnull(r.buf);
	vq_buf_release(r.buf);
	/* Sending to it now fails (EPIPE once the reset is seen), without SIGPIPE. */
	do {
		prep(&s, VQ_OP_SEND, fds[0], buf_with("late"));
		submit(&s);
		run_until(&s.finals, 1, 2000);
		vq_buf_release(s.buf);
	} while (s.res > 0 && ++tries < 5);
	ck_assert_int_eq(s.res, -EPIPE);
	close(fds[0]);
	teardown_driver();
}
END_TEST

START_TEST(file_read_write_at_offset)
{
	int fd;
	struct rec w, r;
	struct vq_buf *b;

	setup_driver(_i);
	tmpfile_fd(&fd);
	prep(&w, VQ_OP_WRITE, fd, buf_with("hello world"));
	w.op.off = 100;
	submit(&w);
	run_until(&w.finals, 1, 2000);
	ck_assert_int_eq(w.res, 11);
	vq_buf_release(w.buf);

	/* Read past the end: a short read of what is there. */
	b = vq_pool_alloc(&pool);
	prep(&r, VQ_OP_READ, fd, b);
	r.op.off = 106;
	submit(&r);
	run_until(&r.finals, 1, 2000);
	ck_assert_int_eq(r.res, 5);
	ck_assert_int_eq(memcmp(vq_buf_bytes(b), "world", 5), 0);
	/* At the end: 0. */
	r.op.off = 111;
	r.finals = 0;
	r.op.buf = b;
	submit(&r);
	run_until(&r.finals, 1, 2000);
	ck_assert_int_eq(r.res, 0);
	ck_assert_uint_eq(b->len, 5);
	vq_buf_release(b);
	close(fd);
	teardown_driver();
}
END_TEST

START_TEST(vectored_file_and_pipe)
{
	int fd, p[2];
	struct rec w, r;
	struct vq_buf *a, *b, *c;

	setup_driver(_i);
	tmpfile_fd(&fd);
	a = buf_with("abc");
	b = buf_with("defgh");
	c = buf_with("ij");
	a->next = b;
	b->next = c;
	c->next = NULL;
	prep(&w, VQ_OP_WRITEV, fd, a);
	w.op.off = 0;
	submit(&w);
	run_until(&w.finals, 1, 2000);
	ck_assert_int_eq(w.res, 10);
	ck_assert_ptr_eq(w.buf, a);
	/* Every buffer of the chain is back, in order. */
	ck_assert_ptr_eq(a->next, b);
	ck_assert_ptr_eq(b->next, c);
	ck_assert_int_eq(a->state, VQ_BUF_USER);
	ck_assert_int_eq(c->state, VQ_BUF_USER);

	/* Read into rooms of 4, 4 and the rest: the bytes spread over the chain. */
	a->len = b->len = c->len = 0;
	a->off = POOL_SIZE - 4;
	b->off = POOL_SIZE - 4;
	prep(&r, VQ_OP_READV, fd, a);
	r.op.off = 1;
	submit(&r);
	run_until(&r.finals, 1, 2000);
	ck_assert_int_eq(r.res, 9);
	ck_assert_uint_eq(a->len, 4);
	ck_assert_uint_eq(b->len, 4);
	ck_assert_uint_eq(c->len, 1);
	ck_assert_int_eq(memcmp(vq_buf_bytes(a), "bcde", 4), 0);
	ck_assert_int_eq(memcmp(vq_buf_bytes(b), "fghi", 4), 0);
	ck_assert_int_eq(memcmp(vq_buf_bytes(c), "j", 1), 0);

	/* On a pipe: readv waits for data (EAGAIN path), writev supplies it. The pipe is
	 * O_NONBLOCK (as the epoll driver leaves fds): io_uring must wait all the same. */
	ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	a->off = b->off = c->off = 0;
	a->len = b->len = c->len = 0;
	prep(&r, VQ_OP_READV, p[0], a);
	r.op.off = VQ_OFF_CUR;
	submit(&r);
	drv.ops->wait(&drv, 1000000);
	ck_assert_int_eq(r.finals, 0);
	{
		struct vq_buf *x = buf_with("xy"), *y = buf_with("z");

		x->next = y;
		y->next = NULL;
		prep(&w, VQ_OP_WRITEV, p[1], x);
		w.op.off = VQ_OFF_CUR;
		submit(&w);
		run_until(&w.finals, 1, 2000);
		ck_assert_int_eq(w.res, 3);
		vq_buf_release(x);
		vq_buf_release(y);
	}
	run_until(&r.finals, 1, 2000);
	ck_assert_int_eq(r.res, 3);
	ck_assert_int_eq(memcmp(vq_buf_bytes(a), "xyz", 3), 0);
	vq_buf_release(a);
	vq_buf_release(b);
	vq_buf_release(c);
	close(p[0]);
	close(p[1]);
	close(fd);
	teardown_driver();
}
END_TEST

/* file -> pipe -> socket with two splices: no byte passes through user memory. */
START_TEST(splice_file_to_socket)
{
	int fd, p[2], s[2];
	struct rec a, b;
	char data[3000], got[3000];
	size_t n = 0;

	setup_driver(_i);
	tmpfile_fd(&fd);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)('a' + i % 26);
	ck_assert_int_eq(pwrite(fd, data, sizeof(data), 0), (ssize_t)sizeof(data));
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	tcp_pair(s);
	prep(&a, VQ_OP_SPLICE, fd, NULL);
	a.op.off = 500;
	a.op.fd_out = p[1];
	a.op.len = 2500;
	submit(&a);
	run_until(&a.finals, 1, 2000);
	ck_assert_int_eq(a.res, 2500);
	prep(&b, VQ_OP_SPLICE, p[0], NULL);
	b.op.off = VQ_OFF_CUR;
	b.op.fd_out = s[0];
	b.op.len = 2500;
	submit(&b);
	run_until(&b.finals, 1, 2000);
	ck_assert_int_eq(b.res, 2500);
	while (n < 2500) {
		ssize_t k = read(s[1], got + n, sizeof(got) - n);

		ck_assert_int_gt(k, 0);
		n += (size_t)k;
	}
	ck_assert_int_eq(memcmp(got, data + 500, 2500), 0);

	/* An empty pipe: the splice waits, then moves what arrives. */
	prep(&b, VQ_OP_SPLICE, p[0], NULL);
	b.op.off = VQ_OFF_CUR;
	b.op.fd_out = s[0];
	b.op.len = 100;
	submit(&b);
	drv.ops->wait(&drv, 1000000);
	ck_assert_int_eq(b.finals, 0);
	ck_assert_int_eq(write(p[1], "late", 4), 4);
	run_until(&b.finals, 1, 2000);
	ck_assert_int_eq(b.res, 4);
	close(fd);
	close(p[0]);
	close(p[1]);
	close(s[0]);
	close(s[1]);
	teardown_driver();
}
END_TEST

/* Multishot accept: one completion per connection, then a cancel ends it. */
START_TEST(multishot_accept_and_cancel)
{
	struct sockaddr_in addr;
	int lfd, c[5];
	struct rec a;

	setup_driver(_i);
	lfd = tcp_listener(&addr);
	prep(&a, VQ_OP_ACCEPT, lfd, NULL);
	a.op.flags = VQ_OPF_MULTISHOT;
	submit(&a);
	drv.ops->wait(&drv, 0);
	for (int i = 0; i < 5; i++) {
		c[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ck_assert_int_eq(connect(c[i], (struct sockaddr *)&addr, sizeof(addr)), 0);
	}
	run_until(&a.calls, 5, 2000);
	ck_assert_int_eq(a.calls, 5);
	ck_assert_int_eq(a.finals, 0);
	ck_assert_int_ge(a.res, 0);
	ck_assert_int_eq(drv.ops->cancel(&drv, &a.op), 0);
	run_until(&a.finals, 1, 2000);
	ck_assert_int_eq(a.res, -ECANCELED);
	ck_assert_int_eq(a.calls, 6);
	ck_assert_int_eq(a.naccepted, 5);
	for (int i = 0; i < 5; i++) {
		close(c[i]);
		close(a.accepted[i]);
	}
	close(lfd);
	teardown_driver();
}
END_TEST

/* Writing to a pipe whose reader is gone: -EPIPE, no signal. */
START_TEST(broken_pipe_write)
{
	int p[2];
	struct rec w;

	setup_driver(_i);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	close(p[0]);
	prep(&w, VQ_OP_WRITE, p[1], buf_with("nobody"));
	w.op.off = VQ_OFF_CUR;
	submit(&w);
	run_until(&w.finals, 1, 2000);
	ck_assert_int_eq(w.res, -EPIPE);
	vq_buf_release(w.buf);
	close(p[1]);
	teardown_driver();
}
END_TEST

/* A deadline passes while a pooled recv is parked for want of buffers. */
START_TEST(deadline_while_parked)
{
	int fds[2];
	struct rec r;
	static char data[20 * POOL_SIZE];
	struct vq_buf *held[POOL_COUNT];
	int nheld = 0;

	setup_driver(_i);
	tcp_pair(fds);
	while (nheld < POOL_COUNT && (held[nheld] = vq_pool_alloc(&pool)))
		nheld++;
	prep(&r, VQ_OP_RECV, fds[1], NULL);
	r.op.flags = VQ_OPF_POOLED | VQ_OPF_MULTISHOT;
	r.op.deadline_ns = 150000000;
	submit(&r);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	ck_assert_int_gt(write(fds[0], data, sizeof(data)), 0);
	for (int i = 0; i < 50 && !drv.st.nobufs; i++)
		drv.ops->wait(&drv, 1000000);
	ck_assert_uint_gt(drv.st.nobufs, 0);
	ck_assert_int_eq(r.finals, 0);
	ck_assert(drv.ops->starved(&drv)); /* the shard's dry-pool watch looks here */
	run_until(&r.finals, 1, 3000);
	ck_assert_int_eq(r.res, -ETIMEDOUT);
	ck_assert(!drv.ops->starved(&drv));
	for (int i = 0; i < r.ngot; i++)
		vq_buf_release(r.got[i]);
	while (nheld)
		vq_buf_release(held[--nheld]);
	close(fds[0]);
	close(fds[1]);
	teardown_driver();
}
END_TEST

/* A cancel right after submit, before anything reached the kernel. */
START_TEST(cancel_before_submit)
{
	int p[2];
	struct rec r;
	struct vq_buf *b;

	setup_driver(_i);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	b = vq_pool_alloc(&pool);
	prep(&r, VQ_OP_READ, p[0], b);
	r.op.off = VQ_OFF_CUR;
	submit(&r);
	ck_assert_int_eq(drv.ops->cancel(&drv, &r.op), 0);
	run_until(&r.finals, 1, 2000);
	ck_assert_int_eq(r.res, -ECANCELED);
	ck_assert_ptr_eq(r.buf, b);
	ck_assert_int_eq(r.calls, 1);
	vq_buf_release(b);
	close(p[0]);
	close(p[1]);
	teardown_driver();
}
END_TEST

/* WRITEV of a chain bigger than the socket can take: resumed mid-buffer to the end. */
START_TEST(writev_all_resumes)
{
	int fds[2], sz = 4096;
	struct rec w;
	struct vq_buf *bufs[3];
	static char got[3 * POOL_SIZE];
	size_t n = 0;

	setup_driver(_i);
	tcp_pair(fds);
	setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	for (int k = 0; k < 3; k++) {
		bufs[k] = vq_pool_alloc(&pool);
		bufs[k]->off = (uint32_t)k * 100; /* not at the start, different lengths */
		bufs[k]->len = POOL_SIZE - bufs[k]->off;
		for (uint32_t i = 0; i < bufs[k]->len; i++)
			vq_buf_bytes(bufs[k])[i] = (uint8_t)(k * 31 + i * 7);
		if (k)
			bufs[k - 1]->next = bufs[k];
	}
	bufs[2]->next = NULL;
	prep(&w, VQ_OP_WRITEV, fds[0], bufs[0]);
	w.op.off = VQ_OFF_CUR;
	w.op.flags = VQ_OPF_ALL;
	submit(&w);
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
	while (!w.finals || n < sizeof(got) - 300) {
		ssize_t k;

		drv.ops->wait(&drv, 1000000);
		k = read(fds[1], got + n, 1500);
		if (k > 0)
			n += (size_t)k;
	}
	ck_assert_int_eq(w.res, 3 * POOL_SIZE - 300);
	ck_assert_ptr_eq(w.buf, bufs[0]);
	n = 0;
	for (int k = 0; k < 3; k++) {
		for (uint32_t i = 0; i < bufs[k]->len; i++)
			ck_assert_int_eq((uint8_t)got[n + i], (uint8_t)(k * 31 + i * 7));
		n += bufs[k]->len;
		vq_buf_release(bufs[k]);
	}
	close(fds[0]);
	close(fds[1]);
	teardown_driver();
}
END_TEST

/* A splice stuck on a full socket cancels cleanly, its poll or worker and all. */
START_TEST(cancel_blocked_splice)
{
	int p[2], s[2], sz = 4096;
	struct rec b;
	static char junk[65536];

	setup_driver(_i);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	tcp_pair(s);
	setsockopt(s[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	fcntl(s[0], F_SETFL, O_NONBLOCK);
	while (write(s[0], junk, sizeof(junk)) > 0)
		;
	ck_assert_int_eq(write(p[1], junk, 1000), 1000);
	prep(&b, VQ_OP_SPLICE, p[0], NULL);
	b.op.off = VQ_OFF_CUR;
	b.op.fd_out = s[0];
	b.op.len = 1000;
	submit(&b);
	for (int i = 0; i < 20; i++)
		drv.ops->wait(&drv, 1000000);
	ck_assert_msg(b.finals == 0, "splice ended early: %d", b.res);
	ck_assert_int_eq(drv.ops->cancel(&drv, &b.op), 0);
	run_until(&b.finals, 1, 3000);
	ck_assert_int_eq(b.res, -ECANCELED);
	close(p[0]);
	close(p[1]);
	close(s[0]);
	close(s[1]);
	teardown_driver();
}
END_TEST

/* send_zc: one completion per op, when the buffer is free again, on both sides of zc_min. */
START_TEST(send_zc_once)
{
	int fds[2];
	struct rec s;
	char *got = malloc(POOL_SIZE);
	uint32_t sizes[] = { 100, POOL_SIZE };

	setup_driver(_i);
	tcp_pair(fds);
	for (int k = 0; k < 2; k++) {
		struct vq_buf *b = vq_pool_alloc(&pool);
		size_t n = 0;

		for (uint32_t i = 0; i < sizes[k]; i++)
			b->data[i] = (uint8_t)(i * 13 + k);
		b->len = sizes[k];
		prep(&s, VQ_OP_SEND_ZC, fds[0], b);
		s.op.flags = VQ_OPF_ALL;
		submit(&s);
		while (n < sizes[k]) {
			ssize_t r;

			drv.ops->wait(&drv, 1000000);
			r = recv(fds[1], got + n, sizes[k] - n, MSG_DONTWAIT);
			if (r > 0)
				n += (size_t)r;
		}
		run_until(&s.finals, 1, 2000);
		drv.ops->wait(&drv, 10000000);
		ck_assert_int_eq(s.calls, 1);
		ck_assert_int_eq(s.res, (int)sizes[k]);
		ck_assert_ptr_eq(s.buf, b);
		for (uint32_t i = 0; i < sizes[k]; i++)
			ck_assert_int_eq((uint8_t)got[i], (uint8_t)(i * 13 + k));
		vq_buf_release(b);
	}
	if (drivers[_i] == &vq_uring_driver)
		ck_assert_uint_eq(drv.st.zc_sends, 1); /* only the big one went zero-copy */
	free(got);
	close(fds[0]);
	close(fds[1]);
	teardown_driver();
}
END_TEST

START_TEST(deadline_times_out)
{
	int fds[2];
	struct rec r, ok;
	uint64_t start;

	setup_driver(_i);
	tcp_pair(fds);
	prep(&r, VQ_OP_RECV, fds[1], vq_pool_alloc(&pool));
	r.op.deadline_ns = 50000000;
	start = ms_now();
	submit(&r);
	run_until(&r.finals, 1, 3000);
	ck_assert_int_eq(r.res, -ETIMEDOUT);
	ck_assert_uint_ge(ms_now() - start, 45);
	ck_assert_ptr_nonnull(r.buf);
	vq_buf_release(r.buf);
	/* A deadline that does not pass changes nothing. */
	prep(&ok, VQ_OP_SEND, fds[0], buf_with("in time"));
	ok.op.deadline_ns = 1000000000;
	submit(&ok);
	run_until(&ok.finals, 1, 2000);
	ck_assert_int_eq(ok.res, 7);
	vq_buf_release(ok.buf);
	drv.ops->wait(&drv, 1000000); /* the uring link timeout's own CQE */
	close(fds[0]);
	close(fds[1]);
	teardown_driver();
}
END_TEST

START_TEST(cancel_mid_flight)
{
	int fds[2], sz = 4096;
	struct rec r, m, s;
	struct vq_buf *rb, *sb;

	setup_driver(_i);
	tcp_pair(fds);
	/* One op: its buffer comes back with -ECANCELED. */
	rb = vq_pool_alloc(&pool);
	prep(&r, VQ_OP_RECV, fds[1], rb);
	submit(&r);
	drv.ops->wait(&drv, 1000000);
	ck_assert_int_eq(drv.ops->cancel(&drv, &r.op), 0);
	run_until(&r.finals, 1, 2000);
	ck_assert_int_eq(r.res, -ECANCELED);
	ck_assert_ptr_eq(r.buf, rb);
	ck_assert_int_eq(rb->state, VQ_BUF_USER);
	vq_buf_release(rb);
	ck_assert_int_eq(drv.ops->cancel(&drv, &r.op), -ENOENT);

	/* Every op on an fd: a multishot recv and a send stuck on a full socket. */
	setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	prep(&m, VQ_OP_RECV, fds[0], NULL);
	m.op.flags = VQ_OPF_POOLED | VQ_OPF_MULTISHOT;
	sb = vq_pool_alloc(&pool);
	sb->len = POOL_SIZE;
	memset(sb->data, 'x', POOL_SIZE);
	submit(&m);
	/* Fill the socket first so the send cannot finish. */
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	while (write(fds[0], sb->data, POOL_SIZE) > 0)
		;
	prep(&s, VQ_OP_SEND, fds[0], sb);
	s.op.flags = VQ_OPF_ALL;
	submit(&s);
	for (int i = 0; i < 20; i++)
		drv.ops->wait(&drv, 1000000);
	ck_assert_int_eq(s.finals, 0); /* nobody reads: the send is stuck part-way */
	ck_assert_int_eq(drv.ops->cancel_fd(&drv, fds[0]), 0);
	run_until(&m.finals, 1, 2000);
	run_until(&s.finals, 1, 2000);
	ck_assert_int_eq(m.res, -ECANCELED);
	ck_assert_int_eq(s.res, -ECANCELED);
	ck_assert_ptr_eq(s.buf, sb);
	vq_buf_release(sb);
	close(fds[0]);
	close(fds[1]);
	teardown_driver();
}
END_TEST

/* The pool runs dry under a multishot recv; after buffers come back, nothing is lost. */
START_TEST(nobufs_recovery)
{
	int fds[2];
	struct rec r;
	static char sent[POOL_SIZE * 48], got[POOL_SIZE * 48];
	size_t n = 0, off = 0;
	struct vq_buf *held[POOL_COUNT];
	int nheld = 0;

	setup_driver(_i);
	tcp_pair(fds);
	for (size_t i = 0; i < sizeof(sent); i++)
		sent[i] = (char)(i % 251);
	/* Hold most of the pool as user memory so the recv runs out quickly. */
	while (pool.st.free > 4 && nheld < POOL_COUNT)
		held[nheld++] = vq_pool_alloc(&pool);
	prep(&r, VQ_OP_RECV, fds[1], NULL);
	r.op.flags = VQ_OPF_POOLED | VQ_OPF_MULTISHOT;
	submit(&r);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	for (int spins = 0; drv.st.nobufs == 0 && spins < 2000; spins++) {
		ssize_t k = write(fds[0], sent + off, sizeof(sent) - off);

		if (k > 0)
			off += (size_t)k;
		drv.ops->wait(&drv, 1000000); /* no replenish: the test holds what it gets */
	}
	ck_assert_uint_gt(drv.st.nobufs, 0);
	ck_assert_int_eq(r.finals, 0); /* parked, not ended */
	ck_assert(drv.ops->starved(&drv));
	while (nheld)
		vq_buf_release(held[--nheld]);
	/* Consume and release as we go: the recv resumes and everything arrives in order. */
	for (int spins = 0; n < sizeof(sent) && spins < 20000; spins++) {
		ssize_t k = off < sizeof(sent) ? write(fds[0], sent + off, sizeof(sent) - off) : 0;

		if (k > 0)
			off += (size_t)k;
		for (int i = 0; i < r.ngot; i++) {
			memcpy(got + n, vq_buf_bytes(r.got[i]), r.got[i]->len);
			n += r.got[i]->len;
			vq_buf_release(r.got[i]);
		}
		r.ngot = 0;
		drv.ops->replenish(&drv);
		drv.ops->wait(&drv, 1000000);
	}
	ck_assert_uint_eq(n, sizeof(sent));
	ck_assert_int_eq(memcmp(got, sent, sizeof(sent)), 0);
	ck_assert_int_eq(r.finals, 0);
	ck_assert(!drv.ops->starved(&drv)); /* buffers came back: the recv was re-armed */
	drv.ops->cancel(&drv, &r.op);
	run_until(&r.finals, 1, 2000);
	ck_assert_int_eq(r.res, -ECANCELED);
	for (int i = 0; i < r.ngot; i++)
		vq_buf_release(r.got[i]);
	close(fds[0]);
	close(fds[1]);
	teardown_driver();
}
END_TEST

/* A burst larger than several buffers, queued before the recv is armed. */
START_TEST(multishot_large_burst)
{
	int fds[2];
	struct rec r;
	static char sent[100000], got[100000];
	size_t n = 0;

	setup_driver(_i);
	tcp_pair(fds);
	for (size_t i = 0; i < sizeof(sent); i++)
		sent[i] = (char)(i * 7 % 253);
	ck_assert_int_eq(write(fds[0], sent, sizeof(sent)), (ssize_t)sizeof(sent));
	usleep(20000);
	prep(&r, VQ_OP_RECV, fds[1], NULL);
	r.op.flags = VQ_OPF_POOLED | VQ_OPF_MULTISHOT;
	submit(&r);
	for (int spins = 0; n < sizeof(sent) && spins < 2000; spins++) {
		drv.ops->replenish(&drv);
		drv.ops->wait(&drv, 1000000);
		for (int i = 0; i < r.ngot; i++) {
			ck_assert_uint_le(r.got[i]->len, POOL_SIZE);
			memcpy(got + n, vq_buf_bytes(r.got[i]), r.got[i]->len);
			n += r.got[i]->len;
			vq_buf_release(r.got[i]);
		}
		r.ngot = 0;
	}
	ck_assert_uint_eq(n, sizeof(sent));
	ck_assert_int_eq(memcmp(got, sent, sizeof(sent)), 0);
	if (_i == 2 && strstr(drv.features, "recv_bundle") && !strstr(drv.features, "(off)"))
		ck_assert_uint_gt(drv.st.bundled, 0);
	if (strstr(drv.features, "recv_cap"))
		ck_assert_int_gt(r.rearms, 0); /* 100 000 bytes are more than one arm's cap */
	shutdown(fds[0], SHUT_WR);
	run_until(&r.finals, 1, 2000);
	ck_assert_int_eq(r.res, 0);
	close(fds[0]);
	close(fds[1]);
	teardown_driver();
}
END_TEST

/*
 * Megabytes queued before the recv is armed: with io_uring's byte cap one arm
 * takes a few buffers and ends, so an owner that stops reading then holds only
 * those. Without the cap (older kernels) it may take the whole backlog.
 */
START_TEST(recv_cap_bounds_one_arm)
{
	int fds[2];
	struct rec r;
	static char data[1 << 20];
	int sndbuf = sizeof(data) * 2;

	setup_driver(_i);
	if (!strstr(drv.features, "recv_cap")) {
		teardown_driver();
		return; /* epoll stops at once on cancel; older kernels have no cap */
	}
	tcp_pair(fds);
	setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	ck_assert_int_gt(write(fds[0], data, sizeof(data)), 4 * POOL_SIZE);
	usleep(20000);
	prep(&r, VQ_OP_RECV, fds[1], NULL);
	r.op.flags = VQ_OPF_POOLED | VQ_OPF_MULTISHOT;
	r.no_rearm = true;
	submit(&r);
	run_until(&r.finals, 1, 2000);
	ck_assert_int_gt(r.res, 0); /* ended with data, not an error */
	ck_assert_int_le(r.ngot + 1, 4); /* the driver's RECV_CAP_BUFS */
	for (int i = 0; i < r.ngot; i++)
		vq_buf_release(r.got[i]);
	vq_buf_release(r.buf);
	close(fds[0]);
	close(fds[1]);
	teardown_driver();
}
END_TEST

static void *waker(void *arg)
{
	usleep(20000);
	drv.ops->wake(&drv, NULL);
	return NULL;
}

START_TEST(wake_from_another_thread)
{
	pthread_t t;
	uint64_t start;

	setup_driver(_i);
	start = ms_now();
	pthread_create(&t, NULL, waker, NULL);
	while (drv.st.wakeups == 0 && ms_now() - start < 3000)
		drv.ops->wait(&drv, -1);
	pthread_join(t, NULL);
	ck_assert_uint_ge(drv.st.wakeups, 1);
	ck_assert_uint_lt(ms_now() - start, 2000);
	teardown_driver();
}
END_TEST

/* auto can leave shards of one process on different drivers: doorbells must cross. */
START_TEST(mixed_driver_doorbells)
{
	struct vq_driver u = { .ops = &vq_uring_driver }, e = { .ops = &vq_epoll_driver };
	struct vq_driver_params dp = { .sq_entries = 8 };

	ck_assert_int_eq(u.ops->init(&u, &dp), 0);
	ck_assert_int_eq(e.ops->init(&e, &dp), 0);
	ck_assert_int_eq(e.ops->wake(&e, &u), 0);   /* uring shard rings an epoll shard */
	ck_assert_int_eq(u.ops->wake(&u, &e), 0);   /* and the other way */
	u.ops->wait(&u, 0);                         /* (the sender's own SQE, if any) */
	for (int i = 0; i < 100 && (!u.st.wakeups || !e.st.wakeups); i++) {
		u.ops->wait(&u, 1000000);
		e.ops->wait(&e, 1000000);
	}
	ck_assert_uint_ge(u.st.wakeups, 1);
	ck_assert_uint_ge(e.st.wakeups, 1);
	u.ops->fini(&u);
	e.ops->fini(&e);
}
END_TEST

START_TEST(close_op)
{
	int p[2];
	struct rec c;

	setup_driver(_i);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	prep(&c, VQ_OP_CLOSE, p[0], NULL);
	submit(&c);
	run_until(&c.finals, 1, 2000);
	ck_assert_int_eq(c.res, 0);
	ck_assert_int_eq(fcntl(p[0], F_GETFD), -1);
	close(p[1]);
	prep(&c, VQ_OP_CLOSE, 1 << 20, NULL);
	submit(&c);
	run_until(&c.finals, 1, 2000);
	ck_assert_int_eq(c.res, -EBADF);
	teardown_driver();
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("driver conformance");
	TCase *tc = tcase_create("ops");
	int n = (int)(sizeof(drivers) / sizeof(drivers[0]));

	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, nop_and_timeouts, 0, n);
	tcase_add_loop_test(tc, connect_accept_refused, 0, n);
	tcase_add_loop_test(tc, send_recv_short_read, 0, n);
	tcase_add_loop_test(tc, multishot_recv_then_eof, 0, n);
	tcase_add_loop_test(tc, send_all_resumes_short_writes, 0, n);
	tcase_add_loop_test(tc, peer_vanishes, 0, n);
	tcase_add_loop_test(tc, file_read_write_at_offset, 0, n);
	tcase_add_loop_test(tc, vectored_file_and_pipe, 0, n);
	tcase_add_loop_test(tc, splice_file_to_socket, 0, n);
	tcase_add_loop_test(tc, cancel_blocked_splice, 0, n);
	tcase_add_loop_test(tc, multishot_accept_and_cancel, 0, n);
	tcase_add_loop_test(tc, broken_pipe_write, 0, n);
	tcase_add_loop_test(tc, cancel_before_submit, 0, n);
	tcase_add_loop_test(tc, deadline_while_parked, 0, n);
	tcase_add_loop_test(tc, writev_all_resumes, 0, n);
	tcase_add_loop_test(tc, send_zc_once, 0, n);
	tcase_add_loop_test(tc, deadline_times_out, 0, n);
	tcase_add_loop_test(tc, cancel_mid_flight, 0, n);
	tcase_add_loop_test(tc, nobufs_recovery, 0, n);
	tcase_add_loop_test(tc, multishot_large_burst, 0, n);
	tcase_add_loop_test(tc, recv_cap_bounds_one_arm, 0, n);
	tcase_add_loop_test(tc, wake_from_another_thread, 0, n);
	tcase_add_loop_test(tc, close_op, 0, n);
	tcase_add_test(tc, mixed_driver_doorbells);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return vq_check_run(suite());
}
