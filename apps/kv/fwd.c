/* SPDX-License-Identifier: MIT */
/*
 * veloq-kv forwarding: requests for keys another shard owns, sent over the
 * message rings and answered in the reply continuation.
 *
 * Who owns what (DESIGN.md §2, buffers stay home):
 * - A forwarded request is a kv_pend allocated by the connection's shard and
 *   lent to the owner for the duration of the call. The owner reads the request
 *   from it and writes the result into it; the connection's shard does not
 *   touch it until the reply, and frees it.
 * - A storage command's value is assembled (from as many input buffers as it
 *   spans) into a staging buffer the connection's shard malloc'd; the owner
 *   copies it into an item allocated on its own thread and the staging buffer
 *   is freed on the reply. A local owner gets the value copied straight into
 *   the new item instead.
 * - A hit of up to KV_INLINE bytes (VALUE line, data, "\r\n") is copied by
 *   the owner into the request itself: nothing is lent, nothing to release.
 * - A larger hit is lent back: the owner takes a reference on the item (refs++) and
 *   returns its pointer. Lent items are read-only (an in-place incr only
 *   happens with no borrower). When the reply's turn comes and the connection
 *   has room (kv_flush), the connection's shard copies the value into its own
 *   pool buffers, in pieces as the client takes them, then sends a release
 *   message home with the item pointer, and the owner drops the reference.
 *   Item memory is only ever allocated and freed by its owner.
 * - Messages that meet a full queue wait in a per-destination outbox, in order,
 *   until vq_msg_wait_space says there is room, so one connection's requests
 *   to one shard keep their order.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "kv_int.h"
#include "log.h"
#include "msg.h"

static void *remote_exec(struct vq_shard *on, void *arg)
{
	struct kv_shard *ks = on->app;
	struct kv_pend *p = arg;

	if (p->r.op == KV_C_STATS) {
		ks->served_remote++;
		kv_snapshot(ks, &p->snaps[ks->id]);
		return p;
	}
	for (struct kv_pend *q = p; q; q = q->bnext) {
		struct kv_item *it;

		ks->served_remote++;
		kv_exec(ks, &q->r);
		it = q->r.item;
		if (!it)
			continue;
		if (sizeof(q->inl) >= KV_KEY_MAX + 96 + (size_t)it->nval + 2) {
			size_t n = kv_value_line(q->inl, it, q->r.op == KV_C_GETS ||
							   q->r.op == KV_C_GATS);

			memcpy(q->inl + n, kv_item_val(it), it->nval + 2);
			q->ninl = (uint32_t)(n + it->nval + 2);
			q->r.item = NULL;
		} else {
			it->refs++; /* lent to the caller until its release message */
		}
	}
	return p;
}

static void remote_release(struct vq_shard *on, void *arg)
{
	struct kv_shard *ks = on->app;

	kv_item_put(&ks->store, arg);
}

static void outbox_wait(struct kv_outbox *ob)
{
	if (ob->waiting)
		return;
	ob->waiting = true;
	ob->ks->queue_waits++;
	vq_msg_wait_space(ob->ks->vs, ob->dst, &ob->task);
}

static void release_item(struct kv_shard *ks, unsigned dst, struct kv_item *it)
{
	struct kv_outbox *ob = &ks->out[dst];
	struct kv_rel *rel;
	int ret = -EAGAIN;

	if (!ob->rhead)
		ret = vq_msg_send(ks->vs, dst, remote_release, it);
	if (ret != -EAGAIN)
		return; /* sent, or the owner stopped and frees its store itself */
	rel = malloc(sizeof(*rel));
	if (!rel) {
		vq_err("out of memory queueing a release to shard %u: one item stays allocated", dst);
		return;
	}
	rel->item = it;
	rel->next = NULL;
	if (ob->rtail)
		ob->rtail->next = rel;
	else
		ob->rhead = rel;
	ob->rtail = rel;
	outbox_wait(ob);
}

void kv_release_lent(struct kv_shard *ks, struct kv_pend *p)
{
	if (!p->r.item)
		return;
	if (p->dst == ks->id)
		kv_item_put(&ks->store, p->r.item);
	else
		release_item(ks, p->dst, p->r.item);
	p->r.item = NULL;
}

