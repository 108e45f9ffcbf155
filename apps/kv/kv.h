/* SPDX-License-Identifier: MIT */
#ifndef KV_KV_H
#define KV_KV_H

/*
 * veloq-kv's connection sessions and sharding. A session turns a byte stream
 * into memcached requests and writes their replies in request order; each
 * key's request runs on the key's owner shard, locally or over the message
 * rings. Everything here runs on the thread of the shard named in the call.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "shard.h"
#include "store.h"

/* The [kv] section of the config file. */
struct kv_config {
	uint64_t memory;      /* item memory per shard */
	uint64_t max_value;   /* largest value a client may store */
	uint64_t max_pending; /* forwarded requests one connection may have in flight */
};

struct kv_pend;
struct kv_outbox;

/* One shard's kv state: vq_shard.app. */
struct kv_shard {
	struct vq_shard *vs;     /* NULL when a unit test drives the session by hand */
	unsigned id, nshards;
	const struct kv_config *cfg;
	struct kv_store store;
	int64_t now;             /* unix seconds when vs is NULL (tests set it) */
	int64_t start_time;
	uint64_t curr_conns, total_conns;
	uint64_t forwarded;      /* requests sent to other shards */
	uint64_t served_remote;  /* requests run here for other shards */
	uint64_t queue_waits;    /* times a full message queue made a request wait */
	uint64_t pool_waits;     /* times replies waited for pool buffers (main.c) */
	uint64_t pending_stops;  /* times a session stopped at kv.max_pending forwarded requests */
	struct kv_outbox *out;   /* [nshards]: work waiting for room in a queue */
};

/* Set up a shard's state; vs may be NULL (unit tests: one shard, time from ks->now). */
int kv_shard_init(struct kv_shard *ks, struct vq_shard *vs, unsigned id, unsigned nshards,
		  const struct kv_config *cfg);
void kv_shard_fini(struct kv_shard *ks);

/*
 * Where a session's replies go. write() returns 0 or -errno (the session then
 * stops reading); flush() (may be NULL) ends a batch of writes: what was written
 * should go out now; close() is asked for once after the last reply of a
 * session that quit or broke the protocol.
 */
struct kv_io {
	int (*write)(void *ctx, const void *data, size_t n);
	void (*close)(void *ctx);
	void (*flush)(void *ctx);
	/* May be NULL: told when replies start (true) and stop (false) waiting on other shards. */
	void (*busy)(void *ctx, bool busy);
	/* May be NULL: the connection holds as much output as it may; take no more requests. */
	bool (*full)(void *ctx);
	void *ctx;
};

/*
 * Replies a session may hold behind one still owed by another shard before it
 * takes no more requests (the connection's own output limit covers the rest).
 */
#define KV_HELD_MAX (4u << 20)

enum kv_pstate {
	KV_S_LINE, KV_S_DATA, KV_S_SWALLOW,
	KV_S_GET_REST, /* a retrieval line stopped part way: its keys wait in `rest` */
	KV_S_DONE,
};

struct kv_sess {
	struct kv_shard *ks;
	struct kv_io io;
	bool closed;             /* the connection is gone: waiting only for forwarded replies */
	bool closing;            /* quit or fatal error: close once the replies are out */
	enum kv_pstate state;
	/* A command line that spans input buffers. */
	char *line;
	size_t nline, capline;
	/* The data block of a storage command in progress. */
	struct kv_cmd cmd;
	struct kv_item *item;    /* local owner: the item being filled */
	struct kv_pend *fwd;     /* remote owner: the request whose staging buffer is filled */
	uint8_t *dst;
	uint64_t want, got;
	uint64_t swallow;
	/* Replies not yet written, oldest first. */
	struct kv_pend *head, *tail;
	unsigned npend;          /* of which forwarded and unanswered */
	size_t held;             /* reply bytes they hold (behind one owed by another shard) */
	/* KV_S_GET_REST: the keys of a retrieval line not answered yet. */
	char *rest;
	size_t nrest, caprest;
	enum kv_cmd_type rest_type;
	int64_t rest_exptime;
};

/* A session for a new connection (heap-allocated), or NULL when out of memory. */
struct kv_sess *kv_sess_new(struct kv_shard *ks, const struct kv_io *io);

/*
 * Feed received bytes; returns how many were consumed (copied where they must
 * outlive the call). It stops early, between two requests or between two keys
 * of a multi-get, once the session is full (kv_sess_full): feed the rest later.
 */
size_t kv_sess_feed(struct kv_sess *s, const char *p, size_t n);

/* The connection has room again: write held replies, go on with a multi-get that stopped. */
void kv_sess_resume(struct kv_sess *s);

/*
 * The connection is gone: no more writes. The session is freed now, or, with
 * forwarded requests in flight, when the last of their replies comes back.
 */
void kv_sess_closed(struct kv_sess *s);

/*
 * Should the session take no more requests for now? When its connection's
 * output is full (io.full), when kv.max_pending forwarded requests are in
 * flight, or when KV_HELD_MAX bytes of replies wait behind one of them. The
 * per-connection bound on queued work: a few bytes of requests can ask for
 * any amount of reply.
 */
static inline bool kv_sess_full(const struct kv_sess *s)
{
	return s->npend >= s->ks->cfg->max_pending || s->held > KV_HELD_MAX ||
	       (s->io.full && s->io.full(s->io.ctx));
}

/* Part of a request is in the session (a command line or data block not yet whole,
 * or the keys of a multi-get not yet answered): a shutdown drain waits for it. */
static inline bool kv_sess_mid_request(const struct kv_sess *s)
{
	return s->state != KV_S_DONE && (s->state != KV_S_LINE || s->nline > 0);
}

/* Unix seconds for the shard's current loop turn. */
int64_t kv_now(struct kv_shard *ks);

#endif
