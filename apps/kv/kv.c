/* SPDX-License-Identifier: MIT */
/*
 * Sessions and sharding for veloq-kv.
 *
 * A key's owner is picked by the high bits of its hash. Requests for keys the
 * connection's shard owns run at once; the others are forwarded with
 * vq_msg_call and answered in the reply continuation. Replies leave in request
 * order: while anything is waiting, later replies are kept in a per-session
 * queue of kv_pend entries (a complete buffer of bytes, or a forwarded request
 * still out) and written when everything before them is.
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
 * - A hit is lent back: the owner takes a reference on the item (refs++) and
 *   returns its pointer. Lent items are read-only (an in-place incr only
 *   happens with no borrower). The connection's shard copies the value into
 *   its own pool buffers (or a reply buffer of its own), then sends a release
 *   message home with the item pointer, and the owner drops the reference.
 *   Item memory is only ever allocated and freed by its owner.
 * - Messages that meet a full queue wait in a per-destination outbox, in order,
 *   until vq_msg_wait_space says there is room, so one connection's requests
 *   to one shard keep their order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kv.h"
#include "log.h"
#include "msg.h"
#include "vq_version.h"

/* memcached clients parse the leading x.y.z; the rest says who answers. */
#define KV_VERSION "1.6.21-veloq-" VQ_VERSION

/*
 * Hits up to this size (VALUE line, data, "\r\n") are copied by the owner
 * straight into the forwarded request, which the caller lent for its result:
 * no item is lent and no release message is needed.
 */
#define KV_INLINE 1024

/* What one shard reports for `stats`. */
struct kv_snap {
	struct kv_store_stats st;
	uint64_t limit;
	uint64_t curr_conns, total_conns;
	uint64_t forwarded, served_remote, queue_waits, pool_waits;
	uint64_t items_hash_buckets;
};

/* A request as the store sees it; forwarded ones travel inside a kv_pend. */
struct kv_req {
	enum kv_cmd_type op;
	bool noreply;
	const char *key;
	size_t nkey;
	uint64_t hash;
	uint32_t flags;
	int64_t exptime;          /* absolute */
	uint64_t cas, delta;
	struct kv_item *item;     /* in: the local item to store; out: a hit */
	const uint8_t *val;       /* in: a staging buffer of nval + 2 bytes */
	uint32_t nval;
	int status;               /* enum kv_status, or -errno when delivery failed */
	uint64_t num;
};

struct obuf {
	char *p;
	size_t len, cap;
};

struct kv_pend {
	struct kv_pend *next;     /* session order */
	struct kv_pend *onext;    /* outbox order */
	struct kv_sess *sess;
	bool done;
	bool forwarded;
	bool stats_sum;           /* formatted when written: every shard's figures are in */
	struct obuf out;
	unsigned dst;
	struct kv_req r;
	struct kv_snap *snaps;    /* stats: [nshards], owned by the stats_sum entry */
	struct kv_pend *bnext;    /* more requests to the same shard in the same message */
	uint32_t ninl;            /* a small hit, copied whole by the owner into inl */
	char key[KV_KEY_MAX];
	char inl[KV_INLINE];
};

struct kv_rel {
	struct kv_rel *next;
	struct kv_item *item;
};

struct kv_outbox {
	struct vq_task task;      /* first: the task pointer is the outbox */
	struct kv_shard *ks;
	unsigned dst;
	bool waiting;
	struct kv_pend *head, *tail;
	struct kv_rel *rhead, *rtail;
};

struct sink {
	struct kv_sess *s;
	struct kv_pend *p;        /* NULL: straight to the connection */
};

static void outbox_run(struct vq_task *t);
static void flush(struct kv_sess *s);

int64_t kv_now(struct kv_shard *ks)
{
	struct timespec ts;

	if (!ks->vs)
		return ks->now;
	/*
	 * Not vs->now_ns: completions run inside the driver's wait, before the loop
	 * refreshes now_ns, so it can be as old as the sleep was long. The coarse
	 * clock is a vDSO read and a second's resolution is all expiry needs.
	 */
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return ts.tv_sec;
}

