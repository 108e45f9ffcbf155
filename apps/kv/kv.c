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
 * Forwarding and the ownership rules for data crossing shards: fwd.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "kv.h"
#include "kv_int.h"
#include "log.h"
#include "msg.h"
#include "vq_version.h"


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
	ret = kv_store_init(&ks->store, cfg->memory, cfg->max_value);
	if (ret)
		return ret;
	ks->out = calloc(ks->nshards, sizeof(*ks->out));
	if (!ks->out) {
		kv_store_fini(&ks->store);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < ks->nshards; i++) {
		ks->out[i].task.fn = kv_outbox_run;
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

void kv_put(struct sink *o, const void *d, size_t n)
{
	struct kv_sess *s = o->s;

	if (s->closed)
		return;
	if (o->p) {
		if (obuf_put(&o->p->out, d, n)) {
			broken(s);
		} else {
			o->p->held += n;
			s->held += n;
		}
		return;
	}
	if (s->io.write(s->io.ctx, d, n))
		broken(s);
}

static void puts_(struct sink *o, const char *str)
{
	kv_put(o, str, strlen(str));
}

static struct kv_pend *pend_new(struct kv_sess *s)
{
	struct kv_pend *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->sess = s;
	return p;
}

void kv_queue(struct kv_sess *s, struct kv_pend *p)
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
	if (p->done)
		kv_release_lent(p->sess->ks, p); /* never written: the connection went */
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
	if (s->tail->done && !s->tail->forwarded && !s->tail->stats_sum && !s->tail->r.item)
		return (struct sink){ s, s->tail };
	p = pend_new(s);
	if (!p) {
		broken(s);
		return (struct sink){ s, NULL };
	}
	p->done = true;
	kv_queue(s, p);
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
		kv_put(&o, buf, n + 2);
		return;
	}
	puts_(&o, line);
	kv_put(&o, "\r\n", 2);
}

/* The reply to a parsed command: none at all when it asked for noreply, errors included. */
static void reply_to(struct kv_sess *s, const struct kv_cmd *cmd, const char *line)
{
	if (!cmd->noreply)
		reply(s, line);
}

/* ---- executing requests on the owner ---- */

static const enum kv_store_op store_ops[] = {
	[KV_C_SET] = KV_SET, [KV_C_ADD] = KV_ADD, [KV_C_REPLACE] = KV_REPLACE,
	[KV_C_APPEND] = KV_APPEND, [KV_C_PREPEND] = KV_PREPEND, [KV_C_CAS] = KV_CAS,
};

void kv_exec(struct kv_shard *ks, struct kv_req *r)
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

void kv_snapshot(struct kv_shard *ks, struct kv_snap *sn)
{
	const struct vq_shard *vs = ks->vs;

	*sn = (struct kv_snap){
		.st = ks->store.st,
		.limit = ks->store.limit,
		.curr_conns = ks->curr_conns,
		.total_conns = ks->total_conns,
		.forwarded = ks->forwarded,
		.served_remote = ks->served_remote,
		.queue_waits = ks->queue_waits,
		.pool_waits = ks->pool_waits,
		.pending_stops = ks->pending_stops,
		.items_hash_buckets = ks->store.mask + 1,
		.accepting = true,
	};
	/* No framework shard under the unit tests (kv_shard_init with vs = NULL). */
	if (!vs)
		return;
	sn->loop_turns = vs->st.iterations;
	sn->stall_closed = vs->st.stall_closed;
	sn->pool_stall_closed = vs->st.pool_stall_closed;
	sn->lingered = vs->st.lingered;
	sn->max_conns = vs->cfg->max_connections;
	sn->rejected = vs->st.rejected;
	sn->accept_errors = vs->st.accept_errors;
	sn->bytes_read = vs->st.bytes_in;
	sn->bytes_written = vs->st.bytes_out;
	sn->pool_free = vs->pool.st.free;
	sn->pool_in_use = vs->pool.st.user;
	/* As memcached's accepting_conns: not while stopping, nor at limits.max_connections. */
	sn->accepting = vs->state == VQ_SHARD_RUNNING && vs->nconns < vs->cfg->max_connections;
	for (unsigned to = 0; vs->mesh && to < ks->nshards; to++) {
		struct vq_msg_pair_stats ps;

		vq_mesh_pair_stats(vs->mesh, ks->id, to, &ps);
		sn->msg_sent += ps.sent;
		sn->msg_doorbells += ps.doorbells;
	}
}

