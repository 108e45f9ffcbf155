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

#include "conn.h"
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

	if (atomic_exchange(&s->stop_requested, 1))
		return;
	if (me != s && s->drv.impl)
		s->drv.ops->wake(&s->drv, me ? &me->drv : NULL);
}

static int pin(struct vq_shard *s)
{
	cpu_set_t set;

	if (s->cpu < 0)
		return 0;
	CPU_ZERO(&set);
	CPU_SET(s->cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		snprintf(s->error, sizeof(s->error), "pin to CPU %d: %s", s->cpu, strerror(errno));
		return -errno;
	}
	s->node = numa_available() >= 0 ? numa_node_of_cpu(s->cpu) : -1;
	if (s->node >= 0)
		numa_set_preferred(s->node); /* heap memory of this thread lands on its node too */
	return 0;
}

static const char *memlock_hint(int err)
{
	return err == -ENOMEM ? " (registered buffers count against RLIMIT_MEMLOCK: raise it with "
				"'ulimit -l' or LimitMEMLOCK= in the unit, or lower buffers.count)" :
				"";
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
	s->drv.ops = &vq_uring_driver;
	ret = s->drv.ops->init(&s->drv, &dp);
	if (ret) {
		snprintf(s->error, sizeof(s->error), "io_uring setup: %s", strerror(-ret));
		return ret;
	}
	ret = s->drv.ops->register_pool(&s->drv, &s->pool);
	if (ret) {
		snprintf(s->error, sizeof(s->error), "registering %zu bytes of buffers: %s%s",
			 s->pool.region_len, strerror(-ret), memlock_hint(ret));
		return ret;
	}
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

static void begin_stop(struct vq_shard *s)
{
	s->state = VQ_SHARD_DRAINING;
	if (s->stop_hook)
		s->stop_hook(s);
	vq_listener_stop(s);
	s->drain_deadline.fn = drain_deadline;
	vq_timer_arm(s, &s->drain_deadline, s->cfg->drain_timeout_ms * 1000000ull);
	vq_conn_drain_all(s);
}

void vq_shard_turn(struct vq_shard *s, int64_t timeout_ns)
{
	uint64_t start = vq_clock_ns(), next, took;
	int ret;

	s->now_ns = start;
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
	ret = s->drv.ops->wait(&s->drv, timeout_ns);
	if (ret < 0)
		vq_err("driver wait: %s", strerror(-ret));
	s->now_ns = vq_clock_ns();
	if (s->mesh)
		vq_msg_after_wait(s); /* unpark, run inbound messages */
	vq_timer_heap_run(&s->timers, s->now_ns);
	took = vq_clock_ns() - s->now_ns;
	s->st.iterations++;
	if (took > s->st.longest_iter_ns)
		s->st.longest_iter_ns = took;
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
	while (!stopped(s))
		vq_shard_turn(s, -1);
	return vq_shard_teardown(s);
}

int vq_shard_teardown(struct vq_shard *s)
{
	uint32_t missing;
	int status = 0;

	if (s->mesh)
		vq_msg_shard_exit(s);
	vq_timer_disarm(s, &s->drain_deadline);
	vq_timer_disarm(s, &s->accept_retry);
	if (s->svc->shard_fini)
		s->svc->shard_fini(s);
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
