/* SPDX-License-Identifier: MIT */
/*
 * The user-call layer (ops.h), outbound connections and the stream helpers on
 * a real shard, once per driver: a shard on this thread, turned by hand, a
 * plain socket peer, real files. Each test ends with a full shard stop that
 * must find every buffer back and every op reaped.
 */
#include "vq_check.h"
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "ops.h"
#include "shard.h"
#include "stream.h"

static const char *const driver_names[] = { "uring", "epoll" };

static struct vq_config cfg;
static struct vq_shard shard;
static int lines_seen, closed_err = 1;
static char last_line[64];

/* A line echo service built on the stream helpers. */
static void line_data(struct vq_conn *c)
{
	char line[16];
	ssize_t n;
	struct vq_writer w;

	vq_writer_init(&w, c);
	while ((n = vq_read_line(c, line, sizeof(line))) > 0) {
		lines_seen++;
		memcpy(last_line, line, (size_t)n);
		last_line[n] = 0;
		ck_assert_int_eq(vq_writer_put(&w, "> ", 2), 0);
		ck_assert_int_eq(vq_writer_put(&w, line, (size_t)n), 0);
	}
	vq_writer_flush(&w);
	if (n == -EMSGSIZE)
		vq_conn_abort(c, -EMSGSIZE);
}

static void line_close(struct vq_conn *c)
{
	closed_err = c->error;
}

static const struct vq_service svc = { .name = "test", .on_data = line_data,
				       .on_close = line_close };

static void start_shard(int i)
{
	char err[256], ov[64];
	const char *ovs[] = { ov, "buffers.count=64", "buffers.provided=32",
			      "buffers.hugepages=off", "log.level=err" };
	struct vq_cfg_table t = vq_config_table(&cfg);

	signal(SIGPIPE, SIG_IGN);
	snprintf(ov, sizeof(ov), "io.driver=%s", driver_names[i]);
	ck_assert_int_eq(vq_config_load(&t, 1, NULL, ovs, 5, err, sizeof(err)), 0);
	memset(&shard, 0, sizeof(shard));
	shard.cpu = -1;
	shard.cfg = &cfg;
	shard.svc = &svc;
	ck_assert_msg(vq_shard_setup(&shard, false) == 0, "%s", shard.error);
	ck_assert_str_eq(shard.drv.ops->name, driver_names[i]);
	lines_seen = 0;
	closed_err = 1;
}

static void stop_shard(void)
{
	vq_shard_request_stop(&shard);
	ck_assert_int_eq(vq_shard_run(&shard), 0); /* no leak, nothing in flight */
}

static void turn_until(const int *flag, int want)
{
	for (int i = 0; i < 2000 && *flag < want; i++)
		vq_shard_turn(&shard, 1000000);
	ck_assert_int_ge(*flag, want);
}

static int listener(struct sockaddr_in *a)
{
	socklen_t len = sizeof(*a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)a, sizeof(*a)), 0);
	ck_assert_int_eq(listen(fd, 4), 0);
	getsockname(fd, (struct sockaddr *)a, &len);
	return fd;
}

struct done {
	int calls, res;
	struct vq_conn *c;
	struct vq_buf *b;
};

static void on_connect(void *ctx, int res, struct vq_conn *c)
{
	struct done *d = ctx;

	d->calls++;
	d->res = res;
	d->c = c;
}

static void on_io(void *ctx, int res, struct vq_buf *b)
{
	struct done *d = ctx;

	d->calls++;
	d->res = res;
	d->b = b;
}

static void peer_read(int fd, char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = read(fd, buf + got, n - got);

		if (k < 0 && errno == EAGAIN) {
			vq_shard_turn(&shard, 1000000);
			continue;
		}
		ck_assert_int_gt(k, 0);
		got += (size_t)k;
	}
}