int kv_shard_init(struct kv_shard *ks, struct vq_shard *vs, unsigned id, unsigned nshards,
		  const struct kv_config *cfg)
{
	struct timespec rt;
	int ret;

	memset(ks, 0, sizeof(*ks));
	ks->vs = vs;
	ks->id = id;
	ks->nshards = nshards ? nshards : 1;
	ks->cfg = cfg;
	clock_gettime(CLOCK_REALTIME, &rt);
	ks->now = rt.tv_sec;
	ks->start_time = rt.tv_sec;
	ret = kv_store_init(&ks->store, cfg->memory);
	if (ret)
		return ret;
	ks->out = calloc(ks->nshards, sizeof(*ks->out));
	if (!ks->out) {
		kv_store_fini(&ks->store);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < ks->nshards; i++) {
		ks->out[i].task.fn = outbox_run;
		ks->out[i].ks = ks;
		ks->out[i].dst = i;
	}
	return 0;
}

void kv_shard_fini(struct kv_shard *ks)
{
	for (unsigned i = 0; i < ks->nshards; i++) {
		struct kv_rel *r, *next;

		/* The peers are gone; releases they never took are freed with their stores. */
		for (r = ks->out[i].rhead; r; r = next) {
			next = r->next;
			free(r);
		}
	}
	free(ks->out);
	kv_store_fini(&ks->store);
}

static unsigned owner(const struct kv_shard *ks, uint64_t hash)
{
	return ks->nshards == 1 ? 0 : (unsigned)((hash >> 40) % ks->nshards);
}

/* ---- output ---- */

