/* SPDX-License-Identifier: MIT */
/*
 * The mesh: allocation of the n x n message rings (each on its receiver's
 * NUMA node), the two-phase stop described in msg.h, and the exit barrier
 * that keeps every shard's driver alive until no shard can ring it any more.
 */
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "msg_internal.h"
#include "shard.h"

#define DEFAULT_SLOTS 1024
#define MAX_SLOTS     (1u << 20)
#define MAX_SHARDS    65536 /* the dirty list holds uint16_t ids */

static size_t align_up(size_t v)
{
	return (v + VQ_CACHELINE - 1) & ~(size_t)(VQ_CACHELINE - 1);
}

/* Zeroed, page-backed memory preferring `node`: a ring is better remote than absent. */
static void *alloc_on(size_t len, int node)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	if (node >= 0 && numa_available() >= 0) {
		unsigned long mask[16] = { 0 };

		mask[node / (8 * sizeof(long))] |= 1ul << (node % (8 * sizeof(long)));
		mbind(p, len, MPOL_PREFERRED, mask, sizeof(mask) * 8, 0);
	}
	memset(p, 0, len); /* fault in now, under the node policy */
	return p;
}

static int node_of(const struct vq_shard *s)
{
	return s->cpu >= 0 && numa_available() >= 0 ? numa_node_of_cpu(s->cpu) : -1;
}

static size_t ring_bytes(uint32_t slots)
{
	return align_up(sizeof(struct vq_ring) + slots * sizeof(struct vq_msg_slot));
}

static size_t local_bytes(unsigned n)
{
	return align_up(sizeof(struct vq_msg_local)) + align_up(n * sizeof(struct vq_msg_out)) +
	       align_up(n * sizeof(struct vq_msg_in)) + align_up(n * sizeof(uint16_t));
}

void vq_mesh_destroy(struct vq_mesh *m)
{
	if (!m)
		return;
	for (unsigned i = 0; m->rings && i < m->n * m->n; i++)
		if (m->rings[i])
			munmap(m->rings[i], ring_bytes(m->slots));
	for (unsigned i = 0; m->local && i < m->n; i++) {
		if (m->local[i])
			munmap(m->local[i], local_bytes(m->n));
		m->shards[i].mesh = NULL;
	}
	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cv);
	free(m->rings);
	free(m->local);
	free(m->threads);
	free(m);
}

