/* SPDX-License-Identifier: MIT */
#ifndef VQ_TIMER_H
#define VQ_TIMER_H

#include <stdint.h>

/* Config durations are in milliseconds, timers in nanoseconds. */
#define NS_PER_MS 1000000ull

struct vq_timer;
typedef void (*vq_timer_fn)(struct vq_timer *t);

/* A one-shot timer owned by the caller; embed it in your own struct. */
struct vq_timer {
	uint64_t when_ns;   /* CLOCK_MONOTONIC deadline */
	vq_timer_fn fn;
	uint32_t slot;      /* heap position + 1; 0 = not armed */
};

/* A binary min-heap of armed timers, one per shard. */
struct vq_timer_heap {
	struct vq_timer **items;
	uint32_t len;
	uint32_t cap;
};

/* Make room for n armed timers, so arming that many cannot fail. 0 or -ENOMEM. */
int vq_timer_heap_reserve(struct vq_timer_heap *h, uint32_t n);
/* Arm (or re-arm) t to fire at when_ns. Returns 0 or -ENOMEM. */
int vq_timer_heap_arm(struct vq_timer_heap *h, struct vq_timer *t, uint64_t when_ns);
void vq_timer_heap_disarm(struct vq_timer_heap *h, struct vq_timer *t);
/* Earliest deadline, or UINT64_MAX when none is armed. */
uint64_t vq_timer_heap_next(const struct vq_timer_heap *h);
/* Fire every timer due by now_ns; returns how many fired. */
unsigned vq_timer_heap_run(struct vq_timer_heap *h, uint64_t now_ns);
void vq_timer_heap_free(struct vq_timer_heap *h);

uint64_t vq_clock_ns(void);

#endif
