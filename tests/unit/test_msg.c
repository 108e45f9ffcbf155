/* SPDX-License-Identifier: MIT */
/*
 * Cross-shard message rings on real shards: real threads, real io_uring rings,
 * real MSG_RING doorbells. Shard threads never call ck_assert (Check's asserts
 * belong to the test's own thread); they count what they see, and the test
 * checks the counts after the mesh has stopped.
 */
#include "vq_check.h"
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "msg.h"
#include "pool.h"
#include "shard.h"

#define MAX_SHARDS 8

static struct vq_config cfg;
static struct vq_shard shards[MAX_SHARDS];
static struct vq_mesh *mesh;
static unsigned nshards;
static _Atomic uint64_t errors; /* anything a shard thread saw that it should not have */

/* A scale factor so the ThreadSanitizer build (10x slower) runs the same tests, smaller. */
static uint64_t scaled(uint64_t n)
{
	const char *s = getenv("VQ_MSG_TEST_SCALE");
	uint64_t div = s ? strtoull(s, NULL, 10) : 1;

	return div > 1 ? n / div : n;
}

static void load_config(void)
{
	static const char *const ov[] = {
		"buffers.count=64", "buffers.provided=32", "buffers.size=4096",
		"buffers.hugepages=off", "io.ring_entries=64", "log.level=notice",
		/* No deadline timer may rescue a lost wakeup during stop: it must hang and fail. */
		"shutdown.drain_timeout=60m",
	};
	struct vq_cfg_table t = vq_config_table(&cfg);
	char err[256];

	ck_assert_msg(vq_config_load(&t, 1, NULL, ov, sizeof(ov) / sizeof(ov[0]), err,
				     sizeof(err)) == 0, "%s", err);
	vq_log_set_level(VQ_LOG_NOTICE);
}

/* A fresh mesh of n unpinned shards running svc. */
static void mesh_up(unsigned n, uint32_t slots, const struct vq_service *svc, int expect)
{
	load_config();
	memset(shards, 0, sizeof(shards));
	atomic_store(&errors, 0);
	nshards = n;
	for (unsigned i = 0; i < n; i++) {
		shards[i].id = (int)i;
		shards[i].cpu = -1;
		shards[i].svc = svc;
		shards[i].cfg = &cfg;
	}
	ck_assert_int_eq(vq_mesh_create(&mesh, shards, n, slots), 0);
	ck_assert_int_eq(vq_mesh_start(mesh), expect);
}

