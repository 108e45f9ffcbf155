/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "timer.h"

uint64_t vq_clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void place(struct vq_timer_heap *h, uint32_t i, struct vq_timer *t)
{
	h->items[i] = t;
	t->slot = i + 1;
}

static void sift_up(struct vq_timer_heap *h, uint32_t i)
{
	struct vq_timer *t = h->items[i];

	while (i > 0) {
		uint32_t parent = (i - 1) / 2;

		if (h->items[parent]->when_ns <= t->when_ns)
			break;
		place(h, i, h->items[parent]);
		i = parent;
	}
	place(h, i, t);
}

static void sift_down(struct vq_timer_heap *h, uint32_t i)
{
	struct vq_timer *t = h->items[i];

	for (;;) {
		uint32_t child = 2 * i + 1;

		if (child >= h->len)
			break;
		if (child + 1 < h->len && h->items[child + 1]->when_ns < h->items[child]->when_ns)
			child++;
		if (t->when_ns <= h->items[child]->when_ns)
			break;
		place(h, i, h->items[child]);
		i = child;
	}
	place(h, i, t);
}

int vq_timer_heap_reserve(struct vq_timer_heap *h, uint32_t n)
{
	uint32_t cap = h->cap ? h->cap : 64;
	struct vq_timer **items;

	while (cap < n)
		cap *= 2;
	if (cap == h->cap)
		return 0;
	items = realloc(h->items, cap * sizeof(*items));
	if (!items)
		return -ENOMEM;
	h->items = items;
	h->cap = cap;
	return 0;
}

int vq_timer_heap_arm(struct vq_timer_heap *h, struct vq_timer *t, uint64_t when_ns)
{
	if (t->slot) {
		uint64_t old = t->when_ns;

		t->when_ns = when_ns;
		if (when_ns < old)
			sift_up(h, t->slot - 1);
		else
			sift_down(h, t->slot - 1);
		return 0;
	}
	if (h->len == h->cap && vq_timer_heap_reserve(h, h->len + 1))
		return -ENOMEM;
	t->when_ns = when_ns;
	h->items[h->len++] = t;
	sift_up(h, h->len - 1);
	return 0;
}

void vq_timer_heap_disarm(struct vq_timer_heap *h, struct vq_timer *t)
{
	uint32_t i;
	struct vq_timer *last;

	if (!t->slot)
		return;
	i = t->slot - 1;
	t->slot = 0;
	last = h->items[--h->len];
	if (i == h->len)
		return;
	place(h, i, last);
	sift_down(h, i);
	if (h->items[i] == last)
		sift_up(h, i);
}

uint64_t vq_timer_heap_next(const struct vq_timer_heap *h)
{
	return h->len ? h->items[0]->when_ns : UINT64_MAX;
}

unsigned vq_timer_heap_run(struct vq_timer_heap *h, uint64_t now_ns)
{
	unsigned fired = 0;

	while (h->len && h->items[0]->when_ns <= now_ns) {
		struct vq_timer *t = h->items[0];

		vq_timer_heap_disarm(h, t);
		t->fn(t); /* may re-arm itself */
		fired++;
	}
	return fired;
}

void vq_timer_heap_free(struct vq_timer_heap *h)
{
	free(h->items);
	*h = (struct vq_timer_heap){ 0 };
}
