/* SPDX-License-Identifier: MIT */
/*
 * veloq-kv: a sharded, memcached-compatible key-value service. This file is
 * the glue to the framework: config keys, per-shard state, and connections
 * feeding their sessions (kv.c).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conn.h"
#include "kv.h"
#include "log.h"
#include "msg.h"
#include "service.h"

static struct kv_config kv_cfg;

#define KEY(nm, ty, field, def, lo, hi, text)                                                  \
	{ .section = "kv", .name = nm, .type = ty, .offset = offsetof(struct kv_config, field),  \
	  .dflt = def, .min = lo, .max = hi, .help = text }

static const struct vq_cfg_key kv_keys[] = {
	KEY("memory", VQ_CFG_SIZE, memory, "64M", 1 << 20, 0,
	    "item memory per shard; the least recently used items are evicted beyond it"),
	KEY("max_value", VQ_CFG_SIZE, max_value, "1M", 1, 1 << 30,
	    "largest value a client may store"),
	KEY("max_pending", VQ_CFG_U64, max_pending, "1024", 1, 1 << 20,
	    "forwarded requests one connection may have in flight"),
};

struct kv_conn {
	struct kv_sess *sess;
	struct vq_conn *conn;
	struct vq_buf *ob;       /* replies being gathered for one send */
	/* Replies that found the pool empty, oldest first; see conn_write. */
	char *spill;
	size_t nspill, capspill;
	struct vq_pool_waiter waiter;
	bool waiting;            /* for pool buffers, holding the connection open (vq_conn_hold) */
	bool feeding, again;     /* in kv_data; called again meanwhile */
};

static void spill_drain(void *ctx);
static void kv_data(struct vq_conn *c);

static int spill_add(struct vq_conn *c, struct kv_conn *kc, const char *p, size_t n)
{
	if (kc->nspill + n > kc->capspill) {
		size_t cap = kc->capspill ? kc->capspill * 2 : 65536;
		char *q;

		while (cap < kc->nspill + n)
			cap *= 2;
		q = realloc(kc->spill, cap);
		if (!q) {
			vq_conn_abort(c, -ENOMEM);
			return -ENOMEM;
		}
		kc->spill = q;
		kc->capspill = cap;
	}
	memcpy(kc->spill + kc->nspill, p, n);
	kc->nspill += n;
	if (!kc->waiting) {
		((struct kv_shard *)c->shard->app)->pool_waits++;
		kc->waiting = true;
		kc->waiter.fn = spill_drain;
		kc->waiter.ctx = c;
		vq_pool_wait(&c->shard->pool, &kc->waiter);
		vq_conn_hold(c); /* a peer's EOF must not close before the spill is out */
	}
	return 0;
}

/*
 * Replies are copied into a pool buffer of the connection's own shard and sent
 * when the session ends a batch (conn_flush), so a burst of pipelined requests
 * costs one send, and a value from another shard is copied exactly once.
 *
 * When the pool is empty (many large replies in flight at once), the rest of
 * the reply being written waits on the heap and the connection reads no more
 * requests until pool buffers come back (spill_drain): back-pressure bounded by
 * the replies to one input buffer, instead of closing the connection.
 */
static int conn_write(void *ctx, const void *data, size_t n)
{
	struct vq_conn *c = ctx;
	struct kv_conn *kc = vq_conn_app(c);
	const char *p = data;

	if (kc->nspill)
		return spill_add(c, kc, p, n);
	while (n) {
		uint32_t room, take;

		if (!kc->ob) {
			kc->ob = vq_pool_alloc(&c->shard->pool);
			if (!kc->ob)
				return spill_add(c, kc, p, n);
		}
		room = vq_buf_room(kc->ob);
		take = n < room ? (uint32_t)n : room;
		memcpy(vq_buf_bytes(kc->ob) + kc->ob->len, p, take);
		kc->ob->len += take;
		p += take;
		n -= take;
		if (!vq_buf_room(kc->ob)) {
			struct vq_buf *b = kc->ob;
			int ret;

			kc->ob = NULL;
			ret = vq_conn_write(c, b);
			if (ret)
				return ret;
		}
	}
	return 0;
}

/* Pool buffers are back: move spilled replies into them, then read requests again. */
static void spill_drain(void *ctx)
{
	struct vq_conn *c = ctx;
	struct kv_conn *kc = vq_conn_app(c);
	size_t done = 0;

	while (done < kc->nspill) {
		struct vq_buf *b = vq_pool_alloc(&c->shard->pool);
		size_t take;

		if (!b)
			break;
		take = kc->nspill - done < b->cap ? kc->nspill - done : b->cap;
		memcpy(vq_buf_bytes(b), kc->spill + done, take);
		b->len = (uint32_t)take;
		done += take;
		if (vq_conn_write(c, b)) {
			done = kc->nspill; /* closing: the rest has nowhere to go */
			break;
		}
	}
	memmove(kc->spill, kc->spill + done, kc->nspill - done);
	kc->nspill -= done;
	if (kc->nspill) {
		vq_pool_wait(&c->shard->pool, &kc->waiter);
		return;
	}
	kc->waiting = false;
	kv_data(c);
	vq_conn_unhold(c);
}