static void remote_done(struct vq_shard *self, void *ctx, void *result, int err);

static int send_call(struct kv_shard *ks, struct kv_pend *p)
{
	return vq_msg_call(ks->vs, p->dst, remote_exec, p, remote_done, p);
}

/* A forwarded request that will never be answered: complete it with an error. */
static void fail_pend(struct kv_pend *p, int err)
{
	remote_done(p->sess->ks->vs, p, NULL, err);
}

void kv_outbox_run(struct vq_task *t)
{
	struct kv_outbox *ob = (struct kv_outbox *)t;
	int ret;

	ob->waiting = false;
	while (ob->rhead) {
		struct kv_rel *rel = ob->rhead;

		ret = vq_msg_send(ob->ks->vs, ob->dst, remote_release, rel->item);
		if (ret == -EAGAIN)
			return outbox_wait(ob);
		ob->rhead = rel->next;
		if (!ob->rhead)
			ob->rtail = NULL;
		free(rel);
	}
	while (ob->head) {
		struct kv_pend *p = ob->head;

		ret = send_call(ob->ks, p);
		if (ret == -EAGAIN)
			return outbox_wait(ob);
		ob->head = p->onext;
		if (!ob->head)
			ob->tail = NULL;
		if (ret)
			fail_pend(p, ret);
	}
}

/* Put p in the session's reply order as a forwarded request (not sent yet). */
void kv_enqueue_forwarded(struct kv_sess *s, struct kv_pend *p)
{
	p->forwarded = true;
	kv_queue(s, p);
	if (!s->npend++ && s->io.busy)
		s->io.busy(s->io.ctx, true);
	s->ks->forwarded++;
}

/*
 * Send p (and the requests chained on p->bnext, all for p->dst) to its owner,
 * after anything already waiting for that queue.
 */
void kv_send_forwarded(struct kv_sess *s, struct kv_pend *p)
{
	struct kv_shard *ks = s->ks;
	struct kv_outbox *ob = &ks->out[p->dst];
	int ret = -EAGAIN;

	if (!ob->head)
		ret = send_call(ks, p);
	if (ret == -EAGAIN) {
		p->onext = NULL;
		if (ob->tail)
			ob->tail->onext = p;
		else
			ob->head = p;
		ob->tail = p;
		outbox_wait(ob);
	} else if (ret) {
		fail_pend(p, ret);
	}
}

void kv_forward(struct kv_sess *s, struct kv_pend *p)
{
	kv_enqueue_forwarded(s, p);
	kv_send_forwarded(s, p);
}

/* One forwarded request is answered (or failed with err). Returns false if s was freed. */
static bool complete_one(struct kv_sess *s, struct kv_pend *p, int err)
{
	struct kv_shard *ks = s->ks;

	if (err) {
		p->r.status = err;
		p->r.item = NULL;
		p->ninl = 0;
	}
	s->npend--;
	if (s->closed) {
		kv_release_lent(ks, p);
	} else if (p->r.item) {
		/* A lent hit stays lent until kv_flush writes it: copied here, a client
		 * that does not read could make us hold max_pending large values. */
		kv_hold_lent(s, p);
	} else {
		struct sink o = { s, s->head == p ? NULL : p };

		if (p->ninl)
			kv_put(&o, p->inl, p->ninl);
		else
			kv_format(&o, &p->r);
	}
	free((void *)p->r.val);
	p->r.val = NULL;
	p->done = true;
	if (s->closed && !s->npend) {
		kv_sess_free(s);
		return false;
	}
	return true;
}

static void remote_done(struct vq_shard *self, void *ctx, void *result, int err)
{
	struct kv_pend *p = ctx;
	struct kv_sess *s = p->sess;

	while (p) {
		/* kv_flush() below may free p once it is done: step first */
		struct kv_pend *next = p->bnext;

		if (!complete_one(s, p, err))
			return;
		p = next;
	}
	if (s->closed)
		return;
	kv_flush(s);
	/* Last: letting go may close the connection once the replies are out. */
	if (!s->npend && s->io.busy)
		s->io.busy(s->io.ctx, false);
}