static int mesh_down(void)
{
	int status = vq_mesh_join(mesh);

	vq_mesh_destroy(mesh);
	mesh = NULL;
	return status;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait until *v reaches want, or until it stops moving for stall_ms. Returns the last value. */
static uint64_t wait_for(_Atomic uint64_t *v, uint64_t want, uint64_t stall_ms)
{
	uint64_t last = atomic_load(v), since = now_ms();

	while (last < want) {
		uint64_t cur;

		usleep(1000);
		cur = atomic_load(v);
		if (cur != last) {
			last = cur;
			since = now_ms();
		} else if (now_ms() - since > stall_ms) {
			break;
		}
	}
	return last;
}

START_TEST(test_api_errors)
{
	struct vq_shard lone = { 0 };

	ck_assert_uint_eq(vq_shard_count(&lone), 1);
	ck_assert_int_eq(vq_mesh_create(&mesh, shards, 0, 0), -EINVAL);
	ck_assert_ptr_null(mesh);
	ck_assert_int_eq(vq_msg_send(&lone, 0, NULL, NULL), -EINVAL);
}
END_TEST

/*
 * Stress: every shard sends to every shard (itself too) at once; every 8th
 * message is a call. Each message carries (source, sequence): the receiver
 * checks that each source's sequence arrives in order with nothing missing or
 * repeated, and the totals are checked against the per-pair counters.
 */
#define SEQ_BITS 40

struct pump {
	struct vq_task t;
	unsigned src, dst;
	uint64_t next;
};

static uint64_t per_pair;
static uint64_t started_ms;
static struct pump pumps[MAX_SHARDS][MAX_SHARDS];
static uint64_t expect_seq[MAX_SHARDS][MAX_SHARDS]; /* [receiver][source], receiver's thread */
static uint64_t replies[MAX_SHARDS];                 /* caller's thread */
static _Atomic uint64_t received_total, replies_total;

static void check_msg(struct vq_shard *on, void *arg)
{
	uint64_t v = (uint64_t)(uintptr_t)arg, src = v >> SEQ_BITS;
	uint64_t seq = v & ((1ull << SEQ_BITS) - 1);

	if (src >= nshards || seq != expect_seq[on->id][src]++)
		atomic_fetch_add(&errors, 1);
	atomic_fetch_add_explicit(&received_total, 1, memory_order_relaxed);
}

static void *check_call(struct vq_shard *on, void *arg)
{
	check_msg(on, arg);
	return (void *)((uintptr_t)arg ^ 0x5a5a);
}

static void check_reply(struct vq_shard *self, void *ctx, void *result, int err)
{
	if (err || (uintptr_t)result != ((uintptr_t)ctx ^ 0x5a5a))
		atomic_fetch_add(&errors, 1);
	replies[self->id]++;
	atomic_fetch_add_explicit(&replies_total, 1, memory_order_relaxed);
}

static void pump_run(struct vq_task *t)
{
	struct pump *p = (struct pump *)t;
	struct vq_shard *s = vq_shard_self();
	unsigned burst = 0;

	while (p->next < per_pair) {
		void *arg = (void *)(uintptr_t)(((uint64_t)p->src << SEQ_BITS) | p->next);
		int ret = (p->next & 7) == 7 ? vq_msg_call(s, p->dst, check_call, arg, check_reply, arg)
					     : vq_msg_send(s, p->dst, check_msg, arg);

		if (ret == -EAGAIN) {
			vq_msg_wait_space(s, p->dst, t);
			return;
		}
		if (ret) {
			atomic_fetch_add(&errors, 1);
			return;
		}
		p->next++;
		if (++burst == 4096) { /* give the loop back so inbound queues drain too */
			vq_defer(s, t);
			return;
		}
	}
}

static int stress_init(struct vq_shard *s)
{
	for (unsigned d = 0; d < nshards; d++) {
		struct pump *p = &pumps[s->id][d];

		*p = (struct pump){ .t.fn = pump_run, .src = (unsigned)s->id, .dst = d };
		vq_defer(s, &p->t);
	}
	return 0;
}

static const struct vq_service stress_svc = { .name = "msgtest", .shard_init = stress_init };

START_TEST(test_stress_all_pairs)
{
	const unsigned n = 4;
	uint64_t total, got, calls = 0;

	per_pair = scaled(500000); /* 4 x 4 pairs x 500k = 8M messages */
	memset(expect_seq, 0, sizeof(expect_seq));
	memset(replies, 0, sizeof(replies));
	atomic_store(&received_total, 0);
	atomic_store(&replies_total, 0);
	total = per_pair * n * n;
	mesh_up(n, 256, &stress_svc, 0);
	started_ms = now_ms();
	got = wait_for(&received_total, total, 5000);
	wait_for(&replies_total, per_pair / 8 * n * n, 5000);
	fprintf(stderr, "stress: %lu messages over %u x %u pairs in %lu ms\n",
		(unsigned long)got, n, n, (unsigned long)(now_ms() - started_ms));
	vq_mesh_stop(mesh);
	ck_assert_int_eq(mesh_down(), 0);

	ck_assert_uint_eq(got, total);
	ck_assert_uint_eq(atomic_load(&errors), 0);
	for (unsigned r = 0; r < n; r++)
		for (unsigned s = 0; s < n; s++)
			ck_assert_uint_eq(expect_seq[r][s], per_pair);
	for (unsigned s = 0; s < n; s++)
		calls += replies[s];
	ck_assert_uint_eq(calls, per_pair / 8 * n * n);
}
END_TEST

START_TEST(test_stress_counters)
{
	/* Same traffic, smaller, to read the per-pair counters before the mesh is freed. */
	const unsigned n = 3;
	struct vq_msg_pair_stats st;
	uint64_t full = 0;

	per_pair = scaled(40000);
	memset(expect_seq, 0, sizeof(expect_seq));
	memset(replies, 0, sizeof(replies));
	atomic_store(&received_total, 0);
	atomic_store(&replies_total, 0);
	mesh_up(n, 64, &stress_svc, 0);
	wait_for(&received_total, per_pair * n * n, 5000);
	wait_for(&replies_total, per_pair / 8 * n * n, 5000);
	vq_mesh_stop(mesh);
	ck_assert_int_eq(vq_mesh_join(mesh), 0);
	for (unsigned a = 0; a < n; a++) {
		for (unsigned b = 0; b < n; b++) {
			vq_mesh_pair_stats(mesh, a, b, &st);
			/* a -> b carries a's requests and the replies to b's calls. */
			ck_assert_uint_eq(st.sent, per_pair + per_pair / 8);
			ck_assert_uint_eq(st.received, st.sent);
			full += st.full;
		}
	}
	ck_assert_uint_gt(full, 0); /* 64-slot rings: back-pressure did happen */
	ck_assert_uint_eq(vq_mesh_undelivered(mesh), 0);
	ck_assert_uint_eq(atomic_load(&errors), 0);
	vq_mesh_destroy(mesh);
	mesh = NULL;
}
END_TEST

/*
 * Back-pressure, one way: shard 0 floods shard 1 through a small ring, so it
 * waits for space tens of thousands of times while shard 1 sleeps whenever it
 * has caught up. A lost space wakeup stalls the flood.
 */
static _Atomic uint64_t flood_recv;
static uint64_t flood_sent, flood_want;
static struct vq_task flood_pump_task;

static void count_one(struct vq_shard *on, void *arg)
{
	atomic_fetch_add_explicit(&flood_recv, 1, memory_order_relaxed);
}

static void oneway_pump(struct vq_task *t)
{
	struct vq_shard *s = vq_shard_self();

	while (flood_sent < flood_want) {
		int ret = vq_msg_send(s, 1, count_one, NULL);

		if (ret == -EAGAIN) {
			vq_msg_wait_space(s, 1, t);
			return;
		}
		if (ret) {
			atomic_fetch_add(&errors, 1);
			return;
		}
		flood_sent++;
	}
}

static int oneway_init(struct vq_shard *s)
{
	if (s->id == 0) {
		flood_sent = 0;
		flood_pump_task.fn = oneway_pump;
		vq_defer(s, &flood_pump_task);
	}
	return 0;
}

static const struct vq_service oneway_svc = { .name = "msgtest", .shard_init = oneway_init };

START_TEST(test_backpressure_oneway)
{
	struct vq_msg_pair_stats st;
	uint64_t got;

	flood_want = scaled(3000000);
	atomic_store(&flood_recv, 0);
	mesh_up(2, 32, &oneway_svc, 0);
	got = wait_for(&flood_recv, flood_want, 2000);
	vq_mesh_stop(mesh);
	ck_assert_int_eq(vq_mesh_join(mesh), 0);
	vq_mesh_pair_stats(mesh, 0, 1, &st);
	vq_mesh_destroy(mesh);
	mesh = NULL;
	fprintf(stderr, "back-pressure: %lu messages, %lu full events\n", (unsigned long)got,
		(unsigned long)st.full);
	ck_assert_msg(got == flood_want, "flood stalled at %lu of %lu: lost space wakeup",
		      (unsigned long)got, (unsigned long)flood_want);
	ck_assert_uint_gt(st.full, 1000);
	ck_assert_uint_eq(atomic_load(&errors), 0);
}
END_TEST

/*
 * Parked/doorbell race: a ping-pong where each side goes to sleep between
 * messages, and the sender waits a random few hundred nanoseconds before
 * sending so that its publish lands anywhere in the receiver's going-to-sleep
 * window. A lost wakeup stalls the ping-pong: the test sees no progress.
 */
static _Atomic uint64_t rounds;
static uint64_t rounds_want;

static void spin_random(unsigned *seed)
{
	unsigned r = (unsigned)rand_r(seed), n = r & 3 ? r % 3000 : 0;

	for (volatile unsigned i = 0; i < n; i++)
		;
}

static void ping(struct vq_shard *on, void *arg);

static void bounce(struct vq_shard *on, void *arg)
{
	static __thread unsigned seed;
	unsigned peer = (unsigned)on->id ^ 1;

	if (!seed)
		seed = (unsigned)on->id * 7919 + 1;
	spin_random(&seed);
	if (vq_msg_send(on, peer, ping, arg))
		atomic_fetch_add(&errors, 1);
}

static void ping(struct vq_shard *on, void *arg)
{
	uint64_t r = atomic_fetch_add_explicit(&rounds, 1, memory_order_relaxed) + 1;

	if (r < rounds_want)
		bounce(on, arg);
}

static int race_init(struct vq_shard *s)
{
	if (s->id == 0)
		return vq_msg_send(s, 1, ping, NULL);
	return 0;
}

static const struct vq_service race_svc = { .name = "msgtest", .shard_init = race_init };

START_TEST(test_parked_doorbell_race)
{
	struct vq_msg_pair_stats a, b;
	uint64_t got;

	rounds_want = scaled(100000);
	atomic_store(&rounds, 0);
	mesh_up(2, 0, &race_svc, 0);
	got = wait_for(&rounds, rounds_want, 2000);
	vq_mesh_stop(mesh);
	ck_assert_int_eq(vq_mesh_join(mesh), 0);
	vq_mesh_pair_stats(mesh, 0, 1, &a);
	vq_mesh_pair_stats(mesh, 1, 0, &b);
	vq_mesh_destroy(mesh);
	mesh = NULL;
	ck_assert_msg(got >= rounds_want, "ping-pong stalled at round %lu of %lu: lost wakeup",
		      (unsigned long)got, (unsigned long)rounds_want);
	ck_assert_uint_eq(atomic_load(&errors), 0);
	/* Most rounds found the peer asleep: the test did exercise the doorbell. */
	ck_assert_uint_gt(a.doorbells + b.doorbells, rounds_want / 10);
	fprintf(stderr, "race: %lu rounds, %lu doorbells\n", (unsigned long)got,
		(unsigned long)(a.doorbells + b.doorbells));
}
END_TEST

/*
 * Shutdown with messages in flight: three shards keep calling each other (and
 * every call handler forwards a send to the third shard) while the mesh is
 * stopped. Shard 2 pretends to hold a connection that takes 100 ms to drain,
 * so the other two, already drained, must keep serving meanwhile. Every
 * accepted call gets exactly one reply, every accepted send runs, and once
 * closing, new requests are refused with -ESHUTDOWN.
 */
static _Atomic uint64_t calls_ok, replies_ok, replies_err, sends_ok, sends_run, shutdowns;
static _Atomic uint64_t after_stop, replies_closing, handler_shutdowns;
static _Atomic int stop_called;
static bool closing_seen[MAX_SHARDS];
static struct pump flood[MAX_SHARDS];
static struct vq_timer slow_drain;

static void slow_drain_done(struct vq_timer *t)
{
	shards[2].nconns = 0; /* the pretend connection is done */
}

static void slow_drain_begin(struct vq_shard *s)
{
	slow_drain.fn = slow_drain_done;
	vq_timer_arm(s, &slow_drain, 100 * 1000000ull);
}

static void fwd_run(struct vq_shard *on, void *arg)
{
	atomic_fetch_add(&sends_run, 1);
}

static void *fwd_call(struct vq_shard *on, void *arg)
{
	unsigned third = 3 - (unsigned)on->id - (unsigned)(uintptr_t)arg;
	int ret = vq_msg_send(on, third % 3, fwd_run, NULL);

	if (!ret)
		atomic_fetch_add(&sends_ok, 1);
	else if (ret == -ESHUTDOWN)
		atomic_fetch_add(&handler_shutdowns, 1); /* a call delivered after closing */
	return arg;
}

static void fwd_reply(struct vq_shard *self, void *ctx, void *result, int err)
{
	if (closing_seen[self->id])
		atomic_fetch_add(&replies_closing, 1);
	if (err)
		atomic_fetch_add(&replies_err, 1);
	else if (result == ctx)
		atomic_fetch_add(&replies_ok, 1);
	else
		atomic_fetch_add(&errors, 1);
}

static void flood_run(struct vq_task *t)
{
	struct pump *p = (struct pump *)t;
	struct vq_shard *s = vq_shard_self();

	for (unsigned i = 0; i < 512; i++) {
		unsigned dst = (p->src + 1 + (unsigned)(p->next++ & 1)) % 3;
		int ret = vq_msg_call(s, dst, fwd_call, (void *)(uintptr_t)p->src, fwd_reply,
				      (void *)(uintptr_t)p->src);

		if (ret == -EAGAIN) {
			vq_msg_wait_space(s, dst, t);
			return;
		}
		if (ret == -ESHUTDOWN) {
			closing_seen[s->id] = true;
			atomic_fetch_add(&shutdowns, 1);
			return; /* stop flooding: the mesh is closing */
		}
		if (ret) {
			atomic_fetch_add(&errors, 1);
			return;
		}
		atomic_fetch_add(&calls_ok, 1);
		if (atomic_load(&stop_called))
			atomic_fetch_add(&after_stop, 1);
	}
	vq_defer(s, t);
}

static int flood_init(struct vq_shard *s)
{
	flood[s->id] = (struct pump){ .t.fn = flood_run, .src = (unsigned)s->id };
	if (s->id == 2) {
		s->nconns = 1;
		s->stop_hook = slow_drain_begin;
	}
	vq_defer(s, &flood[s->id].t);
	return 0;
}

static const struct vq_service flood_svc = { .name = "msgtest", .shard_init = flood_init };

START_TEST(test_shutdown_in_flight)
{
	uint64_t queued = 0;

	atomic_store(&calls_ok, 0);
	atomic_store(&replies_ok, 0);
	atomic_store(&replies_err, 0);
	atomic_store(&sends_ok, 0);
	atomic_store(&sends_run, 0);
	atomic_store(&shutdowns, 0);
	atomic_store(&after_stop, 0);
	atomic_store(&replies_closing, 0);
	atomic_store(&handler_shutdowns, 0);
	memset(closing_seen, 0, sizeof(closing_seen));
	atomic_store(&stop_called, 0);
	mesh_up(3, 128, &flood_svc, 0);
	usleep(200 * 1000);
	/* Queued but not yet run at the moment of the stop (the rings are kept full). */
	for (unsigned a = 0; a < 3; a++) {
		for (unsigned b = 0; b < 3; b++) {
			struct vq_msg_pair_stats st;

			vq_mesh_pair_stats(mesh, a, b, &st);
			queued += st.sent - st.received;
		}
	}
	atomic_store(&stop_called, 1);
	vq_mesh_stop(mesh);
	ck_assert_int_eq(mesh_down(), 0);
	fprintf(stderr, "shutdown: %lu calls, %lu queued at the stop, %lu accepted during the "
		"drain, %lu replies after closing, %lu calls delivered after closing\n",
		(unsigned long)atomic_load(&calls_ok), (unsigned long)queued,
		(unsigned long)atomic_load(&after_stop), (unsigned long)atomic_load(&replies_closing),
		(unsigned long)atomic_load(&handler_shutdowns));
	ck_assert_uint_gt(queued, 0);
	ck_assert_uint_eq(atomic_load(&errors), 0);
	ck_assert_uint_gt(atomic_load(&calls_ok), 1000);
	/* Drained shards kept serving requests while shard 2 was still draining. */
	ck_assert_uint_gt(atomic_load(&after_stop), 1000);
	ck_assert_uint_gt(atomic_load(&shutdowns), 0);   /* and closing refused new requests */
	ck_assert_uint_eq(atomic_load(&replies_ok), atomic_load(&calls_ok));
	ck_assert_uint_eq(atomic_load(&replies_err), 0);
	ck_assert_uint_eq(atomic_load(&sends_run), atomic_load(&sends_ok));
}
END_TEST

/* A shard that fails to start: a call already queued to it comes back with -ESHUTDOWN. */
static _Atomic uint64_t gone_replies;

static void gone_send(struct vq_shard *on, void *arg)
{
	atomic_fetch_add(&errors, 1); /* shard 1 never runs */
}

static void *gone_call(struct vq_shard *on, void *arg)
{
	atomic_fetch_add(&errors, 1);
	return NULL;
}

static void gone_reply(struct vq_shard *self, void *ctx, void *result, int err)
{
	if (err != -ESHUTDOWN || result || ctx != (void *)0x1234)
		atomic_fetch_add(&errors, 1);
	atomic_fetch_add(&gone_replies, 1);
}

static int gone_init(struct vq_shard *s)
{
	if (s->id == 1) {
		usleep(50 * 1000); /* let shard 0 queue its messages first */
		snprintf(s->error, sizeof(s->error), "refusing to start (test)");
		return -EIO;
	}
	if (vq_msg_call(s, 1, gone_call, NULL, gone_reply, (void *)0x1234) ||
	    vq_msg_send(s, 1, gone_send, NULL))
		atomic_fetch_add(&errors, 1);
	return 0;
}

static const struct vq_service gone_svc = { .name = "msgtest", .shard_init = gone_init };

START_TEST(test_failed_shard)
{
	atomic_store(&gone_replies, 0);
	mesh_up(2, 0, &gone_svc, -EIO);
	ck_assert_int_ne(vq_mesh_join(mesh), 0);
	ck_assert_uint_eq(vq_mesh_undelivered(mesh), 1);
	vq_mesh_destroy(mesh);
	mesh = NULL;
	ck_assert_uint_eq(atomic_load(&gone_replies), 1);
	ck_assert_uint_eq(atomic_load(&errors), 0);
}
END_TEST

/* Broadcast/gather: every shard answers with its id; done runs once on the caller. */
static _Atomic uint64_t gathered;

static void *whoami(struct vq_shard *on, void *arg)
{
	return (void *)(uintptr_t)(on->id + 100);
}

static void gather_done(struct vq_shard *self, void *ctx, void **results, unsigned n)
{
	if (n != nshards || ctx != (void *)self)
		atomic_fetch_add(&errors, 1);
	for (unsigned i = 0; i < n; i++)
		if ((uintptr_t)results[i] != i + 100)
			atomic_fetch_add(&errors, 1);
	atomic_fetch_add(&gathered, 1);
}

static int gather_init(struct vq_shard *s)
{
	return vq_msg_broadcast(s, whoami, NULL, gather_done, s);
}

static const struct vq_service gather_svc = { .name = "msgtest", .shard_init = gather_init };

START_TEST(test_broadcast)
{
	atomic_store(&gathered, 0);
	mesh_up(3, 0, &gather_svc, 0);
	ck_assert_uint_eq(wait_for(&gathered, 3, 5000), 3);
	vq_mesh_stop(mesh);
	ck_assert_int_eq(mesh_down(), 0);
	ck_assert_uint_eq(atomic_load(&errors), 0);
}
END_TEST

/*
 * A vq_buf used away from its home shard: debug builds abort. Shard 0 sends
 * one of its buffers to shard 1, which releases it there. Run in a child so
 * the abort is what we observe.
 */
#ifndef NDEBUG
static void release_here(struct vq_shard *on, void *arg)
{
	vq_buf_release(arg); /* wrong shard: must abort in a debug build */
}

static int misuse_init(struct vq_shard *s)
{
	if (s->id == 0) {
		struct vq_buf *b = vq_pool_alloc(&s->pool);

		return b ? vq_msg_send(s, 1, release_here, b) : -ENOBUFS;
	}
	return 0;
}

static const struct vq_service misuse_svc = { .name = "msgtest", .shard_init = misuse_init };
#endif

START_TEST(test_buf_home_assert)
{
#ifdef NDEBUG
	fprintf(stderr, "buf home check: skipped, NDEBUG build has no assertions\n");
#else
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		alarm(10);
		mesh_up(2, 0, &misuse_svc, 0);
		sleep(5); /* the abort comes long before */
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
		      "expected SIGABRT from the home check, got status 0x%x", status);
#endif
}
END_TEST

