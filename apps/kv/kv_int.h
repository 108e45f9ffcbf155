/* SPDX-License-Identifier: MIT */
#ifndef KV_INT_H
#define KV_INT_H

/*
 * Internals shared by kv.c (sessions, replies, executing requests) and fwd.c
 * (forwarding to owner shards). Not for use outside apps/kv.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv.h"
#include "vq_version.h"

/* memcached clients parse the leading x.y.z; the rest says who answers. */
#define KV_VERSION "1.6.21-veloq-" VQ_VERSION

/*
 * Hits up to this size (VALUE line, data, "\r\n") are copied by the owner
 * straight into the forwarded request, which the caller lent for its result:
 * no item is lent and no release message is needed.
 */
#define KV_INLINE 1024

/*
 * Replies larger than this go to the connection in pieces of this size, with a
 * check for room between them, and a local hit this large is lent rather than
 * copied (kv_flush): so no one reply overshoots the connection's output limit
 * by more than a piece.
 */
#define KV_PIECE (16u << 10)

/* What one shard reports for `stats`. */
struct kv_snap {
	struct kv_store_stats st;
	uint64_t limit;
	uint64_t curr_conns, total_conns;
	uint64_t forwarded, served_remote, queue_waits, pool_waits, pending_stops;
	uint64_t items_hash_buckets;
	uint64_t loop_turns, msg_sent, msg_doorbells; /* the framework's view of this shard */
	uint64_t stall_closed, pool_stall_closed, lingered;
	uint64_t max_conns, rejected, accept_errors; /* limits.max_connections and its refusals */
	uint64_t bytes_read, bytes_written; /* from and to this shard's clients */
	uint64_t pool_free, pool_in_use; /* buffers free, and held by connections and replies */
	bool accepting;           /* taking new connections */
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
	size_t held;              /* bytes this entry counts in the session's `held` */
	size_t sent;              /* bytes of it already written: a large reply goes in pieces */
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

/*
 * A lent hit (p->r.item, local or another shard's) counts in the session's
 * held bytes like the copy it stands for: lent values queued behind a forwarded
 * request stop the session as held replies do (kv_sess_full).
 */
static inline void kv_hold_lent(struct kv_sess *s, struct kv_pend *p)
{
	p->held = (size_t)p->r.item->nval + 2;
	s->held += p->held;
}

/* Give a lent hit back to its owner, this shard or another (after its reply is written). */
void kv_release_lent(struct kv_shard *ks, struct kv_pend *p);
/* Write reply bytes to the connection or, behind a waiting reply, into a pend. */
void kv_put(struct sink *o, const void *d, size_t n);
/* A request's reply (not for stats/flush_all, which the session answers). */
void kv_format(struct sink *o, const struct kv_req *r);
/* "VALUE key flags bytes[ cas]\r\n" into head (KV_KEY_MAX + 96 bytes); returns its length. */
size_t kv_value_line(char *head, const struct kv_item *it, bool cas);
/* This shard's figures for stats. */
void kv_snapshot(struct kv_shard *ks, struct kv_snap *sn);
/* Run a request against this shard's store; a hit is left in r->item, unreferenced. */
void kv_exec(struct kv_shard *ks, struct kv_req *r);
/* Write out the replies at the head of the queue that are complete. */
void kv_flush(struct kv_sess *s);
/* Append p to the session's reply order. */
void kv_queue(struct kv_sess *s, struct kv_pend *p);
/* Free a closed session and everything queued on it. */
void kv_sess_free(struct kv_sess *s);

/* The vq_task of an outbox: send what waited for queue room. */
void kv_outbox_run(struct vq_task *t);
/* Put p in the session's reply order as a forwarded request (not sent yet). */
void kv_enqueue_forwarded(struct kv_sess *s, struct kv_pend *p);
/* Send p and the requests chained on p->bnext (all for p->dst) to their owner. */
void kv_send_forwarded(struct kv_sess *s, struct kv_pend *p);
/* Both, for one request. */
void kv_forward(struct kv_sess *s, struct kv_pend *p);

#endif
