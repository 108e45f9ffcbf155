/* SPDX-License-Identifier: MIT */
#ifndef VQ_DRIVER_H
#define VQ_DRIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "op.h"
#include "pool.h"

struct vq_driver;

struct vq_driver_params {
	uint32_t sq_entries;     /* submission queue size; the CQ is 8x this */
	uint32_t provided;       /* pool buffers lent to the provided-buffer ring (power of 2) */
	uint32_t zc_min;         /* SEND_ZC threshold in bytes; 0 = VQ_ZC_MIN_DEFAULT */
	uint32_t flags;          /* VQ_DRV_* */
};

#define VQ_DRV_RECV_BUNDLE (1u << 0) /* uring, 6.10+: one recv CQE may fill several buffers */
#define VQ_DRV_NO_RECV_CAP (1u << 1) /* uring: leave the 6.17 recv byte cap unused, as on older kernels */

struct vq_driver_stats {
	uint64_t submitted;      /* ops started */
	uint64_t completions;    /* completions delivered */
	uint64_t enters;         /* submit-and-wait calls */
	uint64_t rearms;         /* multishot ops re-armed after ending without error */
	uint64_t nobufs;         /* multishot recvs parked because the provided ring ran dry */
	uint64_t partial;        /* short sends/writes resumed */
	uint64_t wakeups;        /* doorbells received */
	uint64_t zc_sends;       /* SEND_ZC ops that went zero-copy */
	uint64_t timeouts;       /* ops ended by their deadline */
	uint64_t bundled;        /* extra buffers delivered from recv bundles */
};

/*
 * The driver interface: a table of functions, one implementation per backend.
 * Every function runs on the driver's own shard thread, except wake().
 * Functions that return int return 0 or -errno.
 */
struct vq_driver_ops {
	const char *name;
	/* Create the backend on the calling (pinned) thread. */
	int (*init)(struct vq_driver *d, const struct vq_driver_params *p);
	/* Release everything; every op must have completed (inflight == 0). */
	void (*fini)(struct vq_driver *d);
	/* Register the pool for fixed I/O and feed part of it to the provided ring. */
	int (*register_pool)(struct vq_driver *d, struct vq_pool *pool);
	/* Give provided-ring buffers back to the pool before teardown. */
	void (*unregister_pool)(struct vq_driver *d);
	/* Queue an op; nothing reaches the kernel before the next wait(). */
	int (*submit)(struct vq_driver *d, struct vq_op *op);
	/* Ask for an op's end; its final completion still comes, usually -ECANCELED. */
	int (*cancel)(struct vq_driver *d, struct vq_op *op);
	/* Cancel every op on fd. */
	int (*cancel_fd)(struct vq_driver *d, int fd);
	/*
	 * Submit everything queued, wait up to timeout_ns (-1 = forever, 0 = poll)
	 * for at least one completion or a wake, and deliver every completion.
	 * Returns the number delivered or -errno.
	 */
	int (*wait)(struct vq_driver *d, int64_t timeout_ns);
	/* Doorbell: make `target`'s wait() return. `from` is the caller's own driver
	 * when the caller is a shard, NULL from any other thread. */
	int (*wake)(struct vq_driver *target, struct vq_driver *from);
	/* Refill the provided ring from the pool's free list and re-arm parked recvs. */
	void (*replenish)(struct vq_driver *d);
	/* A pooled recv waits for a buffer: the pool gave the kernel none to fill. */
	bool (*starved)(struct vq_driver *d);
};

struct vq_driver {
	const struct vq_driver_ops *ops;
	struct vq_pool *pool;
	uint32_t inflight;       /* ops submitted whose final completion is not delivered */
	uint32_t internal;       /* of which the driver's own (e.g. the wake listener) */
	struct vq_driver_stats st;
	uint32_t zc_min;         /* SEND_ZC below this many bytes is a plain send */
	char features[160];      /* one line for the start-up log */
	void *impl;
	/*
	 * If set, wait() stores CLOCK_MONOTONIC ns here when the kernel returns and
	 * before any completion runs, so callbacks see the time after the sleep.
	 */
	uint64_t *clock;
};

/* For drivers: refresh d->clock, if the owner asked for one. */
static inline void vq_driver_tick(struct vq_driver *d)
{
	struct timespec ts;

	if (!d->clock)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	*d->clock = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * SEND_ZC threshold default. Zero copy pins pages and costs a second
 * (notification) completion, about 1 us per send here, against a copy of
 * ~0.1-0.15 us per KiB: break-even near 8-12 KiB on a NIC. Loopback copies the
 * pages on delivery anyway, so it shows only the cost (zc slower below ~64 KiB
 * there; tests/bench/drivers/zc_threshold.c, docs/BENCHMARKS.md). 16 KiB =
 * full default pool buffers only; io.zc_min changes it.
 */
#define VQ_ZC_MIN_DEFAULT 16384u

extern const struct vq_driver_ops vq_uring_driver;
extern const struct vq_driver_ops vq_epoll_driver;

/* Convenience wrappers. */
static inline int vq_driver_submit(struct vq_driver *d, struct vq_op *op)
{
	return d->ops->submit(d, op);
}

#endif
