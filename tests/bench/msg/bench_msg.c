/* SPDX-License-Identifier: MIT */
/*
 * Message-ring benchmark (not a test): two shards pinned to CPU A and B.
 *  - one-way throughput, batched (publish per loop turn / 64 messages) and
 *    unbatched (vq_msg_flush after every send);
 *  - call round trip, p50/p99, with the receiver busy (its loop never sleeps)
 *    and asleep (every call needs a MSG_RING doorbell);
 *  - baselines in the same run on the same CPUs: an eventfd write per message
 *    (the consumer blocks in read), and a mutex + condvar protected queue.
 * Each figure is the median of --runs runs. Usage: bench_msg [--runs N] [--cpus A,B]
 *   [--count N] [--samples N]
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "msg.h"
#include "shard.h"

static int cpu_a = 0, cpu_b = 1, runs = 5;
static uint64_t count = 20000000, samples = 20000;
static struct vq_config cfg;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];

			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- veloq mesh: two pinned shards -------------------------------------------------- */

static struct vq_shard shards[2];
static uint64_t poll_ns;     /* vq_mesh_set_poll for the next mesh */
static struct vq_mesh *mesh;
static _Atomic int done;
static struct vq_msg_pair_stats fwd, back; /* 0 -> 1 and 1 -> 0, of the last run */

static void run_mesh(const struct vq_service *svc)
{
	memset(shards, 0, sizeof(shards));
	atomic_store(&done, 0);
	for (int i = 0; i < 2; i++) {
		shards[i].id = i;
		shards[i].cpu = i ? cpu_b : cpu_a;
		shards[i].svc = svc;
		shards[i].cfg = &cfg;
	}
	if (vq_mesh_create(&mesh, shards, 2, 1024) ||
	    (vq_mesh_set_poll(mesh, poll_ns), vq_mesh_start(mesh))) {
		fprintf(stderr, "bench_msg: cannot start two shards on CPUs %d,%d\n", cpu_a, cpu_b);
		exit(1);
	}
	while (!atomic_load(&done))
		usleep(1000);
	vq_mesh_stop(mesh);
	if (vq_mesh_join(mesh))
		fprintf(stderr, "bench_msg: a shard stopped with errors\n");
	vq_mesh_pair_stats(mesh, 0, 1, &fwd);
	vq_mesh_pair_stats(mesh, 1, 0, &back);
	vq_mesh_destroy(mesh);
}

/* One way: shard 0 sends `count` messages to shard 1 as fast as the ring takes them. */
static bool unbatched;
static uint64_t ow_sent, ow_recvd, ow_start, ow_end;
static struct vq_task ow_task;

static void ow_recv(struct vq_shard *on, void *arg)
{
	if (++ow_recvd == count) {
		ow_end = now_ns();
		atomic_store(&done, 1);
	}
}

static void ow_pump(struct vq_task *t)
{
	struct vq_shard *s = vq_shard_self();

	for (unsigned burst = 0; burst < 65536 && ow_sent < count; burst++) {
		if (vq_msg_send(s, 1, ow_recv, NULL) == -EAGAIN) {
			vq_msg_wait_space(s, 1, t);
			return;
		}
		ow_sent++;
		if (unbatched)
			vq_msg_flush(s);
	}
	if (ow_sent < count)
		vq_defer(s, t);
}

static int ow_init(struct vq_shard *s)
{
	if (s->id == 0) {
		ow_sent = ow_recvd = 0;
		ow_task.fn = ow_pump;
		ow_start = now_ns();
		vq_defer(s, &ow_task);
	}
	return 0;
}

static const struct vq_service ow_svc = { .name = "bench", .shard_init = ow_init };

static double oneway(bool unbatch, uint64_t poll, double *wakes)
{
	unbatched = unbatch;
	poll_ns = poll;
	run_mesh(&ow_svc);
	/* Sleeps per million messages: doorbells to the consumer plus wakes of the producer. */
	*wakes = (double)(fwd.doorbells + fwd.full) * 1e6 / (double)count;
	poll_ns = 0;
	return (double)count / ((double)(ow_end - ow_start) / 1e9);
}

/* Round trip: one call at a time from shard 0; shard 0 always busy, shard 1 busy or not. */
static bool callee_busy;
static uint64_t *rtt, rtt_n, rtt_t0;
static struct vq_task spin_task[2];

static void spin(struct vq_task *t)
{
	/* Keeps the loop polling: ready work means a zero wait timeout, so it never parks. */
	if (!atomic_load_explicit(&done, memory_order_relaxed))
		vq_defer(vq_shard_self(), t);
}

static void *rt_echo(struct vq_shard *on, void *arg)
{
	return arg;
}

