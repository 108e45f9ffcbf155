/* SPDX-License-Identifier: MIT */
/* Shards started and stopped for real: pinned thread, ring, pool, listener, drain. */
#include "vq_check.h"
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "shard.h"

static struct vq_config cfg;
static struct vq_shard shard;
static pthread_t thread;
static int setup_result;
static pthread_barrier_t ready;

/* Answers each line "x\n" with "x\n" after `delay_ms` (0: at once). */
static uint64_t delay_ms;

struct pending {
	struct vq_timer t;
	struct vq_conn *c;
};

static void reply_later(struct vq_timer *t)
{
	struct pending *p = (struct pending *)t;
	struct vq_buf *b;

	while ((b = vq_conn_read(p->c)))
		vq_conn_write(p->c, b);
}

static void line_data(struct vq_conn *c)
{
	struct pending *p = vq_conn_app(c);
	struct vq_buf *last = c->in.tail;

	if (!last || vq_buf_bytes(last)[last->len - 1] != '\n')
		return; /* wait for the end of the line */
	p->c = c;
	p->t.fn = reply_later;
	if (delay_ms)
		vq_timer_arm(c->shard, &p->t, delay_ms * 1000000);
	else
		reply_later(&p->t);
}

static void line_close(struct vq_conn *c)
{
	struct pending *p = vq_conn_app(c);

	vq_timer_disarm(c->shard, &p->t);
}

static const struct vq_service line_svc = {
	.name = "line",
	.conn_size = sizeof(struct pending),
	.on_data = line_data,
	.on_close = line_close,
};

static void *run(void *arg)
{
	setup_result = vq_shard_setup(&shard, true);
	pthread_barrier_wait(&ready);
	if (setup_result) {
		vq_shard_teardown(&shard);
		return NULL;
	}
	vq_shard_run(&shard);
	return NULL;
}

static uint16_t free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &len);
	close(fd);
	return ntohs(a.sin_port);
}

/* Start the shard; settings are fixed before its thread runs (it reads them unlocked). */
static void start_with(uint64_t reply_delay_ms, uint64_t drain_ms)
{
	struct vq_cfg_table t = vq_config_table(&cfg);
	char err[256];

	ck_assert_int_eq(vq_config_load(&t, 1, NULL, NULL, 0, err, sizeof(err)), 0);
	cfg.port = free_port();
	cfg.buf_count = 64;
	cfg.buf_provided = 32;
	cfg.drain_timeout_ms = drain_ms;
	memset(&shard, 0, sizeof(shard));
	shard.cpu = 0;
	shard.cfg = &cfg;
	shard.svc = &line_svc;
	delay_ms = reply_delay_ms;
	pthread_barrier_init(&ready, NULL, 2);
	pthread_create(&thread, NULL, run, NULL);
	pthread_barrier_wait(&ready);
	ck_assert_msg(setup_result == 0, "setup: %s", shard.error);
}

static int stop(void)
{
	vq_shard_request_stop(&shard);
	pthread_join(thread, NULL);
	pthread_barrier_destroy(&ready);
	return shard.exit_status;
}

static int dial(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = { .tv_sec = 5 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static void expect_reply(int fd, const char *want)
{
	char got[256];
	size_t have = 0, n = strlen(want);

	while (have < n) {
		ssize_t r = recv(fd, got + have, n - have, 0);

		ck_assert_int_gt(r, 0);
		have += (size_t)r;
	}
	ck_assert_mem_eq(got, want, n);
}

START_TEST(start_serve_stop)
{
	int fd;

	start_with(0, 2000);
	ck_assert_int_eq(shard.state, VQ_SHARD_RUNNING);
	fd = dial();
	ck_assert_int_eq(send(fd, "hello\n", 6, 0), 6);
	expect_reply(fd, "hello\n");
	ck_assert_int_eq(stop(), 0);
	/* The drained connection was closed: EOF. */
	ck_assert_int_eq(recv(fd, (char[8]){ 0 }, 8, 0), 0);
	ck_assert_uint_eq(shard.st.accepted, 1);
	ck_assert_uint_eq(shard.st.closed, 1);
	close(fd);
}
END_TEST

START_TEST(stop_with_no_connections)
{
	start_with(0, 2000);
	ck_assert_int_eq(stop(), 0);
	ck_assert_int_eq(shard.state, VQ_SHARD_STOPPED);
}
END_TEST

/* A reply in flight when the stop comes is still delivered. */
START_TEST(drain_finishes_inflight_requests)
{
	int fd;

	start_with(300, 2000);
	fd = dial();
	ck_assert_int_eq(send(fd, "slow\n", 5, 0), 5);
	usleep(50000);
	vq_shard_request_stop(&shard);
	expect_reply(fd, "slow\n");
	ck_assert_int_eq(stop(), 0);
	close(fd);
}
END_TEST

/* A request that never completes is cut off at the drain deadline, cleanly. */
START_TEST(drain_deadline_closes_stragglers)
{
	int fd;

	start_with(0, 200);
	fd = dial();
	ck_assert_int_eq(send(fd, "no newline", 10, 0), 10);
	usleep(50000);
	ck_assert_int_eq(stop(), 0);
	ck_assert_int_le(recv(fd, (char[8]){ 0 }, 8, 0), 0);
	close(fd);
}
END_TEST

START_TEST(port_in_use_is_a_clear_error)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int holder = socket(AF_INET, SOCK_STREAM, 0);
	struct vq_cfg_table t = vq_config_table(&cfg);
	char err[256];

	bind(holder, (struct sockaddr *)&a, sizeof(a));
	listen(holder, 1);
	getsockname(holder, (struct sockaddr *)&a, &len);
	ck_assert_int_eq(vq_config_load(&t, 1, NULL, NULL, 0, err, sizeof(err)), 0);
	cfg.port = ntohs(a.sin_port);
	cfg.buf_count = 64;
	cfg.buf_provided = 32;
	memset(&shard, 0, sizeof(shard));
	shard.cpu = -1;
	shard.cfg = &cfg;
	shard.svc = &line_svc;
	ck_assert_int_eq(vq_shard_setup(&shard, true), -EADDRINUSE);
	ck_assert_ptr_nonnull(strstr(shard.error, "change listen.port"));
	ck_assert_int_eq(vq_shard_teardown(&shard), 0);
	close(holder);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("shard");
	TCase *tc = tcase_create("shard lifecycle");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, start_serve_stop);
	tcase_add_test(tc, stop_with_no_connections);
	tcase_add_test(tc, drain_finishes_inflight_requests);
	tcase_add_test(tc, drain_deadline_closes_stragglers);
	tcase_add_test(tc, port_in_use_is_a_clear_error);
	suite_add_tcase(s, tc);
	return vq_check_run(s);
}