/*
 * v in decimal at p (at most 20 digits); returns the end. Every hit's VALUE line
 * has two or three numbers: printf's format parsing cost more than the lookup.
 */
static char *put_u64(char *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* "VALUE key flags bytes[ cas]\r\n" into head (KV_KEY_MAX + 96 bytes); returns its length. */
size_t kv_value_line(char *head, const struct kv_item *it, bool cas)
{
	char *p = head;

	memcpy(p, "VALUE ", 6);
	p += 6;
	memcpy(p, it->data, it->nkey);
	p += it->nkey;
	*p++ = ' ';
	p = put_u64(p, it->flags);
	*p++ = ' ';
	p = put_u64(p, it->nval);
	if (cas) {
		*p++ = ' ';
		p = put_u64(p, it->cas);
	}
	memcpy(p, "\r\n", 2);
	return (size_t)(p + 2 - head);
}

void kv_format(struct sink *o, const struct kv_req *r)
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
		if (!r->noreply)
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
		n = (int)kv_value_line(head, r->item, r->op == KV_C_GETS || r->op == KV_C_GATS);
		kv_put(o, head, (size_t)n);
		kv_put(o, kv_item_val(r->item), r->item->nval + 2);
		return;
	case KV_C_INCR:
	case KV_C_DECR:
		if (r->noreply)
			return;
		if (r->status == KV_STORED) {
			n = (int)(put_u64(head, r->num) - head);
			memcpy(head + n, "\r\n", 2);
			kv_put(o, head, (size_t)n + 2);
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

/* ---- the session ---- */

void kv_sess_free(struct kv_sess *s)
{
	struct kv_pend *p, *next;

	for (p = s->head; p; p = next) {
		next = p->next;
		pend_free(p);
	}
	free(s->line);
	free(s->rest);
	free(s);
}


static void format_stats(struct sink *o, struct kv_sess *s, struct kv_snap *snaps)
{
	struct kv_shard *ks = s->ks;
	struct kv_snap sum = { .accepting = true };
	struct rusage ru;
	char line[160];
	int64_t now = kv_now(ks);
	int n;

#define STAT(name, fmt, val)                                                                   \
	do {                                                                                   \
		n = snprintf(line, sizeof(line), "STAT %s " fmt "\r\n", name, val);              \
		kv_put(o, line, (size_t)n);                                                       \
	} while (0)

	kv_snapshot(ks, &snaps[ks->id]);
	for (unsigned i = 0; i < ks->nshards; i++) {
		uint64_t *a = (uint64_t *)&sum.st, *b = (uint64_t *)&snaps[i].st;

		for (size_t k = 0; k < sizeof(sum.st) / sizeof(uint64_t); k++)
			a[k] += b[k];
		sum.limit += snaps[i].limit;
		sum.curr_conns += snaps[i].curr_conns;
		sum.total_conns += snaps[i].total_conns;
		sum.max_conns += snaps[i].max_conns;
		sum.rejected += snaps[i].rejected;
		sum.bytes_read += snaps[i].bytes_read;
		sum.bytes_written += snaps[i].bytes_written;
		sum.accepting = sum.accepting && snaps[i].accepting;
	}
	if (getrusage(RUSAGE_SELF, &ru))
		memset(&ru, 0, sizeof(ru));
	STAT("pid", "%ld", (long)getpid());
	STAT("uptime", "%lld", (long long)(now - ks->start_time));
	STAT("time", "%lld", (long long)now);
	STAT("version", "%s", KV_VERSION);
	STAT("pointer_size", "%d", (int)(8 * sizeof(void *)));
	/* CPU time of the whole process, all shards: seconds.microseconds as memcached prints it. */
	n = snprintf(line, sizeof(line), "STAT rusage_user %ld.%06ld\r\n", (long)ru.ru_utime.tv_sec,
		     (long)ru.ru_utime.tv_usec);
	kv_put(o, line, (size_t)n);
	n = snprintf(line, sizeof(line), "STAT rusage_system %ld.%06ld\r\n", (long)ru.ru_stime.tv_sec,
		     (long)ru.ru_stime.tv_usec);
	kv_put(o, line, (size_t)n);
	STAT("curr_connections", "%llu", (unsigned long long)sum.curr_conns);
	STAT("max_connections", "%llu", (unsigned long long)sum.max_conns);
	STAT("total_connections", "%llu", (unsigned long long)sum.total_conns);
	STAT("rejected_connections", "%llu", (unsigned long long)sum.rejected);
	STAT("cmd_get", "%llu", (unsigned long long)sum.st.cmd_get);
	STAT("cmd_set", "%llu", (unsigned long long)sum.st.cmd_set);
	STAT("cmd_flush", "%llu", (unsigned long long)sum.st.cmd_flush);
	STAT("cmd_touch", "%llu", (unsigned long long)sum.st.cmd_touch);
	STAT("get_hits", "%llu", (unsigned long long)sum.st.get_hits);
	STAT("get_misses", "%llu", (unsigned long long)sum.st.get_misses);
	STAT("get_expired", "%llu", (unsigned long long)sum.st.get_expired);
	STAT("get_flushed", "%llu", (unsigned long long)sum.st.get_flushed);
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
	STAT("bytes_read", "%llu", (unsigned long long)sum.bytes_read);
	STAT("bytes_written", "%llu", (unsigned long long)sum.bytes_written);
	STAT("limit_maxbytes", "%llu", (unsigned long long)sum.limit);
	STAT("accepting_conns", "%d", sum.accepting ? 1 : 0);
	STAT("threads", "%u", ks->nshards);
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
		SHARD_STAT("pool_free", sn->pool_free);
		SHARD_STAT("pool_in_use", sn->pool_in_use);
		SHARD_STAT("pending_stops", sn->pending_stops);
		SHARD_STAT("stall_closed", sn->stall_closed);
		SHARD_STAT("pool_stall_closed", sn->pool_stall_closed);
		SHARD_STAT("lingering_closes", sn->lingered);
		SHARD_STAT("accept_errors", sn->accept_errors);
		SHARD_STAT("hash_buckets", sn->items_hash_buckets);
		SHARD_STAT("loop_turns", sn->loop_turns);
		SHARD_STAT("msg_sent", sn->msg_sent);
		SHARD_STAT("msg_doorbells", sn->msg_doorbells);
#undef SHARD_STAT
	}
#undef STAT
	puts_(o, "END\r\n");
}

static bool out_full(const struct kv_sess *s)
{
	return !s->closed && s->io.full && s->io.full(s->io.ctx);
}

/*
 * Write the reply at the head of the queue, in pieces while the connection has
 * room: held replies can add up to KV_HELD_MAX and a lent hit to kv.max_value,
 * and a client that does not read must not pin that much of the pool. A lent
 * hit is copied once, from its item straight to the connection. Returns true
 * once all of it is written.
 */
static bool write_head(struct kv_sess *s, struct kv_pend *p)
{
	struct sink o = { s, NULL };
	const char *d = p->out.p;
	size_t len = p->out.len;

	if (p->stats_sum) {
		format_stats(&o, s, p->snaps);
		return true;
	}
	if (p->r.item) {
		if (!p->sent) {
			char head[KV_KEY_MAX + 96];
			bool cas = p->r.op == KV_C_GETS || p->r.op == KV_C_GATS;

			kv_put(&o, head, kv_value_line(head, p->r.item, cas));
		}
		d = kv_item_val(p->r.item);
		len = (size_t)p->r.item->nval + 2;
	}
	while (p->sent < len) {
		size_t n = len - p->sent < KV_PIECE ? len - p->sent : KV_PIECE;

		kv_put(&o, d + p->sent, n);
		p->sent += n;
		if (p->sent < len && out_full(s))
			return false; /* the rest when the peer has read (kv_sess_resume) */
	}
	return true;
}

void kv_flush(struct kv_sess *s)
{
	while (s->head && s->head->done) {
		struct kv_pend *p = s->head;

		/* The rest waits until the peer reads: kv_sess_resume flushes again. */
		if (out_full(s) || !write_head(s, p))
			break;
		s->head = p->next;
		if (!s->head)
			s->tail = NULL;
		s->held -= p->held;
		kv_release_lent(s->ks, p);
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
/* Keys of a retrieval line remembered by the check pass, so most lines are tokenized once. */
#define KV_GET_SAVED 16

struct get_batch {
	struct kv_pend *first[KV_BATCH_SHARDS], *last[KV_BATCH_SHARDS];
	int64_t exptime;
	bool any_fwd;
};

/*
 * A large local hit is not copied now: the session takes a reference and
 * kv_flush writes it piece by piece as the connection has room, the same way
 * as a large hit lent by another shard.
 */
static void lend_local(struct kv_sess *s, const struct kv_req *r)
{
	struct kv_pend *p = pend_new(s);

	if (!p) {
		broken(s);
		return;
	}
	p->r = (struct kv_req){ .op = r->op, .item = r->item };
	p->r.item->refs++;
	p->dst = s->ks->id;
	p->done = true;
	kv_hold_lent(s, p);
	kv_queue(s, p);
	if (s->head == p)
		kv_flush(s);
}

/* One key of a retrieval command: answered here, or chained for its owner. Returns false
 * when out of memory (the session is broken then). */
static bool get_key(struct kv_sess *s, const struct kv_cmd *cmd, struct get_batch *gb,
		    const char *key, size_t nkey)
{
	struct kv_shard *ks = s->ks;
	uint64_t hash = kv_hash(key, nkey);
	unsigned dst = owner(ks, hash);
	struct kv_pend *pd;

	if (dst == ks->id) {
		struct kv_req r = { .op = cmd->type, .key = key, .nkey = nkey, .hash = hash,
				    .exptime = gb->exptime };
		struct sink o;

		kv_exec(ks, &r);
		if (r.item && r.item->nval + 2 > KV_PIECE) {
			lend_local(s, &r);
		} else if (r.item) {
			o = local_sink(s);
			kv_format(&o, &r);
		}
		return true;
	}
	pd = pend_new(s);
	if (!pd) {
		broken(s); /* closes; the chains already made still go out and come back */
		return false;
	}
	pd->dst = dst;
	pd->r = (struct kv_req){ .op = cmd->type, .key = pd->key, .nkey = nkey, .hash = hash,
				 .exptime = gb->exptime };
	memcpy(pd->key, key, nkey);
	if (dst >= KV_BATCH_SHARDS) {
		kv_forward(s, pd);
		return true;
	}
	/* One message per owner shard: chain its keys, send after the loop. */
	kv_enqueue_forwarded(s, pd);
	if (gb->last[dst])
		gb->last[dst]->bnext = pd;
	else
		gb->first[dst] = pd;
	gb->last[dst] = pd;
	gb->any_fwd = true;
	return true;
}

static void get_batch_init(struct get_batch *gb, const struct kv_shard *ks, int64_t exptime)
{
	gb->exptime = exptime;
	gb->any_fwd = false;
	if (ks->nshards > 1) {
		memset(gb->first, 0, sizeof(gb->first));
		memset(gb->last, 0, sizeof(gb->last));
	}
}

/* Send the keys chained per owner shard. */
static void get_batch_send(struct kv_sess *s, const struct get_batch *gb)
{
	if (gb->any_fwd)
		for (unsigned i = 0; i < KV_BATCH_SHARDS && i < s->ks->nshards; i++)
			if (gb->first[i])
				kv_send_forwarded(s, gb->first[i]);
}

/*
 * Answer the keys of [p, end) until the session is full. Returns NULL when all
 * are answered (or the session broke), else where the next unanswered key starts.
 */
static const char *get_keys(struct kv_sess *s, const struct kv_cmd *cmd, struct get_batch *gb,
			    const char *p, const char *end)
{
	const char *key;
	size_t nkey;

	for (;;) {
		const char *at = p;

		if (kv_next_key(&p, end, &key, &nkey) <= 0)
			return NULL;
		if (kv_sess_full(s))
			return at;
		if (!get_key(s, cmd, gb, key, nkey))
			return NULL;
	}
}

/* The session stops taking requests: count it when kv.max_pending is the reason. */
static void count_stop(struct kv_sess *s)
{
	if (s->npend >= s->ks->cfg->max_pending)
		s->ks->pending_stops++;
}

/*
 * A retrieval line stopped part way: keep its unanswered keys (the line itself
 * may lie in an input buffer about to go back to the pool) and take no more
 * requests until they are answered.
 */
static void get_stop(struct kv_sess *s, const struct kv_cmd *cmd, int64_t exptime,
		     const char *at, const char *end)
{
	size_t n = (size_t)(end - at);

	if (at != s->rest) {
		if (n > s->caprest) {
			char *r = realloc(s->rest, n);

			if (!r) {
				broken(s);
				return;
			}
			s->rest = r;
			s->caprest = n;
		}
		memmove(s->rest, at, n);
	}
	count_stop(s);
	s->nrest = n;
	s->rest_type = cmd->type;
	s->rest_exptime = exptime;
	s->state = KV_S_GET_REST;
}

static void get_end(struct kv_sess *s)
{
	struct sink o = local_sink(s);

	kv_put(&o, "END\r\n", 5);
}

static void do_get(struct kv_sess *s, const struct kv_cmd *cmd)
{
	struct kv_shard *ks = s->ks;
	const char *p = cmd->keys, *rest = NULL, *key, *at = NULL;
	const char *skey[KV_GET_SAVED];
	size_t snkey[KV_GET_SAVED];
	unsigned nsaved = 0, i;
	size_t nkey;
	int ret;
	struct get_batch gb;

	/* Check every key first so a bad one fails the whole command, before any VALUE line. */
	while ((ret = kv_next_key(&p, cmd->end, &key, &nkey)) > 0) {
		if (nsaved < KV_GET_SAVED) {
			skey[nsaved] = key;
			snkey[nsaved++] = nkey;
			rest = p;
		}
	}
	if (ret < 0) {
		reply(s, "CLIENT_ERROR bad command line format");
		return;
	}
	get_batch_init(&gb, ks, cmd->type == KV_C_GAT || cmd->type == KV_C_GATS ?
				    kv_exptime(cmd->exptime, kv_now(ks)) : 0);
	for (i = 0; i < nsaved; i++) {
		if (kv_sess_full(s)) {
			at = skey[i];
			break;
		}
		if (!get_key(s, cmd, &gb, skey[i], snkey[i])) {
			rest = NULL; /* broken: the connection closes */
			break;
		}
	}
	/* Keys past the saved ones: tokenize again from where the saved ones ended. */
	if (!at && rest)
		at = get_keys(s, cmd, &gb, rest, cmd->end);
	get_batch_send(s, &gb);
	if (at)
		get_stop(s, cmd, gb.exptime, at, cmd->end);
	else
		get_end(s);
}

void kv_sess_resume(struct kv_sess *s)
{
	struct kv_cmd cmd = { .type = s->rest_type };
	struct get_batch gb;
	const char *at;

	kv_flush(s); /* replies held while the connection was full */
	if (s->state != KV_S_GET_REST || kv_sess_full(s))
		return;
	get_batch_init(&gb, s->ks, s->rest_exptime);
	at = get_keys(s, &cmd, &gb, s->rest, s->rest + s->nrest);
	get_batch_send(s, &gb);
	if (s->state == KV_S_GET_REST) { /* else it broke */
		if (at) {
			get_stop(s, &cmd, gb.exptime, at, s->rest + s->nrest);
		} else {
			s->state = KV_S_LINE;
			get_end(s);
		}
	}
	kv_flush(s);
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

		kv_exec(ks, &r);
		kv_format(&o, &r);
	} else {
		struct kv_pend *pd = pend_new(s);

		if (!pd) {
			reply_to(s, cmd, "SERVER_ERROR out of memory");
			return;
		}
		pd->dst = dst;
		pd->r = r;
		pd->r.key = pd->key;
		memcpy(pd->key, cmd->key, cmd->nkey);
		kv_forward(s, pd);
	}
}

/* flush_all and stats involve every shard: one forwarded entry per other shard, then the sum. */
static void do_all_shards(struct kv_sess *s, const struct kv_cmd *cmd)
{
	struct kv_shard *ks = s->ks;
	struct kv_snap *snaps = NULL;
	struct kv_pend *sum = NULL;
	int64_t at = 0;

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
		/*
		 * When every shard flushes, as a unix time (0 = now): a delay counts
		 * from now, and past 30 days it is a unix time already, as for an
		 * item's expiry. One time for all shards, however late a message
		 * arrives. Here first, so a later local set on this connection
		 * survives the flush.
		 */
		struct kv_req r = { .op = KV_C_FLUSH_ALL };

		if (cmd->delay > 0)
			at = kv_exptime(cmd->delay, kv_now(ks));
		r.exptime = at;
		kv_exec(ks, &r);
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
		pd->r = (struct kv_req){ .op = cmd->type, .exptime = at };
		pd->snaps = snaps;
		kv_forward(s, pd);
	}
	if (sum) {
		sum->stats_sum = true;
		sum->snaps = snaps;
		sum->done = true;
		kv_queue(s, sum);
		kv_flush(s);
	} else {
		reply_to(s, cmd, "OK");
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
		reply_to(s, cmd, "SERVER_ERROR object too large for cache");
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
			reply_to(s, cmd, "SERVER_ERROR out of memory storing object");
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
			reply_to(s, cmd, "SERVER_ERROR out of memory storing object");
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
		/*
		 * The block was exactly <bytes> + 2 bytes, as memcached reads it too:
		 * commands resume right after them, wherever that is. Skipping more
		 * (say, to the next newline) could swallow a valid command.
		 */
		if (s->item)
			kv_item_put(&ks->store, s->item);
		if (s->fwd)
			pend_free(s->fwd);
		s->item = NULL;
		s->fwd = NULL;
		reply_to(s, &s->cmd, "CLIENT_ERROR bad data chunk");
		return;
	}
	if (s->item) {
		struct kv_req r = { .op = s->cmd.type, .noreply = s->cmd.noreply, .item = s->item,
				    .cas = s->cmd.cas };
		struct sink o = local_sink(s);

		s->item = NULL;
		kv_exec(ks, &r);
		kv_format(&o, &r);
	} else {
		struct kv_pend *pd = s->fwd;

		s->fwd = NULL;
		kv_forward(s, pd);
	}
}

static void process_line(struct kv_sess *s, const char *line, size_t len)
{
	struct kv_cmd cmd;
	const char *err;
	uint64_t swallow;

	if (kv_parse(line, len, &cmd, &err, &swallow)) {
		if (err) /* NULL: sent with noreply */
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
		reply_to(s, &cmd, "OK");
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

size_t kv_sess_feed(struct kv_sess *s, const char *p, size_t n)
{
	const size_t total = n;

	kv_sess_resume(s);
	while (n && s->state != KV_S_DONE) {
		const char *nl;
		size_t take;

		switch (s->state) {
		case KV_S_LINE:
			/* Between two requests: the place to stop while the session is full. */
			if (!s->nline && kv_sess_full(s)) {
				count_stop(s);
				goto stop;
			}
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
				/* Only a retrieval line grows it this far (its keys are copied
				 * if it stops part way): not kept for the lines that follow. */
				if (s->capline > KV_LINE_MAX * 32) {
					free(s->line);
					s->line = NULL;
					s->capline = 0;
				}
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
		case KV_S_GET_REST:
			goto stop;
		case KV_S_DONE:
			break;
		}
	}
	n = 0; /* done, or closing: whatever is left is dropped */
stop:
	kv_flush(s);
	return total - n;
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
		kv_sess_free(s);
}