static void rt_next(struct vq_shard *s);

static void rt_reply(struct vq_shard *self, void *ctx, void *result, int err)
{
	rtt[rtt_n++] = now_ns() - rtt_t0;
	if (rtt_n == samples) {
		atomic_store(&done, 1);
		return;
	}
	rt_next(self);
}

static void rt_next(struct vq_shard *s)
{
	if (!callee_busy)
		usleep(50); /* (blocks shard 0 on purpose) shard 1 falls asleep: each call rings */
	rtt_t0 = now_ns();
	if (vq_msg_call(s, 1, rt_echo, NULL, rt_reply, NULL)) {
		fprintf(stderr, "bench_msg: call refused\n");
		exit(1);
	}
	vq_msg_flush(s); /* latency, not batching: publish now */
}

static void rt_start(struct vq_task *t)
{
	rt_next(vq_shard_self());
}

static struct vq_task rt_task;

static int rt_init(struct vq_shard *s)
{
	if (s->id == 0 || callee_busy) {
		spin_task[s->id].fn = spin;
		vq_defer(s, &spin_task[s->id]);
	}
	if (s->id == 0) {
		rtt_n = 0;
		rt_task.fn = rt_start;
		vq_defer(s, &rt_task);
	}
	return 0;
}

static const struct vq_service rt_svc = { .name = "bench", .shard_init = rt_init };

static void roundtrip(bool busy, double *p50, double *p99)
{
	callee_busy = busy;
	run_mesh(&rt_svc);
	qsort(rtt, samples, sizeof(*rtt), cmp_u64);
	*p50 = (double)rtt[samples / 2] / 1000;
	*p99 = (double)rtt[samples * 99 / 100] / 1000;
}

/* ---- baselines: two plain threads on the same CPUs --------------------------------- */

#define QCAP 1024

/*
 * The baselines move the same 40-byte message the ring does (function, argument,
 * continuation, context, kind) and call the function, so only the handoff differs.
 */
struct bmsg {
	void (*fn)(void *arg);
	void *arg;
	void *on_reply, *ctx;
	uint64_t kind;
};

static uint64_t base_got;

