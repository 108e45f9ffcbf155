/* SPDX-License-Identifier: MIT */
/*
 * The per-shard buffer pool: one NUMA-bound region cut into equal buffers,
 * with a descriptor array beside it. Nothing here allocates per buffer and
 * nothing falls back to the heap when the pool runs dry.
 */
#include <assert.h>
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "pool.h"

#define HUGE_2M (2u << 20)

static __thread int thread_home = -1;

void vq_buf_set_thread_home(int home)
{
	thread_home = home;
}

int vq_buf_thread_home(void)
{
	return thread_home;
}

/* Debug builds catch a buffer used away from its home shard (DESIGN.md §2.3). */
static inline void check_home(const struct vq_buf *b)
{
	assert(b->pool->home < 0 || thread_home < 0 || b->pool->home == thread_home);
	(void)b;
}

/* Map len bytes; explicit huge pages need a 2 MiB multiple, so that attempt rounds up. */
static void *map_region(size_t *len, enum vq_hugepages huge, bool *got_huge)
{
	size_t huge_len = (*len + HUGE_2M - 1) & ~((size_t)HUGE_2M - 1);
	void *p = MAP_FAILED;

	*got_huge = false;
	if (huge != VQ_HUGE_OFF) {
		p = mmap(NULL, huge_len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		if (p != MAP_FAILED) {
			*got_huge = true;
			*len = huge_len;
			return p;
		}
		if (huge == VQ_HUGE_ON)
			return NULL;
	}
	p = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (huge == VQ_HUGE_TRY)
		madvise(p, *len, MADV_HUGEPAGE); /* transparent huge pages, best effort */
	return p;
}

int vq_pool_init(struct vq_pool *p, const struct vq_pool_params *params)
{
	size_t len;

	memset(p, 0, sizeof(*p));
	if (!params->count || !params->size || params->size % 4096 ||
	    params->count > (1u << 16))
		return -EINVAL;
	len = (size_t)params->count * params->size;
	p->region = map_region(&len, params->huge, &p->huge);
	if (!p->region)
		return params->huge == VQ_HUGE_ON ? -ENOMEM : -errno;
	p->region_len = len;
	p->node = params->node;
	if (p->node >= 0 && numa_available() >= 0) {
		/* Bind before the first touch so every page lands on the shard's node. */
		unsigned long mask[16] = { 0 };

		mask[p->node / (8 * sizeof(long))] |= 1ul << (p->node % (8 * sizeof(long)));
		if (mbind(p->region, len, MPOL_BIND, mask, sizeof(mask) * 8, MPOL_MF_STRICT)) {
			int err = -errno;

			munmap(p->region, len);
			return err;
		}
	}
	memset(p->region, 0, len); /* pre-fault now, on the pinned thread */

	p->bufs = calloc(params->count, sizeof(*p->bufs));
	if (!p->bufs) {
		munmap(p->region, len);
		return -ENOMEM;
	}
	p->count = params->count;
	p->size = params->size;
	p->home = params->home;
	for (uint32_t i = params->count; i-- > 0;) {
		struct vq_buf *b = &p->bufs[i];

		b->data = p->region + (size_t)i * params->size;
		b->pool = p;
		b->cap = params->size;
		b->index = i;
		b->state = VQ_BUF_FREE;
		b->next = p->free_list;
		p->free_list = b;
	}
	p->st.free = params->count;
	return 0;
}

uint32_t vq_pool_fini(struct vq_pool *p)
{
	uint32_t missing = p->count - p->st.free;

	if (p->region)
		munmap(p->region, p->region_len);
	free(p->bufs);
	p->region = NULL;
	p->bufs = NULL;
	return missing;
}

static struct vq_buf *take_free(struct vq_pool *p)
{
	struct vq_buf *b = p->free_list;
	uint32_t out;

	if (!b) {
		p->st.failures++;
		errno = ENOBUFS;
		return NULL;
	}
	p->free_list = b->next;
	b->next = NULL;
	b->off = 0;
	b->len = 0;
	p->st.free--;
	out = p->count - p->st.free;
	if (out > p->st.high_water)
		p->st.high_water = out;
	return b;
}

struct vq_buf *vq_pool_alloc(struct vq_pool *p)
{
	struct vq_buf *b;

	assert(p->home < 0 || thread_home < 0 || p->home == thread_home);
	b = take_free(p);
	if (!b)
		return NULL;
	b->state = VQ_BUF_USER;
	p->st.user++;
	p->st.allocs++;
	return b;
}

struct vq_buf *vq_pool_take_for_kernel(struct vq_pool *p)
{
	struct vq_buf *b = p->free_list ? take_free(p) : NULL;

	if (!b)
		return NULL;
	b->state = VQ_BUF_KERNEL;
	p->st.kernel++;
	return b;
}

static void put_free(struct vq_pool *p, struct vq_buf *b)
{
	b->state = VQ_BUF_FREE;
	b->next = p->free_list;
	p->free_list = b;
	p->st.free++;
}

void vq_buf_release(struct vq_buf *b)
{
	struct vq_pool *p = b->pool;

	check_home(b);
	assert(b->state == VQ_BUF_USER);
	p->st.user--;
	put_free(p, b);
}

void vq_buf_to_kernel(struct vq_buf *b)
{
	check_home(b);
	assert(b->state == VQ_BUF_USER);
	b->state = VQ_BUF_KERNEL;
	b->pool->st.user--;
	b->pool->st.kernel++;
}

void vq_buf_from_kernel(struct vq_buf *b)
{
	check_home(b);
	assert(b->state == VQ_BUF_KERNEL);
	b->state = VQ_BUF_USER;
	b->pool->st.kernel--;
	b->pool->st.user++;
}

void vq_buf_kernel_to_free(struct vq_buf *b)
{
	assert(b->state == VQ_BUF_KERNEL);
	b->pool->st.kernel--;
	put_free(b->pool, b);
}

void vq_pool_wait(struct vq_pool *p, struct vq_pool_waiter *w)
{
	w->next = NULL;
	if (p->waiters_tail)
		p->waiters_tail->next = w;
	else
		p->waiters = w;
	p->waiters_tail = w;
}

void vq_pool_unwait(struct vq_pool *p, struct vq_pool_waiter *w)
{
	struct vq_pool_waiter **pp = &p->waiters, *prev = NULL;

	for (; *pp; prev = *pp, pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			if (p->waiters_tail == w)
				p->waiters_tail = prev;
			return;
		}
	}
}

void vq_pool_run_waiters(struct vq_pool *p)
{
	while (p->waiters && p->free_list) {
		struct vq_pool_waiter *w = p->waiters;

		p->waiters = w->next;
		if (!p->waiters)
			p->waiters_tail = NULL;
		w->fn(w->ctx);
	}
}