START_TEST(connect_and_line_protocol)
{
	struct sockaddr_in a;
	int lfd = listener(&a), peer;
	struct done d = { 0 };
	char buf[64];

	start_shard(_i);
	ck_assert_int_eq(vq_conn_connect(&shard, (struct sockaddr *)&a, sizeof(a), 0, on_connect,
					 &d), 0);
	turn_until(&d.calls, 1);
	ck_assert_int_eq(d.res, 0);
	ck_assert_ptr_nonnull(d.c);
	peer = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
	ck_assert_int_ge(peer, 0);
	/* Lines split over several segments (and so over several buffers). */
	ck_assert_int_eq(write(peer, "one\ntw", 6), 6);
	turn_until(&lines_seen, 1);
	ck_assert_int_eq(write(peer, "o\n", 2), 2);
	turn_until(&lines_seen, 2);
	ck_assert_str_eq(last_line, "two\n");
	peer_read(peer, buf, 12);
	ck_assert_int_eq(memcmp(buf, "> one\n> two\n", 12), 0);
	/* The gathering writer: nothing leaves before flush; all-or-nothing on a full pool. */
	{
		struct vq_writer w;
		static char big[64 * 16384 + 1];
		char rd[8];

		vq_writer_init(&w, d.c);
		ck_assert_int_eq(vq_writer_put(&w, "abc", 3), 0);
		ck_assert_int_eq(vq_writer_put(&w, big, shard.pool.st.free * 16384 + 16384),
				 -ENOBUFS);
		ck_assert_uint_eq(w.cur->len, 3); /* the failed put appended nothing */
		for (int i = 0; i < 20; i++)
			vq_shard_turn(&shard, 1000000);
		ck_assert_int_lt(read(peer, buf, sizeof(buf)), 0); /* not flushed yet */
		ck_assert_int_eq(vq_writer_flush(&w), 0);
		ck_assert_int_eq(vq_write_copy(d.c, "de", 2), 0);
		peer_read(peer, buf, 5);
		ck_assert_int_eq(memcmp(buf, "abcde", 5), 0);
		/* Compat read: bytes without a newline stay queued for whoever wants them. */
		ck_assert_int_eq(write(peer, "xyz", 3), 3);
		for (int i = 0; i < 2000 && d.c->in.bytes < 3; i++)
			vq_shard_turn(&shard, 1000000);
		ck_assert_uint_eq(vq_read_copy(d.c, rd, sizeof(rd)), 3);
		ck_assert_int_eq(memcmp(rd, "xyz", 3), 0);
		ck_assert_uint_eq(vq_read_copy(d.c, rd, sizeof(rd)), 0);
	}
	/* A line over the limit closes the connection with -EMSGSIZE. */
	ck_assert_int_eq(write(peer, "0123456789abcdefghij\n", 21), 21);
	for (int i = 0; i < 2000 && closed_err == 1; i++)
		vq_shard_turn(&shard, 1000000);
	ck_assert_int_eq(closed_err, -EMSGSIZE);
	close(peer);
	close(lfd);
	stop_shard();
}
END_TEST

START_TEST(connect_refused)
{
	struct sockaddr_in a;
	int lfd = listener(&a);
	struct done d = { 0 };

	close(lfd);
	start_shard(_i);
	ck_assert_int_eq(vq_conn_connect(&shard, (struct sockaddr *)&a, sizeof(a), 0, on_connect,
					 &d), 0);
	turn_until(&d.calls, 1);
	ck_assert_int_eq(d.res, -ECONNREFUSED);
	ck_assert_ptr_null(d.c);
	stop_shard();
}
END_TEST