int vq_mesh_create(struct vq_mesh **out, struct vq_shard *shards, unsigned n, uint32_t slots)
{
	struct vq_mesh *m;

	*out = NULL;
	if (!n || n > MAX_SHARDS || slots > MAX_SLOTS)
		return -EINVAL;
	if (!slots)
		slots = DEFAULT_SLOTS;
	if (slots < 8)
		slots = 8;
	slots = 1u << (32 - __builtin_clz(slots - 1)); /* next power of two */
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->shards = shards;
	m->n = n;
	m->slots = slots;
	m->reserve = slots / 4;
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	m->local = calloc(n, sizeof(*m->local));
	m->rings = calloc((size_t)n * n, sizeof(*m->rings));
	if (!m->local || !m->rings)
		goto nomem;
	for (unsigned to = 0; to < n; to++) {
		int node = node_of(&shards[to]);

		for (unsigned from = 0; from < n; from++) {
			struct vq_ring *r = alloc_on(ring_bytes(slots), node);

			if (!r)
				goto nomem;
			r->mask = slots - 1;
			m->rings[from * n + to] = r;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		struct vq_msg_local *l = alloc_on(local_bytes(n), node_of(&shards[i]));
		char *p = (char *)l;

		if (!l)
			goto nomem;
		m->local[i] = l;
		p += align_up(sizeof(*l));
		l->out = (struct vq_msg_out *)p;
		p += align_up(n * sizeof(struct vq_msg_out));
		l->in = (struct vq_msg_in *)p;
		p += align_up(n * sizeof(struct vq_msg_in));
		l->dirty = (uint16_t *)p;
		l->node = node_of(&shards[i]);
		for (unsigned j = 0; j < n; j++) {
			l->out[j].ring = m->rings[i * n + j];
			l->in[j].ring = m->rings[j * n + i];
		}
	}
	for (unsigned i = 0; i < n; i++)
		shards[i].mesh = m;
	*out = m;
	return 0;
nomem:
	vq_mesh_destroy(m);
	return -ENOMEM;
}

void vq_mesh_set_poll(struct vq_mesh *m, uint64_t poll_ns)
{
	m->poll_ns = poll_ns;
}

void vq_msg_shard_ready(struct vq_shard *s)
{
	/* seq_cst: pairs with the phase counters in vq_msg_may_stop (see vq_msg_wake_all). */
	atomic_store_explicit(&s->mesh->local[s->id]->live, 1, memory_order_seq_cst);
}

/* Count s into a phase; the last one in wakes everybody to look. */
static void enter(struct vq_shard *s, _Atomic unsigned *phase, bool on_shard)
{
	struct vq_mesh *m = s->mesh;

	if (atomic_fetch_add_explicit(phase, 1, memory_order_seq_cst) + 1 == m->n)
		vq_msg_wake_all(on_shard ? s : NULL, m);
}

bool vq_msg_may_stop(struct vq_shard *s, bool conn_done)
{
	struct vq_mesh *m = s->mesh;
	struct vq_msg_local *l = m->local[s->id];

	if (l->phase == VQ_MESH_SERVING) {
		if (!conn_done)
			return false;
		l->phase = VQ_MESH_DRAINED;
		vq_debug("connections drained; serving messages until every shard has");
		enter(s, &m->drained, true);
	}
	if (l->phase == VQ_MESH_DRAINED) {
		if (atomic_load_explicit(&m->drained, memory_order_seq_cst) < m->n)
			return false;
		/* What we accepted becomes visible before we count ourselves quiet. */
		vq_msg_flush(s);
		l->phase = VQ_MESH_CLOSING;
		vq_msg_release_waiters(s);
		enter(s, &m->quiesced, true);
	}
	if (l->phase == VQ_MESH_CLOSING) {
		if (atomic_load_explicit(&m->quiesced, memory_order_seq_cst) < m->n)
			return false;
		/* No shard queues a new request now: finish what is queued and every reply. */
		vq_msg_reclaim_gone(s);
		if (!conn_done || !vq_msg_settled(s))
			return false;
		l->phase = VQ_MESH_DONE;
	}
	return true;
}

void vq_msg_shard_exit(struct vq_shard *s)
{
	struct vq_mesh *m = s->mesh;
	struct vq_msg_local *l = m->local[s->id];
	bool ran = atomic_load_explicit(&l->live, memory_order_relaxed);

	if (!ran) {
		/* Never ran: count it through both phases so the others can finish. */
		atomic_store_explicit(&l->gone, 1, memory_order_release);
		enter(s, &m->drained, false);
		enter(s, &m->quiesced, false);
	}
	pthread_mutex_lock(&m->mu);
	m->exited++;
	pthread_cond_broadcast(&m->cv);
	/* A shard that ran waits: a late doorbell may still be on its way to its ring. */
	while (ran && (m->exited < m->n || m->stoppers))
		pthread_cond_wait(&m->cv, &m->mu);
	pthread_mutex_unlock(&m->mu);
}

static void *mesh_thread(void *arg)
{
	struct vq_shard *s = arg;
	struct vq_mesh *m = s->mesh;
	int ret = vq_shard_setup(s, false);

	pthread_mutex_lock(&m->mu);
	if (ret)
		m->failed++;
	else
		m->ready++;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	if (ret) {
		vq_err("shard %d did not start: %s", s->id, s->error);
		vq_shard_teardown(s);
		s->exit_status = 1;
		return NULL;
	}
	vq_shard_run(s);
	return NULL;
}

int vq_mesh_start(struct vq_mesh *m)
{
	unsigned started = 0;
	int ret = 0;

	m->threads = calloc(m->n, sizeof(*m->threads));
	if (!m->threads)
		return -ENOMEM;
	for (; started < m->n; started++) {
		ret = -pthread_create(&m->threads[started], NULL, mesh_thread,
				      &m->shards[started]);
		if (ret)
			break;
	}
	/* Shards that never got a thread leave the mesh as if they failed to start. */
	for (unsigned i = started; i < m->n; i++) {
		vq_msg_shard_exit(&m->shards[i]);
		m->shards[i].exit_status = 1;
	}
	pthread_mutex_lock(&m->mu);
	while (m->ready + m->failed < started)
		pthread_cond_wait(&m->cv, &m->mu);
	if (m->failed && !ret)
		ret = -EIO;
	pthread_mutex_unlock(&m->mu);
	m->ready = started; /* how many to join */
	if (ret)
		vq_mesh_stop(m);
	return ret;
}

void vq_mesh_stop(struct vq_mesh *m)
{
	struct vq_shard *self = vq_shard_self();

	/*
	 * A stopper outside the shards could otherwise write a shard's eventfd after
	 * that shard has seen the flag, finished and closed it: the exit barrier
	 * waits for us.
	 */
	pthread_mutex_lock(&m->mu);
	if (m->exited == m->n) {
		pthread_mutex_unlock(&m->mu);
		return;
	}
	m->stoppers++;
	pthread_mutex_unlock(&m->mu);
	/* Flags first (a shard that is still starting sees its own), then the doorbells. */
	for (unsigned i = 0; i < m->n; i++)
		atomic_store_explicit(&m->shards[i].stop_requested, 1, memory_order_seq_cst);
	vq_msg_wake_all(self && self->mesh == m ? self : NULL, m);
	pthread_mutex_lock(&m->mu);
	m->stoppers--;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

int vq_mesh_join(struct vq_mesh *m)
{
	int status = 0;

	for (unsigned i = 0; m->threads && i < m->ready; i++)
		pthread_join(m->threads[i], NULL);
	for (unsigned i = 0; i < m->n; i++)
		status |= m->shards[i].exit_status;
	return status;
}

void vq_mesh_pair_stats(const struct vq_mesh *m, unsigned from, unsigned to,
			struct vq_msg_pair_stats *st)
{
	const struct vq_msg_out *o = &m->local[from]->out[to];

	st->sent = atomic_load_explicit(&o->sent, memory_order_relaxed);
	st->doorbells = atomic_load_explicit(&o->doorbells, memory_order_relaxed);
	st->full = atomic_load_explicit(&o->full, memory_order_relaxed);
	st->received = atomic_load_explicit(&m->local[to]->in[from].received,
					    memory_order_relaxed);
}

uint64_t vq_mesh_undelivered(const struct vq_mesh *m)
{
	return atomic_load_explicit(&((struct vq_mesh *)m)->undelivered, memory_order_relaxed);
}
