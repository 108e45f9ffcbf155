/* SPDX-License-Identifier: MIT */
/*
 * The shard: one pinned thread, one ring, one pool. The loop runs ready work,
 * submits and waits once (until the next timer), delivers completions, fires
 * timers, and repeats until a stop has drained every connection and reaped
 * every op.
 */
#include <errno.h>
#include <numa.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cfgpub.h"
#include "conn.h"
#include "driver_select.h"
#include "listener.h"
#include "log.h"
#include "msg_internal.h"
#include "shard.h"

static __thread struct vq_shard *self;

struct vq_shard *vq_shard_self(void)
{
	return self;
}

void vq_defer(struct vq_shard *s, struct vq_task *t)
{
	if (t->queued)
		return;
	t->queued = true;
	t->next = NULL;
	if (s->ready_tail)
		s->ready_tail->next = t;
	else
		s->ready = t;
	s->ready_tail = t;
}

static void run_ready(struct vq_shard *s)
{
	/* Only what was queued before we started: new work waits for the next turn. */
	struct vq_task *t = s->ready;

	s->ready = s->ready_tail = NULL;
	while (t) {
		struct vq_task *next = t->next;

		t->queued = false;
		t->fn(t);
		t = next;
	}
}

int vq_timer_arm(struct vq_shard *s, struct vq_timer *t, uint64_t delay_ns)
{
	return vq_timer_heap_arm(&s->timers, t, s->now_ns + delay_ns);
}

void vq_timer_disarm(struct vq_shard *s, struct vq_timer *t)
{
	vq_timer_heap_disarm(&s->timers, t);
}

void vq_shard_request_stop(struct vq_shard *s)
{
	struct vq_shard *me = vq_shard_self();

	/* Counted before the flag: once the shard sees the flag it may run to its
	 * teardown, which must not close the doorbell under our wake. */
	atomic_fetch_add(&s->stoppers, 1);
	if (!atomic_exchange(&s->stop_requested, 1) && me != s && s->drv.impl)
		s->drv.ops->wake(&s->drv, me ? &me->drv : NULL);
	atomic_fetch_sub(&s->stoppers, 1);
}

static int pin(struct vq_shard *s)
{
	cpu_set_t set;

	s->node = -1;
	if (s->cpu < 0)
		return 0;
	/* The NUMA node (pool, heap) is always the home CPU's, wherever the thread runs. */
	if (CPU_COUNT(&s->run_on)) {
		set = s->run_on;
	} else {
		CPU_ZERO(&set);
		CPU_SET(s->cpu, &set);
	}
	if (sched_setaffinity(0, sizeof(set), &set)) {
		snprintf(s->error, sizeof(s->error), "pin to CPU %d: %s", s->cpu, strerror(errno));
		return -errno;
	}
	s->node = numa_available() >= 0 ? numa_node_of_cpu(s->cpu) : -1;
	if (s->node >= 0)
		numa_set_preferred(s->node); /* heap memory of this thread lands on its node too */
	return 0;
}

int vq_shard_setup(struct vq_shard *s, bool listen)
{
	const struct vq_config *cfg = s->cfg;
	struct vq_pool_params pp = {
		.count = (uint32_t)cfg->buf_count,
		.size = (uint32_t)cfg->buf_size,
		.huge = (enum vq_hugepages)cfg->hugepages,
		.home = s->id,
	};
	struct vq_driver_params dp = {
		.sq_entries = (uint32_t)cfg->sq_entries,
		.provided = (uint32_t)cfg->buf_provided,
		.zc_min = (uint32_t)cfg->zc_min,
		.flags = (cfg->recv_bundle ? VQ_DRV_RECV_BUNDLE : 0) |
			 (cfg->recv_cap ? 0 : VQ_DRV_NO_RECV_CAP),
	};
	int ret;

	self = s;
	s->listen_fd = -1;
	vq_log_set_shard(s->id);
	vq_buf_set_thread_home(s->id);
	s->now_ns = vq_clock_ns();
	ret = pin(s);
	if (ret)
		return ret;
	pp.node = s->node;
	ret = vq_pool_init(&s->pool, &pp);
	if (ret) {
		snprintf(s->error, sizeof(s->error), "buffer pool of %u x %u bytes on node %d: %s",
			 pp.count, pp.size, pp.node, strerror(-ret));
		return ret;
	}
	ret = vq_driver_open(&s->drv, (enum vq_driver_choice)cfg->driver, &dp, &s->pool, s->error,
			     sizeof(s->error));
	if (ret)
		return ret;
	s->drv.clock = &s->now_ns; /* completions see the time after the sleep, not before */
	/* The probed features once at info (they are the same on every shard), then per shard. */
	vq_log(s->id == 0 ? VQ_LOG_INFO : VQ_LOG_DEBUG, "cpu %d node %d, %s %s, pool %u x %u%s",
	       s->cpu, s->node, s->drv.ops->name, s->drv.features, pp.count, pp.size,
	       s->pool.huge ? " (huge pages)" : "");
	if (s->svc->shard_init) {
		ret = s->svc->shard_init(s);
		if (ret) {
			if (!s->error[0])
				snprintf(s->error, sizeof(s->error), "%s shard set-up: %s",
					 s->svc->name, strerror(-ret));
			return ret;
		}
	}
	if (listen) {
		ret = vq_listener_open(s);
		if (ret)
			return ret;
	}
	s->state = VQ_SHARD_RUNNING;
	if (s->mesh)
		vq_msg_shard_ready(s);
	return 0;
}