static void base_fn(void *arg)
{
	base_got++;
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* eventfd per message: a lock-free SPSC slot array plus one eventfd write per message. */
static int efd;
static _Atomic uint64_t ev_head, ev_tail;
static struct bmsg ev_slots[QCAP];

static void *ev_consumer(void *arg)
{
	uint64_t got = 0, v, head = 0;

	pin(cpu_b);
	while (got < count) {
		if (read(efd, &v, sizeof(v)) != sizeof(v))
			continue;
		for (uint64_t i = 0; i < v; i++) {
			struct bmsg m = ev_slots[head % QCAP];

			m.fn(m.arg);
			head++;
		}
		atomic_store_explicit(&ev_head, head, memory_order_release);
		got += v;
	}
	return NULL;
}

static double eventfd_handoff(void)
{
	pthread_t t;
	uint64_t start, tail = 0;

	efd = eventfd(0, 0);
	atomic_store(&ev_head, 0);
	atomic_store(&ev_tail, 0);
	pin(cpu_a);
	pthread_create(&t, NULL, ev_consumer, NULL);
	start = now_ns();
	for (uint64_t i = 0; i < count; i++) {
		while (tail - atomic_load_explicit(&ev_head, memory_order_acquire) >= QCAP)
			sched_yield();
		ev_slots[tail % QCAP] = (struct bmsg){ .fn = base_fn, .arg = (void *)i, .kind = 1 };
		tail++;
		atomic_store_explicit(&ev_tail, tail, memory_order_release);
		eventfd_write(efd, 1);
	}
	pthread_join(t, NULL);
	close(efd);
	return (double)count / ((double)(now_ns() - start) / 1e9);
}

/* Mutex + condvar queue: the consumer drains everything queued under one lock. */
static pthread_mutex_t mq_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mq_nonempty = PTHREAD_COND_INITIALIZER, mq_nonfull = PTHREAD_COND_INITIALIZER;
static uint64_t mq_head, mq_tail;
static struct bmsg mq_slots[QCAP];

static void *mq_consumer(void *arg)
{
	static struct bmsg batch[QCAP];
	uint64_t got = 0;

	pin(cpu_b);
	while (got < count) {
		unsigned n = 0;

		/* Take everything queued under one lock, run it outside: the queue's best case. */
		pthread_mutex_lock(&mq_mu);
		while (mq_head == mq_tail)
			pthread_cond_wait(&mq_nonempty, &mq_mu);
		while (mq_head != mq_tail)
			batch[n++] = mq_slots[mq_head++ % QCAP];
		pthread_cond_signal(&mq_nonfull);
		pthread_mutex_unlock(&mq_mu);
		for (unsigned i = 0; i < n; i++)
			batch[i].fn(batch[i].arg);
		got += n;
	}
	return NULL;
}

static double mutex_queue(void)
{
	pthread_t t;
	uint64_t start;

	mq_head = mq_tail = 0;
	pin(cpu_a);
	pthread_create(&t, NULL, mq_consumer, NULL);
	start = now_ns();
	for (uint64_t i = 0; i < count; i++) {
		pthread_mutex_lock(&mq_mu);
		while (mq_tail - mq_head >= QCAP)
			pthread_cond_wait(&mq_nonfull, &mq_mu);
		mq_slots[mq_tail % QCAP] = (struct bmsg){ .fn = base_fn, .arg = (void *)i, .kind = 1 };
		if (mq_tail++ == mq_head)
			pthread_cond_signal(&mq_nonempty);
		pthread_mutex_unlock(&mq_mu);
	}
	pthread_join(t, NULL);
	return (double)count / ((double)(now_ns() - start) / 1e9);
}

int main(int argc, char **argv)
{
	static const char *const ov[] = {
		"buffers.count=64", "buffers.provided=32", "buffers.size=4096",
		"buffers.hugepages=off", "io.ring_entries=64", "log.level=warning",
	};
	struct vq_cfg_table t = vq_config_table(&cfg);
	double batched[16], unbat[16], polled[16], wb[16], wu[16], wp[16], ev[16], mq[16], b50[16], b99[16], s50[16], s99[16];
	uint64_t ev_count;
	char err[256];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--runs") && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--cpus") && i + 1 < argc)
			sscanf(argv[++i], "%d,%d", &cpu_a, &cpu_b);
		else if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--samples") && i + 1 < argc)
			samples = strtoull(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: %s [--runs N] [--cpus A,B] [--count N] [--samples N]\n",
				argv[0]);
			return 2;
		}
	}
	if (runs < 1 || runs > 16 || !count || samples < 100)
		return 2;
	if (vq_config_load(&t, 1, NULL, ov, sizeof(ov) / sizeof(ov[0]), err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	vq_log_set_level(VQ_LOG_WARNING);
	rtt = calloc(samples, sizeof(*rtt));
	for (int r = 0; r < runs; r++) {
		batched[r] = oneway(false, 0, &wb[r]);
		unbat[r] = oneway(true, 0, &wu[r]);
		polled[r] = oneway(false, 20000, &wp[r]);
		roundtrip(true, &b50[r], &b99[r]);
		roundtrip(false, &s50[r], &s99[r]);
		/* The syscall-per-message baselines get a tenth of the count: same rate, less time. */
		ev_count = count;
		count = ev_count / 10;
		ev[r] = eventfd_handoff();
		mq[r] = mutex_queue();
		count = ev_count;
	}
	double mp = median(polled, runs), mb = median(batched, runs), mu = median(unbat, runs), me = median(ev, runs),
	       mm = median(mq, runs);

	printf("# bench_msg: CPUs %d -> %d, median of %d runs, %lu messages one way, "
	       "%lu round trips\n\n", cpu_a, cpu_b, runs, (unsigned long)count,
	       (unsigned long)samples);
	printf("| one way, messages/s            | M msgs/s | vs eventfd | sleeps per M msgs |\n");
	printf("|--------------------------------|---------:|-----------:|------------------:|\n");
	printf("| veloq ring, batched            | %8.2f | %9.1fx | %17.0f |\n", mb / 1e6, mb / me,
	       median(wb, runs));
	printf("| veloq ring, unbatched          | %8.2f | %9.1fx | %17.0f |\n", mu / 1e6, mu / me,
	       median(wu, runs));
	printf("| veloq ring, batched, 20us poll | %8.2f | %9.1fx | %17.0f |\n", mp / 1e6,
	       mp / me, median(wp, runs));
	printf("| eventfd write per message      | %8.2f | %9.1fx |                 - |\n", me / 1e6,
	       1.0);
	printf("| mutex + condvar queue          | %8.2f | %9.1fx |                 - |\n\n",
	       mm / 1e6, mm / me);
	printf("| call round trip              | p50 us | p99 us |\n");
	printf("|------------------------------|-------:|-------:|\n");
	printf("| receiver busy (polling)      | %6.2f | %6.2f |\n", median(b50, runs),
	       median(b99, runs));
	printf("| receiver asleep (doorbell)   | %6.2f | %6.2f |\n", median(s50, runs),
	       median(s99, runs));
	free(rtt);
	return 0;
}
