/* SPDX-License-Identifier: MIT */
#ifndef VQ_SHARD_H
#define VQ_SHARD_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "driver.h"
#include "pool.h"
#include "service.h"
#include "timer.h"

struct vq_conn;
struct vq_runtime;
struct vq_cfg_pub;
struct vq_mesh;

/* Deferred work: runs on the shard at the start of its next loop iteration. */
struct vq_task {
	void (*fn)(struct vq_task *t);
	struct vq_task *next;
	bool queued;
};

enum vq_shard_state {
	VQ_SHARD_STARTING = 0,
	VQ_SHARD_RUNNING,
	VQ_SHARD_DRAINING, /* not accepting; connections finish what they started */
	VQ_SHARD_CLOSING,  /* closing connections and reaping the last ops */
	VQ_SHARD_STOPPED,
};

struct vq_shard_stats {
	uint64_t accepted;
	uint64_t rejected;        /* over limits.max_connections */
	uint64_t accept_errors;   /* accepts that failed (out of fds or memory) */
	uint64_t closed;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t iterations;
	uint64_t longest_iter_ns; /* most time from waking to the timers: completions + messages */
	uint64_t input_overflows; /* connections closed for exceeding limits.max_input */
	uint64_t paused;          /* times reading paused for a slow reader */
	uint64_t idle_closed;     /* closed by limits.idle_timeout */
	uint64_t stall_closed;    /* closed by limits.stall_timeout */
	uint64_t lingered;        /* closes that waited for the peer to take our output */
	uint64_t pool_stall_closed; /* closed by limits.pool_stall_timeout: the pool ran dry */
};

#define VQ_SHARD_TIMERS 4 /* accept_retry, drain_deadline, drain_sweep, pool_watch below */

struct vq_shard {
	int id;
	int cpu;                  /* home CPU: the core map's place, which picks the NUMA node */
	int node;
	cpu_set_t run_on;         /* shards.pin = node: where the thread may run; empty = cpu */
	struct vq_runtime *rt;
	struct vq_mesh *mesh;     /* message rings to the other shards; NULL = none */
	const struct vq_service *svc;
	const struct vq_config *cfg;  /* this shard's snapshot; changes only between turns */
	struct vq_cfg_pub *cfg_pub;   /* where reloads are published (NULL: cfg is fixed) */
	struct vq_driver drv;
	struct vq_pool pool;
	struct vq_timer_heap timers;
	struct vq_task *ready, *ready_tail;
	uint64_t now_ns;          /* loop-iteration clock */
	enum vq_shard_state state;
	_Atomic int stop_requested;
	_Atomic int stoppers;     /* threads inside vq_shard_request_stop: teardown waits */

	int listen_fd;
	struct vq_op accept_op;
	/* The shard's own timers, VQ_SHARD_TIMERS of them. */
	struct vq_timer accept_retry;
	struct vq_timer drain_deadline;
	struct vq_timer drain_sweep;  /* re-checks connections for quiet while draining */
	struct vq_timer pool_watch;   /* while the pool has run dry: limits.pool_stall_timeout */
	struct vq_conn *conns;    /* every open connection, for drain and shutdown */
	uint32_t nconns;

	struct vq_shard_stats st;
	/* Read by the supervisor thread (sdnotify.c): a beat per loop turn, the open connections. */
	_Atomic uint64_t heartbeat;
	_Atomic uint32_t live_conns;
	uint64_t max_wait_ns;     /* longest loop sleep, so the beat moves when idle; 0 = no limit */
	_Atomic int debug_stall;  /* debug.stall_on_signal: block this shard forever (tests only) */
	void *app;                /* per-shard app state, for shard_init to set */
	void (*stop_hook)(struct vq_shard *s); /* runs when the shard starts draining */
	pthread_t thread;
	int exit_status;          /* 0 = clean stop */
	char error[512];          /* why start-up failed */
};

/* The shard running on this thread, or NULL. */
struct vq_shard *vq_shard_self(void);

/* Queue t to run on s (s must be the calling thread's shard). */
void vq_defer(struct vq_shard *s, struct vq_task *t);

/* Arm t on s to fire after delay_ns; re-arming moves it. */
int vq_timer_arm(struct vq_shard *s, struct vq_timer *t, uint64_t delay_ns);
void vq_timer_disarm(struct vq_shard *s, struct vq_timer *t);

/*
 * Ask a shard to stop: stop accepting, drain for shutdown.drain_timeout, close.
 * Safe from any thread, also while the shard is stopping on its own: its
 * teardown waits for a request in progress before the driver goes away.
 */
void vq_shard_request_stop(struct vq_shard *s);

/*
 * Set up a shard on the calling thread: pin to s->cpu if >= 0 (to s->run_on
 * when that is not empty), bind to s->cpu's NUMA node, create the pool and the
 * driver, open the listener when `listen` is true. Returns 0 or -errno with
 * s->error set.
 */
int vq_shard_setup(struct vq_shard *s, bool listen);

/* Run the loop until stopped, then tear down and check for leaks. Returns exit status. */
int vq_shard_run(struct vq_shard *s);

/* Run one loop iteration waiting at most timeout_ns; for tests that drive a shard by hand. */
void vq_shard_turn(struct vq_shard *s, int64_t timeout_ns);

/* Tear down after the loop: every op reaped, pool checked. Returns 0 if nothing leaked. */
int vq_shard_teardown(struct vq_shard *s);

#endif