static void drain_deadline(struct vq_timer *t)
{
	struct vq_shard *s = (struct vq_shard *)((char *)t - offsetof(struct vq_shard,
								       drain_deadline));

	if (s->nconns)
		vq_notice("drain deadline passed: closing %u connections", s->nconns);
	s->state = VQ_SHARD_CLOSING;
	vq_conn_abort_all(s);
}

#define DRAIN_SWEEP_NS 20000000ull

/* While draining, close each connection once it has been quiet a moment (conn.c). */
static void drain_sweep(struct vq_timer *t)
{
	struct vq_shard *s = (struct vq_shard *)((char *)t - offsetof(struct vq_shard, drain_sweep));

	if (s->state != VQ_SHARD_DRAINING)
		return;
	vq_conn_drain_all(s);
	vq_timer_arm(s, &s->drain_sweep, DRAIN_SWEEP_NS);
}

/*
 * The pool has run dry: users hold more buffers than are free and someone
 * waits for one (a recv with no buffer to fill, a service's reply).
 */
static bool pool_starved(struct vq_shard *s)
{
	return vq_pool_short(&s->pool) && (s->pool.waiters || s->drv.ops->starved(&s->drv));
}

/*
 * While the pool stays dry, every quarter of limits.pool_stall_timeout close
 * the connections whose peers have taken none of their output for all of it
 * (conn.c), so the buffers they pin serve everyone else well before
 * limits.stall_timeout would.
 */
static void pool_watch(struct vq_timer *t)
{
	struct vq_shard *s = (struct vq_shard *)((char *)t - offsetof(struct vq_shard, pool_watch));
	uint64_t limit = s->cfg->pool_stall_timeout_ms * NS_PER_MS;

	if (!limit || !pool_starved(s))
		return;
	vq_conn_shed_stalled(s, limit);
	vq_timer_arm(s, &s->pool_watch, limit / 4);
}

static void watch_pool(struct vq_shard *s)
{
	uint64_t limit = s->cfg->pool_stall_timeout_ms * NS_PER_MS;

	if (!s->pool_watch.slot && limit && pool_starved(s)) {
		s->pool_watch.fn = pool_watch;
		vq_timer_arm(s, &s->pool_watch, limit / 4);
	}
}

static void begin_stop(struct vq_shard *s)
{
	s->state = VQ_SHARD_DRAINING;
	if (s->stop_hook)
		s->stop_hook(s);
	vq_listener_stop(s);
	s->drain_deadline.fn = drain_deadline;
	vq_timer_arm(s, &s->drain_deadline, s->cfg->drain_timeout_ms * NS_PER_MS);
	s->drain_sweep.fn = drain_sweep;
	vq_timer_arm(s, &s->drain_sweep, 0);
}

/* A SIGHUP reload published a new snapshot: adopt it before touching any limit. */
static void adopt_config(struct vq_shard *s)
{
	/* Read before the pick: once we acknowledge the new one, the old may be freed. */
	uint64_t idle = s->cfg->idle_timeout_ms, stall = s->cfg->stall_timeout_ms;
	uint64_t pool_stall = s->cfg->pool_stall_timeout_ms;

	if (!vq_cfg_pub_pick(s->cfg_pub, s->id, &s->cfg))
		return;
	vq_debug("configuration generation %lu applied",
		 (unsigned long)vq_cfg_pub_acked(s->cfg_pub, s->id));
	if (s->cfg->idle_timeout_ms != idle || s->cfg->stall_timeout_ms != stall)
		vq_conn_timeouts_changed(s);
	if (s->cfg->pool_stall_timeout_ms != pool_stall)
		vq_timer_disarm(s, &s->pool_watch); /* watch_pool re-arms it at the new pace */
}

/*
 * Two clock reads a turn: the driver's when the kernel returns (before any
 * completion runs), and one before the timers. Until the wait, s->now_ns is the
 * end of the previous turn, which has not slept since.
 */