static void conn_flush(void *ctx)
{
	struct vq_conn *c = ctx;
	struct kv_conn *kc = vq_conn_app(c);
	struct vq_buf *b = kc->ob;

	if (b) {
		kc->ob = NULL;
		vq_conn_write(c, b);
	}
}

static void conn_busy(void *ctx, bool busy)
{
	struct vq_conn *c = ctx;

	if (busy) {
		vq_conn_hold(c);
		return;
	}
	kv_data(c); /* requests left unread while the session was full */
	vq_conn_unhold(c);
}

/* No more requests while the replies so far are queued, or wait on the heap for buffers. */
static bool conn_full(void *ctx)
{
	struct vq_conn *c = ctx;
	struct kv_conn *kc = vq_conn_app(c);

	return kc->nspill || vq_conn_output_full(c);
}

static void conn_close(void *ctx)
{
	vq_conn_close(ctx);
}

static int kv_shard_start(struct vq_shard *s)
{
	struct kv_shard *ks = malloc(sizeof(*ks));
	int ret;

	if (!ks)
		return -ENOMEM;
	ret = kv_shard_init(ks, s, (unsigned)s->id, vq_shard_count(s), &kv_cfg);
	if (ret) {
		free(ks);
		return ret;
	}
	s->app = ks;
	return 0;
}

static void kv_shard_stop(struct vq_shard *s)
{
	struct kv_shard *ks = s->app;

	if (!ks)
		return;
	kv_shard_fini(ks);
	free(ks);
	s->app = NULL;
}

static int kv_accept(struct vq_conn *c)
{
	struct kv_shard *ks = c->shard->app;
	struct kv_conn *kc = vq_conn_app(c);
	struct kv_io io = { conn_write, conn_close, conn_flush, conn_busy, conn_full, c };

	/* TCP_NODELAY comes from the listener (framework/listener.c): replies that leave
	 * in two sends must not wait for the client's delayed ACK. */
	kc->sess = kv_sess_new(ks, &io);
	if (!kc->sess)
		return -ENOMEM;
	ks->curr_conns++;
	ks->total_conns++;
	return 0;
}

static void kv_data(struct vq_conn *c)
{
	struct kv_conn *kc = vq_conn_app(c);
	struct vq_buf *b;

	if (!kc->sess)
		return;
	/*
	 * A forwarded request that fails at once completes inside the feed, and
	 * its continuation calls here again (conn_busy): let the outer call go
	 * round once more instead of feeding the input out of order.
	 */
	if (kc->feeding) {
		kc->again = true;
		return;
	}
	kc->feeding = true;
	do {
		kc->again = false;
		kv_sess_resume(kc->sess);
		/* Bytes are consumed (copied where they must outlive the buffer) until the
		 * session is full. */
		while ((b = vq_conn_read(c))) {
			size_t used = kv_sess_feed(kc->sess, (const char *)vq_buf_bytes(b), b->len);

			if (used < b->len) {
				vq_buf_consume(b, (uint32_t)used);
				vq_conn_unread(c, b);
				break;
			}
			vq_buf_release(b);
		}
	} while (kc->again);
	kc->feeding = false;
	/*
	 * Full for a reason of the session's own (replies owed by other shards, or
	 * waiting for pool buffers): read no more until conn_busy or spill_drain
	 * calls again. Full output pauses reading by itself and calls on_data.
	 */
	vq_conn_hold_input(c, kv_sess_full(kc->sess) && !vq_conn_output_full(c));
	vq_conn_mid_request(c, kv_sess_mid_request(kc->sess));
}

static void kv_conn_closed(struct vq_conn *c)
{
	struct kv_shard *ks = c->shard->app;
	struct kv_conn *kc = vq_conn_app(c);

	if (kc->ob) {
		vq_buf_release(kc->ob);
		kc->ob = NULL;
	}
	if (kc->waiting)
		vq_pool_unwait(&c->shard->pool, &kc->waiter);
	kc->waiting = false;
	free(kc->spill);
	kc->spill = NULL;
	if (!kc->sess)
		return;
	ks->curr_conns--;
	kv_sess_closed(kc->sess);
	kc->sess = NULL;
}

static const struct vq_service kv = {
	.name = "kv",
	.keys = kv_keys,
	.nkeys = sizeof(kv_keys) / sizeof(kv_keys[0]),
	.config = &kv_cfg,
	.config_size = sizeof(kv_cfg),
	.conn_size = sizeof(struct kv_conn),
	.shard_init = kv_shard_start,
	.shard_fini = kv_shard_stop,
	.on_accept = kv_accept,
	.on_data = kv_data,
	.on_close = kv_conn_closed,
};

int main(int argc, char **argv)
{
	return vq_main(argc, argv, &kv);
}