START_TEST(file_ops_and_sendfile)
{
	char path[] = "/tmp/vq_ops_XXXXXX", *data, *got;
	int fd = mkstemp(path), s[2];
	struct done w = { 0 }, r = { 0 }, sf = { 0 }, sl = { 0 };
	struct vq_buf *b;
	size_t size = 300000, n = 0;

	unlink(path);
	start_shard(_i);
	/* write then read back at an offset through the pool */
	b = vq_pool_alloc(&shard.pool);
	memcpy(b->data, "payload", 7);
	b->len = 7;
	ck_assert_ptr_nonnull(vq_io_write(&shard, fd, 4096, b, 0, on_io, &w));
	turn_until(&w.calls, 1);
	ck_assert_int_eq(w.res, 7);
	ck_assert_ptr_eq(w.b, b);
	b->len = 0;
	ck_assert_ptr_nonnull(vq_io_read(&shard, fd, 4096 + 3, b, 0, on_io, &r));
	turn_until(&r.calls, 1);
	ck_assert_int_eq(r.res, 4);
	ck_assert_uint_eq(b->len, 4);
	ck_assert_int_eq(memcmp(b->data, "load", 4), 0);
	vq_buf_release(b);

	/* sendfile: 300 KB of the file to a socket, through the kernel only */
	data = malloc(size);
	got = malloc(size);
	for (size_t i = 0; i < size; i++)
		data[i] = (char)(i * 31 >> 3);
	ck_assert_int_eq(pwrite(fd, data, size, 0), (ssize_t)size);
	/* Both ends O_NONBLOCK: the splices hit EAGAIN on a full socket and must wait. */
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, s), 0);
	ck_assert_ptr_nonnull(vq_io_sendfile(&shard, s[0], fd, 1000, size - 1000, 0, on_io, &sf));
	for (int i = 0; i < 30; i++)
		vq_shard_turn(&shard, 1000000); /* nobody reads yet: the socket fills up */
	ck_assert_int_eq(sf.calls, 0);
	while (n < size - 1000) {
		ssize_t k = read(s[1], got + n, size - n);

		if (k > 0)
			n += (size_t)k;
		else
			vq_shard_turn(&shard, 1000000);
	}
	turn_until(&sf.calls, 1);
	ck_assert_int_eq(sf.res, (int)(size - 1000));
	ck_assert_int_eq(memcmp(got, data + 1000, size - 1000), 0);

	/* sleep, and a cancelled one */
	ck_assert_ptr_nonnull(vq_io_sleep(&shard, 1000000, on_io, &sl));
	turn_until(&sl.calls, 1);
	ck_assert_int_eq(sl.res, 0);
	sl.calls = 0;
	{
		struct vq_io *io = vq_io_sleep(&shard, 10000000000ll, on_io, &sl);

		vq_shard_turn(&shard, 0);
		ck_assert_int_eq(vq_io_cancel(&shard, io), 0);
	}
	turn_until(&sl.calls, 1);
	ck_assert_int_eq(sl.res, -ECANCELED);
	free(data);
	free(got);
	close(s[0]);
	close(s[1]);
	close(fd);
	stop_shard();
}
END_TEST

START_TEST(send_with_deadline)
{
	int s[2];
	struct done r = { 0 };
	struct vq_buf *b;

	start_shard(_i);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
	b = vq_pool_alloc(&shard.pool);
	ck_assert_ptr_nonnull(vq_io_recv(&shard, s[0], b, 20000000, on_io, &r));
	turn_until(&r.calls, 1);
	ck_assert_int_eq(r.res, -ETIMEDOUT);
	ck_assert_ptr_eq(r.b, b);
	vq_buf_release(b);
	vq_shard_turn(&shard, 1000000);
	close(s[0]);
	close(s[1]);
	stop_shard();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ops");
	TCase *tc = tcase_create("shard");

	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, connect_and_line_protocol, 0, 2);
	tcase_add_loop_test(tc, connect_refused, 0, 2);
	tcase_add_loop_test(tc, file_ops_and_sendfile, 0, 2);
	tcase_add_loop_test(tc, send_with_deadline, 0, 2);
	suite_add_tcase(s, tc);
	return vq_check_run(s);
}
