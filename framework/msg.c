/* SPDX-License-Identifier: MIT */
/*
 * Cross-shard messages: the SPSC rings and what runs on them. Every function
 * here runs on the thread of the shard it is given (`from`, `s`); the only
 * cross-thread traffic is the ring indices, the `parked` word and the
 * `space_wanted` word, all C11 atomics with explicit orders.
 *
 * The lost-wakeup argument (Dekker): a receiver stores parked = 1 and then
 * reads every inbound tail; a sender stores its tail and then reads parked.
 * Both pairs are seq_cst, so at least one side sees the other's store: either
 * the receiver finds the message and does not sleep, or the sender finds it
 * parked and rings. The same pattern guards space waiters (space_wanted vs
 * head).
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "log.h"
#include "msg_internal.h"
#include "shard.h"

#define BATCH  64  /* publish early once this many messages are pending for one peer */
#define BUDGET 256 /* messages run per source per turn, so one busy peer cannot starve others */

/* A counter only its owner writes: a plain load and store, no locked add. */
static inline void bump(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline struct vq_msg_local *L(const struct vq_shard *s)
{
	return s->mesh->local[s->id];
}

unsigned vq_shard_count(const struct vq_shard *s)
{
	return s->mesh ? s->mesh->n : 1;
}

static void wake(struct vq_shard *from, struct vq_shard *to)
{
	/* From a shard the doorbell rides on our next submit; without an SQE, the eventfd. */
	if (!from || to->drv.ops->wake(&to->drv, &from->drv))
		to->drv.ops->wake(&to->drv, NULL);
	else
		L(from)->unsubmitted = true; /* the loop must wait() once more before it ends */
}

void vq_msg_wake_all(struct vq_shard *from, struct vq_mesh *m)
{
	for (unsigned i = 0; i < m->n; i++) {
		struct vq_msg_local *l = m->local[i];

		if (from && (unsigned)from->id == i)
			continue;
		if (atomic_load_explicit(&l->live, memory_order_seq_cst) &&
		    !atomic_load_explicit(&l->gone, memory_order_acquire))
			wake(from, &m->shards[i]);
	}
}

/* Ring dst if it sleeps and nobody rang it yet: one doorbell per sleep. */
static void doorbell(struct vq_shard *s, unsigned dst)
{
	struct vq_msg_local *peer = s->mesh->local[dst];
	int expect = 1;

	if (atomic_load_explicit(&peer->parked, memory_order_seq_cst) != 1)
		return;
	if (!atomic_compare_exchange_strong_explicit(&peer->parked, &expect, 2,
						     memory_order_seq_cst, memory_order_relaxed))
		return;
	wake(s, &s->mesh->shards[dst]);
	bump(&L(s)->out[dst].doorbells, 1);
}

static void publish(struct vq_shard *s, unsigned dst)
{
	struct vq_msg_out *o = &L(s)->out[dst];

	if (o->published == o->tail)
		return;
	/* seq_cst: ordered before our read of the receiver's `parked` (see the top). */
	atomic_store_explicit(&o->ring->tail, o->tail, memory_order_seq_cst);
	o->published = o->tail;
	if (dst != (unsigned)s->id)
		doorbell(s, dst);
}

void vq_msg_flush(struct vq_shard *s)
{
	struct vq_msg_local *l;

	if (!s->mesh)
		return;
	l = L(s);
	for (uint32_t i = 0; i < l->ndirty; i++) {
		unsigned dst = l->dirty[i];

		l->out[dst].dirty = false;
		publish(s, dst);
	}
	l->ndirty = 0;
}

/* Queued requests at or below which a producer waiting for space is woken. */
static inline uint32_t low_water(const struct vq_mesh *m)
{
	return (m->slots - m->reserve) / 2;
}

/* Room for one more message below `limit` used slots; re-reads the consumer only when short. */
static bool room(struct vq_msg_out *o, uint32_t limit, memory_order mo)
{
	if (o->tail - o->head_cache < limit)
		return true;
	o->head_cache = atomic_load_explicit(&o->ring->head, mo);
	return o->tail - o->head_cache < limit;
}

static void push(struct vq_shard *s, unsigned dst, const struct vq_msg_slot *m)
{
	struct vq_msg_local *l = L(s);
	struct vq_msg_out *o = &l->out[dst];

	o->ring->slots[o->tail & o->ring->mask] = *m;
	o->tail++;
	bump(&o->sent, 1);
	if (!o->dirty) {
		o->dirty = true;
		l->dirty[l->ndirty++] = (uint16_t)dst;
	}
	if (o->tail - o->published >= BATCH)
		publish(s, dst);
}

/* Can `from` queue a request (a call when `call`) to dst right now? 0 or -errno. */
static int can_request(struct vq_shard *from, unsigned dst, bool call)
{
	struct vq_mesh *m = from->mesh;
	struct vq_msg_out *o;

	if (!m || dst >= m->n)
		return -EINVAL;
	assert(vq_shard_self() == from);
	if (L(from)->phase >= VQ_MESH_CLOSING ||
	    atomic_load_explicit(&m->local[dst]->gone, memory_order_acquire))
		return -ESHUTDOWN;
	o = &L(from)->out[dst];
	if ((call && o->calls >= m->reserve) ||
	    !room(o, m->slots - m->reserve, memory_order_acquire)) {
		bump(&o->full, 1);
		return -EAGAIN;
	}
	return 0;
}

int vq_msg_send(struct vq_shard *from, unsigned dst, vq_msg_fn fn, void *arg)
{
	struct vq_msg_slot m = { .fn.send = fn, .arg = arg, .kind = VQ_MSG_SEND };
	int ret = can_request(from, dst, false);

	if (ret)
		return ret;
	push(from, dst, &m);
	return 0;
}

int vq_msg_call(struct vq_shard *from, unsigned dst, vq_call_fn fn, void *arg,
		vq_reply_fn on_reply, void *ctx)
{
	struct vq_msg_slot m = {
		.fn.call = fn, .arg = arg, .on_reply = on_reply, .ctx = ctx, .kind = VQ_MSG_CALL,
	};
	int ret = can_request(from, dst, true);

	if (ret)
		return ret;
	push(from, dst, &m);
	L(from)->out[dst].calls++;
	L(from)->calls++;
	return 0;
}

static void reply(struct vq_shard *s, unsigned dst, const struct vq_msg_slot *call, void *result)
{
	struct vq_mesh *m = s->mesh;
	struct vq_msg_slot r = {
		.fn.reply = call->on_reply, .arg = call->ctx, .ctx = result, .kind = VQ_MSG_REPLY,
	};

	if (!room(&L(s)->out[dst], m->slots, memory_order_acquire)) {
		/* Cannot happen while the reserve rule in msg.h holds; dropping would lose a reply. */
		vq_err("message ring %d -> %u has no room for a reply: reserve rule broken", s->id,
		       dst);
		abort();
	}
	push(s, dst, &r);
}

static void run(struct vq_shard *s, unsigned src, const struct vq_msg_slot *m)
{
	struct vq_msg_local *l = L(s);

	switch (m->kind) {
	case VQ_MSG_SEND:
		m->fn.send(s, m->arg);
		break;
	case VQ_MSG_CALL:
		reply(s, src, m, m->fn.call(s, m->arg));
		break;
	case VQ_MSG_REPLY:
		/* Count it back first, so the continuation may call again. */
		l->out[src].calls--;
		l->calls--;
		m->fn.reply(s, m->arg, m->ctx, m->err);
		break;
	}
}

/* Run up to BUDGET messages from src; returns how many. */
static unsigned drain(struct vq_shard *s, unsigned src)
{
	struct vq_msg_in *in = &L(s)->in[src];
	struct vq_ring *r = in->ring;
	uint32_t n;

	if (in->tail_cache == in->head) {
		in->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
		if (in->tail_cache == in->head)
			return 0;
	}
	n = in->tail_cache - in->head;
	if (n > BUDGET)
		n = BUDGET;
	for (uint32_t i = 0; i < n; i++) {
		/* Copied out: the slot stays ours until head is published below. */
		struct vq_msg_slot m = r->slots[in->head & r->mask];

		in->head++;
		run(s, src, &m);
	}
	/* seq_cst: ordered before our read of space_wanted (the producer does the mirror). */
	atomic_store_explicit(&r->head, in->head, memory_order_seq_cst);
	bump(&in->received, n);
	/* Ring a waiting producer only below the low watermark (see waiters_may_run). */
	if (in->tail_cache - in->head <= low_water(s->mesh) &&
	    atomic_load_explicit(&r->space_wanted, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&r->space_wanted, 0, memory_order_seq_cst) &&
	    src != (unsigned)s->id) {
		wake(s, &s->mesh->shards[src]);
		bump(&in->space_wakes, 1);
	}
	return n;
}

/*
 * Space waiters wake only once half the request slots are free again: waking at
 * the first free slot makes producer and consumer ping-pong a doorbell per
 * batch. The consumer (drain) rings at the same watermark, and always once it
 * has emptied the ring, so no wakeup is lost.
 */
static bool waiters_may_run(struct vq_shard *s, struct vq_msg_out *o, memory_order mo)
{
	struct vq_mesh *m = s->mesh;

	return L(s)->phase >= VQ_MESH_CLOSING ||
	       (o->calls < m->reserve && room(o, low_water(m) + 1, mo));
}

static void run_waiters(struct vq_shard *s, struct vq_msg_out *o)
{
	struct vq_task *t = o->waiters;

	o->waiters = o->waiters_tail = NULL;
	L(s)->nwaiting--;
	atomic_store_explicit(&o->ring->space_wanted, 0, memory_order_relaxed);
	while (t) {
		struct vq_task *next = t->next;

		vq_defer(s, t);
		t = next;
	}
}

static void check_waiters(struct vq_shard *s)
{
	struct vq_msg_local *l = L(s);

	for (unsigned dst = 0; dst < s->mesh->n && l->nwaiting; dst++)
		if (l->out[dst].waiters && waiters_may_run(s, &l->out[dst], memory_order_acquire))
			run_waiters(s, &l->out[dst]);
}

void vq_msg_release_waiters(struct vq_shard *s)
{
	check_waiters(s);
}

void vq_msg_wait_space(struct vq_shard *from, unsigned dst, struct vq_task *t)
{
	struct vq_msg_out *o;

	if (!from->mesh || dst >= from->mesh->n) {
		vq_defer(from, t); /* the retry gets the error */
		return;
	}
	o = &L(from)->out[dst];
	t->next = NULL;
	if (o->waiters_tail) {
		o->waiters_tail->next = t;
	} else {
		o->waiters = t;
		L(from)->nwaiting++;
	}
	o->waiters_tail = t;
	L(from)->busy_ns = from->now_ns; /* poll for room a while before parking */
	/* The consumer rings us after its next batch; vq_msg_idle() re-arms before we sleep. */
	atomic_store_explicit(&o->ring->space_wanted, 1, memory_order_seq_cst);
}

/* Nothing to run: every inbound queue empty, no space waiter runnable. */
bool vq_msg_idle(struct vq_shard *s)
{
	struct vq_msg_local *l = L(s);

	for (unsigned src = 0; src < s->mesh->n; src++)
		if (atomic_load_explicit(&l->in[src].ring->tail, memory_order_seq_cst) !=
		    l->in[src].head)
			return false;
	for (unsigned dst = 0; dst < s->mesh->n && l->nwaiting; dst++) {
		struct vq_msg_out *o = &l->out[dst];

		if (!o->waiters)
			continue;
		/*
		 * Re-arm before every sleep, not once per wait: the consumer may have
		 * taken the flag for a batch whose room we have already used up, and
		 * then it would not ring for the next one.
		 */
		atomic_store_explicit(&o->ring->space_wanted, 1, memory_order_seq_cst);
		if (waiters_may_run(s, o, memory_order_seq_cst))
			return false;
	}
	return true;
}

int64_t vq_msg_before_wait(struct vq_shard *s, int64_t timeout_ns)
{
	struct vq_msg_local *l = L(s);

	/*
	 * While stopping, the exit check may have failed only for what this turn's
	 * flush and wait() clear; nothing would wake us to look again, so do not sleep.
	 */
	if (l->phase >= VQ_MESH_CLOSING && (l->ndirty || l->unsubmitted))
		timeout_ns = 0;
	vq_msg_flush(s);
	l->unsubmitted = false; /* the wait() that follows submits our doorbells */
	/* Recent traffic: poll a little longer, a doorbell costs more than a few turns. */
	if (s->now_ns - l->busy_ns < s->mesh->poll_ns)
		timeout_ns = 0;
	if (timeout_ns == 0)
		return 0;
	atomic_store_explicit(&l->parked, 1, memory_order_seq_cst);
	if (!vq_msg_idle(s)) {
		atomic_store_explicit(&l->parked, 0, memory_order_relaxed);
		return 0;
	}
	l->parked_now = true;
	return timeout_ns;
}

void vq_msg_after_wait(struct vq_shard *s)
{
	struct vq_msg_local *l = L(s);

	if (l->parked_now) {
		/* seq_cst: a sender that saw us parked published before this; we read after. */
		atomic_store_explicit(&l->parked, 0, memory_order_seq_cst);
		l->parked_now = false;
	}
	for (unsigned src = 0; src < s->mesh->n; src++)
		if (drain(s, src))
			l->busy_ns = s->now_ns;
	if (l->nwaiting)
		check_waiters(s);
}

/* Gather: one malloc per broadcast for the results, freed when the last reply is in. */
struct gather;
struct gather_part {
	struct gather *g;
	unsigned i;
};

struct gather {
	vq_gather_fn done;
	void *ctx;
	unsigned left, n;
	struct gather_part *parts;
	void *results[];
};

static void gather_reply(struct vq_shard *self, void *ctx, void *result, int err)
{
	struct gather_part *p = ctx;
	struct gather *g = p->g;

	g->results[p->i] = err ? NULL : result;
	if (--g->left == 0) {
		g->done(self, g->ctx, g->results, g->n);
		free(g);
	}
}

int vq_msg_broadcast(struct vq_shard *from, vq_call_fn fn, void *arg, vq_gather_fn done,
		     void *ctx)
{
	unsigned n = vq_shard_count(from);
	struct gather *g;
	int ret;

	/* Check every queue first: only this thread fills them, so room can only grow. */
	for (unsigned i = 0; i < n; i++) {
		ret = can_request(from, i, true);
		if (ret)
			return ret;
	}
	g = malloc(sizeof(*g) + n * (sizeof(void *) + sizeof(struct gather_part)));
	if (!g)
		return -ENOMEM;
	g->done = done;
	g->ctx = ctx;
	g->left = g->n = n;
	g->parts = (struct gather_part *)&g->results[n];
	for (unsigned i = 0; i < n; i++) {
		g->parts[i] = (struct gather_part){ g, i };
		ret = vq_msg_call(from, i, fn, arg, gather_reply, &g->parts[i]);
		assert(ret == 0);
	}
	return 0;
}

/*
 * dst never ran: we are the only one who will ever read our queue to it, so
 * empty it ourselves. Calls fail with -ESHUTDOWN; sends are counted and logged.
 */
static void reclaim(struct vq_shard *s, unsigned dst)
{
	struct vq_mesh *mesh = s->mesh;
	struct vq_msg_local *l = L(s);
	struct vq_msg_out *o = &l->out[dst];
	struct vq_ring *r = o->ring;
	uint32_t head = atomic_load_explicit(&r->head, memory_order_acquire), lost = 0;

	for (; head != o->tail; head++) {
		struct vq_msg_slot m = r->slots[head & r->mask];

		if (m.kind == VQ_MSG_CALL) {
			o->calls--;
			l->calls--;
			m.on_reply(s, m.ctx, NULL, -ESHUTDOWN);
		} else {
			lost++;
		}
	}
	atomic_store_explicit(&r->head, head, memory_order_release);
	o->published = o->tail;
	o->reclaimed = true;
	if (lost) {
		atomic_fetch_add_explicit(&mesh->undelivered, lost, memory_order_relaxed);
		vq_warn("%u messages to shard %u were not delivered: it never started", lost, dst);
	}
}

void vq_msg_reclaim_gone(struct vq_shard *s)
{
	struct vq_mesh *m = s->mesh;

	for (unsigned dst = 0; dst < m->n; dst++)
		if (!L(s)->out[dst].reclaimed &&
		    atomic_load_explicit(&m->local[dst]->gone, memory_order_acquire))
			reclaim(s, dst);
}

/* Nothing of ours is left in any queue, in or out. */
bool vq_msg_settled(struct vq_shard *s)
{
	return L(s)->calls == 0 && L(s)->ndirty == 0 && !L(s)->unsubmitted && vq_msg_idle(s);
}