static int obuf_put(struct obuf *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		char *p;

		while (cap < b->len + n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
	return 0;
}

/* A write failed (peer gone, pool empty): stop reading; the connection closes. */
static void broken(struct kv_sess *s)
{
	s->state = KV_S_DONE;
	s->closing = true;
}

static void put(struct sink *o, const void *d, size_t n)
{
	struct kv_sess *s = o->s;

	if (s->closed)
		return;
	if (o->p) {
		if (obuf_put(&o->p->out, d, n))
			broken(s);
		return;
	}
	if (s->io.write(s->io.ctx, d, n))
		broken(s);
}

static void puts_(struct sink *o, const char *str)
{
	put(o, str, strlen(str));
}

static struct kv_pend *pend_new(struct kv_sess *s)
{
	struct kv_pend *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->sess = s;
	return p;
}

static void queue(struct kv_sess *s, struct kv_pend *p)
{
	p->next = NULL;
	if (s->tail)
		s->tail->next = p;
	else
		s->head = p;
	s->tail = p;
}

static void pend_free(struct kv_pend *p)
{
	free(p->out.p);
	free((void *)p->r.val);
	if (p->stats_sum)
		free(p->snaps);
	free(p);
}

/* Where a reply produced now goes: the connection, or the queue behind a waiting reply. */
static struct sink local_sink(struct kv_sess *s)
{
	struct kv_pend *p;

	if (!s->head)
		return (struct sink){ s, NULL };
	if (s->tail->done && !s->tail->forwarded && !s->tail->stats_sum)
		return (struct sink){ s, s->tail };
	p = pend_new(s);
	if (!p) {
		broken(s);
		return (struct sink){ s, NULL };
	}
	p->done = true;
	queue(s, p);
	return (struct sink){ s, p };
}

static void reply(struct kv_sess *s, const char *line)
{
	struct sink o = local_sink(s);
	char buf[160];
	size_t n = strlen(line);

	if (n + 2 <= sizeof(buf)) {
		memcpy(buf, line, n);
		memcpy(buf + n, "\r\n", 2);
		put(&o, buf, n + 2);
		return;
	}
	puts_(&o, line);
	put(&o, "\r\n", 2);
}

/* ---- executing requests on the owner ---- */

static const enum kv_store_op store_ops[] = {
	[KV_C_SET] = KV_SET, [KV_C_ADD] = KV_ADD, [KV_C_REPLACE] = KV_REPLACE,
	[KV_C_APPEND] = KV_APPEND, [KV_C_PREPEND] = KV_PREPEND, [KV_C_CAS] = KV_CAS,
};

static void exec(struct kv_shard *ks, struct kv_req *r)
{
	struct kv_store *st = &ks->store;
	int64_t now = kv_now(ks);
	struct kv_item *it;

	switch (r->op) {
	case KV_C_GET:
	case KV_C_GETS:
		r->item = kv_store_get(st, r->key, r->nkey, r->hash, now, false, 0);
		break;
	case KV_C_GAT:
	case KV_C_GATS:
		r->item = kv_store_get(st, r->key, r->nkey, r->hash, now, true, r->exptime);
		break;
	case KV_C_SET:
	case KV_C_ADD:
	case KV_C_REPLACE:
	case KV_C_APPEND:
	case KV_C_PREPEND:
	case KV_C_CAS:
		it = r->item;
		if (!it) {
			it = kv_item_alloc(st, r->key, r->nkey, r->hash, r->flags, r->exptime, r->nval);
			if (!it) {
				r->status = KV_NO_MEMORY;
				break;
			}
			memcpy(kv_item_val(it), r->val, r->nval + 2);
		}
		r->status = kv_store_put(st, store_ops[r->op], it, r->cas, now);
		kv_item_put(st, it);
		r->item = NULL;
		break;
	case KV_C_DELETE:
		r->status = kv_store_delete(st, r->key, r->nkey, r->hash, now);
		break;
	case KV_C_INCR:
	case KV_C_DECR:
		r->status = kv_store_incr(st, r->key, r->nkey, r->hash, r->op == KV_C_INCR, r->delta,
					  now, &r->num);
		break;
	case KV_C_TOUCH:
		r->status = kv_store_touch(st, r->key, r->nkey, r->hash, r->exptime, now);
		break;
	case KV_C_FLUSH_ALL:
		kv_store_flush(st, r->exptime, now);
		break;
	default:
		break;
	}
}

static void snapshot(struct kv_shard *ks, struct kv_snap *sn)
{
	sn->st = ks->store.st;
	sn->limit = ks->store.limit;
	sn->curr_conns = ks->curr_conns;
	sn->total_conns = ks->total_conns;
	sn->forwarded = ks->forwarded;
	sn->served_remote = ks->served_remote;
	sn->queue_waits = ks->queue_waits;
	sn->pool_waits = ks->pool_waits;
	sn->items_hash_buckets = ks->store.mask + 1;
}

/* "VALUE key flags bytes[ cas]\r\n" into head (KV_KEY_MAX + 96 bytes); returns its length. */
static size_t value_line(char *head, const struct kv_item *it, bool cas)
{
	char *p = head;

	memcpy(p, "VALUE ", 6);
	p += 6;
	memcpy(p, it->data, it->nkey);
	p += it->nkey;
	p += sprintf(p, " %u %u", it->flags, it->nval);
	if (cas)
		p += sprintf(p, " %llu", (unsigned long long)it->cas);
	memcpy(p, "\r\n", 2);
	return (size_t)(p + 2 - head);
}

static void format(struct sink *o, const struct kv_req *r)
{
	static const char *const words[] = {
		[KV_STORED] = "STORED\r\n",       [KV_NOT_STORED] = "NOT_STORED\r\n",
		[KV_EXISTS] = "EXISTS\r\n",       [KV_NOT_FOUND] = "NOT_FOUND\r\n",
		[KV_DELETED] = "DELETED\r\n",     [KV_TOUCHED] = "TOUCHED\r\n",
		[KV_NON_NUMERIC] = "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
		[KV_NO_MEMORY] = "SERVER_ERROR out of memory storing object\r\n",
		[KV_TOO_LARGE] = "SERVER_ERROR object too large for cache\r\n",
	};
	char head[KV_KEY_MAX + 96];
	int n;

	if (r->status < 0) {
		/* The owner shard could not be reached (it is stopping). */
		puts_(o, "SERVER_ERROR shard unavailable\r\n");
		return;
	}
	switch (r->op) {
	case KV_C_GET:
	case KV_C_GAT:
	case KV_C_GETS:
	case KV_C_GATS:
		if (!r->item)
			return;
		n = (int)value_line(head, r->item, r->op == KV_C_GETS || r->op == KV_C_GATS);
		put(o, head, (size_t)n);
		put(o, kv_item_val(r->item), r->item->nval + 2);
		return;
	case KV_C_INCR:
	case KV_C_DECR:
		if (r->noreply)
			return;
		if (r->status == KV_STORED) {
			n = snprintf(head, sizeof(head), "%llu\r\n", (unsigned long long)r->num);
			put(o, head, (size_t)n);
			return;
		}
		puts_(o, words[r->status]);
		return;
	case KV_C_FLUSH_ALL:
	case KV_C_STATS:
		return; /* the session writes OK / the totals after every shard answered */
	default:
		if (!r->noreply)
			puts_(o, words[r->status]);
		return;
	}
}

/* ---- forwarding ---- */

static void *remote_exec(struct vq_shard *on, void *arg)
{
	struct kv_shard *ks = on->app;
	struct kv_pend *p = arg;

	if (p->r.op == KV_C_STATS) {
		ks->served_remote++;
		snapshot(ks, &p->snaps[ks->id]);
		return p;
	}
	for (struct kv_pend *q = p; q; q = q->bnext) {
		struct kv_item *it;

		ks->served_remote++;
		exec(ks, &q->r);
		it = q->r.item;
		if (!it)
			continue;
		if (sizeof(q->inl) >= KV_KEY_MAX + 96 + (size_t)it->nval + 2) {
			size_t n = value_line(q->inl, it, q->r.op == KV_C_GETS ||
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

static void outbox_run(struct vq_task *t)
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
static void enqueue_forwarded(struct kv_sess *s, struct kv_pend *p)
{
	p->forwarded = true;
	queue(s, p);
	if (!s->npend++ && s->io.busy)
		s->io.busy(s->io.ctx, true);
	s->ks->forwarded++;
}

/*
 * Send p (and the requests chained on p->bnext, all for p->dst) to its owner,
 * after anything already waiting for that queue.
 */
static void send_forwarded(struct kv_sess *s, struct kv_pend *p)
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

static void forward(struct kv_sess *s, struct kv_pend *p)
{
	enqueue_forwarded(s, p);
	send_forwarded(s, p);
}

static void sess_free(struct kv_sess *s)
{
	struct kv_pend *p, *next;

	for (p = s->head; p; p = next) {
		next = p->next;
		pend_free(p);
	}
	free(s->line);
	free(s);
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
	if (!s->closed) {
		struct sink o = { s, s->head == p ? NULL : p };

		if (p->ninl)
			put(&o, p->inl, p->ninl);
		else
			format(&o, &p->r);
	}
	if (p->r.item)
		release_item(ks, p->dst, p->r.item);
	p->r.item = NULL;
	free((void *)p->r.val);
	p->r.val = NULL;
	p->done = true;
	if (s->closed && !s->npend) {
		sess_free(s);
		return false;
	}
	return true;
}

static void remote_done(struct vq_shard *self, void *ctx, void *result, int err)
{
	struct kv_pend *p = ctx;
	struct kv_sess *s = p->sess;

	while (p) {
		/* flush() below may free p once it is done: step first */
		struct kv_pend *next = p->bnext;

		if (!complete_one(s, p, err))
			return;
		p = next;
	}
	if (s->closed)
		return;
	flush(s);
	/* Last: letting go may close the connection once the replies are out. */
	if (!s->npend && s->io.busy)
		s->io.busy(s->io.ctx, false);
}

/* ---- the session ---- */

static void format_stats(struct sink *o, struct kv_sess *s, struct kv_snap *snaps)
{
	struct kv_shard *ks = s->ks;
	struct kv_snap sum = { 0 };
	char line[160];
	int64_t now = kv_now(ks);
	int n;

#define STAT(name, fmt, val)                                                                   \
	do {                                                                                   \
		n = snprintf(line, sizeof(line), "STAT %s " fmt "\r\n", name, val);              \
		put(o, line, (size_t)n);                                                       \
	} while (0)

	snapshot(ks, &snaps[ks->id]);
	for (unsigned i = 0; i < ks->nshards; i++) {
		uint64_t *a = (uint64_t *)&sum.st, *b = (uint64_t *)&snaps[i].st;

		for (size_t k = 0; k < sizeof(sum.st) / sizeof(uint64_t); k++)
			a[k] += b[k];
		sum.limit += snaps[i].limit;
		sum.curr_conns += snaps[i].curr_conns;
		sum.total_conns += snaps[i].total_conns;
	}
	STAT("pid", "%ld", (long)getpid());
	STAT("uptime", "%lld", (long long)(now - ks->start_time));
	STAT("time", "%lld", (long long)now);
	STAT("version", "%s", KV_VERSION);
	STAT("pointer_size", "%d", (int)(8 * sizeof(void *)));
	STAT("curr_connections", "%llu", (unsigned long long)sum.curr_conns);
	STAT("total_connections", "%llu", (unsigned long long)sum.total_conns);
	STAT("cmd_get", "%llu", (unsigned long long)sum.st.cmd_get);
	STAT("cmd_set", "%llu", (unsigned long long)sum.st.cmd_set);
	STAT("cmd_flush", "%llu", (unsigned long long)sum.st.cmd_flush);
	STAT("cmd_touch", "%llu", (unsigned long long)sum.st.cmd_touch);
	STAT("get_hits", "%llu", (unsigned long long)sum.st.get_hits);
	STAT("get_misses", "%llu", (unsigned long long)sum.st.get_misses);
	STAT("delete_misses", "%llu", (unsigned long long)sum.st.delete_misses);
	STAT("delete_hits", "%llu", (unsigned long long)sum.st.delete_hits);
	STAT("incr_misses", "%llu", (unsigned long long)sum.st.incr_misses);
	STAT("incr_hits", "%llu", (unsigned long long)sum.st.incr_hits);
	STAT("decr_misses", "%llu", (unsigned long long)sum.st.decr_misses);
	STAT("decr_hits", "%llu", (unsigned long long)sum.st.decr_hits);
	STAT("cas_misses", "%llu", (unsigned long long)sum.st.cas_misses);
	STAT("cas_hits", "%llu", (unsigned long long)sum.st.cas_hits);
	STAT("cas_badval", "%llu", (unsigned long long)sum.st.cas_badval);
	STAT("touch_hits", "%llu", (unsigned long long)sum.st.touch_hits);
	STAT("touch_misses", "%llu", (unsigned long long)sum.st.touch_misses);
	STAT("threads", "%u", ks->nshards);
	STAT("limit_maxbytes", "%llu", (unsigned long long)sum.limit);
	STAT("bytes", "%llu", (unsigned long long)sum.st.bytes);
	STAT("curr_items", "%llu", (unsigned long long)sum.st.curr_items);
	STAT("total_items", "%llu", (unsigned long long)sum.st.total_items);
	STAT("evictions", "%llu", (unsigned long long)sum.st.evictions);
	STAT("reclaimed", "%llu", (unsigned long long)sum.st.reclaimed);
	STAT("out_of_memory", "%llu", (unsigned long long)sum.st.oom);
	for (unsigned i = 0; i < ks->nshards; i++) {
		const struct kv_snap *sn = &snaps[i];
		char name[48];
#define SHARD_STAT(field, val)                                                                 \
	do {                                                                                   \
		snprintf(name, sizeof(name), "shard%u:%s", i, field);                          \
		STAT(name, "%llu", (unsigned long long)(val));                                 \
	} while (0)
		SHARD_STAT("curr_items", sn->st.curr_items);
		SHARD_STAT("bytes", sn->st.bytes);
		SHARD_STAT("limit_maxbytes", sn->limit);
		SHARD_STAT("evictions", sn->st.evictions);
		SHARD_STAT("get_hits", sn->st.get_hits);
		SHARD_STAT("get_misses", sn->st.get_misses);
		SHARD_STAT("cmd_set", sn->st.cmd_set);
		SHARD_STAT("curr_connections", sn->curr_conns);
		SHARD_STAT("forwarded", sn->forwarded);
		SHARD_STAT("served_remote", sn->served_remote);
		SHARD_STAT("queue_waits", sn->queue_waits);
		SHARD_STAT("pool_waits", sn->pool_waits);
		SHARD_STAT("hash_buckets", sn->items_hash_buckets);
#undef SHARD_STAT
	}
#undef STAT
	puts_(o, "END\r\n");
}

static void flush(struct kv_sess *s)
{
	while (s->head && s->head->done) {
		struct kv_pend *p = s->head;

		s->head = p->next;
		if (!s->head)
			s->tail = NULL;
		if (p->stats_sum) {
			struct sink o = { s, NULL };

			format_stats(&o, s, p->snaps);
		} else if (p->out.len && !s->closed && s->io.write(s->io.ctx, p->out.p, p->out.len)) {
			broken(s);
		}
		pend_free(p);
	}
	/*
	 * Send once nothing is waiting on another shard: a reply that spans shards
	 * leaves in one piece (full buffers go out on their own as they fill).
	 */
	if (s->io.flush && !s->closed && !s->head)
		s->io.flush(s->io.ctx);
	if (!s->head && s->closing && !s->closed && s->io.close) {
		void (*c)(void *) = s->io.close;

		s->io.close = NULL; /* once */
		c(s->io.ctx);
	}
}

/* A multi-get batches its keys per owner for the first this many shards. */
#define KV_BATCH_SHARDS 64

static void do_get(struct kv_sess *s, const struct kv_cmd *cmd)
{
	struct kv_shard *ks = s->ks;
	const char *p = cmd->keys, *key;
	size_t nkey;
	int ret;
	int64_t exptime = 0;

	/* Check every key first so a bad one fails the whole command, before any VALUE line. */
	while ((ret = kv_next_key(&p, cmd->end, &key, &nkey)) > 0)
		;
	if (ret < 0) {
		reply(s, "CLIENT_ERROR bad command line format");
		return;
	}
	struct kv_pend *first[KV_BATCH_SHARDS] = { 0 }, *last[KV_BATCH_SHARDS] = { 0 };

	if (cmd->type == KV_C_GAT || cmd->type == KV_C_GATS)
		exptime = kv_exptime(cmd->exptime, kv_now(ks));
	p = cmd->keys;
	while (kv_next_key(&p, cmd->end, &key, &nkey) > 0) {
		uint64_t hash = kv_hash(key, nkey);
		unsigned dst = owner(ks, hash);

		if (dst == ks->id) {
			struct kv_req r = { .op = cmd->type, .key = key, .nkey = nkey, .hash = hash,
					    .exptime = exptime };
			struct sink o;

			exec(ks, &r);
			if (r.item) {
				o = local_sink(s);
				format(&o, &r);
			}
		} else {
			struct kv_pend *pd = pend_new(s);

			if (!pd) {
				broken(s); /* closes; the chains below still go out and come back */
				break;
			}
			pd->dst = dst;
			pd->r = (struct kv_req){ .op = cmd->type, .key = pd->key, .nkey = nkey,
						 .hash = hash, .exptime = exptime };
			memcpy(pd->key, key, nkey);
			if (dst >= KV_BATCH_SHARDS) {
				forward(s, pd);
				continue;
			}
			/* One message per owner shard: chain its keys, send after the loop. */
			enqueue_forwarded(s, pd);
			if (last[dst])
				last[dst]->bnext = pd;
			else
				first[dst] = pd;
			last[dst] = pd;
		}
	}
	for (unsigned i = 0; i < KV_BATCH_SHARDS && i < ks->nshards; i++)
		if (first[i])
			send_forwarded(s, first[i]);
	reply(s, "END");
}

/* delete, incr, decr, touch: one key, no data. */
static void do_key(struct kv_sess *s, const struct kv_cmd *cmd)
{
	struct kv_shard *ks = s->ks;
	uint64_t hash = kv_hash(cmd->key, cmd->nkey);
	unsigned dst = owner(ks, hash);
	struct kv_req r = { .op = cmd->type, .noreply = cmd->noreply, .key = cmd->key,
			    .nkey = cmd->nkey, .hash = hash, .delta = cmd->delta };

	if (cmd->type == KV_C_TOUCH)
		r.exptime = kv_exptime(cmd->exptime, kv_now(ks));
	if (dst == ks->id) {
		struct sink o = local_sink(s);

		exec(ks, &r);
		format(&o, &r);
	} else {
		struct kv_pend *pd = pend_new(s);

		if (!pd) {
			reply(s, "SERVER_ERROR out of memory");
			return;
		}
		pd->dst = dst;
		pd->r = r;
		pd->r.key = pd->key;
		memcpy(pd->key, cmd->key, cmd->nkey);
		forward(s, pd);
	}
}

/* flush_all and stats involve every shard: one forwarded entry per other shard, then the sum. */
static void do_all_shards(struct kv_sess *s, const struct kv_cmd *cmd)
{
	struct kv_shard *ks = s->ks;
	struct kv_snap *snaps = NULL;
	struct kv_pend *sum = NULL;

	if (cmd->type == KV_C_STATS) {
		snaps = calloc(ks->nshards, sizeof(*snaps));
		sum = pend_new(s);
		if (!snaps || !sum) {
			free(snaps);
			free(sum);
			reply(s, "SERVER_ERROR out of memory");
			return;
		}
	} else {
		/* Here first, so a later local set on this connection survives the flush. */
		struct kv_req r = { .op = KV_C_FLUSH_ALL, .exptime = cmd->delay };

		exec(ks, &r);
	}
	for (unsigned i = 0; i < ks->nshards; i++) {
		struct kv_pend *pd;

		if (i == ks->id)
			continue;
		pd = pend_new(s);
		if (!pd) {
			broken(s);
			break;
		}
		pd->dst = i;
		pd->r = (struct kv_req){ .op = cmd->type, .exptime = cmd->delay };
		pd->snaps = snaps;
		forward(s, pd);
	}
	if (sum) {
		sum->stats_sum = true;
		sum->snaps = snaps;
		sum->done = true;
		queue(s, sum);
		flush(s);
	} else if (!cmd->noreply) {
		reply(s, "OK");
	}
}

/* A set that could not be stored drops the old value, as memcached does: no stale reads. */
static void drop_stale(struct kv_sess *s, const struct kv_cmd *cmd)
{
	struct kv_cmd del = { .type = KV_C_DELETE, .key = cmd->key, .nkey = cmd->nkey,
			      .noreply = true };

	if (cmd->type == KV_C_SET && kv_key_ok(cmd->key, cmd->nkey))
		do_key(s, &del);
}

static void start_storage(struct kv_sess *s, const struct kv_cmd *cmd)
{
	struct kv_shard *ks = s->ks;
	uint64_t hash;
	unsigned dst;
	int64_t exptime;

	if (cmd->nval > ks->cfg->max_value) {
		reply(s, "SERVER_ERROR object too large for cache");
		drop_stale(s, cmd);
		goto swallow;
	}
	hash = kv_hash(cmd->key, cmd->nkey);
	dst = owner(ks, hash);
	exptime = kv_exptime(cmd->exptime, kv_now(ks));
	s->cmd = *cmd;
	s->cmd.key = NULL; /* the line it points into is gone after this call */
	if (dst == ks->id) {
		s->item = kv_item_alloc(&ks->store, cmd->key, cmd->nkey, hash, cmd->flags, exptime,
					(uint32_t)cmd->nval);
		if (!s->item) {
			reply(s, "SERVER_ERROR out of memory storing object");
			drop_stale(s, cmd);
			goto swallow;
		}
		s->dst = (uint8_t *)kv_item_val(s->item);
	} else {
		struct kv_pend *pd = pend_new(s);
		uint8_t *val = malloc(cmd->nval + 2);

		if (!pd || !val) {
			free(pd);
			free(val);
			reply(s, "SERVER_ERROR out of memory storing object");
			goto swallow;
		}
		pd->dst = dst;
		pd->r = (struct kv_req){ .op = cmd->type, .noreply = cmd->noreply, .key = pd->key,
					 .nkey = cmd->nkey, .hash = hash, .flags = cmd->flags,
					 .exptime = exptime, .cas = cmd->cas, .val = val,
					 .nval = (uint32_t)cmd->nval };
		memcpy(pd->key, cmd->key, cmd->nkey);
		s->fwd = pd;
		s->dst = val;
	}
	s->want = cmd->nval + 2;
	s->got = 0;
	s->state = KV_S_DATA;
	return;
swallow:
	s->swallow = cmd->nval + 2;
	s->state = KV_S_SWALLOW;
}

static void finish_storage(struct kv_sess *s)
{
	struct kv_shard *ks = s->ks;
	uint64_t nval = s->want - 2;

	s->state = KV_S_LINE;
	if (s->dst[nval] != '\r' || s->dst[nval + 1] != '\n') {
		/* Out of step: skip the rest of the line the block ended in, as memcached does. */
		if (s->dst[nval + 1] != '\n')
			s->state = KV_S_SWALLOW_LINE;
		if (s->item)
			kv_item_put(&ks->store, s->item);
		if (s->fwd)
			pend_free(s->fwd);
		s->item = NULL;
		s->fwd = NULL;
		reply(s, "CLIENT_ERROR bad data chunk");
		return;
	}
	if (s->item) {
		struct kv_req r = { .op = s->cmd.type, .noreply = s->cmd.noreply, .item = s->item,
				    .cas = s->cmd.cas };
		struct sink o = local_sink(s);

		s->item = NULL;
		exec(ks, &r);
		format(&o, &r);
	} else {
		struct kv_pend *pd = s->fwd;

		s->fwd = NULL;
		forward(s, pd);
	}
}

static void process_line(struct kv_sess *s, const char *line, size_t len)
{
	struct kv_cmd cmd;
	const char *err;
	uint64_t swallow;

	if (kv_parse(line, len, &cmd, &err, &swallow)) {
		reply(s, err);
		if (swallow) {
			s->swallow = swallow;
			s->state = KV_S_SWALLOW;
		}
		return;
	}
	switch (cmd.type) {
	case KV_C_GET:
	case KV_C_GETS:
	case KV_C_GAT:
	case KV_C_GATS:
		do_get(s, &cmd);
		break;
	case KV_C_SET:
	case KV_C_ADD:
	case KV_C_REPLACE:
	case KV_C_APPEND:
	case KV_C_PREPEND:
	case KV_C_CAS:
		start_storage(s, &cmd);
		break;
	case KV_C_DELETE:
	case KV_C_INCR:
	case KV_C_DECR:
	case KV_C_TOUCH:
		do_key(s, &cmd);
		break;
	case KV_C_FLUSH_ALL:
	case KV_C_STATS:
		do_all_shards(s, &cmd);
		break;
	case KV_C_VERSION:
		reply(s, "VERSION " KV_VERSION);
		break;
	case KV_C_VERBOSITY:
		if (!cmd.noreply)
			reply(s, "OK");
		break;
	case KV_C_QUIT:
		s->closing = true;
		s->state = KV_S_DONE;
		break;
	}
}

static void line_too_long(struct kv_sess *s)
{
	reply(s, "CLIENT_ERROR line too long");
	s->closing = true;
	s->state = KV_S_DONE;
}

struct kv_sess *kv_sess_new(struct kv_shard *ks, const struct kv_io *io)
{
	struct kv_sess *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->ks = ks;
	s->io = *io;
	s->state = KV_S_LINE;
	return s;
}

void kv_sess_feed(struct kv_sess *s, const char *p, size_t n)
{
	while (n && s->state != KV_S_DONE) {
		const char *nl;
		size_t take;

		switch (s->state) {
		case KV_S_LINE:
			nl = memchr(p, '\n', n);
			if (!s->nline && nl) {
				/* The whole line is in this buffer: parse it where it lies. */
				take = (size_t)(nl - p);
				if (take > kv_line_limit(p, take)) {
					line_too_long(s);
					break;
				}
				process_line(s, p, take);
				p += take + 1;
				n -= take + 1;
				break;
			}
			take = nl ? (size_t)(nl - p) : n;
			if (s->nline + take > KV_GETLINE_MAX) {
				line_too_long(s);
				break;
			}
			if (s->nline + take > s->capline) {
				size_t cap = s->capline ? s->capline : 256;
				char *l;

				while (cap < s->nline + take)
					cap *= 2;
				l = realloc(s->line, cap);
				if (!l) {
					broken(s);
					break;
				}
				s->line = l;
				s->capline = cap;
			}
			memcpy(s->line + s->nline, p, take);
			s->nline += take;
			p += take;
			n -= take;
			if (s->nline > kv_line_limit(s->line, s->nline)) {
				line_too_long(s);
				break;
			}
			if (nl) {
				size_t len = s->nline;

				p++;
				n--;
				s->nline = 0;
				process_line(s, s->line, len);
			}
			break;
		case KV_S_DATA:
			take = s->want - s->got < n ? (size_t)(s->want - s->got) : n;
			memcpy(s->dst + s->got, p, take);
			s->got += take;
			p += take;
			n -= take;
			if (s->got == s->want)
				finish_storage(s);
			break;
		case KV_S_SWALLOW:
			take = s->swallow < n ? (size_t)s->swallow : n;
			s->swallow -= take;
			p += take;
			n -= take;
			if (!s->swallow)
				s->state = KV_S_LINE;
			break;
		case KV_S_SWALLOW_LINE:
			nl = memchr(p, '\n', n);
			take = nl ? (size_t)(nl - p) + 1 : n;
			p += take;
			n -= take;
			if (nl)
				s->state = KV_S_LINE;
			break;
		case KV_S_DONE:
			break;
		}
	}
	flush(s);
}

void kv_sess_closed(struct kv_sess *s)
{
	s->closed = true;
	s->state = KV_S_DONE;
	if (s->item)
		kv_item_put(&s->ks->store, s->item);
	s->item = NULL;
	if (s->fwd)
		pend_free(s->fwd);
	s->fwd = NULL;
	/*
	 * Forwarded entries still out are lent to their owners (and a stats entry's
	 * figures are written by them): everything stays until the last reply.
	 */
	if (!s->npend)
		sess_free(s);
}