static Suite *msg_suite(void)
{
	Suite *s = suite_create("msg");
	TCase *api = tcase_create("api");
	TCase *stress = tcase_create("stress");
	TCase *race = tcase_create("race");
	TCase *stop = tcase_create("shutdown");
	TCase *home = tcase_create("home");

	tcase_add_test(api, test_api_errors);
	tcase_add_test(api, test_broadcast);
	tcase_add_test(stress, test_stress_all_pairs);
	tcase_add_test(stress, test_stress_counters);
	tcase_add_test(race, test_parked_doorbell_race);
	tcase_add_test(race, test_backpressure_oneway);
	tcase_add_test(stop, test_shutdown_in_flight);
	tcase_add_test(stop, test_failed_shard);
	tcase_add_test(home, test_buf_home_assert);
	tcase_set_timeout(api, 30);
	tcase_set_timeout(stress, 60);
	tcase_set_timeout(race, 60);
	tcase_set_timeout(stop, 30);
	tcase_set_timeout(home, 30);
	suite_add_tcase(s, api);
	suite_add_tcase(s, stress);
	suite_add_tcase(s, race);
	suite_add_tcase(s, stop);
	suite_add_tcase(s, home);
	return s;
}

int main(void)
{
	return vq_check_run(msg_suite());
}
