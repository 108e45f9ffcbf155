/* SPDX-License-Identifier: MIT */
#ifndef VQ_POOL_H
#define VQ_POOL_H

#include <stdbool.h>
#include "buf.h"

enum vq_hugepages { VQ_HUGE_OFF = 0, VQ_HUGE_TRY, VQ_HUGE_ON };

struct vq_pool_params {
	uint32_t count;          /* number of buffers */
	uint32_t size;           /* bytes per buffer, a multiple of 4096 */
	int node;                /* NUMA node to bind to, -1 for the caller's */
	enum vq_hugepages huge;  /* explicit huge pages: off, try (fall back), on (required) */
	int home;                /* owning shard id, checked by debug builds */
};

struct vq_pool_stats {
	uint32_t free;
	uint32_t kernel;
	uint32_t user;
	uint32_t high_water;     /* most buffers out of the free list at once */
	uint64_t allocs;
	uint64_t failures;       /* vq_pool_alloc calls that found the pool empty */
};

typedef void (*vq_pool_waiter_fn)(void *ctx);

struct vq_pool_waiter {
	vq_pool_waiter_fn fn;
	void *ctx;
	struct vq_pool_waiter *next;
};

struct vq_pool {
	uint8_t *region;
	size_t region_len;
	struct vq_buf *bufs;
	struct vq_buf *free_list;
	struct vq_pool_waiter *waiters, *waiters_tail;
	uint32_t count;
	uint32_t size;
	int node;
	int home;
	bool huge;
	struct vq_pool_stats st;
};

/*
 * Allocate and pre-fault the pool's region, bound to params->node. Call it on the
 * pinned shard thread so first touch is local too. Returns 0 or -errno
 * (-ENOMEM, or -EINVAL for a bad size/count).
 */
int vq_pool_init(struct vq_pool *p, const struct vq_pool_params *params);

/* Free the region. Returns the number of buffers not back in the pool (0 = clean). */
uint32_t vq_pool_fini(struct vq_pool *p);

/*
 * Take a free buffer for user code (len = off = 0). Returns NULL with errno =
 * ENOBUFS when the pool is empty: that is back-pressure, never a heap fallback;
 * use vq_pool_wait() to hear when one comes back.
 */
struct vq_buf *vq_pool_alloc(struct vq_pool *p);

/* Give a user-held buffer back to its home pool. Must run on the home shard. */
void vq_buf_release(struct vq_buf *b);

/*
 * Ask to be called once, on this shard, after a buffer is released. The waiter
 * struct is the caller's and must stay valid until called or vq_pool_unwait().
 */
void vq_pool_wait(struct vq_pool *p, struct vq_pool_waiter *w);
void vq_pool_unwait(struct vq_pool *p, struct vq_pool_waiter *w);

/* Run pending waiters while free buffers remain; the shard loop calls this. */
void vq_pool_run_waiters(struct vq_pool *p);

/* State transitions for drivers: a buffer given to / returned by the kernel. */
void vq_buf_to_kernel(struct vq_buf *b);
void vq_buf_from_kernel(struct vq_buf *b);

/* Take a free buffer straight into the kernel's hands (provided ring refill). */
struct vq_buf *vq_pool_take_for_kernel(struct vq_pool *p);

/* A buffer the kernel gave back unused (ring torn down): straight to free. */
void vq_buf_kernel_to_free(struct vq_buf *b);

static inline struct vq_buf *vq_pool_buf(struct vq_pool *p, uint32_t index)
{
	return &p->bufs[index];
}

/*
 * The pool runs short: its users (input queues, replies) hold more buffers than
 * are left free. Connections then queue no output ahead and receive one
 * buffer at a time.
 */
static inline bool vq_pool_short(const struct vq_pool *p)
{
	return p->st.user > p->st.free;
}

/* The shard id this thread runs, for home checks; -1 outside shards. */
void vq_buf_set_thread_home(int home);
int vq_buf_thread_home(void);

#endif