void vq_shard_turn(struct vq_shard *s, int64_t timeout_ns)
{
	uint64_t next, woke, busy;
	int ret;

	if (s->cfg_pub)
		adopt_config(s);
	run_ready(s);
	s->drv.ops->replenish(&s->drv);
	vq_pool_run_waiters(&s->pool);
	next = vq_timer_heap_next(&s->timers);
	if (s->ready)
		timeout_ns = 0;
	else if (next != UINT64_MAX) {
		int64_t until = next > s->now_ns ? (int64_t)(next - s->now_ns) : 0;

		if (timeout_ns < 0 || until < timeout_ns)
			timeout_ns = until;
	}
	if (s->mesh)
		timeout_ns = vq_msg_before_wait(s, timeout_ns); /* publish, then maybe park */
	ret = s->drv.ops->wait(&s->drv, timeout_ns); /* sets s->now_ns before completions */
	if (ret < 0)
		vq_err("driver wait: %s", strerror(-ret));
	woke = s->now_ns;
	if (s->mesh)
		vq_msg_after_wait(s); /* unpark, run inbound messages */
	s->now_ns = vq_clock_ns(); /* completions and messages took time: timers see it */
	vq_timer_heap_run(&s->timers, s->now_ns);
	watch_pool(s);
	busy = s->now_ns > woke ? s->now_ns - woke : 0;
	s->st.iterations++;
	if (busy > s->st.longest_iter_ns)
		s->st.longest_iter_ns = busy;
	/* For the supervisor: relaxed, it only needs to see the numbers move. */
	atomic_store_explicit(&s->heartbeat, s->st.iterations, memory_order_relaxed);
	atomic_store_explicit(&s->live_conns, s->nconns, memory_order_relaxed);
}

/* debug.stall_on_signal: hang here, as a shard stuck in a callback would; tests only. */
static void debug_stall(struct vq_shard *s)
{
	vq_warn("stalling on purpose (debug.stall_on_signal): this shard stops turning its loop");
	for (;;)
		pause(); /* every handled signal is blocked: only SIGKILL/SIGABRT end this */
}

static bool stopped(struct vq_shard *s)
{
	bool done;

	if (atomic_load_explicit(&s->stop_requested, memory_order_acquire) &&
	    s->state == VQ_SHARD_RUNNING)
		begin_stop(s);
	if (s->state == VQ_SHARD_DRAINING && !s->nconns)
		s->state = VQ_SHARD_CLOSING;
	/* Done when only the driver's own ops are left, and (mesh) every shard is done with us. */
	done = s->state == VQ_SHARD_CLOSING && !s->nconns && s->listen_fd < 0 &&
	       s->drv.inflight == s->drv.internal;
	return s->mesh ? vq_msg_may_stop(s, done) : done;
}

int vq_shard_run(struct vq_shard *s)
{
	int64_t max_wait = s->max_wait_ns ? (int64_t)s->max_wait_ns : -1;

	while (!stopped(s)) {
		vq_shard_turn(s, max_wait);
		if (atomic_load_explicit(&s->debug_stall, memory_order_relaxed))
			debug_stall(s);
	}
	return vq_shard_teardown(s);
}

int vq_shard_teardown(struct vq_shard *s)
{
	uint32_t missing;
	int status = 0;

	if (s->mesh)
		vq_msg_shard_exit(s);
	vq_timer_disarm(s, &s->drain_deadline);
	vq_timer_disarm(s, &s->drain_sweep);
	vq_timer_disarm(s, &s->accept_retry);
	vq_timer_disarm(s, &s->pool_watch);
	if (s->svc->shard_fini)
		s->svc->shard_fini(s);
	/* Later stop requests see the flag and leave the driver alone; wait out earlier ones. */
	atomic_store(&s->stop_requested, 1);
	while (atomic_load(&s->stoppers))
		sched_yield(); /* a vq_shard_request_stop() is ringing our doorbell */
	if (s->drv.impl) {
		if (s->drv.inflight != s->drv.internal) {
			vq_err("%u ops still in flight at teardown", s->drv.inflight - s->drv.internal);
			status = 1;
		}
		s->drv.ops->fini(&s->drv);
	}
	vq_listener_close(s);
	missing = s->pool.region ? vq_pool_fini(&s->pool) : 0;
	vq_timer_heap_free(&s->timers);
	if (missing || s->nconns) {
		vq_err("leak at shutdown: %u buffers not back in the pool, %u connections open",
		       missing, s->nconns);
		status = 1;
	}
	s->state = VQ_SHARD_STOPPED;
	vq_info("stopped: %lu accepted, %lu closed, %lu bytes in, %lu bytes out; "
		"%u buffers outstanding, %u connections open",
		(unsigned long)s->st.accepted, (unsigned long)s->st.closed,
		(unsigned long)s->st.bytes_in, (unsigned long)s->st.bytes_out, missing, s->nconns);
	self = NULL;
	s->exit_status = status;
	return status;
}
